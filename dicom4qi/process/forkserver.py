"""Fork servers: one long-lived Python per tool and worker that forks a fresh child for every call.

A new interpreter per call costs more than most reads of the quick tier: starting Python and importing numpy,
pydicom and the tool (highdicom, SimpleITK, VTK) takes 0.3 to 1.2 s, the read itself often 0.05 s. A fork
server pays the imports once: it starts as ``python -m dicom4qi.adapters.child --fork-server MODULE...``,
imports the modules, and then, for each call, forks a child that runs the call exactly as a fresh process
would (:func:`dicom4qi.adapters.child.main` on the call's ``request.json``), in its own process group, with the
call's environment, working folder, temporary folder, standard output and error files and memory limit. The
server itself never runs a tool's code: every call starts from the state the imports left, so nothing one call
does (a module global it sets, a thread it starts, memory it leaks, a crash) reaches the next; what the call
changed dies with its process. A crash, a hang or a memory blow-up of the call ends as that call's outcome, as
before (:func:`dicom4qi.process.sandbox.run_child` kills the call's process group at its time limit, and its
marked descendants after it); a server that dies or stops answering is discarded, and the call is made again in a
fresh process, so a fault of the server is never charged to a tool.

The protocol is JSON lines over the server's standard input and output:

- the server starts with ``{"ready": true, "pid": N, "failed": {module: error}}`` (a preload that does not
  import is said, not fatal: the call imports it itself and fails there, as in a fresh process);
- a job ``{"request": path, "cwd": dir, "env": {...}, "stdout": path, "stderr": path}`` is answered with
  ``{"pid": N}`` as soon as the child runs, then ``{"pid": N, "status": S, "utime": s, "stime": s,
  "maxrss": kB}`` when it has ended (``os.wait4``'s figures, like those of a fresh child).

Timed benchmark calls never use a fork server: each stays one whole process (:mod:`dicom4qi.run.bench`), so that
what a benchmark measures is what a user's script pays.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = [
    "FORK_S",
    "MAX_IDLE",
    "REAP_S",
    "START_S",
    "ForkServer",
    "ForkServerError",
    "Job",
    "Pool",
    "serve",
]

#: How long a server may take to import its modules and say it is ready.
START_S = 120.0
#: How long a server may take to answer a job with the child's pid.
FORK_S = 30.0
#: How long a server may take to report a child that has ended (or been killed).
REAP_S = 30.0
#: At most this many idle servers are kept (the least recently used beyond it are stopped).
MAX_IDLE = 12


class ForkServerError(RuntimeError):
    """The server died, said something out of protocol, or did not answer in time: a fault of the harness."""


@dataclass
class Job:
    """One call for a server to fork."""

    request: Path
    cwd: Path
    env: dict[str, str]
    stdout: Path
    stderr: Path


@dataclass
class Ended:
    """What ``os.wait4`` said of a forked child."""

    status: int
    utime: float
    stime: float
    maxrss_kb: int


class ForkServer:
    """The harness's side of one server process (one call at a time)."""

    def __init__(self, proc: subprocess.Popen[bytes], key: tuple[str, tuple[str, ...]]) -> None:
        self.proc = proc
        self.key = key
        self.failed: dict[str, str] = {}
        self.broken = False
        #: Called once the server is stopped (the harness forgets its pid then).
        self.on_stop: Callable[[], None] | None = None
        self._buf = b""
        hello = self._read(time.monotonic() + START_S)
        if not hello.get("ready"):
            self.broken = True
            raise ForkServerError(f"the fork server did not start: {hello}")
        self.failed = dict(hello.get("failed") or {})

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return not self.broken and self.proc.poll() is None

    def _read(self, deadline: float) -> dict[str, Any]:
        """The next line of the server, as JSON, before the deadline."""
        out = self.proc.stdout
        assert out is not None
        fd = out.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.broken = True
                raise ForkServerError("the fork server did not answer in time")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self.broken = True
                code = self.proc.poll()
                raise ForkServerError(f"the fork server ended (exit status {code})")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            data = json.loads(line)
        except ValueError:
            self.broken = True
            raise ForkServerError(f"the fork server said something out of protocol: {line[:200]!r}") from None
        if not isinstance(data, dict):
            self.broken = True
            raise ForkServerError(f"the fork server said something out of protocol: {line[:200]!r}")
        return data

    def submit(self, job: Job) -> int:
        """Send a job; the pid of the child that runs it."""
        stdin = self.proc.stdin
        assert stdin is not None
        line = json.dumps(
            {
                "request": str(job.request),
                "cwd": str(job.cwd),
                "env": job.env,
                "stdout": str(job.stdout),
                "stderr": str(job.stderr),
            }
        )
        try:
            stdin.write(line.encode() + b"\n")
            stdin.flush()
        except OSError as exc:
            self.broken = True
            raise ForkServerError(f"cannot send the job to the fork server: {exc}") from None
        answer = self._read(time.monotonic() + FORK_S)
        if "error" in answer:
            self.broken = True
            raise ForkServerError(f"the fork server could not fork: {answer['error']}")
        if not isinstance(answer.get("pid"), int) or "status" in answer:
            self.broken = True
            raise ForkServerError(f"the fork server said something out of protocol: {answer}")
        return int(answer["pid"])

    def wait(self, pid: int, deadline: float) -> Ended | None:
        """The end of the child, or None if it has not ended before the deadline (the caller then kills it)."""
        try:
            answer = self._read(deadline)
        except ForkServerError as exc:
            if "in time" in str(exc):
                self.broken = False  # only late: the caller kills the child and waits again
                return None
            raise
        if answer.get("pid") != pid or not isinstance(answer.get("status"), int):
            self.broken = True
            raise ForkServerError(f"the fork server said something out of protocol: {answer}")
        return Ended(
            status=int(answer["status"]),
            utime=float(answer.get("utime", 0.0)),
            stime=float(answer.get("stime", 0.0)),
            maxrss_kb=int(answer.get("maxrss", 0)),
        )

    def stop(self) -> None:
        """End the server and its process group (its children, if any, die with it)."""
        self.broken = True
        with contextlib.suppress(OSError):
            if self.proc.stdin:
                self.proc.stdin.close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, 9)
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            self.proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            if self.proc.stdout:
                self.proc.stdout.close()
        if self.on_stop is not None:
            self.on_stop()
            self.on_stop = None


