"""Whole slide image sources: the synthesized TILED_FULL slide, highdicom's tiled SEG, and the readers that place tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom4qi.adapters.contract import Consumer, ReadRequest, WriteRequest
from dicom4qi.formats.source_frames import SourceFrames
from dicom4qi.judge.compare import compare, verdict
from dicom4qi.model.decoded import Decoded
from dicom4qi.model.truth import Truth
from dicom4qi.tools.highdicom.consumer import HighdicomConsumer
from dicom4qi.tools.highdicom.producer import HighdicomProducer
from dicom4qi.tools.reference.consumer import ReferenceConsumer, tiled_full_layout

from .conftest import loaded

BINARY = "quick/slide-tiled-full-binary"  # 500x520 in 128-pixel tiles: the last row and column of tiles are padded
CELLS = "quick/slide-cells-labelmap"  # 300 cells, 16-bit LABELMAP


def _union(truth: Truth) -> np.ndarray:
    """Where any segment of the truth lies, on the (rows, columns) total pixel matrix."""
    out = np.zeros((truth.geometry.rows, truth.geometry.columns), dtype=bool)
    with truth.masks() as masks:
        for _, crop in masks:
            (_, y0, x0), (_, y1, x1) = crop.offset, crop.stop
            out[y0:y1, x0:x1] |= crop.data[0].astype(bool)
    return out


def _write(case_id: str, truth: Truth, path: Path) -> Path:
    case = loaded(case_id)
    HighdicomProducer().write(WriteRequest(case.id, case.case, truth, path))
    return path


def _decode(consumer: Consumer, seg: Path, truth: Truth, tmp_path: Path, labelmap: bool) -> tuple[bool, str, list[str]]:
    writer = consumer.read(ReadRequest(seg, truth.source_paths))
    out = tmp_path / f"{consumer.name}.npz"
    writer.write(out)
    decoded = Decoded(out)
    try:
        ok, message = verdict(compare(truth, decoded, labelmap=labelmap))
    finally:
        decoded.close()
    return ok, message, writer.notes


def test_the_slide_source_reads_back_and_its_tiles_reassemble(truth_of) -> None:
    truth = truth_of(BINARY)
    (path,) = truth.source_paths
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.77.1.6" and ds.Modality == "SM"
    assert ds.DimensionOrganizationType == "TILED_FULL" and "PerFrameFunctionalGroupsSequence" not in ds
    assert (ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns, ds.Rows, ds.Columns) == (500, 520, 128, 128)
    assert int(ds.NumberOfFrames) == 4 * 5 and ds.BitsAllocated == 8 and ds.PhotometricInterpretation == "MONOCHROME2"
    assert truth.frame_keys == [ds.SOPInstanceUID]
    # Reassemble by the TILED_FULL order, written out here independently: columns of tiles fastest.
    tiles = ds.pixel_array
    padded = np.zeros((4 * 128, 5 * 128), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, 5)
        padded[r * 128 : (r + 1) * 128, c * 128 : (c + 1) * 128] = tile
    assert not padded[500:].any() and not padded[:, 520:].any()  # the padding of the edge tiles is 0
    matrix = padded[:500, :520]
    assert np.array_equal(matrix > 50, _union(truth))  # bright exactly where the truth has segments
    src = SourceFrames(truth.source_paths)
    assert src.slide and not src.has_geometry and src.keys == truth.frame_keys
    assert (src.rows, src.columns, src.tile_rows, src.tile_columns) == (500, 520, 128, 128)
    assert src.pixel_spacing == [0.00025, 0.00025]


def test_tiled_full_order_is_columns_then_rows_then_segments() -> None:
    layout = tiled_full_layout(2 * 2 * 3, (200, 300), (100, 100), [2, 1])
    assert layout.segment.tolist() == [1] * 6 + [2] * 6  # ascending Segment Number, slowest
    assert layout.row.tolist()[:6] == [0, 0, 0, 100, 100, 100]
    assert layout.column.tolist()[:6] == [0, 100, 200, 0, 100, 200]
    labels = tiled_full_layout(6, (200, 300), (100, 100), [])  # a label map: one set of tiles
    assert labels.segment.tolist() == [0] * 6
    with pytest.raises(ValueError, match=r"Number of Frames is 11, .* 2 x 3 = 6 tiles x 2 segments: 12 frames"):
        tiled_full_layout(11, (200, 300), (100, 100), [1, 2])


@pytest.mark.parametrize("case_id", [BINARY, CELLS])
def test_highdicom_tiled_full_seg_is_decoded_exactly(truth_of, tmp_path: Path, case_id: str) -> None:
    truth = truth_of(case_id)
    seg = _write(case_id, truth, tmp_path / "seg.dcm")
    ds = pydicom.dcmread(seg, stop_before_pixels=True)
    labelmap = ds.SegmentationType == "LABELMAP"
    assert ds.DimensionOrganizationType == "TILED_FULL" and "PerFrameFunctionalGroupsSequence" not in ds
    tiles = 20 if case_id == BINARY else 9
    assert int(ds.NumberOfFrames) == tiles * (1 if labelmap else len(ds.SegmentSequence))
    for consumer in (HighdicomConsumer(), ReferenceConsumer()):
        ok, message, notes = _decode(consumer, seg, truth, tmp_path, labelmap)
        assert ok, (consumer.name, message)
    assert any("TILED_FULL implicit order" in n for n in notes)  # the reference placed them by the order


def test_a_wrong_tile_order_is_caught(truth_of, tmp_path: Path) -> None:
    """Swap two tiles of segment 1 in the pixel data: the reference decoder must then differ from the truth."""
    truth = truth_of(BINARY)
    ds = pydicom.dcmread(_write(BINARY, truth, tmp_path / "seg.dcm"))
    size = 128 * 128 // 8
    data = bytearray(ds.PixelData)
    frames = [bytes(data[i * size : (i + 1) * size]) for i in range(20)]  # segment 1's tiles
    busy = [i for i, f in enumerate(frames) if any(f)]
    a, b = busy[0], next(i for i in range(20) if frames[i] != frames[busy[0]])
    data[a * size : (a + 1) * size], data[b * size : (b + 1) * size] = frames[b], frames[a]
    ds.PixelData = bytes(data)
    ds.save_as(tmp_path / "swapped.dcm")
    ok, message, _ = _decode(ReferenceConsumer(), tmp_path / "swapped.dcm", truth, tmp_path, False)
    assert not ok and "voxels" in message


def test_reference_refuses_a_tiled_full_object_whose_frames_do_not_fit(truth_of, tmp_path: Path) -> None:
    truth = truth_of(BINARY)
    ds = pydicom.dcmread(_write(BINARY, truth, tmp_path / "seg.dcm"))
    ds.NumberOfFrames = 79
    ds.PixelData = ds.PixelData[: 79 * 128 * 128 // 8]
    ds.save_as(tmp_path / "short.dcm")
    with pytest.raises(
        ValueError, match=r"TILED_FULL: Number of Frames is 79, .* 4 x 5 = 20 tiles x 4 segments: 80 frames"
    ):
        ReferenceConsumer().read(ReadRequest(tmp_path / "short.dcm", truth.source_paths))


def test_reference_refuses_a_total_pixel_matrix_that_is_not_the_slides(truth_of, tmp_path: Path) -> None:
    truth = truth_of(BINARY)
    ds = pydicom.dcmread(_write(BINARY, truth, tmp_path / "seg.dcm"))
    origin = ds.TotalPixelMatrixOriginSequence[0]
    origin.XOffsetInSlideCoordinateSystem = f"{float(origin.XOffsetInSlideCoordinateSystem) - 0.00025:.6f}"
    ds.save_as(tmp_path / "shifted.dcm")
    with pytest.raises(ValueError, match=r"\+1.00 rows, \+0.00 columns from the slide's"):
        ReferenceConsumer().read(ReadRequest(tmp_path / "shifted.dcm", truth.source_paths))


def test_reference_places_tiled_sparse_frames_by_plane_position(truth_of, tmp_path: Path) -> None:
    """highdicom's default for slides: TILED_SPARSE with empty tiles omitted, placed by Plane Position (Slide)."""
    import highdicom as hd

    from dicom4qi.model.masks import labelmap_from_crops
    from dicom4qi.tools.highdicom.producer import segment_description

    truth = truth_of(BINARY)
    source = pydicom.dcmread(truth.source_paths[0], stop_before_pixels=True)
    with truth.masks() as masks:
        pixels = labelmap_from_crops(dict(masks), truth.shape, dtype=np.uint8)
    seg = hd.seg.Segmentation(
        source_images=[source],
        pixel_array=pixels,
        segmentation_type="BINARY",
        segment_descriptions=[segment_description(s) for s in truth.segments],
        series_instance_uid=hd.UID(),
        series_number=1,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="t",
        manufacturer_model_name="t",
        software_versions="t",
        device_serial_number="1",
        tile_pixel_array=True,
    )
    assert seg.DimensionOrganizationType == "TILED_SPARSE" and int(seg.NumberOfFrames) < 80
    seg.save_as(tmp_path / "sparse.dcm")
    ok, message, notes = _decode(ReferenceConsumer(), tmp_path / "sparse.dcm", truth, tmp_path, False)
    assert ok, message
    assert any("Plane Position (Slide)" in n for n in notes)


