"""Run one adapter call in its own process, with a timeout and a memory limit.

A crash, a hang or a memory blow-up of a tool becomes an outcome, never a dead
run: the child runs in its own session (so the whole process group can be
killed), under a hard ``RLIMIT_AS`` that it cannot raise (``setpriv`` drops
``CAP_SYS_RESOURCE`` from it where the harness runs as root), with the
parent-death signal (it dies with the harness, SIGKILL included), and is reaped
with ``wait4`` for its CPU time and peak resident memory. Every process it
starts carries the call's marks (:mod:`dicom4qi.process.lifetime`): what is still
alive when the call ends is killed, also what left the process group. Its
temporary files go to a folder of its own (``TMPDIR``), removed after the call.

Faults of the harness itself are not the tool's: a full disk raises
:class:`DiskFull` (the run stops, and nothing is recorded for the call), and a
call killed because the harness is stopping is marked ``harness``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from dicom4qi import paths
from dicom4qi.model.results import DiskFull
from dicom4qi.model.wire import Call, Failure, Reply, StartCall, WireError, dump, parse_reply
from dicom4qi.process.forkserver import ForkServer, ForkServerError, Job, Pool
from dicom4qi.process.lifetime import CALL_ENV, call_env, kill_call

__all__ = [
    "ChildOutcome",
    "DiskFull",
    "MEMORY_ENV",
    "configure",
    "kill_all",
    "kill_group",
    "run_child",
    "stop_fork_servers",
    "track",
    "untrack",
    "use_fork_servers",
    "wrapper",
]

_live: set[int] = set()
_live_lock = threading.Lock()
#: Set when the harness kills its children (Ctrl-C, a fault): what ends then was interrupted, not failed.
_stopping = threading.Event()
#: The build folder the calls' marks name (see :func:`configure`).
_build: list[Path] = []
#: Below this many free bytes where a call works, a failed call is taken as a full disk.
DISK_FULL_BYTES = 8 * 2**20


def configure(build: Path) -> None:
    """Name the build folder in the marks of every call from now on (the runner does, at the start of a run)."""
    _build[:] = [build]
    _stopping.clear()


def _wrapper() -> list[str]:
    """``setpriv`` with the parent-death signal, and (as root) without CAP_SYS_RESOURCE, so that the child's
    hard memory limit is one it cannot raise; nothing where setpriv is missing."""
    if os.environ.get("DICOM4QI_NO_SETPRIV") or not _SETPRIV:
        return []
    cmd = [_SETPRIV, "--pdeathsig", "KILL"]
    if os.geteuid() == 0:
        cmd += ["--bounding-set", "-sys_resource"]
    return cmd


_SETPRIV = shutil.which("setpriv")


def _disk_full(workdir: Path, message: str) -> str | None:
    """Why this looks like a full disk (ENOSPC in the message, or almost no space left), or None."""
    try:
        free = shutil.disk_usage(workdir).free
    except OSError:
        free = None
    if "No space left on device" in message or "[Errno 28]" in message or (free is not None and free < DISK_FULL_BYTES):
        return f"the disk holding {workdir} is full ({free if free is not None else '?'} bytes free)"
    return None


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a process group; one that is already gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def track(pid: int) -> None:
    """Count a child among those :func:`kill_all` kills (every call's child, a validator's JVM).

    A child started while the harness was already stopping is killed at once: :func:`kill_all` sets the
    stopping mark before it takes its list, so a pid is either in that list or sees the mark here (a child
    whose ``Popen`` returned just after Ctrl-C would otherwise run on to its timeout).
    """
    with _live_lock:
        _live.add(pid)
        stopping = _stopping.is_set()
    if stopping:
        kill_group(pid)


def untrack(pid: int) -> None:
    with _live_lock:
        _live.discard(pid)


def wrapper() -> list[str]:
    """The ``setpriv`` prefix every child runs under (the parent-death signal; see :func:`_wrapper`)."""
    return _wrapper()


def kill_all() -> None:
    """Kill every child still running (on Ctrl-C or a fatal error of the harness)."""
    _stopping.set()
    with _live_lock:
        pids = list(_live)
    for pid in pids:
        kill_group(pid)


#: The folder that holds the dicom4qi package.
SUITE_ROOT = str(paths.SUITE_ROOT)

#: Environment variable through which a child learns its address-space limit (bytes).
MEMORY_ENV = "DICOM4QI_MEMORY_LIMIT"

_POLL_S = 0.02


R = TypeVar("R")


@dataclass
class ChildOutcome:
    """What happened to one isolated call."""

    kind: str  # "ok", "error", "crash", "timeout"
    #: The child's reply (kind "ok"), or its Failure (kind "error" raised in the child).
    reply: Reply | Failure | None = None
    message: str = ""
    limit: str | None = None  # "time" or "memory"
    #: A fault of the harness, not of the tool (the call was interrupted by the harness): see Record.harness.
    harness: str | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0

    def expect(self, cls: type[R]) -> R:
        """The reply of a call that went well, as the model its operation answers with."""
        if self.kind != "ok" or not isinstance(self.reply, cls):
            raise TypeError(f"expected a {cls.__name__} from an ok call, got {self.kind}: {self.reply!r}")
        return self.reply

    @property
    def notes(self) -> list[str]:
        """The notes of the reply (reads, writes, exchanges), or none."""
        return list(getattr(self.reply, "notes", None) or [])


def _tail(path: Path, n: int = 1500) -> str:
    try:
        data = path.read_bytes()[-n:]
    except OSError:
        return ""
    return data.decode("utf-8", "replace").strip()


def run_child(
    request: Call,
    workdir: Path,
    *,
    timeout_s: float,
    memory_mb: float | None,
    python: str | None = None,
    env: dict[str, str] | None = None,
    preload: Sequence[str] = (),
    fresh: bool = False,
) -> ChildOutcome:
    """Run ``python -m dicom4qi.adapters.child`` on ``request`` inside ``workdir``.

    Where fork servers are on (:func:`use_fork_servers`), the call is a child forked from a server of this
    Python that has imported ``preload`` (the tool's modules) already (:mod:`dicom4qi.process.forkserver`);
    ``fresh`` (and an ``env`` of the caller's own, and a service start) makes it a new process all the same.
    """
    workdir = workdir.resolve()
    tmp = workdir / "tmp"
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        tmp.mkdir(exist_ok=True)
        req_path = workdir / "request.json"
        resp_path = workdir / "response.json"
        resp_path.unlink(missing_ok=True)
        req_path.write_text(dump(request), encoding="utf-8")
    except OSError as exc:
        full = _disk_full(workdir if workdir.is_dir() else workdir.parent, str(exc))
        if full:
            raise DiskFull(exc.errno, full) from None
        raise
    limit = int(memory_mb * 1024 * 1024) if memory_mb else 0
    child_env = dict(os.environ if env is None else env)
    marks = call_env(_build[0] if _build else workdir)
    child_env.update(marks)
    # Temporary files of the call (and of the tool) go to its own folder, removed when the call ends. Not a
    # service's: it outlives the call (and chromium's singleton socket needs a short path).
    service_start = isinstance(request, StartCall)
    if not service_start:
        child_env.update({"TMPDIR": str(tmp), "TEMP": str(tmp), "TMP": str(tmp)})
    # One thread per tool call: the harness parallelizes with -j, and thread pools
    # inside a tool would blur its timings and its memory.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        child_env.setdefault(var, "1")
    # The child applies the limit to itself first thing (no preexec_fn: the harness is threaded).
    if limit:
        child_env[MEMORY_ENV] = str(limit)
    else:
        child_env.pop(MEMORY_ENV, None)
    # The suite's packages, and `module:Class` adapter specs, resolve in the child as in the harness,
    # also when the child runs another environment's Python.
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [SUITE_ROOT, os.getcwd(), child_env.get("PYTHONPATH")]))
    command = [python or sys.executable, "-m", "dicom4qi.adapters.child", str(req_path)]
    forked: str | None = None
    ended: _Ended | str
    if _forkable(request, env, fresh):
        try:
            ended = _run_forked(request, req_path, workdir, child_env, timeout_s, python or sys.executable, preload)
        except ForkServerError as exc:  # the server's fault, never the tool's: the call is made again, fresh
            forked = f"made again in a fresh process: its fork server failed ({exc})"
            kill_call(marks[CALL_ENV])
            resp_path.unlink(missing_ok=True)
            ended = _run_fresh(command, workdir, child_env, timeout_s)
    else:
        ended = _run_fresh(command, workdir, child_env, timeout_s)
    if isinstance(ended, str):
        return ChildOutcome(kind="error", message=ended)
    # Kill anything the tool left behind in its process group, and what left the group (setsid): a
    # service start leaves its service running, on purpose (it is stopped by its pool).
    kill_group(ended.pid)
    if not service_start:
        kill_call(marks[CALL_ENV])
    shutil.rmtree(tmp, ignore_errors=True)
    outcome = _outcome(request, ended, resp_path, workdir, timeout_s, memory_mb, limit)
    if forked and outcome.kind != "ok":
        outcome.message += f" ({forked})"
    return outcome


def _outcome(
    request: Call,
    ended: _Ended,
    resp_path: Path,
    workdir: Path,
    timeout_s: float,
    memory_mb: float | None,
    limit: int,
) -> ChildOutcome:
    """What the call's end and its reply (if any) say."""
    usage_maxrss_kb, code, timed_out, wall = ended.maxrss_kb, ended.code, ended.timed_out, ended.wall
    outcome = ChildOutcome(
        kind="ok",
        wall_s=round(wall, 4),
        cpu_s=round(ended.cpu_s, 4),
        peak_rss_mb=round(usage_maxrss_kb / 1024, 1),
    )
    if timed_out:
        outcome.kind, outcome.limit = "timeout", "time"
        outcome.message = f"killed after {timeout_s:g} s"
        return outcome
    data: object = None
    if resp_path.is_file():
        try:
            data = json.loads(resp_path.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            data = None
    if data is None or code != 0:
        outcome.kind = "crash"
        if code < 0:
            sig = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            outcome.message = f"killed by signal {sig}"
        else:
            outcome.message = f"exited with status {code} without an answer"
        tail = _tail(workdir / "stderr.txt")
        if tail:
            outcome.message += f"; stderr: {tail[-600:]}"
        if limit and usage_maxrss_kb * 1024 > 0.9 * limit:
            outcome.limit = "memory"
            outcome.message += f" (near the memory limit of {memory_mb:g} MiB)"
        return _harness_faults(outcome, workdir)
    try:
        reply = parse_reply(request.op, data)
    except WireError as exc:  # the suite's own child answered out of model: a bug of the suite, said as such
        outcome.kind = "error"
        outcome.message = f"the child's reply does not fit the wire (a fault of the suite): {exc}"
        return outcome
    outcome.reply = reply
    if reply.peak_rss_mb is not None:
        # The child's own figure: wait4's includes the harness's memory copied at fork (see process.usage).
        outcome.peak_rss_mb = reply.peak_rss_mb
    service_peak = getattr(reply, "service_peak_rss_mb", None)
    if service_peak is not None:
        # A viewer's read: its browser's memory is the read's (the call's own process only drives it).
        outcome.peak_rss_mb = round(outcome.peak_rss_mb + service_peak, 1)
    if isinstance(reply, Failure):
        outcome.kind = "error"
        outcome.message = f"{reply.error_type}: {reply.message}".strip()
        if reply.memory:
            outcome.limit = "memory"
            outcome.message = f"memory limit of {memory_mb:g} MiB exceeded ({outcome.message})"
        return _harness_faults(outcome, workdir)
    return outcome


@dataclass
class _Ended:
    """How a call's process ended, forked or fresh."""

    pid: int
    code: int
    cpu_s: float
    maxrss_kb: int
    wall: float
    timed_out: bool


def _run_fresh(command: list[str], workdir: Path, child_env: dict[str, str], timeout_s: float) -> _Ended | str:
    """The call as a new process (under ``setpriv``); a message where it cannot start."""
    with open(workdir / "stdout.txt", "wb") as out, open(workdir / "stderr.txt", "wb") as err:
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                [*_wrapper(), *command],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=workdir,
                env=child_env,
                start_new_session=True,
            )
        except OSError as exc:
            return f"cannot start {command[0]}: {exc}"
        track(proc.pid)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout_s:
                timed_out = True
                kill_group(proc.pid)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(_POLL_S)
        wall = time.monotonic() - start
        untrack(proc.pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return _Ended(
        pid=proc.pid,
        code=proc.returncode,
        cpu_s=usage.ru_utime + usage.ru_stime,
        maxrss_kb=usage.ru_maxrss,
        wall=wall,
        timed_out=timed_out,
    )


# --------------------------------------------------------------------------- fork servers

#: Whether calls go through fork servers (the runner turns them on for a run; off by default, and in benchmarks).
_fork_servers = threading.Event()
#: Set to any value: never use fork servers (every call a new process), whatever the runner asks.
NO_FORK_ENV = "DICOM4QI_NO_FORK_SERVER"


def use_fork_servers(on: bool) -> None:
    """Make the calls from now on children of fork servers (``on``) or new processes."""
    if on:
        _fork_servers.set()
    else:
        _fork_servers.clear()


def stop_fork_servers() -> None:
    """Stop every fork server (the runner does at the end of a run; also at the harness's exit)."""
    _POOL.stop_all()


def _forkable(request: Call, env: dict[str, str] | None, fresh: bool) -> bool:
    return (
        _fork_servers.is_set()
        and not fresh
        and env is None
        and not isinstance(request, StartCall)
        and not os.environ.get(NO_FORK_ENV)
    )


def _server_env() -> dict[str, str]:
    """A server's environment: the harness's, with marks of its own (it is no call), one thread per tool."""
    server_env = dict(os.environ)
    server_env.update(call_env(_build[0] if _build else paths.SUITE_ROOT, f"fork-server:{uuid.uuid4().hex}"))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        server_env.setdefault(var, "1")
    server_env.pop(MEMORY_ENV, None)
    server_env["PYTHONPATH"] = os.pathsep.join(filter(None, [SUITE_ROOT, os.getcwd(), server_env.get("PYTHONPATH")]))
    return server_env


def _start_server(python: str, preload: tuple[str, ...]) -> ForkServer:
    """Start a server of ``python`` with ``preload`` imported; its log goes to ``<build>/fork-servers/``."""
    logs = (_build[0] if _build else Path(paths.SUITE_ROOT) / "build") / "fork-servers"
    try:
        logs.mkdir(parents=True, exist_ok=True)
        log = open(logs / f"{uuid.uuid4().hex[:12]}.log", "wb")  # noqa: SIM115 - the server holds it
    except OSError as exc:
        raise ForkServerError(f"cannot open the fork server's log: {exc}") from None
    try:
        proc = subprocess.Popen(
            [*_wrapper(), python, "-m", "dicom4qi.adapters.child", "--fork-server", *preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=logs,
            env=_server_env(),
            start_new_session=True,
        )
    except OSError as exc:
        raise ForkServerError(f"cannot start {python}: {exc}") from None
    finally:
        log.close()
    track(proc.pid)
    try:
        server = ForkServer(proc, (python, preload))
        server.on_stop = lambda: untrack(proc.pid)
        return server
    except ForkServerError:
        untrack(proc.pid)
        kill_group(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        raise


_POOL = Pool(start=_start_server)


def _run_forked(
    request: Call,
    req_path: Path,
    workdir: Path,
    child_env: dict[str, str],
    timeout_s: float,
    python: str,
    preload: Sequence[str],
) -> _Ended:
    """The call as a child of a fork server (see :mod:`dicom4qi.process.forkserver`)."""
    from dicom4qi.process.forkserver import REAP_S

    job = Job(
        request=req_path, cwd=workdir, env=child_env, stdout=workdir / "stdout.txt", stderr=workdir / "stderr.txt"
    )
    with _POOL.lease(python, tuple(preload)) as server:
        start = time.monotonic()
        pid = server.submit(job)
        track(pid)
        try:
            ended = server.wait(pid, start + timeout_s)
            timed_out = ended is None
            if ended is None:
                kill_group(pid)
                ended = server.wait(pid, time.monotonic() + REAP_S)
            if ended is None:
                server.stop()
                raise ForkServerError("the fork server did not report a killed call")
        except ForkServerError:
            kill_group(pid)
            raise
        finally:
            untrack(pid)
        wall = time.monotonic() - start
    return _Ended(
        pid=pid,
        code=ended.status,
        cpu_s=ended.utime + ended.stime,
        maxrss_kb=ended.maxrss_kb,
        wall=wall,
        timed_out=timed_out,
    )


atexit.register(stop_fork_servers)


def _harness_faults(outcome: ChildOutcome, workdir: Path) -> ChildOutcome:
    """A failed call that is the harness's fault: a full disk stops the run; an interruption is marked."""
    full = _disk_full(workdir, outcome.message)
    if full:
        raise DiskFull(28, f"{full}: {outcome.message[:300]}")
    if _stopping.is_set():
        outcome.harness = "interrupted: the harness was stopping (Ctrl-C, a signal, or a fault of the run)"
    return outcome
