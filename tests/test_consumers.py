"""The consumers of issue 5 on real objects: dcmqi (plain and --mergeSegments), pydicom-seg, reference, slicer."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom4qi.model.results import ResultsDocument, Status
from dicom4qi.run.runner import RunConfig, run

from .conftest import CASES, FEATURES

CASE_IDS = [
    "quick/binary-overlap",
    "quick/fractional-rle",
    "quick/labelmap-8bit-jpegls",
    "quick/multiframe-enhanced-ct",
]
CONSUMERS = ["reference", "dcmqi", "dcmqi@mergeSegments", "pydicom-seg", "slicer"]


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> ResultsDocument:
    tmp = tmp_path_factory.mktemp("consumers")
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=tmp / "build",
        results=tmp / "results",
        cases=CASE_IDS,
        producers=["highdicom"],
        consumers=CONSUMERS,
        workers=2,
    )
    return ResultsDocument.load(run(cfg).path)


def _read(doc: ResultsDocument, consumer: str, case: str):
    (rec,) = [r for r in doc.records if r.consumer == consumer and r.case == case]
    return rec


@pytest.mark.slow
def test_reference_reads_everything(doc) -> None:
    for case in CASE_IDS:
        rec = _read(doc, "reference", case)
        assert rec.status is Status.PASS, (case, rec.message)


def test_dcmqi_plain_and_merged(doc) -> None:
    assert _read(doc, "dcmqi", "quick/binary-overlap").status is Status.PASS
    assert _read(doc, "dcmqi@mergeSegments", "quick/binary-overlap").status is Status.PASS
    assert _read(doc, "dcmqi", "quick/multiframe-enhanced-ct").status is Status.PASS
    assert _read(doc, "dcmqi", "quick/fractional-rle").status is Status.PASS
    merged = _read(doc, "dcmqi@mergeSegments", "quick/fractional-rle")
    # the known fault: merged FRACTIONAL output is 255 wherever a segment is
    assert merged.status is Status.FAIL and "above" in merged.message
    jpegls = _read(doc, "dcmqi", "quick/labelmap-8bit-jpegls")
    assert jpegls.status is Status.ERROR and "Cannot decompress" in jpegls.message
    assert any(n.startswith("$ segimage2itkimage") and "--mergeSegments" in n for n in merged.notes)


def test_pydicom_seg_reads_and_rejects_label_maps(doc) -> None:
    assert _read(doc, "pydicom-seg", "quick/binary-overlap").status is Status.PASS
    assert _read(doc, "pydicom-seg", "quick/fractional-rle").status is Status.PASS
    lm = _read(doc, "pydicom-seg", "quick/labelmap-8bit-jpegls")
    assert lm.status is Status.ERROR and "not a DICOM-SEG storage" in lm.message


def test_slicer_is_skipped_when_absent(doc) -> None:
    rec = _read(doc, "slicer", "quick/binary-overlap")
    if rec.status is not Status.SKIPPED:
        pytest.skip("3D Slicer is installed here")
    assert "3D Slicer not found" in rec.message


def test_slicer_never_passes_unless_slicer_ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "Slicer"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("SLICER_EXECUTABLE", str(fake))
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=tmp_path / "build",
        results=tmp_path / "results",
        cases=["quick/binary-3-disjoint"],
        producers=["highdicom"],
        consumers=["slicer"],
    )
    rec = next(r for r in ResultsDocument.load(run(cfg).path).records if r.consumer == "slicer")
    assert rec.status is Status.ERROR and "without a report" in rec.message
