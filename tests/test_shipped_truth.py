"""Objects from the wild that ship their truth: every reader is graded against it, voxel by voxel (not by agreement),
and dciodvfy validates every object from the wild."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from dicom4qi.adapters.contract import WriteRequest
from dicom4qi.corpus.wild import find_external
from dicom4qi.formats.exchange import write_truth
from dicom4qi.judge.validate import dciodvfy_path
from dicom4qi.model.results import GRADED_NOTE, Record, ResultsDocument, Status
from dicom4qi.model.truth import Truth
from dicom4qi.run.runner import RunConfig, run
from dicom4qi.tools.reference.producer import ReferenceProducer

from .conftest import CASES, FEATURES, loaded

CASE = "quick/binary-unaligned-23x38"  # three disjoint segments: one label file holds them


def _gathered(truth_of: Callable[[str], Truth], tmp_path: Path) -> Path:
    """A folder as `dicom4qi corpus wild` leaves it: one source with an object, its images and its label file."""
    truth = truth_of(CASE)
    wild = tmp_path / "wild"
    folder = wild / "elsewhere"
    (folder / "image").mkdir(parents=True)
    for k, p in enumerate(truth.source_paths):
        shutil.copyfile(p, folder / "image" / f"IMG{k:04d}.dcm")
    ReferenceProducer().write(WriteRequest(CASE, loaded(CASE).case, truth, folder / "seg.dcm"))
    exchange = tmp_path / "exchange"
    write_truth(truth, exchange)
    shutil.copyfile(exchange / "labelmap.nii.gz", folder / "label.nii.gz")
    numbers = [s.number for s in truth.segments]
    provenance = [{"id": "elsewhere", "graded": {"seg.dcm": {"truth": "label.nii.gz", "segments": numbers}}}]
    (wild / "provenance.json").write_text(json.dumps(provenance))
    return wild


def _run(wild: Path, tmp_path: Path) -> dict[tuple[str, str | None], Record]:
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=tmp_path / "build",
        results=tmp_path / "results",
        external=wild,
        consumers=["reference", "highdicom", "tests.fakes:LyingConsumer"],
        workers=2,
    )
    doc = ResultsDocument.load(run(cfg).path)
    return {(r.step, r.consumer): r for r in doc.records}


def test_the_scan_finds_the_shipped_truth(truth_of: Callable[[str], Truth], tmp_path: Path) -> None:
    wild = _gathered(truth_of, tmp_path)
    (obj,) = find_external(wild)
    assert obj.truth == (wild / "elsewhere" / "label.nii.gz").resolve() and obj.truth_segments == [1, 2, 3]
    # Given one source's folder alone, its provenance is found in the parent.
    (alone,) = find_external(wild / "elsewhere")
    assert alone.truth == obj.truth


def test_readers_are_graded_against_the_shipped_truth(truth_of: Callable[[str], Truth], tmp_path: Path) -> None:
    recs = _run(_gathered(truth_of, tmp_path), tmp_path)
    for reader in ("reference", "highdicom"):
        rec = recs[("read", reader)]
        assert rec.status is Status.PASS and rec.basis == "truth", (reader, rec.message)
        assert [(c.name, c.status.value) for c in rec.checks] == [("shipped-truth", "PASS")]
    liar = recs[("read", "tests.fakes:LyingConsumer")]
    # Graded against the truth, not outvoted: the message says what differs from which file.
    assert liar.status is Status.FAIL and liar.basis == "truth"
    assert "differs from the truth shipped beside the object (label.nii.gz)" in liar.message
    assert f"{GRADED_NOTE}label.nii.gz" in liar.notes
    assert "voxel(s) differ" in liar.message
    if dciodvfy_path() is not None:
        assert recs[("validate", "dciodvfy")].status is Status.PASS


def test_a_truth_that_disagrees_fails_every_reader_and_an_unusable_one_falls_back(
    truth_of: Callable[[str], Truth], tmp_path: Path
) -> None:
    # The label file has segment 3's voxels labelled 2: every faithful reader of the object differs from it.
    wild = _gathered(truth_of, tmp_path / "a")
    label = wild / "elsewhere" / "label.nii.gz"
    image = nib.load(label)
    assert isinstance(image, nib.Nifti1Image)
    data = np.asarray(image.dataobj)
    assert (data == 3).any()
    nib.save(nib.Nifti1Image(np.where(data == 3, 2, data).astype(data.dtype), image.affine, image.header), label)
    recs = _run(wild, tmp_path / "a")
    for reader in ("reference", "highdicom"):
        rec = recs[("read", reader)]
        assert rec.status is Status.FAIL and rec.basis == "truth", (reader, rec.message)
        assert "segment 2:" in rec.message and "segment 3:" in rec.message
    # A truth that cannot be placed on the images: judged by agreement, and the reads say why.
    wild = _gathered(truth_of, tmp_path / "b")
    (wild / "elsewhere" / "label.nii.gz").write_bytes(b"not an image")
    recs = _run(wild, tmp_path / "b")
    ref = recs[("read", "reference")]
    assert ref.status is Status.PASS and ref.basis == "consensus"
    assert any("its shipped truth is not used (label.nii.gz" in n for n in ref.notes)


@pytest.mark.skipif(dciodvfy_path() is None, reason="dciodvfy is not installed")
def test_objects_from_the_wild_are_validated(truth_of: Callable[[str], Truth], tmp_path: Path) -> None:
    wild = _gathered(truth_of, tmp_path)
    seg = wild / "elsewhere" / "seg.dcm"
    ds = pydicom.dcmread(seg)
    del ds.SegmentSequence[0].SegmentLabel  # Type 1 in the Segment Description Macro
    ds.save_as(seg)
    recs = _run(wild, tmp_path)
    rec = recs[("validate", "dciodvfy")]
    assert rec.status is Status.FAIL and rec.producer == "external"
    assert "SegmentLabel" in rec.message or "Segment Label" in rec.message
    assert "dciodvfy" in rec.artifacts
