"""The tools of the ecosystem issue, each run for real on quick cases: pydicom-seg-rb (producer and consumer),
dcmqi's bin2labelsegimage (producer), SimpleITK's ReadImage (consumer), itk-wasm's DICOM package (both, in its
own environment)."""

from __future__ import annotations

import pydicom
import pytest

from dicom4qi.model.results import Record, ResultsDocument, Status
from dicom4qi.model.uids import LABEL_MAP_SEGMENTATION_STORAGE
from dicom4qi.run.runner import RunConfig, run

from .conftest import CASES, FEATURES

CASE_IDS = [
    "quick/binary-3-disjoint",
    "quick/binary-unaligned-23x38",
    "quick/fractional-occupancy",
    "quick/labelmap-8bit-rle",
    "quick/labelmap-palette-16bit",
]


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> ResultsDocument:
    tmp = tmp_path_factory.mktemp("more-tools")
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=tmp / "build",
        results=tmp / "results",
        cases=CASE_IDS,
        producers=["reference", "pydicom-seg-rb", "dcmqi-bin2label", "itkwasm"],
        consumers=["reference", "pydicom-seg-rb", "simpleitk", "itkwasm"],
        workers=2,
        validate=False,
    )
    return ResultsDocument.load(run(cfg).path)


def _rec(doc: ResultsDocument, producer: str, consumer: str | None, case: str) -> Record:
    (rec,) = [r for r in doc.records if (r.producer, r.consumer, r.case) == (producer, consumer, case)]
    return rec


def test_real_versions_in_the_handshake(doc) -> None:
    tools = {(t.role, t.name): t for t in doc.tools}
    # The fork's own module still says 0.4.1: the version is the distribution's.
    assert tools[("producer", "pydicom-seg-rb")].version == "1.0.0"
    assert tools[("producer", "pydicom-seg-rb")].environment is None  # pydicom 3, numpy 2: the suite's own
    assert tools[("consumer", "simpleitk")].version == "2.5.7"
    assert tools[("producer", "dcmqi-bin2label")].version == "1.5.7"
    assert tools[("consumer", "pydicom-seg-rb")].family == "pydicom-seg"  # forked code votes once


def test_pydicom_seg_rb_writes_and_reads_binary_and_refuses_label_maps(doc) -> None:
    write = _rec(doc, "pydicom-seg-rb", None, "quick/binary-3-disjoint")
    assert write.status is Status.PASS, write.message
    assert any(n.startswith("pydicom_seg_rb.MultiClassWriter(") for n in write.notes)
    for producer in ("pydicom-seg-rb", "reference"):
        rec = _rec(doc, producer, "pydicom-seg-rb", "quick/binary-3-disjoint")
        assert rec.status is Status.PASS, rec.message
    lm = _rec(doc, "reference", "pydicom-seg-rb", "quick/labelmap-8bit-rle")
    assert lm.status is Status.ERROR and "not a DICOM-SEG storage" in lm.message


def test_bin2labelsegimage_writes_palette_and_rle_label_maps(doc) -> None:
    rle = _rec(doc, "dcmqi-bin2label", None, "quick/labelmap-8bit-rle")
    assert rle.status is Status.PASS, rle.message
    assert any(n.startswith("$ bin2labelsegimage") and "--compress rle" in n for n in rle.notes)
    assert rle.seg is not None and rle.seg.transfer_syntax_uid == "1.2.840.10008.1.2.5"
    palette = _rec(doc, "dcmqi-bin2label", None, "quick/labelmap-palette-16bit")
    assert palette.status is Status.PASS, palette.message
    assert any("--usePalette" in n and "--force16Bit" in n for n in palette.notes)
    assert palette.seg is not None and palette.seg.sop_class_uid == LABEL_MAP_SEGMENTATION_STORAGE
    run_dir = doc.run.run_dir
    ds = pydicom.dcmread(f"{run_dir}/{palette.seg.path}", stop_before_pixels=True)
    assert ds.PhotometricInterpretation == "PALETTE COLOR" and int(ds.BitsAllocated) == 16
    assert _rec(doc, "dcmqi-bin2label", "reference", "quick/labelmap-palette-16bit").status is Status.PASS
    # BINARY is not what it writes: declared, not forced.
    assert _rec(doc, "dcmqi-bin2label", None, "quick/binary-3-disjoint").status is Status.UNSUPPORTED


def test_simpleitk_reads_binary_frames_and_cannot_open_label_maps(doc) -> None:
    for case in ("quick/binary-3-disjoint", "quick/binary-unaligned-23x38", "quick/fractional-occupancy"):
        rec = _rec(doc, "reference", "simpleitk", case)
        assert rec.status is Status.PASS, (case, rec.message)
        assert any(n.startswith("SimpleITK.ReadImage(seg)") for n in rec.notes)
    lm = _rec(doc, "reference", "simpleitk", "quick/labelmap-8bit-rle")
    assert lm.status is Status.ERROR and "Unable to determine ImageIO reader" in lm.message


def test_itkwasm_compiles_once_in_the_handshake_then_writes_and_reads(doc) -> None:
    tools = {(t.role, t.name): t for t in doc.tools}
    consumer = tools[("consumer", "itkwasm")]
    assert consumer.version == "7.6.4" and consumer.environment == "itkwasm-dicom" and consumer.family == "dcmqi"
    assert consumer.warm_up and "counted in no cell" in consumer.warm_up
    write = _rec(doc, "itkwasm", None, "quick/binary-3-disjoint")
    assert write.status is Status.PASS, write.message
    assert any(n.startswith("itkwasm_dicom.write_multi_segmentation(") for n in write.notes)
    for producer in ("itkwasm", "reference"):
        rec = _rec(doc, producer, "itkwasm", "quick/binary-unaligned-23x38")
        assert rec.status is Status.PASS, (producer, rec.message)
    frac = _rec(doc, "reference", "itkwasm", "quick/fractional-occupancy")
    assert frac.status is Status.PASS, frac.message
    assert any("read_overlapping_segmentation" in n for n in frac.notes)
    # No label map support: the WebAssembly module traps (a recorded outcome, not a dead run).
    lm = _rec(doc, "reference", "itkwasm", "quick/labelmap-8bit-rle")
    assert lm.status is Status.ERROR and "wasm" in lm.message.lower()


def test_the_itkwasm_warm_up_says_what_the_cache_shows(tmp_path, monkeypatch) -> None:
    from dicom4qi.tools.itkwasm import warm_up

    monkeypatch.setenv("ITKWASM_CACHE_DIR", str(tmp_path / "cache"))

    def refused(_scratch):
        raise RuntimeError("Given file does not seem to be a segmentation")

    # Nothing compiled: said, with the call's own words, never claimed.
    said = warm_up("read_segmentation", refused)
    assert "not compiled in the warm-up" in said and "does not seem to be a segmentation" in said

    def compiles(_scratch):
        (tmp_path / "cache" / "module-123").write_bytes(b"wasm")
        raise RuntimeError("nothing to read")

    assert warm_up("read_segmentation", compiles).startswith("read_segmentation's WebAssembly module compiled into")
    assert "already compiled" in warm_up("read_segmentation", refused)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["module-123"]  # its scratch folder is gone
