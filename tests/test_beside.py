"""PixelMed's validation beside the reads (:class:`dicom4qi.run.runner._Beside`): every object validated in order, in
a thread of its own, while the caller's thread is free; the records that end late are handed over; a cancel stops it
between two objects; a fault of the harness in that thread is raised in the caller's."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from dicom4qi.model.results import Record, Status
from dicom4qi.run.runner import _Beside


def _record(case: str) -> Record:
    return Record(case=case, producer="p", consumer="pixelmed", step="validate", status=Status.PASS)


def test_objects_are_validated_in_order_in_their_own_thread_while_the_caller_goes_on(tmp_path: Path) -> None:
    gate = threading.Event()
    threads: list[str] = []
    done: list[Record] = []

    def validate(case: str, server: Any, why: str) -> Record:
        threads.append(threading.current_thread().name)
        if case == "c2":
            assert gate.wait(30), "the caller's thread never let the second object go"
        return _record(case)

    beside = _Beside(tmp_path, [("c1",), ("c2",), ("c3",)], validate, done.append)
    # The caller is free while the second object is held: it is the reads' thread.
    while len(threads) < 2:
        threading.Event().wait(0.01)
    assert [r.case for r in done] == ["c1"]
    left = beside.left()
    assert left == 2
    gate.set()
    late = [r.case for r in beside.finished()]
    assert late == ["c2", "c3"]
    assert [r.case for r in done] == ["c1", "c2", "c3"]
    assert set(threads) == {"pixelmed"} and beside.error is None


def test_a_cancel_stops_between_two_objects(tmp_path: Path) -> None:
    started = threading.Event()
    release = threading.Event()
    done: list[Record] = []

    def validate(case: str, server: Any, why: str) -> Record:
        started.set()
        release.wait(30)
        return _record(case)

    beside = _Beside(tmp_path, [(f"c{i}",) for i in range(5)], validate, done.append)
    assert started.wait(30)
    threading.Timer(0.2, release.set).start()
    beside.cancel()
    assert [r.case for r in done] == ["c0"], "the object under way ends; none after it starts"


def test_a_fault_in_the_validation_thread_is_kept_for_the_caller(tmp_path: Path) -> None:
    def validate(case: str, server: Any, why: str) -> Record:
        raise OSError(28, "No space left on device")

    beside = _Beside(tmp_path, [("c1",), ("c2",)], validate, lambda r: None)
    assert list(beside.finished()) == []
    assert isinstance(beside.error, OSError)
    with pytest.raises(OSError):
        raise beside.error
