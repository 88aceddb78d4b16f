"""Long-running helpers of adapters (a viewer's server and browser), shared by calls and always stopped.

A consumer that declares ``needs_service`` gets, per worker, one service
instance started lazily through the child operation ``start``; each read call
leases an idle instance, so one browser and one server serve many objects, one
object at a time. :meth:`ServicePool.stop` kills every process the services
started, by PID and process group; the runner calls it when the run ends, on
errors and on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dicom4qi.model.results import ToolInfo
from dicom4qi.model.wire import StartCall, StartReply
from dicom4qi.process.sandbox import kill_group, run_child

__all__ = ["PIDFILE", "ServiceError", "ServicePool"]

PIDFILE = "pids"


class ServiceError(RuntimeError):
    """A service could not be started; every call that needs it is an ERROR with this reason."""


class ServicePool:
    def __init__(
        self,
        tool: ToolInfo,
        root: Path,
        cache: Path,
        size: int,
        start_timeout_s: float = 600.0,
        python: str | None = None,
    ) -> None:
        self.tool = tool
        self.python = python
        self.root = root
        self.cache = cache
        self.size = max(1, size)
        self.start_timeout_s = start_timeout_s
        self._idle: queue.Queue[dict[str, str]] = queue.Queue()
        self._lock = threading.Lock()
        self._started = 0
        self._failure: str | None = None
        self._pids: list[int] = []
        self._workdirs: list[Path] = []
        self.start_seconds: list[float] = []

    @contextmanager
    def lease(self) -> Iterator[dict[str, str]]:
        endpoints = self._acquire()
        try:
            yield endpoints
        finally:
            self._idle.put(endpoints)

    def _acquire(self) -> dict[str, str]:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._failure:
                raise ServiceError(self._failure)
            start = self._started < self.size
            if start:
                self._started += 1
                index = self._started
        if not start:
            return self._idle.get()
        workdir = self.root / f"{self.tool.name.replace(':', '_').replace('/', '_')}-{index}"
        # The same folder in an earlier, killed run of this run id (resume): whatever it started that still
        # runs holds its ports and database. Stop it, then start clean.
        _stop_stale(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        with self._lock:
            self._workdirs.append(workdir)
        t0 = time.monotonic()
        out = run_child(
            StartCall(adapter=self.tool.name, workdir=str(workdir.resolve()), cache=str(self.cache.resolve())),
            workdir / "start",
            timeout_s=self.start_timeout_s,
            memory_mb=None,
            python=self.python,
        )
        started = out.expect(StartReply) if out.kind == "ok" else None
        pids = started.pids if started else []
        with self._lock:
            self._pids.extend(pids)
            if out.kind != "ok":
                self._failure = f"{self.tool.name} service did not start: {out.message}"
                raise ServiceError(self._failure)
        self.start_seconds.append(round(time.monotonic() - t0, 2))
        assert started is not None
        return dict(started.endpoints)

    def stop(self) -> None:
        """Stop every process the services started (SIGTERM, then SIGKILL)."""
        with self._lock:
            pids, self._pids = self._pids, []
            # A service may list its PIDs in a file ``pids`` as it starts them (a start that was
            # killed half-way never answered with its PIDs).
            for wd in self._workdirs:
                try:
                    pids += [int(x) for x in (wd / PIDFILE).read_text().split()]
                except (OSError, ValueError):
                    pass
            pids = sorted(set(pids))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                kill_group(pid, sig)
            if sig is signal.SIGTERM and pids:
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline and any(_alive(p) for p in pids):
                    time.sleep(0.05)
        for pid in pids:  # the harness is their subreaper once their starter exited: reap them
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)


def _stop_stale(workdir: Path) -> None:
    """Kill the processes an earlier start in ``workdir`` recorded, if they still run there."""
    try:
        pids = [int(x) for x in (workdir / PIDFILE).read_text().split()]
    except (OSError, ValueError):
        return
    mark = str(workdir.resolve()).encode()
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if mark in cmd:  # not a reused PID of another program
            kill_group(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False
