"""The dwv consumer adapter (dicom4qi/tools/dwv, Node), run for real: the handshake, the grid cells of a BINARY
case it reads right and of an overlapping one its one-value-per-voxel mask cannot hold, and its decoded voxels
compared with the truth by hand (no judge in between); and the dwv-writer producer (dicom4qi/tools/dwv-writer)
writing a BINARY object that the reference reads right."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dicom4qi.model.results import Record, ResultsDocument, Status
from dicom4qi.model.truth import Truth
from dicom4qi.run.runner import RunConfig, run

from .conftest import CASES, FEATURES, ROOT, need_node

DWV = ROOT / "dicom4qi" / "tools" / "dwv"
CONSUMER = "dwv"  # the builtin name: exec:tools/dwv in dicom4qi/adapters/contract.py
CASE_IDS = ["quick/binary-3-disjoint", "quick/binary-overlap", "quick/labelmap-8bit"]


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[ResultsDocument, Path]:
    need_node("dwv")
    tmp = tmp_path_factory.mktemp("dwv")
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=tmp / "build",
        results=tmp / "results",
        tiers=[],
        cases=CASE_IDS,
        producers=["highdicom"],
        consumers=[CONSUMER],
        validate=False,
    )
    return ResultsDocument.load(run(cfg).path), tmp / "build"


def _read(doc: ResultsDocument, case: str) -> Record:
    (rec,) = [r for r in doc.records if r.step == "read" and r.case == case and r.consumer == CONSUMER]
    return rec


def test_handshake_is_dwv_itself(grid: tuple[ResultsDocument, Path]) -> None:
    doc, _ = grid
    tool = next(t for t in doc.tools if t.role == "consumer" and t.name == CONSUMER)
    installed = json.loads((DWV / "node_modules" / "dwv" / "package.json").read_text())["version"]
    assert tool.available and tool.tool == "dwv" and tool.version == installed
    assert tool.family == "dwv"  # its own decoder: no family given, so the harness counts it as its own vote
    assert tool.homepage == "https://github.com/ivmartel/dwv"
    assert "binary" in tool.features
    for refused in ("labelmap", "fractional", "ts-deflate", "ts-rle", "slide-source", "frames-position-only"):
        assert refused not in tool.features


def test_binary_case_passes_and_says_how_it_was_read(grid: tuple[ResultsDocument, Path]) -> None:
    doc, _ = grid
    rec = _read(doc, "quick/binary-3-disjoint")
    assert rec.status is Status.PASS, rec.message
    assert any("MaskFactory().create" in n for n in rec.notes)
    assert any(n.startswith("dwv mask: Uint8Array") for n in rec.notes)


def test_overlap_fails_one_value_per_voxel(grid: tuple[ResultsDocument, Path]) -> None:
    """MaskFactory.create writes every frame into one buffer: a later segment's frame overwrites an earlier one."""
    doc, _ = grid
    rec = _read(doc, "quick/binary-overlap")
    assert rec.status is Status.FAIL
    voxels = next(c for c in rec.checks if c.name == "voxels")
    assert voxels.status.value == "FAIL" and "missing, 0 extra" in rec.message


def test_label_maps_are_unsupported(grid: tuple[ResultsDocument, Path]) -> None:
    doc, _ = grid
    assert _read(doc, "quick/labelmap-8bit").status is Status.UNSUPPORTED


def _nrrd(path: Path) -> np.ndarray:
    """A gzip NRRD as the adapter writes it, as (slices, rows, columns)."""
    raw = path.read_bytes()
    head, _, body = raw.partition(b"\n\n")
    fields = dict(line.split(": ", 1) for line in head.decode("ascii").splitlines()[1:])
    assert fields["encoding"] == "gzip" and fields["endian"] == "little"
    columns, rows, slices = (int(v) for v in fields["sizes"].split())
    dtype = np.dtype({"uint8": "u1", "uint16": "<u2"}[fields["type"]])
    return np.frombuffer(gzip.decompress(body), dtype=dtype).reshape(slices, rows, columns)


