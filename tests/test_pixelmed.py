"""PixelMed's validator, the second validator: its report parsed, one JVM for many objects, its faults as outcomes,
and the per-error explanation of a validator's cell by known issues."""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest

from dicom4qi.adapters.contract import WriteRequest
from dicom4qi.judge import pixelmed
from dicom4qi.judge.known import KnownIssue, explained_errors, matches
from dicom4qi.judge.pixelmed import PixelmedServer, parse_pixelmed
from dicom4qi.judge.validate import Finding as VFinding
from dicom4qi.model.results import Finding, Record, Status
from dicom4qi.tools.highdicom.producer import HighdicomProducer
from dicom4qi.tools.reference.producer import ReferenceProducer

from .conftest import loaded

REPORT = """Found Segmentation IOD
Error: GeneralSeriesModule/Laterality/: : Missing conditional attribute
Warning: SOPCommonModule/SpecificCharacterSet/: SpecificCharacterSet/value[1]: Unrecognized defined term :ISO_IR 192:
Error: SegmentDescriptionMacro/SegmentLabel/: SegmentSequence/Item[1]/SegmentLabel/value[1]/: Illegal character(s) 'ä' \
in value of LO VR - value is :Läsion:
IOD validation complete
"""


def test_the_report_is_parsed_into_severity_path_and_message() -> None:
    found = parse_pixelmed(REPORT)
    assert found == [
        VFinding("error", "Missing conditional attribute", "GeneralSeriesModule/Laterality/"),
        VFinding(
            "warning",
            "Unrecognized defined term :ISO_IR 192:",
            "SOPCommonModule/SpecificCharacterSet/ @ SpecificCharacterSet/value[1]",
        ),
        VFinding(
            "error",
            "Illegal character(s) 'ä' in value of LO VR - value is :Läsion:",
            "SegmentDescriptionMacro/SegmentLabel/ @ SegmentSequence/Item[1]/SegmentLabel/value[1]/",
        ),
    ]
    assert parse_pixelmed("Found Segmentation IOD\nIOD validation complete\n") == []


needs_pixelmed = pytest.mark.skipif(
    not pixelmed.pixelmed_available()[0] and os.environ.get("CI") != "true",
    reason="PixelMed or a JDK is not installed (scripts/system-deps installs them)",
)


@pytest.fixture(scope="module")
def objects(truth_of, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    folder = tmp_path_factory.mktemp("pm")
    for name, producer, case_id in [
        ("binary", ReferenceProducer(), "quick/binary-3-disjoint"),
        ("labelmap", HighdicomProducer(), "quick/labelmap-8bit"),
    ]:
        case = loaded(case_id)
        path = folder / f"{name}.dcm"
        producer.write(WriteRequest(case.id, case.case, truth_of(case.id), path))
        out[name] = path
    return out


@needs_pixelmed
@pytest.mark.slow
def test_one_jvm_validates_many_objects_and_restarts_after_a_hang(
    objects: dict[str, Path], tmp_path: Path, build_dir: Path
) -> None:
    assert pixelmed.pixelmed_available() == (True, "")
    ds = pydicom.dcmread(objects["binary"])
    del ds.SegmentSequence[0].SegmentLabel
    broken = tmp_path / "no-label.dcm"
    ds.save_as(broken)
    with PixelmedServer(tmp_path / "cache", build_dir) as server:
        good = server.validate(objects["binary"], 120)
        assert good.kind == "ok", good.message
        assert "Found Segmentation IOD" in good.raw
        bad = server.validate(broken, 120)
        assert bad.kind == "ok"
        assert any("SegmentLabel" in (f.path or "") and f.severity == "error" for f in bad.findings), bad.raw
        assert not any("SegmentLabel" in (f.path or "") and f.severity == "error" for f in good.findings)
        # the 2022 build does not describe the Label Map SOP Class: said in its words, not a verdict
        unknown = server.validate(objects["labelmap"], 120)
        assert unknown.kind == "unsupported" and pixelmed.UNRECOGNIZED in unknown.raw
        assert server.starts == 1
        # an answer later than the limit: that object's TIMEOUT, and the next object gets a fresh JVM
        hung = server.validate(objects["binary"], 0.001)
        assert hung.kind == "timeout" and server.proc is None
        again = server.validate(broken, 120)
        assert again.kind == "ok" and server.starts == 2
        assert [f.message for f in again.findings] == [f.message for f in bad.findings]
        assert not os.path.exists(tmp_path / "missing.dcm")
        missing = server.validate(tmp_path / "missing.dcm", 120)
        assert missing.kind == "error" and "FileNotFoundException" in missing.message


@needs_pixelmed
@pytest.mark.slow
def test_a_jvm_that_dies_is_that_objects_crash(objects: dict[str, Path], tmp_path: Path, build_dir: Path) -> None:
    with PixelmedServer(tmp_path / "cache", build_dir, heap_mb=8) as server:  # too small a heap for the XSLT
        out = server.validate(objects["binary"], 120)
    assert out.kind in ("crash", "error"), out
    assert "heap" in out.message or "did not start" in out.message or "exited" in out.message


def _validator_cell(errors: list[str]) -> Record:
    return Record(
        case="quick/x",
        producer="reference",
        consumer="pixelmed",
        step="validate",
        status=Status.FAIL,
        message="; ".join(errors),
        findings=[Finding(severity="error", message=m, path=p) for p, m in (e.split(": ", 1) for e in errors)],
    )


def test_a_validator_cell_is_explained_error_by_error() -> None:
    """A known issue of the validator explains only the errors it names: another error in the same cell stays new."""
    issue = KnownIssue.model_validate(
        {
            "id": "pixelmed-laterality",
            "title": "Laterality always required",
            "tool": "pixelmed",
            "upstream": "none",
            "match": [{"step": "validate", "consumers": ["pixelmed"], "message": "Laterality"}],
        }
    )
    both = _validator_cell(
        ["GeneralSeriesModule/Laterality/: Missing conditional attribute", "Segment/SegmentLabel/: Missing (Type 1)"]
    )
    assert matches(issue, both, "1") and explained_errors(issue, both, "1") == {0}
    only = _validator_cell(["GeneralSeriesModule/Laterality/: Missing conditional attribute"])
    assert explained_errors(issue, only, "1") == {0}
    other = _validator_cell(["Segment/SegmentLabel/: Missing (Type 1)"])
    assert not matches(issue, other, "1")