@dataclass
class Pool:
    """Idle servers by (Python, preloaded modules); a call leases one, and gives it back if it still works."""

    start: Callable[[str, tuple[str, ...]], ForkServer]
    idle: dict[tuple[str, tuple[str, ...]], list[ForkServer]] = field(default_factory=dict)
    _order: list[ForkServer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _all: set[ForkServer] = field(default_factory=set)
    #: Kinds of server that did not start, with why: their calls are made fresh at once, not after a wait each.
    refused: dict[tuple[str, tuple[str, ...]], str] = field(default_factory=dict)

    @contextlib.contextmanager
    def lease(self, python: str, preload: Sequence[str]) -> Iterator[ForkServer]:
        """A server for this Python with these modules imported (started if none is idle)."""
        key = (python, tuple(preload))
        server = None
        with self._lock:
            while self.idle.get(key):
                candidate = self.idle[key].pop()
                self._order.remove(candidate)
                if candidate.alive():
                    server = candidate
                    break
                self._all.discard(candidate)
                candidate.stop()
        if server is None:
            if key in self.refused:
                raise ForkServerError(self.refused[key])
            try:
                server = self.start(*key)
            except ForkServerError as exc:
                self.refused[key] = str(exc)
                raise
            with self._lock:
                self._all.add(server)
        try:
            yield server
        finally:
            evicted: list[ForkServer] = []
            with self._lock:
                if server.alive():
                    self.idle.setdefault(key, []).append(server)
                    self._order.append(server)
                    while len(self._order) > MAX_IDLE:
                        old = self._order.pop(0)
                        self.idle[old.key].remove(old)
                        self._all.discard(old)
                        evicted.append(old)
                else:
                    self._all.discard(server)
                    evicted.append(server)
            for old in evicted:
                old.stop()

    def stop_all(self) -> None:
        """Stop every server, idle or leased."""
        with self._lock:
            servers = list(self._all)
            self._all.clear()
            self.idle.clear()
            self._order.clear()
            self.refused.clear()
        for server in servers:
            server.stop()

    def __len__(self) -> int:
        with self._lock:
            return len(self._all)


# --------------------------------------------------------------------------- the server's side


def _send(out: IO[bytes], data: dict[str, Any]) -> None:
    out.write(json.dumps(data).encode() + b"\n")
    out.flush()


def serve(preload: Sequence[str], run: Callable[[list[str]], int]) -> int:
    """The server loop: import ``preload``, then fork one child per job, which calls ``run([request])``.

    Runs in the process started by the harness (standard input and output are the protocol's pipes).
    """
    import gc
    import importlib
    import traceback

    inp = os.fdopen(os.dup(0), "rb", buffering=0)
    out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # a preloaded module that prints writes to the server's log, not into the protocol
    failed: dict[str, str] = {}
    for name in preload:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - said to the harness; the call imports it again and fails there
            failed[name] = f"{type(exc).__name__}: {exc}"[:500]
    gc.collect()
    gc.freeze()  # what the imports made stays shared with the children (no copy on the collector's writes)
    _send(out, {"ready": True, "pid": os.getpid(), "failed": failed})
    reader = inp
    for raw in iter(reader.readline, b""):
        try:
            job = json.loads(raw)
            request, cwd, env = str(job["request"]), str(job["cwd"]), dict(job["env"])
            stdout, stderr = str(job["stdout"]), str(job["stderr"])
        except (ValueError, KeyError, TypeError) as exc:
            _send(out, {"error": f"bad job: {exc}"})
            continue
        try:
            pid = os.fork()
        except OSError as exc:
            _send(out, {"error": f"fork: {exc}"})
            continue
        if pid == 0:  # the child: become the call, run it, never return into the loop
            code = 70
            try:
                _become_call(request, cwd, env, stdout, stderr, devnull, (inp, out))
                code = run([request])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - the call's own failures are answered by run(); this is setup
                with contextlib.suppress(Exception):
                    traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    import sys

                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also here: the harness may signal the group before the child has set it
        _send(out, {"pid": pid})
        while True:
            try:
                _, status, usage = os.wait4(pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                status, usage = 255 << 8, None
                break
        _send(
            out,
            {
                "pid": pid,
                "status": os.waitstatus_to_exitcode(status),
                "utime": usage.ru_utime if usage else 0.0,
                "stime": usage.ru_stime if usage else 0.0,
                "maxrss": usage.ru_maxrss if usage else 0,
            },
        )
    return 0


def _become_call(
    request: str, cwd: str, env: dict[str, str], stdout: str, stderr: str, devnull: int, pipes: tuple[IO[bytes], ...]
) -> None:
    """Turn a freshly forked child into the process a fresh call would have been (but for the imports)."""
    import ctypes
    import signal
    import sys
    import tempfile

    os.setpgid(0, 0)
    with contextlib.suppress(OSError, AttributeError):  # die with the server, as a fresh call dies with the harness
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:
        os._exit(70)
    for pipe in pipes:
        with contextlib.suppress(OSError):
            pipe.close()
    os.dup2(devnull, 0)
    fd_out = os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    fd_err = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd_out, 1)
    os.dup2(fd_err, 2)
    os.close(fd_out)
    os.close(fd_err)
    os.close(devnull)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD):
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # read TMPDIR again: the call's own temporary folder
    sys.argv = [sys.argv[0], request]
    np = sys.modules.get("numpy")
    if np is not None:
        with contextlib.suppress(Exception):
            np.random.seed()  # the legacy global generator, copied at fork: reseeded as a fresh process would be