@pytest.mark.parametrize(
    ("kind", "bits", "extra"),
    [("FRACTIONAL", 8, {"fractional": True, "overlap": True}), ("BINARY", 1, {"overlap": True})],
)
def test_overlapping_and_fractional_slide_segments_are_read_segment_by_segment(
    tmp_path: Path, kind: str, bits: int, extra: dict[str, bool]
) -> None:
    """No corpus case has them yet: an in-memory case on a 300x260 slide in 64-pixel tiles (edge tiles padded)."""
    from dicom4qi.corpus.synth import build_case
    from dicom4qi.model.case import Case, LoadedCase

    case = Case.model_validate(
        {
            "description": "overlapping slide segments",
            "features": ["slide-source"],
            "tier": "quick",
            "source": {
                "modality": "SM",
                "layout": "slide-tiled-full",
                "rows": 300,
                "columns": 260,
                "frames": 1,
                "tile": 64,
                "pixel_spacing": [0.0005, 0.0005],
                "slice_spacing": 0.05,
            },
            "segments": {"count": 6, "generator": "ellipsoids", "seed": 3, "fill": 0.3, **extra},
            "encoding": {"type": kind, "bits": bits},
        }
    )
    lc = LoadedCase(f"quick/slide-{kind.lower()}", tmp_path / "case.toml", case)
    truth = build_case(lc, tmp_path / "build")
    seg = tmp_path / "seg.dcm"
    HighdicomProducer().write(WriteRequest(lc.id, case, truth, seg))
    assert int(pydicom.dcmread(seg, stop_before_pixels=True).NumberOfFrames) == 5 * 5 * 6
    for consumer in (HighdicomConsumer(), ReferenceConsumer()):
        ok, message, notes = _decode(consumer, seg, truth, tmp_path, False)
        assert ok, (consumer.name, message)
        assert any("segment" in n for n in notes)
