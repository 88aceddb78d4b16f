"""Nothing outlives a run: every process the harness starts is marked, and found again by its mark.

Each child process (every adapter call, every service) starts with three environment variables that its
own children inherit:

- ``DICOM4QI_HARNESS``: the harness's PID and start time (so a reused PID is not mistaken for it);
- ``DICOM4QI_BUILD``: the build folder of the run;
- ``DICOM4QI_CALL``: the call's own id (services: ``service:<name>``).

With them the harness can kill, after a call, every process of that call still alive, also one that left
the call's process group with ``setsid()`` (:func:`kill_call`); and at the start of a run (and on
``--resume``), every process of an earlier harness of the same build folder that is no longer alive
(:func:`kill_leftovers`): after a SIGKILL of the harness, what its calls and services left behind.

While the harness lives, children die with it: each call runs under ``setpriv --pdeathsig KILL`` (the
kernel kills it when the harness dies, SIGKILL included), the harness is a child subreaper
(:func:`become_subreaper`: descendants whose parent died are reparented to it, not to init), and a
service's processes are watched by :mod:`dicom4qi.process.watchdog`, which stops them when the harness is gone.
Scanning needs a Linux ``/proc``; elsewhere these functions do nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "BUILD_ENV",
    "CALL_ENV",
    "HARNESS_ENV",
    "become_subreaper",
    "call_env",
    "harness_id",
    "kill_call",
    "kill_leftovers",
    "marked_processes",
]

HARNESS_ENV = "DICOM4QI_HARNESS"
BUILD_ENV = "DICOM4QI_BUILD"
CALL_ENV = "DICOM4QI_CALL"
_PR_SET_CHILD_SUBREAPER = 36


def _start_time(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def harness_id(pid: int | None = None) -> str:
    """``<pid>:<start time>`` of the harness (this process by default)."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{_start_time(pid) or '?'}"


def _alive(ident: str) -> bool:
    """Whether the harness named by a ``harness_id`` still runs (the same process, not a reused PID)."""
    pid, _, started = ident.partition(":")
    try:
        return _start_time(int(pid)) == started
    except ValueError:
        return False


def call_env(build: Path, call: str | None = None) -> dict[str, str]:
    """The marks a child (and everything it starts) carries."""
    return {HARNESS_ENV: harness_id(), BUILD_ENV: str(build.resolve()), CALL_ENV: call or uuid.uuid4().hex}


def marked_processes() -> Iterator[tuple[int, dict[str, str]]]:
    """Every process that carries the marks, with them (processes that cannot be read are skipped)."""
    me = os.getpid()
    proc = Path("/proc")
    if not proc.is_dir():
        return
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            raw = (entry / "environ").read_bytes()
        except OSError:
            continue
        if HARNESS_ENV.encode() not in raw:
            continue
        marks = {}
        for item in raw.split(b"\0"):
            key, _, value = item.partition(b"=")
            if key.decode(errors="replace") in (HARNESS_ENV, BUILD_ENV, CALL_ENV):
                marks[key.decode()] = value.decode(errors="replace")
        yield int(entry.name), marks


def _kill(pids: list[int]) -> int:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)  # reparented to this subreaper: reap it
    return len(pids)


def kill_call(call: str) -> int:
    """Kill every process of one call that is still alive (escaped its process group or not); how many."""
    return _kill([pid for pid, marks in marked_processes() if marks.get(CALL_ENV) == call])


def kill_leftovers(build: Path) -> list[str]:
    """Kill the processes of earlier harnesses of this build folder that are no longer alive; what was killed."""
    build_dir = str(build.resolve())
    found = [
        (pid, marks)
        for pid, marks in marked_processes()
        if marks.get(BUILD_ENV) == build_dir and not _alive(marks.get(HARNESS_ENV, ""))
    ]
    out = []
    for pid, marks in found:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            cmd = "?"
        out.append(f"{pid} ({cmd[:120]}) of harness {marks.get(HARNESS_ENV)}")
    _kill([pid for pid, _ in found])
    return out


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux): orphaned descendants are reparented here, not to init."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
