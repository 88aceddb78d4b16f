"""Ctrl-C during a run: the harness stops at once, kills its children and keeps what it did."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from .conftest import CASES, FEATURES, ROOT


def test_interrupt_keeps_results_and_kills_children(tmp_path: Path) -> None:
    results = tmp_path / "results"
    cmd = [
        sys.executable,
        "-m",
        "dicom4qi.cli.main",
        "run",
        "--corpus",
        str(CASES),
        "--features",
        str(FEATURES),
        "--build",
        str(tmp_path / "build"),
        "--out",
        str(results),
        "--case",
        "quick/binary-3-disjoint",
        "--producer",
        "highdicom",
        "--consumer",
        "tests.fakes:HangingConsumer",
        "--timeout",
        "300",
    ]
    # Ctrl-C as a terminal sends it: SIGINT at its default in the harness, also where the tests were started with
    # it ignored (a background job of a non-interactive shell), which Python would otherwise inherit.
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    latest = results / "latest.json"
    deadline = time.monotonic() + 150
    hanging: list[psutil.Process] = []
    while time.monotonic() < deadline and not hanging:
        time.sleep(0.2)
        kids = psutil.Process(proc.pid).children(recursive=True)
        hanging = [k for k in kids if _is_reader(k)]
    assert hanging, "the hanging consumer never started"
    proc.send_signal(signal.SIGINT)
    start = time.monotonic()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # every thread's stack, to say where it hangs
        time.sleep(1)
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"the harness did not stop after Ctrl-C; its threads:\n{err.decode()[-6000:]}") from None
    assert time.monotonic() - start < 10
    assert proc.returncode == 130
    doc = json.loads(latest.read_text())
    steps = {(r["step"], r["status"]) for r in doc["records"]}
    assert ("write", "PASS") in steps  # the write done before Ctrl-C is kept
    assert doc["run"]["finished"] is None  # and the run is marked unfinished
    time.sleep(0.5)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in hanging)


def test_a_child_started_as_the_harness_stops_is_killed_at_once() -> None:
    """The window between a child's start and its registration: kill_all ran in it, the child must not live on."""
    from dicom4qi.process import sandbox

    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        sandbox.kill_all()  # Ctrl-C lands here: the list of children is taken before this one is in it
        sandbox.track(child.pid)
        assert child.wait(timeout=5) == -signal.SIGKILL
    finally:
        sandbox.untrack(child.pid)
        sandbox._stopping.clear()
        child.kill()
        child.wait()


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def _is_reader(p: psutil.Process) -> bool:
    """A call of the hanging consumer's read (not the write step's check decodes): a process of
    dicom4qi.adapters.child, a new one or a fork server's child, working in a folder whose request is that read."""
    cmd = _cmdline(p)
    if "dicom4qi.adapters.child" not in cmd:
        return False
    try:
        request = json.loads((Path(p.cwd()) / "request.json").read_text())
    except (psutil.Error, OSError, ValueError):
        return False
    return request.get("op") == "read" and request.get("adapter") == "tests.fakes:HangingConsumer"
