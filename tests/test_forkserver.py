"""Fork servers: every call is still a process of its own, starting clean, and every fault stays that call's.

The calls here are real children of real servers (``python -m dicom4qi.adapters.child --fork-server``), made
through :func:`dicom4qi.process.sandbox.run_child` as the runner makes them.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from dicom4qi.model.results import ResultsDocument
from dicom4qi.model.wire import ReadCall
from dicom4qi.process import sandbox
from dicom4qi.run.runner import RunConfig, run

from .conftest import CASES, FEATURES

PRELOAD = ("tests.fakes",)


@pytest.fixture
def forking(tmp_path: Path) -> Iterator[Path]:
    sandbox.configure(tmp_path / "build")
    sandbox.use_fork_servers(True)
    try:
        yield tmp_path
    finally:
        sandbox.use_fork_servers(False)
        sandbox.stop_fork_servers()


def _read(adapter: str, work: Path, **kw: Any) -> sandbox.ChildOutcome:
    call = ReadCall(adapter=adapter, seg=str(work / "none.dcm"), sources=[], output=str(work / "decoded.npz"))
    limits: dict = {"timeout_s": 60.0, "memory_mb": 2048.0, "preload": PRELOAD} | kw
    return sandbox.run_child(call, work, **limits)


def _state(message: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", message))


def _servers() -> list[int]:
    return [s.pid for s in list(sandbox._POOL._all)]


def test_each_call_is_a_new_process_that_starts_clean(forking: Path) -> None:
    first = _read("tests.fakes:StateReportingConsumer", forking / "a")
    second = _read("tests.fakes:StateReportingConsumer", forking / "b")
    assert first.kind == second.kind == "error", (first.message, second.message)
    one, two = _state(first.message), _state(second.message)
    # one server, two children of it
    assert len(_servers()) == 1
    assert one["ppid"] == two["ppid"] == str(_servers()[0])
    assert one["pid"] != two["pid"]
    # nothing of the first call reaches the second: its module global, its environment
    assert one["calls"] == two["calls"] == "1"
    assert one["leak"] == two["leak"] == "None"
    # each call has its own folder, temporary folder and memory limit, as a fresh process has
    assert one["cwd"] == str((forking / "a").resolve()) and two["cwd"] == str((forking / "b").resolve())
    assert one["tmp"] == str((forking / "a" / "tmp").resolve())
    assert one["limit"] == str(2048 * 2**20)
    assert not (forking / "a" / "tmp").exists()  # removed after the call


def test_a_crash_is_the_calls_and_the_server_serves_the_next(forking: Path) -> None:
    crash = _read("tests.fakes:CrashingConsumer", forking / "crash")
    assert crash.kind == "crash" and "SIGABRT" in crash.message, crash.message
    server = _servers()
    after = _read("tests.fakes:StateReportingConsumer", forking / "next")
    assert after.kind == "error" and _state(after.message)["ppid"] == str(server[0])


def test_a_hang_ends_at_its_time_limit_and_its_process_is_gone(forking: Path) -> None:
    start = time.monotonic()
    hang = _read("tests.fakes:HangingConsumer", forking / "hang", timeout_s=3.0)
    assert hang.kind == "timeout" and hang.limit == "time"
    assert time.monotonic() - start < 20
    server = psutil.Process(_servers()[0])
    assert not [c for c in server.children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE]
    after = _read("tests.fakes:StateReportingConsumer", forking / "next")
    assert after.kind == "error" and _state(after.message)["ppid"] == str(server.pid)


def test_the_memory_limit_holds_in_a_forked_call(forking: Path) -> None:
    greedy = _read("tests.fakes:GreedyConsumer", forking / "greedy", memory_mb=1024.0)
    assert greedy.kind == "error" and greedy.limit == "memory", greedy.message


def test_a_server_that_dies_mid_call_is_never_the_tools_fault(forking: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server is killed while its child works: the call is made again in a fresh process, and its outcome
    is the tool's own (here: the fake's answer), said with the retry."""
    _read("tests.fakes:StateReportingConsumer", forking / "warm")  # a server now idles
    (server,) = _servers()
    monkeypatch.setenv("DICOM4QI_TEST_DELAY", "2")
    killer = threading.Timer(1.0, lambda: os.kill(server, 9))
    killer.start()
    try:
        out = _read("tests.fakes:StateReportingConsumer", forking / "killed")
    finally:
        killer.cancel()
    assert out.kind == "error", out.message
    assert _state(out.message)["ppid"] == str(os.getpid())  # the retry: a child of the harness itself
    assert "made again in a fresh process" in out.message
    assert server not in _servers()


def test_a_preload_that_does_not_import_is_said_and_harmless(forking: Path) -> None:
    with sandbox._POOL.lease(sys.executable, ("no_such_module_for_dicom4qi",)) as server:
        assert "no_such_module_for_dicom4qi" in server.failed
    out = _read("tests.fakes:StateReportingConsumer", forking / "a", preload=("no_such_module_for_dicom4qi",))
    assert out.kind == "error" and "calls=1" in out.message


def test_stopping_leaves_no_server_alive(forking: Path) -> None:
    _read("tests.fakes:StateReportingConsumer", forking / "a", preload=())
    _read("tests.fakes:StateReportingConsumer", forking / "b")
    pids = _servers()
    assert len(pids) == 2  # one per kind of preload
    sandbox.stop_fork_servers()
    time.sleep(0.2)
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def test_fresh_and_forked_runs_give_the_same_verdicts(tmp_path: Path) -> None:
    def verdicts(fork: bool) -> dict[tuple[str, str, str | None], tuple[str, str | None]]:
        cfg = RunConfig(
            corpus=CASES,
            features=FEATURES,
            build=tmp_path / f"build-{fork}",
            results=tmp_path / f"results-{fork}",
            cases=["quick/binary-3-disjoint", "quick/labelmap-8bit-rle"],
            producers=["reference", "highdicom"],
            consumers=["reference", "highdicom", "tests.fakes:CrashingConsumer", "tests.fakes:GreedyConsumer"],
            validate=False,
            memory_mb=1024.0,
            workers=2,
            fork_servers=fork,
        )
        doc = ResultsDocument.load(run(cfg).path)
        return {(r.case, r.producer, r.consumer): (r.status.value, r.limit) for r in doc.records}

    forked, fresh = verdicts(True), verdicts(False)
    assert forked == fresh
    statuses = {v[0] for v in forked.values()}
    assert {"PASS", "CRASH", "ERROR"} <= statuses, statuses
    assert not sandbox._POOL._all  # the run stopped its servers
