"""Pass counts by feature: tried cells only, never a missing tool as a pass."""

from __future__ import annotations

from dicom4qi.model.results import Record, ResultsDocument, SegObject, Status
from dicom4qi.run.summary import by_feature, interop_score

from .conftest import run_info

SEG = SegObject(path="x/seg.dcm", size=1, sha256="0" * 64)


def _doc(*records: Record) -> ResultsDocument:
    return ResultsDocument(run=run_info(), records=list(records))


def _read(case: str, consumer: str, status: Status, features: list[str], producer: str = "p") -> Record:
    return Record(
        case=case,
        producer=producer,
        consumer=consumer,
        step="read",
        status=status,
        features=features,
        seg=SEG,
        tier="quick",
    )


def test_counts_tried_cells_per_feature_and_keeps_untried_apart() -> None:
    doc = _doc(
        _read("a", "x", Status.PASS, ["binary", "overlap"]),
        _read("b", "x", Status.FAIL, ["binary"]),
        _read("c", "x", Status.SKIPPED, ["binary"]),
        _read("d", "x", Status.UNSUPPORTED, ["binary"]),
        _read("a", "y", Status.CRASH, ["binary", "overlap"]),
        Record(case="a", producer="p", step="write", status=Status.PASS, features=["binary"]),
        Record(
            case="n", producer="p", consumer="x", step="read", status=Status.PASS, features=["binary"], tier="negative"
        ),
    )
    counts = by_feature(doc)
    assert (counts["binary"]["x"].passed, counts["binary"]["x"].tried, counts["binary"]["x"].untried) == (1, 2, 2)
    assert counts["binary"]["x"].failed_cases == {"b"}
    assert counts["overlap"]["y"].rate == 0.0 and counts["binary"]["y"].failed_cases == {"a"}
    assert by_feature(doc, "producer")["binary"]["p"].passed == 1


def _write(case: str, status: Status, producer: str = "p") -> Record:
    return Record(case=case, producer=producer, step="write", status=status, features=["binary"], seg=SEG, tier="quick")


def test_interop_needs_every_listed_reader_to_pass() -> None:
    doc = _doc(
        _write("a", Status.PASS),
        _write("b", Status.PASS),
        _read("a", "x", Status.PASS, ["binary"]),
        _read("a", "y", Status.PASS, ["binary"]),
        _read("b", "x", Status.PASS, ["binary", "overlap"]),
        _read("b", "y", Status.SKIPPED, ["binary", "overlap"]),
    )
    assert interop_score(doc, ["x", "y"]) == {"binary": (1, 2), "overlap": (0, 1)}
    assert interop_score(doc, ["x"]) == {"binary": (2, 2), "overlap": (1, 1)}


def test_a_wrong_object_is_its_producers_fault_not_the_readers() -> None:
    """Reads of an object whose write FAILed are out of the interop score; a faithful read is the reader's pass."""
    faithful = _read("c", "x", Status.PASS, ["binary"])
    faithful.basis = "object"
    refused = _read("c", "y", Status.ERROR, ["binary"])  # a refusal of the wrong object: not y's fault
    refused.basis = "object"
    own = _read("c", "z", Status.FAIL, ["binary"])  # decodes the wrong object differently again: z's own fault
    own.basis = "object"
    doc = _doc(
        _write("a", Status.PASS),
        _write("c", Status.FAIL),
        _write("d", Status.DISPUTED),
        _read("a", "x", Status.PASS, ["binary"]),
        faithful,
        _read("d", "x", Status.DISPUTED, ["binary"]),
        refused,
        own,
    )
    assert interop_score(doc, ["x"]) == {"binary": (1, 1)}
    assert (by_feature(doc)["binary"]["y"].tried, by_feature(doc)["binary"]["y"].uncharged) == (0, 1)
    assert (by_feature(doc)["binary"]["z"].passed, by_feature(doc)["binary"]["z"].tried) == (0, 1)
    counts = by_feature(doc)["binary"]["x"]
    assert (counts.passed, counts.tried, counts.uncharged, counts.untried) == (2, 2, 1, 0)
    writes = by_feature(doc, "producer")["binary"]["p"]
    assert (writes.passed, writes.tried, writes.uncharged) == (1, 2, 1)
