"""Slicer's segmentation libraries (PyPI slicer-core) run for real, in their own environment: a SEG loaded as
Slicer's DICOM plugin loads it, segments and voxels read back from the segmentation node."""

from __future__ import annotations

import pytest

from dicom4qi.model.results import Record, ResultsDocument, Status
from dicom4qi.run.runner import RunConfig, run

from .conftest import CASES, FEATURES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> ResultsDocument:
    tmp = tmp_path_factory.mktemp("slicer-core")
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=tmp / "build",
        results=tmp / "results",
        cases=["quick/binary-overlap", "quick/empty-segment", "quick/labelmap-8bit", "quick/fractional"],
        producers=["highdicom"],
        consumers=["slicer-core"],
        workers=2,
        validate=False,
    )
    return ResultsDocument.load(run(cfg).path)


def _read(doc: ResultsDocument, case: str) -> Record:
    (rec,) = [r for r in doc.records if r.step == "read" and r.case == case]
    return rec


def test_the_handshake_names_the_libraries_not_the_application(doc) -> None:
    (info,) = [t for t in doc.tools if t.name == "slicer-core"]
    assert info.available and info.version == "5.13.31053.0"
    assert info.environment == "slicer-core" and info.family == "dcmqi"
    assert info.summary and info.summary.startswith("Slicer's segmentation libraries, not the application")


def test_overlapping_binary_and_label_map_load_into_a_segmentation_node(doc) -> None:
    for case in ("quick/binary-overlap", "quick/labelmap-8bit"):
        rec = _read(doc, case)
        assert rec.status is Status.PASS, (case, rec.message)
        assert any("ImportLabelmapToSegmentationNode" in n for n in rec.notes)
        assert any(n.startswith("$ segimage2itkimage") and "--mergeSegments" in n for n in rec.notes)


def test_an_empty_segment_shifts_the_names_the_plugin_gives_by_position(doc) -> None:
    # The import makes no segment for a label value with no voxels; the plugin then names the segments it made in
    # order, so the segment after the empty one carries the empty one's name (and so on).
    rec = _read(doc, "quick/empty-segment")
    assert rec.status is Status.FAIL
    assert "segment-count" in rec.message and "missing segment numbers" in rec.message
    assert any("names them by position" in n for n in rec.notes)


def test_a_fractional_object_stops_the_plugin_naming_loop(doc) -> None:
    # dcmqi writes the stored fractions; the import makes one segment per value, more than meta.json lists.
    rec = _read(doc, "quick/fractional")
    assert rec.status is Status.ERROR
    assert "one per label value" in rec.message and "IndexError" in rec.message
