"""Executable adapters: any program, in any language, as a producer or consumer (``docs/protocol.md``).

An adapter folder holds ``dicom4qi-adapter.json`` (the command, an optional setup
step such as ``npm ci``, the programs it needs). The harness names it
``exec:FOLDER`` (or a builtin name mapped to one, like ``dcmjs``); this module
turns it into a :class:`~dicom4qi.adapters.contract.Producer` or
:class:`~dicom4qi.adapters.contract.Consumer` whose calls run the program with one JSON
request on its standard input and read one JSON response from its standard
output. The program runs inside the harness's isolated child process, so the
call's time and memory limits and its process group cover it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ValidationError

from dicom4qi.adapters.contract import Consumer, Producer, ReadRequest, Role, WriteRequest
from dicom4qi.model.decoded import DecodedWriter
from dicom4qi.model.protocol import PROTOCOL, AdapterManifest, CallResponse, InfoResponse, Request
from dicom4qi.model.wire import InfoReply
from dicom4qi.process.usage import add_child_peak

__all__ = ["MANIFEST", "AdapterError", "ExecAdapterMixin", "exec_adapter", "call_adapter", "load_manifest", "run_setup"]

MANIFEST = "dicom4qi-adapter.json"
SETUP_MARKER = ".dicom4qi-setup.json"
#: Most bytes an adapter may write to standard output (its one JSON response).
MAX_RESPONSE = 4 * 2**20
HANDSHAKE_TIMEOUT_S = 120.0


class AdapterError(RuntimeError):
    """An executable adapter that cannot be used or broke the protocol; the message says how."""


def load_manifest(folder: Path) -> AdapterManifest:
    path = folder / MANIFEST
    if not path.is_file():
        raise AdapterError(f"{folder}: no {MANIFEST} (see docs/protocol.md)")
    try:
        return AdapterManifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        raise AdapterError(f"{path}: {'/'.join(map(str, first['loc']))}: {first['msg']}") from None


def _digest(folder: Path, manifest: AdapterManifest) -> str:
    h = hashlib.sha256(json.dumps(manifest.setup).encode())
    for name in manifest.setup_inputs:
        p = folder / name
        h.update(name.encode())
        h.update(p.read_bytes() if p.is_file() else b"(missing)")
    return h.hexdigest()[:16]


def missing_programs(manifest: AdapterManifest) -> list[str]:
    return [p for p in manifest.requires if shutil.which(p) is None]


def setup_state(folder: Path, manifest: AdapterManifest) -> tuple[bool, str]:
    """Whether the adapter's setup step has run for its current inputs."""
    if not manifest.setup:
        return True, ""
    marker = folder / SETUP_MARKER
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False, f"its setup ({' '.join(manifest.setup)}) has not run"
    if info.get("digest") != _digest(folder, manifest):
        return False, f"its setup inputs ({', '.join(manifest.setup_inputs)}) changed since setup ran"
    return True, ""


