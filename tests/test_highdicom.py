"""highdicom as producer and consumer, for real, through the CLI; and the grid it renders."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from dicom4qi.cli.main import main
from dicom4qi.model.results import ResultsDocument, Status
from dicom4qi.site.report import render_site

from .conftest import CASES, FEATURES

CASE_IDS = [
    "quick/binary-overlap",
    "quick/binary-jpeg2000",
    "quick/binary-rle",
    "quick/empty-frames-middle",
    "quick/fractional-rle",
    "quick/labelmap-8bit-jpegls",
    "quick/labelmap-16bit-300",
    "quick/segment-metadata",
    "quick/multiframe-enhanced-mr-labelmap",
]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ResultsDocument]:
    tmp = tmp_path_factory.mktemp("hd")
    args = [
        "run",
        "-j",
        "2",
        "--producer",
        "highdicom",
        "--consumer",
        "highdicom",
        "--corpus",
        str(CASES),
        "--features",
        str(FEATURES),
        "--build",
        str(tmp / "build"),
        "--out",
        str(tmp / "results"),
    ]
    for c in CASE_IDS:
        args += ["--case", c]
    assert main(args) == 0
    return tmp, ResultsDocument.load(tmp / "results" / "latest.json")


@pytest.mark.slow
def test_highdicom_round_trip(results) -> None:
    _, doc = results
    by_case = {(r.case, r.step): r for r in doc.records}
    assert {c for c, _ in by_case} == set(CASE_IDS)
    for case in CASE_IDS:
        write, read = by_case[(case, "write")], by_case[(case, "read")]
        if case == "quick/binary-rle":
            # highdicom declares BINARY + RLE unsupported: a declared UNSUPPORTED, never a pass
            assert write.status is Status.UNSUPPORTED and "binary + ts-rle" in write.message
            assert read.status is Status.SKIPPED
            continue
        assert write.status is Status.PASS, write.message
        assert read.status is Status.PASS, read.message
        assert {c.name for c in read.checks} >= {"voxels", "geometry", "numbers-labels"}


def test_objects_are_what_the_case_asked_for(results) -> None:
    _, doc = results
    write = {r.case: r for r in doc.records if r.step == "write"}
    assert write["quick/labelmap-8bit-jpegls"].seg.sop_class_uid == "1.2.840.10008.5.1.4.1.1.66.7"
    assert write["quick/labelmap-8bit-jpegls"].seg.transfer_syntax_uid == "1.2.840.10008.1.2.4.80"
    assert write["quick/binary-jpeg2000"].seg.transfer_syntax_uid == "1.2.840.10008.1.2.4.90"
    assert write["quick/fractional-rle"].seg.transfer_syntax_uid == "1.2.840.10008.1.2.5"


def test_report_renders_the_grid_and_escapes(results) -> None:
    tmp, doc = results
    assert main(["report", str(tmp / "results" / "latest.json"), "--out", str(tmp / "site")]) == 0
    page = (tmp / "site" / "index.html").read_text()
    assert page.count('class="cell PASS"') >= 14
    assert "UNSUPPORTED" in page and "quick/labelmap-16bit-300" in page
    evil = doc.model_copy(deep=True)
    evil.records[0].message = "<script>alert(1)</script>"
    render_site([evil], tmp / "evil")
    text = (tmp / "evil" / "index.html").read_text()
    assert "<script>alert(1)</script>" not in text and html.escape("<script>alert(1)</script>") in text


def test_report_refuses_a_broken_results_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "dicom4qi-results/1", "run": {}}))
    assert main(["report", str(bad), "--out", str(tmp_path / "site")]) == 2
    assert main(["report", str(tmp_path / "nothing.json")]) == 2


def test_the_volume_fallback_is_only_for_frames_that_name_no_source() -> None:
    """highdicom 0.24 refuses frames that name no source frame in the words it uses for frames that name several:
    the consumer falls back to get_volume (what a user does) only for the first."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from dicom4qi.tools.highdicom.consumer import _no_source_frames

    def seg(with_sources: bool) -> Dataset:
        frame = Dataset()
        if with_sources:
            derivation = Dataset()
            source = Dataset()
            source.ReferencedSOPInstanceUID = "1.2.3"
            derivation.SourceImageSequence = Sequence([source, source])
            frame.DerivationImageSequence = Sequence([derivation])
        ds = Dataset()
        ds.PerFrameFunctionalGroupsSequence = Sequence([frame])
        return ds

    several = (
        "Indexing via source frames is not permissible since some frames in the image specify multiple source frames."
    )
    assert _no_source_frames(several, seg(with_sources=False))
    assert not _no_source_frames(several, seg(with_sources=True))  # a real refusal: kept
    assert _no_source_frames("... because the image does not contain information about source frames.", seg(True))
    assert not _no_source_frames("spatial locations are preserved", seg(False))
