"""dicom4qi diff: two runs' verdicts compared cell by cell; timings and ids never count, a changed verdict does."""

from __future__ import annotations

from pathlib import Path

from dicom4qi.cli.main import main
from dicom4qi.model.results import Check, CheckStatus, Record, ResultsDocument, Status
from dicom4qi.run.diff import diff_runs

from .test_combine import _run


def _doc(run_id: str, records: list[Record]) -> ResultsDocument:
    return ResultsDocument(run=_run(run_id, consumers=["highdicom"]), tools=[], records=records)


def _read(status: Status = Status.PASS, message: str = "", wall: float = 1.0) -> Record:
    return Record(
        case="quick/binary-3-disjoint",
        producer="highdicom",
        consumer="highdicom",
        step="read",
        status=status,
        message=message,
        wall_s=wall,
        checks=[
            Check(
                name="voxels", status=CheckStatus.PASS if status == Status.PASS else CheckStatus.FAIL, message=message
            )
        ],
    )


def test_same_verdicts_with_other_timings_and_ids_are_no_difference() -> None:
    old = _doc(
        "20261126T010000Z-abcdef",
        [
            _read(
                message="took 1.5 s in /tmp/a/b, run 20261126T010000Z-abcdef, set 70c51772-a737-222b-3bd1-5644ebe624c1"
            )
        ],
    )
    new = _doc(
        "20261127T010000Z-123456",
        [
            _read(
                message="took 9 s in /tmp/c, run 20261127T010000Z-123456, set fb0bf4a2-157d-824f-c5d4-8696cd033f24",
                wall=9,
            )
        ],
    )
    assert diff_runs(old, new) == []


def test_a_changed_status_message_or_missing_cell_is_reported(tmp_path: Path) -> None:
    old = _doc("20261126T010000Z-abcdef", [_read(), _read().model_copy(update={"consumer": "reference"})])
    new = _doc("20261127T010000Z-123456", [_read(Status.FAIL, "voxels: 3 missing")])
    diffs = diff_runs(old, new)
    fields = {(d.key[2], d.field) for d in diffs}
    assert (
        ("highdicom", "status") in fields and ("highdicom", "message") in fields and ("highdicom", "checks") in fields
    )
    assert ("reference", "cell") in fields
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(old.model_dump_json(), encoding="utf-8")
    b.write_text(new.model_dump_json(), encoding="utf-8")
    assert main(["diff", str(a), str(a)]) == 0
    assert main(["diff", str(a), str(b)]) == 1
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    assert main(["diff", str(a), str(tmp_path / "bad.json")]) == 2