def run_setup(
    folder: Path, manifest: AdapterManifest, log: Callable[[str], None] | None = None, timeout_s: float = 1800
) -> None:
    """Run the manifest's setup step in the folder when it has not run for the current inputs (locked)."""
    if not manifest.setup or missing_programs(manifest):
        return
    with open(folder / ".dicom4qi-setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready, _ = setup_state(folder, manifest)
        if ready:
            return
        if log:
            log(f"{folder.name}: {' '.join(manifest.setup)}")
        started = time.monotonic()
        try:
            proc = subprocess.run(
                manifest.setup, cwd=folder, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AdapterError(f"{folder.name}: setup {' '.join(manifest.setup)} failed: {exc}") from None
        if proc.returncode != 0:
            tail = " / ".join([ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()][-3:])
            raise AdapterError(
                f"{folder.name}: setup {' '.join(manifest.setup)} exited {proc.returncode}: {tail[-600:]}"
            )
        (folder / SETUP_MARKER).write_text(
            json.dumps({"digest": _digest(folder, manifest), "seconds": round(time.monotonic() - started, 1)})
        )


_BWRAP: list[bool] = []
#: Run inside the sandbox around the tool: runs it, then writes its peak resident memory (kB) to the file named
#: first, and ends as it ended (its status, or its signal).
_MEASURE = (
    "import os, resource, signal, subprocess, sys\n"
    "try:\n"
    "    code = subprocess.run(sys.argv[2:]).returncode\n"
    "except OSError as exc:\n"
    "    sys.exit(f'cannot run {sys.argv[2]!r}: {exc}')\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "if code < 0:\n"
    "    signal.signal(-code, signal.SIG_DFL)\n"
    "    os.kill(os.getpid(), -code)\n"
    "sys.exit(code)\n"
)
#: Said in a call's notes when the adapter ran in the sandbox.
SANDBOX_NOTE = (
    "ran in bubblewrap: the file system read-only but its output folder, no network, its own PID and IPC namespaces"
)


def sandbox(writable: list[Path]) -> list[str]:
    """The bubblewrap command line an executable adapter runs under, or [] where bubblewrap cannot run.

    The adapter sees the whole file system read-only (its inputs, its own folder, the system's programs),
    writes only to ``writable`` (its output, and the call's temporary folder, its TMPDIR), has no network
    (not even loopback to the host's services), and its own PID namespace (it dies with its call).
    ``DICOM4QI_NO_SANDBOX=1`` turns it off (to debug an adapter).
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None or os.environ.get("DICOM4QI_NO_SANDBOX"):
        return []
    base = [
        bwrap,
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--die-with-parent",
        "--new-session",
    ]
    if not _BWRAP:  # can it run here at all (user namespaces, or root)?
        try:
            ok = subprocess.run([*base, "--", "true"], capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        _BWRAP.append(ok)
    if not _BWRAP[0]:
        return []
    for path in writable:
        base += ["--bind", str(path), str(path)]
    return [*base, "--"]


def call_adapter(
    folder: Path,
    manifest: AdapterManifest,
    request: Request,
    *,
    timeout_s: float | None = None,
    writable: list[Path] | None = None,
) -> dict[str, Any]:
    """Run the adapter once on ``request``, sandboxed; its parsed JSON response (protocol faults raise AdapterError)."""
    command = list(manifest.command)
    local = folder / command[0]
    if "/" in command[0] or local.is_file():
        command[0] = str(local.absolute())  # not resolved: a venv's python is a link that must stay one
    # Fields the operation does not use are left out (not null); the case of a write is sent whole.
    fields = {k: v for k, v in request.model_dump(mode="json").items() if v is not None}
    payload = json.dumps(fields).encode("utf-8")
    with tempfile.TemporaryDirectory(prefix="dicom4qi-call-") as tmp:
        response_file = Path(tmp) / "response.json"
        if manifest.transport == "files":
            (Path(tmp) / "request.json").write_bytes(payload)
            command += [str(Path(tmp) / "request.json"), str(response_file)]
        jail = sandbox([Path(tmp), *(writable or [])])
        peak_file = Path(tmp) / "peak-kb"
        if jail:  # the sandbox's own init reaps the tool: its peak memory is measured inside, beside it
            command = [sys.executable, "-I", "-S", "-c", _MEASURE, str(peak_file), *command]
        try:
            proc = subprocess.run(
                [*jail, *command],
                cwd=folder,
                input=payload if manifest.transport == "stdio" else b"",
                capture_output=True,
                timeout=timeout_s,
            )
        except FileNotFoundError:
            raise AdapterError(f"cannot run {command[0]!r}: not found") from None
        except subprocess.TimeoutExpired:
            raise AdapterError(f"the adapter gave no answer within {timeout_s:g} s") from None
        if jail:
            try:
                add_child_peak(int(peak_file.read_text()))
            except (OSError, ValueError):
                pass  # killed before it could say: the call's outcome says why
        if manifest.transport == "files":
            if not response_file.is_file():
                raise AdapterError(f"the adapter wrote no response file (exit status {proc.returncode})")
            if response_file.stat().st_size > MAX_RESPONSE:
                raise AdapterError(f"the adapter's response file is over {MAX_RESPONSE} bytes")
            out = response_file.read_bytes()
        else:
            out = proc.stdout
    stderr = proc.stderr.decode("utf-8", "replace").strip()
    if stderr:
        print(stderr[-20000:], file=sys.stderr)  # kept beside the call: the child's stderr is the cell's log
    if len(out) > MAX_RESPONSE:
        raise AdapterError(
            f"the adapter wrote {len(out)} bytes to standard output; a response is at most {MAX_RESPONSE}"
        )
    if proc.returncode != 0:
        how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exited with status {proc.returncode}"
        raise AdapterError(f"the adapter {how}{': ' + stderr[-400:] if stderr else ''}")
    try:
        response = json.loads(out.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        where = "response file" if manifest.transport == "files" else "standard output"
        raise AdapterError(f"the adapter's {where} is not one JSON object: {out[:200]!r}") from None
    if not isinstance(response, dict):
        raise AdapterError("the adapter's response is not a JSON object")
    return response


class ExecAdapterMixin:
    """What executable producers and consumers share: the folder, the manifest, the handshake."""

    role: ClassVar[Role]  # from Producer or Consumer, beside this mixin
    tool: ClassVar[str]
    folder: ClassVar[Path]
    manifest: ClassVar[AdapterManifest | None]
    manifest_error: ClassVar[str | None]
    variant: str | None  # from Adapter, beside this mixin
    _info: InfoResponse | None = None
    _info_error: str | None = None
    #: Whether the handshake failed by the adapter's fault (ERROR), not for want of a program (SKIPPED).
    _info_fault: bool = False

    @classmethod
    def prepare(cls, log: Callable[[str], None] | None = None) -> None:
        """Run the setup step where it is due (in the harness, before any call)."""
        if cls.manifest is None:
            raise AdapterError(cls.manifest_error or "no manifest")
        run_setup(cls.folder, cls.manifest, log)

    def handshake(self) -> InfoResponse | None:
        if self._info is not None or self._info_error is not None:
            return self._info
        try:
            if self.manifest is None:
                raise AdapterError(self.manifest_error or "no manifest")
            missing = missing_programs(self.manifest)
            if missing:
                self._info_error = f"{', '.join(missing)} not installed"
                return None
            ready, why = setup_state(self.folder, self.manifest)
            if not ready:
                self._info_error = why
                return None
            raw = call_adapter(
                self.folder,
                self.manifest,
                Request(op="info", supported_protocols=[PROTOCOL], variant=self.variant),
                timeout_s=HANDSHAKE_TIMEOUT_S,
            )
            info = InfoResponse.model_validate(raw)
            if info.protocol != PROTOCOL:
                raise AdapterError(f"the adapter speaks protocol {info.protocol}; this suite speaks {PROTOCOL}")
            if not info.ok:
                raise AdapterError(f"the adapter's handshake failed: {info.error}")
            if info.role != self.role:
                raise AdapterError(f"the adapter is a {info.role}, asked for as a {self.role}")
            self._info = info
        except (AdapterError, ValidationError) as exc:
            self._info_error = (
                str(exc) if isinstance(exc, AdapterError) else f"malformed handshake: {exc.errors()[0]['msg']}"
            )
            self._info_fault = True
        return self._info

    def describe(self, name: str) -> InfoReply:
        """The handshake, as the harness's ``info`` operation reports it (``name``: the adapter as asked for)."""
        info = self.handshake()
        if info is None:
            return InfoReply(
                name=name,
                role=self.role,
                tool=self.tool,
                available=False,
                reason=self._info_error or "",
                error=f"adapter protocol: {self._info_error}" if self._info_fault else None,
            )
        return InfoReply(
            name=name,
            role=self.role,
            tool=info.tool or self.tool,
            version=info.version if info.available else None,
            available=info.available,
            reason=info.reason,
            features=sorted(info.features),
            unsupported_combinations=[sorted(c) for c in info.unsupported_combinations],
            homepage=info.homepage,
            summary=info.summary,
            family=info.family,
        )

    def version(self) -> str | None:
        info = self.handshake()
        return info.version if info is not None and info.available else None

    def available(self) -> tuple[bool, str]:
        info = self.handshake()
        if info is None:
            return False, self._info_error or "handshake failed"
        return info.available, info.reason

    def _call(self, request: Request, writable: Path) -> list[str]:
        if self.manifest is None:
            raise AdapterError(self.manifest_error or "no manifest")
        boxed = bool(sandbox([]))
        raw = call_adapter(self.folder, self.manifest, request, writable=[writable])
        try:
            response = CallResponse.model_validate(raw)
        except ValidationError as exc:
            raise AdapterError(f"malformed response: {exc.errors()[0]['msg']}") from None
        if response.protocol != PROTOCOL:
            raise AdapterError(f"the adapter answered in protocol {response.protocol}")
        if not response.ok:
            raise AdapterError(response.error or "the adapter reported an error without a message")
        return list(response.notes) + (
            [SANDBOX_NOTE] if boxed else ["ran without a sandbox (bubblewrap is not available)"]
        )


class _ExecConsumer(ExecAdapterMixin, Consumer):
    def read(self, request: ReadRequest) -> DecodedWriter:
        from dicom4qi.formats.exchange import read_exchange

        out = (request.workdir or request.seg.parent) / "exchange"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        notes = self._call(
            Request(
                op="read",
                seg=str(request.seg.resolve()),
                sources=[str(p.resolve()) for p in request.sources],
                output=str(out.resolve()),
                variant=self.variant,
            ),
            out,
        )
        writer = read_exchange(out, request.sources)
        writer.notes = notes + [n for n in writer.notes if n not in notes]  # an adapter may say them in both places
        return writer


class _ExecProducer(ExecAdapterMixin, Producer):
    def write(self, request: WriteRequest) -> list[str]:
        from dicom4qi.formats.exchange import write_truth

        truth_dir = request.truth.directory / "exchange"
        if not (truth_dir / "segments.json").is_file():
            tmp = truth_dir.with_name(f"exchange.{os.getpid()}.part")
            shutil.rmtree(tmp, ignore_errors=True)
            write_truth(request.truth, tmp)
            try:
                tmp.rename(truth_dir)
            except OSError:  # another worker got there first
                shutil.rmtree(tmp, ignore_errors=True)
        case = {"id": request.case_id, **request.case.model_dump(mode="json")}
        return self._call(
            Request(
                op="write",
                case=case,
                truth=str(truth_dir.resolve()),
                sources=[str(p.resolve()) for p in request.truth.source_paths],
                output=str(request.output.resolve()),
                variant=self.variant,
            ),
            request.output.parent,
        )


_CACHE: dict[tuple[str, Path], type] = {}


def exec_adapter(role: str, folder: Path, name: str | None = None) -> type:
    """The adapter class for an executable adapter folder (its manifest read now, its handshake on first use)."""
    folder = folder.resolve()
    key = (role, folder)
    if key in _CACHE:
        return _CACHE[key]
    base = _ExecConsumer if role == "consumer" else _ExecProducer
    try:
        manifest, error = load_manifest(folder), None
    except AdapterError as exc:
        manifest, error = None, str(exc)
    cls = type(
        f"Exec{base.__name__.lstrip('_')}_{folder.name}",
        (base,),
        {
            "name": name or folder.name,
            "tool": name or folder.name,
            "features": frozenset(),
            "folder": folder,
            "manifest": manifest,
            "manifest_error": error,
            "__module__": __name__,
        },
    )
    _CACHE[key] = cls
    return cls
