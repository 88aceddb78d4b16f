"""Run one adapter call in its own process, with a timeout and a memory limit.

A crash, a hang or a memory blow-up of a tool becomes an outcome, never a dead
run: the child runs in its own session (so the whole process group can be
killed), under ``RLIMIT_AS``, and is reaped with ``wait4`` for its CPU time and
peak resident memory (which covers the descendants it waited for).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ChildOutcome", "MEMORY_ENV", "kill_all", "kill_group", "run_child"]

_live: set[int] = set()
_live_lock = threading.Lock()


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a process group; one that is already gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def kill_all() -> None:
    """Kill every child still running (on Ctrl-C or a fatal error of the harness)."""
    with _live_lock:
        pids = list(_live)
    for pid in pids:
        kill_group(pid)

#: The folder that holds the packages conformance, producers and consumers.
SUITE_ROOT = str(Path(__file__).resolve().parent.parent)

#: Environment variable through which a child learns its address-space limit (bytes).
MEMORY_ENV = "DICOM4QI_MEMORY_LIMIT"

_POLL_S = 0.02


@dataclass
class ChildOutcome:
    """What happened to one isolated call."""

    kind: str  # "ok", "error", "crash", "timeout"
    response: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    limit: str | None = None  # "time" or "memory"
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0


def _tail(path: Path, n: int = 1500) -> str:
    try:
        data = path.read_bytes()[-n:]
    except OSError:
        return ""
    return data.decode("utf-8", "replace").strip()


def run_child(
    request: dict[str, Any],
    workdir: Path,
    *,
    timeout_s: float,
    memory_mb: float | None,
    python: str | None = None,
    env: dict[str, str] | None = None,
) -> ChildOutcome:
    """Run ``python -m conformance.child`` on ``request`` inside ``workdir``."""
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    req_path = workdir / "request.json"
    resp_path = workdir / "response.json"
    resp_path.unlink(missing_ok=True)
    req_path.write_text(json.dumps(request), encoding="utf-8")
    limit = int(memory_mb * 1024 * 1024) if memory_mb else 0
    child_env = dict(os.environ if env is None else env)
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
    with open(workdir / "stdout.txt", "wb") as out, open(workdir / "stderr.txt", "wb") as err:
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                [python or sys.executable, "-m", "conformance.child", str(req_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=workdir,
                env=child_env,
                start_new_session=True,
            )
        except OSError as exc:
            return ChildOutcome(kind="error", message=f"cannot start {python or sys.executable}: {exc}")
        with _live_lock:
            _live.add(proc.pid)
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
        with _live_lock:
            _live.discard(proc.pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
    # Kill anything the tool left behind in its process group.
    kill_group(proc.pid)
    outcome = ChildOutcome(
        kind="ok",
        wall_s=round(wall, 4),
        cpu_s=round(usage.ru_utime + usage.ru_stime, 4),
        peak_rss_mb=round(usage.ru_maxrss / 1024, 1),
    )
    if timed_out:
        outcome.kind, outcome.limit = "timeout", "time"
        outcome.message = f"killed after {timeout_s:g} s"
        return outcome
    response: dict[str, Any] | None = None
    if resp_path.is_file():
        try:
            response = json.loads(resp_path.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            response = None
    code = proc.returncode
    if response is None or code != 0:
        outcome.kind = "crash"
        if code < 0:
            sig = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            outcome.message = f"killed by signal {sig}"
        else:
            outcome.message = f"exited with status {code} without an answer"
        tail = _tail(workdir / "stderr.txt")
        if tail:
            outcome.message += f"; stderr: {tail[-600:]}"
        if limit and usage.ru_maxrss * 1024 > 0.9 * limit:
            outcome.limit = "memory"
            outcome.message += f" (near the memory limit of {memory_mb:g} MiB)"
        return outcome
    outcome.response = response
    if isinstance(response.get("peak_rss_mb"), (int, float)):
        # The child's own figure: wait4's includes the harness's memory copied at fork (see child.own_peak_rss_mb).
        outcome.peak_rss_mb = float(response["peak_rss_mb"])
    if not response.get("ok"):
        outcome.kind = "error"
        outcome.message = f"{response.get('error_type', 'Error')}: {response.get('message', '')}".strip()
        if response.get("memory"):
            outcome.limit = "memory"
            outcome.message = f"memory limit of {memory_mb:g} MiB exceeded ({outcome.message})"
    return outcome