def test_decoded_voxels_are_the_truth(grid: tuple[ResultsDocument, Path], tmp_path: Path) -> None:
    """The adapter called by hand on highdicom's object: every voxel of its label map is the truth's."""
    doc, build = grid
    case = "quick/binary-3-disjoint"
    write = next(r for r in doc.records if r.step == "write" and r.case == case and r.producer == "highdicom")
    assert write.seg is not None
    assert doc.run.run_dir is not None
    seg = Path(doc.run.run_dir) / write.seg.path
    truth_dir = next(
        p.parent for p in (build / "corpus").glob("*/truth.json") if json.loads(p.read_text())["case_id"] == case
    )
    truth = Truth.load(truth_dir)
    out = tmp_path / "out"
    out.mkdir()
    request = {
        "protocol": 1,
        "op": "read",
        "seg": str(seg),
        "sources": [str(p) for p in truth.reader_source_paths],
        "output": str(out),
    }
    proc = subprocess.run(
        ["node", "index.js"], cwd=DWV, input=json.dumps(request), capture_output=True, text=True, timeout=300
    )
    response: dict[str, Any] = json.loads(proc.stdout)
    assert response["ok"], response.get("error")
    exchange = json.loads((out / "segments.json").read_text())
    labelmap = _nrrd(out / "labelmap.nrrd")
    assert labelmap.shape[0] == len(exchange["frames"])
    assert sorted(s["number"] for s in exchange["segments"]) == [s.number for s in truth.segments]
    # on the truth's grid: slice k of dwv's mask is source frame frames[k]
    decoded = np.zeros(truth.shape, dtype=np.uint16)
    index = {key: k for k, key in enumerate(truth.frame_keys)}
    for k, key in enumerate(exchange["frames"]):
        decoded[index[key]] = labelmap[k]
    expected = np.zeros(truth.shape, dtype=np.uint16)
    with truth.masks() as masks:
        for number, crop in masks:
            z, y, x = crop.offset
            dz, dy, dx = crop.data.shape
            expected[z : z + dz, y : y + dy, x : x + dx][crop.data] = number
    assert np.count_nonzero(expected) > 0
    assert np.array_equal(decoded, expected)
    by_number = {s["number"]: s for s in exchange["segments"]}
    for s in truth.segments:
        assert by_number[s.number]["label"] == s.label
        assert by_number[s.number]["algorithm_type"] == s.algorithm_type


# --------------------------------------------------------------------------- the producer (dicom4qi/tools/dwv-writer)
WRITER = ROOT / "dicom4qi" / "tools" / "dwv-writer"
PRODUCER = f"exec:{WRITER}"  # not a builtin name (yet)


def test_dwv_writer_writes_binary_the_reference_reads_right(tmp_path: Path) -> None:
    """MaskFactory.toDicom + DicomWriter, headless: the object holds the truth; overlaps are not claimed."""
    need_node("dwv")
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=tmp_path / "build",
        results=tmp_path / "results",
        tiers=[],
        cases=["quick/binary-3-disjoint", "quick/binary-overlap"],
        producers=[PRODUCER],
        consumers=["reference"],
        validate=False,
    )
    doc = ResultsDocument.load(run(cfg).path)
    tool = next(t for t in doc.tools if t.role == "producer" and t.name == PRODUCER)
    assert tool.available and tool.tool == "dwv" and "binary" in tool.features and "overlap" not in tool.features
    writes = {r.case: r for r in doc.records if r.step == "write" and r.producer == PRODUCER}
    write = writes["quick/binary-3-disjoint"]
    assert write.status is Status.PASS, write.message
    assert any("MaskFactory().toDicom" in n for n in write.notes)
    assert writes["quick/binary-overlap"].status is Status.UNSUPPORTED
    (read,) = [
        r
        for r in doc.records
        if r.step == "read"
        and r.case == "quick/binary-3-disjoint"
        and r.producer == PRODUCER
        and r.consumer == "reference"
    ]
    assert read.status is Status.PASS, read.message
