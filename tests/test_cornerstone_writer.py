"""cornerstone3D's SEG writer (npm @cornerstonejs/adapters generateSegmentation) as a producer, the executable
adapter dicom4qi/tools/cornerstone-writer (builtin name "cornerstone"), run for real: a BINARY object, a LABELMAP
object in RLE Lossless and a BINARY object of overlapping segments, each checked against the truth by the write
step and read back right by the reference decoder; what the writer cannot be told is UNSUPPORTED."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from dicom4qi.model.results import Record, ResultsDocument, Status
from dicom4qi.run.runner import RunConfig, run

from .conftest import CASES, FEATURES, ROOT, need_node

pytestmark = pytest.mark.slow

WRITER = ROOT / "dicom4qi" / "tools" / "cornerstone-writer"
PRODUCER = "cornerstone"  # the builtin name: exec:tools/cornerstone-writer in dicom4qi/adapters/contract.py
BINARY = "quick/binary-3-disjoint"
LABELMAP_RLE = "quick/labelmap-8bit-rle"
OVERLAP = "quick/binary-overlap"
FRACTIONAL = "quick/fractional"
CASE_IDS = [BINARY, LABELMAP_RLE, OVERLAP, FRACTIONAL]


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> ResultsDocument:
    """One run: the writer on a few quick cases, read back by the reference (the harness runs npm ci first)."""
    need_node("cornerstone writer")
    tmp = tmp_path_factory.mktemp("cornerstone-writer")
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=tmp / "build",
        results=tmp / "results",
        tiers=[],
        cases=CASE_IDS,
        producers=[PRODUCER],
        consumers=["reference"],
        validate=False,
    )
    return ResultsDocument.load(run(cfg).path)


def _write(doc: ResultsDocument, case: str) -> Record:
    (rec,) = [r for r in doc.records if r.step == "write" and r.case == case and r.producer == PRODUCER]
    return rec


def _read(doc: ResultsDocument, case: str) -> Record:
    (rec,) = [
        r
        for r in doc.records
        if r.step == "read" and r.case == case and r.producer == PRODUCER and r.consumer == "reference"
    ]
    return rec


def _installed(release: str) -> str:
    folder = WRITER / "releases" / release / "node_modules" / "@cornerstonejs" / "adapters"
    if not folder.is_dir():  # npm hoists the default release's packages to the adapter's own node_modules
        folder = WRITER / "node_modules" / "@cornerstonejs" / "adapters"
    version: str = json.loads((folder / "package.json").read_text())["version"]
    return version


def test_handshake_is_the_installed_release(doc: ResultsDocument) -> None:
    tool = next(t for t in doc.tools if t.role == "producer" and t.name == PRODUCER)
    assert tool.available and tool.tool == "@cornerstonejs/adapters"
    assert tool.version == _installed("5.14.0") == "5.14.0"
    assert tool.homepage == "https://github.com/cornerstonejs/cornerstone3D"
    for claimed in ("binary", "labelmap", "ts-rle", "overlap", "segment-metadata"):
        assert claimed in tool.features
    for refused in (
        "fractional",
        "ts-jpeg2000",
        "ts-deflate",
        "ts-implicit-le",
        "labelmap-palette",
        "projection-source",
    ):
        assert refused not in tool.features
    assert ["labelmap", "overlap"] in tool.unsupported_combinations


@pytest.mark.parametrize("case", [BINARY, LABELMAP_RLE, OVERLAP])
def test_write_holds_the_truth_and_the_reference_reads_it(doc: ResultsDocument, case: str) -> None:
    write = _write(doc, case)
    assert write.status is Status.PASS, write.message
    assert any("adaptersSEG.Cornerstone3D.Segmentation.generateSegmentation(" in n for n in write.notes)
    assert any("datasetToBuffer" in n for n in write.notes)
    read = _read(doc, case)
    assert read.status is Status.PASS, read.message


def test_the_options_pick_the_sop_class_and_the_transfer_syntax(doc: ResultsDocument) -> None:
    labelmap = _write(doc, LABELMAP_RLE)
    assert labelmap.seg is not None
    assert labelmap.seg.sop_class_uid == "1.2.840.10008.5.1.4.1.1.66.7"  # Label Map Segmentation Storage
    assert labelmap.seg.transfer_syntax_uid == "1.2.840.10008.1.2.5"  # RLE Lossless
    assert any("sopClassUID: 1.2.840.10008.5.1.4.1.1.66.7" in n for n in labelmap.notes)
    binary = _write(doc, BINARY)
    assert binary.seg is not None and binary.seg.sop_class_uid == "1.2.840.10008.5.1.4.1.1.66.4"
    assert any("labelmap3D[]" in n for n in _write(doc, OVERLAP).notes)  # one labelmap3D per layer


def test_fractional_is_unsupported(doc: ResultsDocument) -> None:
    assert _write(doc, FRACTIONAL).status is Status.UNSUPPORTED


def test_the_older_release_answers_its_own_version(doc: ResultsDocument) -> None:
    """The variant installs 5.6.8 beside the default (the handshake alone: its faults are in the known issues)."""
    proc = subprocess.run(
        ["node", "index.mjs"],
        cwd=WRITER,
        input=json.dumps({"protocol": 1, "op": "info", "variant": "5.6.8"}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    answer: dict[str, Any] = json.loads(proc.stdout)
    assert answer["ok"] and answer["role"] == "producer"
    assert answer["version"] == _installed("5.6.8") == "5.6.8"
    assert answer["name"] == "cornerstone-5.6.8"
