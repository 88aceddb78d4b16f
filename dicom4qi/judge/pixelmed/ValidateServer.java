// dicom4qi: PixelMed's DicomInstanceValidator, kept alive to answer many objects (one JVM per run, not per object).
//
// Protocol (line based, UTF-8): the harness writes one absolute path per line on standard input; for each, this
// program prints PixelMed's report, every line prefixed with "| ", then one line
//   "END ok <milliseconds>"                  the report is complete, or
//   "END exception <class>: <message>"       PixelMed threw (the object could not be read or validated).
// Nothing is added to or taken from PixelMed's report. Standard error is the JVM's own.
import com.pixelmed.dicom.AttributeList;
import com.pixelmed.validate.DicomInstanceValidator;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

public class ValidateServer {
    public static void main(String[] args) throws Exception {
        PrintStream out = new PrintStream(System.out, false, "UTF-8");
        DicomInstanceValidator validator = new DicomInstanceValidator();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        out.println("READY");
        out.flush();
        String path;
        while ((path = in.readLine()) != null) {
            if (path.isEmpty()) {
                continue;
            }
            long start = System.nanoTime();
            try {
                AttributeList list = new AttributeList();
                list.setDecompressPixelData(false); // the validator checks attributes: compressed frames stay as written
                list.read(path);
                String report = validator.validate(list);
                for (String line : (report == null ? "" : report).split("\n", -1)) {
                    out.println("| " + line.replace("\r", ""));
                }
                out.println("END ok " + (System.nanoTime() - start) / 1000000);
            } catch (Exception | StackOverflowError e) {
                String message = String.valueOf(e.getMessage()).replace('\n', ' ');
                out.println("END exception " + e.getClass().getName() + ": " + message);
            }
            out.flush();
        }
    }
}
