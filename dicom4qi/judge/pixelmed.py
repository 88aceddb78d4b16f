"""PixelMed's validator (David Clunie's PixelMed toolkit, Debian ``libpixelmed-java``): the second validator.

``com.pixelmed.validate.DicomInstanceValidator`` checks an object against PixelMed's compiled IOD descriptions (the
validator IHE Gazelle hosts). Its report is lines such as::

    Found Segmentation IOD
    Error: GeneralSeriesModule/Laterality/: : Missing conditional attribute
    Warning: SOPCommonModule/SpecificCharacterSet/: SpecificCharacterSet/value[1]: Unrecognized defined term ...
    IOD validation complete

or ``IOD (SOP Class) unrecognized`` for a SOP Class its build does not describe (the 2022 Debian build predates the
Label Map Segmentation Storage SOP Class): the suite records that as UNSUPPORTED in PixelMed's words, never as a
verdict on the object. Findings are parsed into the same (severity, attribute path, message) as dciodvfy's.

A JVM takes 4 to 7 s to start and load PixelMed's XSLT; an object then takes tens of milliseconds. So one JVM
(:class:`PixelmedServer`, ``pixelmed/ValidateServer.java``, compiled once into the build cache) answers every object
of a run, one path per line; the harness times each answer, and kills and restarts the JVM when an answer takes
longer than the limit or the JVM dies (that object's cell is then TIMEOUT or CRASH, the next starts clean). The
JVM runs with a heap limit (``-Xmx``, exit on OutOfMemoryError), the parent-death signal and the call marks of
:mod:`dicom4qi.process.lifetime`. The object is read without decompressing its frames (the validator checks
attributes; compressed frames stay as written, so a missing codec cannot fail a check).
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

from dicom4qi.judge.validate import Finding, Validation
from dicom4qi.model.results import ToolInfo

__all__ = [
    "NAME",
    "PixelmedServer",
    "UNRECOGNIZED",
    "parse_pixelmed",
    "pixelmed_available",
    "pixelmed_info",
    "pixelmed_version",
]

#: The validator's column in the grid.
NAME = "pixelmed"
HOMEPAGE = "https://www.dclunie.com/pixelmed/software/"
ISSUES = "https://sourceforge.net/projects/pixelmed/"
JAR = Path("/usr/share/java/pixelmed.jar")
SOURCE = Path(__file__).with_name("pixelmed") / "ValidateServer.java"
#: JDK 17 caps XPath expressions below what PixelMed's compiled IOD rules need (JAXP0801003 otherwise).
JAVA_PROPERTIES = [
    "-Djdk.xml.xpathExprOpLimit=0",
    "-Djdk.xml.xpathExprGrpLimit=0",
    "-Djdk.xml.xpathTotalOpLimit=0",
]
#: What PixelMed says of an object whose SOP Class it does not describe.
UNRECOGNIZED = "IOD (SOP Class) unrecognized"
#: Seconds the JVM may take to start and load the validator (it is 1 to 7 s here).
START_TIMEOUT_S = 120.0

_LINE = re.compile(r"^(Error|Warning):\s*(?P<module>[^:]*):\s*(?P<where>[^:]*):\s*(?P<message>.*)$")


def pixelmed_version() -> str | None:
    """The Debian package's version (``20220618+dfsg-1``), or the jar's date; None where it is not installed."""
    if not JAR.is_file():
        return None
    dpkg = shutil.which("dpkg-query")
    if dpkg:
        try:
            out = subprocess.run(
                [dpkg, "-W", "-f", "${Version}", "libpixelmed-java"], capture_output=True, text=True, timeout=30
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    m = re.search(r"pixelmed-(\d+)\.jar", JAR.resolve().name)
    return m.group(1) if m else "unknown"


def pixelmed_available() -> tuple[bool, str]:
    missing = [p for p in ("java", "javac") if shutil.which(p) is None]
    if missing:
        return False, f"{' and '.join(missing)} not installed (Debian openjdk-17-jdk-headless)"
    if not JAR.is_file():
        return False, f"{JAR} not found (Debian libpixelmed-java)"
    return True, ""


def pixelmed_info() -> ToolInfo:
    """The second validator as the results document describes it."""
    ok, why = pixelmed_available()
    return ToolInfo(
        name=NAME,
        role="validator",
        tool="PixelMed DicomInstanceValidator (Debian libpixelmed-java)",
        version=pixelmed_version() if ok else None,
        available=ok,
        reason=why,
        homepage=HOMEPAGE,
    )


def parse_pixelmed(report: str) -> list[Finding]:
    """The findings in PixelMed's report: ``Error:``/``Warning:`` lines; the rest (the IOD found) is skipped.

    The path is PixelMed's module path and, where it gives one, the attribute's place in the data set
    (``SegmentDescriptionMacro/SegmentLabel/ @ SegmentSequence/Item[1]/SegmentLabel/value[1]/``).
    """
    out = []
    for line in report.splitlines():
        m = _LINE.match(line.strip())
        if m:
            where = " @ ".join(p for p in (m.group("module").strip(), m.group("where").strip()) if p)
            out.append(Finding(severity=m.group(1).lower(), message=m.group("message").strip(), path=where or None))
        elif line.startswith(("Error:", "Warning:")):
            severity, _, message = line.partition(":")
            out.append(Finding(severity=severity.lower(), message=message.strip()))
    return out


def _compiled(cache: Path) -> Path:
    """The folder holding ``ValidateServer.class``, compiled from the source once per source version."""
    digest = hashlib.sha256(SOURCE.read_bytes() + JAR.resolve().name.encode()).hexdigest()[:12]
    folder = cache / "pixelmed" / digest
    if (folder / "ValidateServer.class").is_file():
        return folder
    tmp = folder.with_name(f"{digest}.{os.getpid()}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    proc = subprocess.run(
        ["javac", "-cp", str(JAR), "-d", str(tmp), str(SOURCE)], capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"javac could not compile {SOURCE.name}: {(proc.stderr or proc.stdout).strip()[-500:]}")
    try:
        tmp.rename(folder)
    except OSError:  # compiled by another process meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


class PixelmedServer:
    """One JVM running PixelMed's validator, answering objects one after another (see the module's docstring).

    Not thread-safe: one caller at a time (the harness validates with PixelMed from one thread).
    """

    def __init__(self, cache: Path, build: Path, heap_mb: int = 2048) -> None:
        self.cache = cache
        self.build = build
        self.heap_mb = heap_mb
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.start_seconds: list[float] = []
        self._buffer = b""

    # ---- the JVM's life

    def _command(self) -> list[str]:
        from dicom4qi.process.sandbox import wrapper

        classes = _compiled(self.cache)
        return [
            *wrapper(),
            "java",
            f"-Xmx{self.heap_mb}m",
            "-XX:+ExitOnOutOfMemoryError",
            # One JVM answers a whole run: the optimising compiler pays (PixelMed's XSLT on the functional groups
            # of 256 segments takes 10 s an object with the C1 compiler only, 7 s with both); the serial collector
            # leaves the other worker its core. The quick tier's 214 objects, one after another: 98 s, now 77 s.
            "-XX:+UseSerialGC",
            *JAVA_PROPERTIES,
            "-cp",
            f"{JAR}{os.pathsep}{classes}",
            "ValidateServer",
        ]

    def start(self) -> None:
        from dicom4qi.process import lifetime, sandbox

        self.stop()
        t0 = time.monotonic()
        env = {**os.environ, **lifetime.call_env(self.build, f"service:{NAME}")}
        self.proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        sandbox.track(self.proc.pid)
        self.starts += 1
        self._buffer = b""
        line = self._line(time.monotonic() + START_TIMEOUT_S)
        if line != "READY":
            self.stop()
            raise RuntimeError(f"PixelMed's validator did not start: {line or 'no answer'}")
        self.start_seconds.append(round(time.monotonic() - t0, 2))

    def stop(self) -> None:
        from dicom4qi.process import sandbox

        proc, self.proc = self.proc, None
        if proc is None:
            return
        sandbox.kill_group(proc.pid)
        sandbox.untrack(proc.pid)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()

    def __enter__(self) -> PixelmedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- one object

    def _line(self, deadline: float) -> str | None:
        """The JVM's next line of output, or None at the deadline or when it died."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", "replace")

    def validate(self, path: Path, timeout_s: float) -> Validation:
        """PixelMed's report on ``path``: kind "ok" with its findings, "unsupported" (the SOP Class is not one
        PixelMed knows), "timeout", "crash" (the JVM died), or "error" (PixelMed threw: its words)."""
        if self.proc is None or self.proc.poll() is not None:
            try:
                self.start()
            except (OSError, RuntimeError) as exc:
                return Validation("error", [], "", 0.0, message=str(exc))
        assert self.proc is not None and self.proc.stdin is not None
        t0 = time.monotonic()
        try:
            self.proc.stdin.write(str(path.resolve()).encode("utf-8") + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.stop()
            return Validation("crash", [], "", 0.0, message="PixelMed's JVM ended before it read the object")
        deadline = t0 + timeout_s
        lines: list[str] = []
        while True:
            line = self._line(deadline)
            seconds = round(time.monotonic() - t0, 3)
            if line is None:
                code = self.proc.poll()
                self.stop()  # the next object gets a fresh JVM
                raw = "\n".join(lines)
                if code is None:
                    return Validation("timeout", [], raw, seconds, message=f"killed after {timeout_s:g} s")
                why = (
                    f"the JVM ran out of its {self.heap_mb} MB heap"
                    if code == 3
                    else f"the JVM exited with status {code}"
                )
                return Validation("crash", [], raw, seconds, exit_code=code, message=why)
            if line.startswith("| "):
                lines.append(line[2:])
                continue
            if line.startswith("END ok"):
                raw = "\n".join(lines).strip("\n") + "\n"
                if UNRECOGNIZED in raw:
                    return Validation("unsupported", [], raw, seconds, message=UNRECOGNIZED)
                return Validation("ok", parse_pixelmed(raw), raw, seconds, exit_code=0)
            if line.startswith("END exception"):
                words = line[len("END exception ") :]
                return Validation("error", [], "\n".join(lines), seconds, message=f"PixelMed threw {words}")
            lines.append(line)  # anything else the JVM printed: kept in the raw output
