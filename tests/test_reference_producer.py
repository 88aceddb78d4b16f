"""The reference producer: what it writes (dimensions, frame order, header) and that the reference decoder reads it back as the truth."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from io import BufferedIOBase
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from dicom4qi.adapters.contract import (
    DEFAULTS,
    EVERY_FEATURE,
    ReadRequest,
    WriteRequest,
    resolve,
)
from dicom4qi.corpus.synth import build_case
from dicom4qi.judge.compare import compare, verdict
from dicom4qi.model.case import Case, LoadedCase
from dicom4qi.model.color import dicom_lab_to_rgb
from dicom4qi.model.decoded import Decoded
from dicom4qi.model.results import CheckStatus
from dicom4qi.model.truth import Truth
from dicom4qi.tools.reference.consumer import ReferenceConsumer
from dicom4qi.tools.reference.pixels import NativeSink
from dicom4qi.tools.reference.producer import ReferenceProducer, rgb_to_dicom_lab

from .conftest import loaded

SEGMENT_NUMBER, SEGMENT_GROUP = 0x0062000B, 0x0062000A
POSITION, PLANE_POSITION_GROUP = 0x00200032, 0x00209113
TEMPORAL, FRAME_CONTENT_GROUP = 0x00209128, 0x00209111
FRAME_LABEL = 0x00209453
LABELMAP_SOP = "1.2.840.10008.5.1.4.1.1.66.7"

TruthOf = Callable[[str], Truth]


def _write(case_id: str, truth_of: TruthOf, out: Path, case: Case | None = None) -> tuple[Path, Truth]:
    truth = truth_of(case_id)
    path = out / f"{case_id.replace('/', '__')}.dcm"
    ReferenceProducer().write(WriteRequest(case_id, case or loaded(case_id).case, truth, path))
    return path, truth


def _decode(seg: Path, truth: Truth, workdir: Path) -> Decoded:
    writer = ReferenceConsumer().read(ReadRequest(seg, truth.source_paths))
    writer.write(workdir / f"{seg.stem}.npz")
    return Decoded(workdir / f"{seg.stem}.npz")


def _pointers(ds: Any) -> list[tuple[int, int]]:
    return [(int(d.DimensionIndexPointer), int(d.FunctionalGroupPointer)) for d in ds.DimensionIndexSequence]


def _nonempty_pairs(truth: Truth) -> set[tuple[int, int]]:
    """(segment, truth frame) of every frame where the segment has voxels."""
    out = set()
    with truth.masks() as masks:
        for number, crop in masks:
            for i in np.flatnonzero(crop.data.reshape(crop.data.shape[0], -1).any(axis=1)):
                out.add((number, crop.offset[0] + int(i)))
    return out


def _source_temporal_index(truth: Truth) -> dict[int, int]:
    """Frame number to Temporal Position Index in the (cine) multi-frame source."""
    src = pydicom.dcmread(truth.source_paths[0], stop_before_pixels=True)
    return {
        i + 1: int(fg.FrameContentSequence[0].TemporalPositionIndex)
        for i, fg in enumerate(src.PerFrameFunctionalGroupsSequence)
    }


# --------------------------------------------------------------------------- registry and declarations


def test_registered_and_claims_only_listed_features() -> None:
    assert resolve("producer", "reference") is ReferenceProducer
    assert "reference" in DEFAULTS["producer"]
    assert ReferenceProducer.features <= EVERY_FEATURE
    assert "slide-source" not in ReferenceProducer.features
    assert {"temporal", "projection-source", "segments-interleaved", "ts-rle"} <= ReferenceProducer.features
    assert frozenset({"binary", "ts-rle"}) in ReferenceProducer.unsupported_combinations


# --------------------------------------------------------------------------- cine


def test_cine_binary_uses_the_temporal_position_index(truth_of: TruthOf, tmp_path: Path) -> None:
    seg, truth = _write("quick/cine-mr-binary", truth_of, tmp_path)
    ds = pydicom.dcmread(seg)
    assert _pointers(ds) == [(SEGMENT_NUMBER, SEGMENT_GROUP), (TEMPORAL, FRAME_CONTENT_GROUP)]
    assert ds.DimensionOrganizationType == "3D_TEMPORAL"
    source_tpi = _source_temporal_index(truth)
    source_uid = pydicom.dcmread(truth.source_paths[0], stop_before_pixels=True).SOPInstanceUID
    order = []
    for fg in ds.PerFrameFunctionalGroupsSequence:
        ref = fg.DerivationImageSequence[0].SourceImageSequence[0]
        content = fg.FrameContentSequence[0]
        segment = int(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        assert ref.ReferencedSOPInstanceUID == source_uid
        assert ref.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
        assert int(content.TemporalPositionIndex) == source_tpi[int(ref.ReferencedFrameNumber)]
        assert list(content.DimensionIndexValues) == [segment, int(content.TemporalPositionIndex)]
        order.append((segment, int(content.TemporalPositionIndex)))
    assert order == sorted(order), "segment-major: segment by segment, time points ascending"
    # every non-empty (segment, time point) exactly once: empty frames omitted, none lost
    assert {(s, t - 1) for s, t in order} == _nonempty_pairs(truth)
    assert len(order) == len(set(order)) == int(ds.NumberOfFrames)


def test_cine_labelmap_has_one_dimension_and_no_segment_identification(truth_of: TruthOf, tmp_path: Path) -> None:
    seg, truth = _write("quick/cine-mr-labelmap", truth_of, tmp_path)
    ds = pydicom.dcmread(seg)
    assert ds.SOPClassUID == LABELMAP_SOP and ds.SegmentationType == "LABELMAP" and ds.BitsAllocated == 8
    assert _pointers(ds) == [(TEMPORAL, FRAME_CONTENT_GROUP)]
    assert all("SegmentIdentificationSequence" not in fg for fg in ds.PerFrameFunctionalGroupsSequence)
    times = [int(fg.FrameContentSequence[0].TemporalPositionIndex) for fg in ds.PerFrameFunctionalGroupsSequence]
    assert times == sorted(times) and len(times) == len({k for _, k in _nonempty_pairs(truth)})


# --------------------------------------------------------------------------- interleaved


def test_interleaved_frames_go_slice_by_slice(truth_of: TruthOf, tmp_path: Path) -> None:
    case_id = "quick/segments-interleaved"
    seg, truth = _write(case_id, truth_of, tmp_path)
    ds = pydicom.dcmread(seg)
    assert loaded(case_id).case.encoding.frame_order == "position-major"
    assert _pointers(ds) == [(POSITION, PLANE_POSITION_GROUP), (SEGMENT_NUMBER, SEGMENT_GROUP)]
    normal = np.cross(
        *np.reshape(
            [
                float(v)
                for v in ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
            ],
            (2, 3),
        )
    )
    frames = []
    for fg in ds.PerFrameFunctionalGroupsSequence:
        depth = float(np.asarray([float(v) for v in fg.PlanePositionSequence[0].ImagePositionPatient]) @ normal)
        segment = int(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        index = list(fg.FrameContentSequence[0].DimensionIndexValues)
        assert index[1] == segment
        frames.append((index[0], depth, segment))
    assert [(i, s) for i, _, s in frames] == sorted((i, s) for i, _, s in frames), "position first, then segment"
    depths = [d for _, d, _ in frames]
    assert depths == sorted(depths), "slices in order along the normal"
    segments_per_slice = [len(list(g)) for _, g in itertools.groupby(frames, key=lambda f: f[0])]
    assert max(segments_per_slice) > 1, "the case must put several segments on one slice, or nothing interleaves"
    # the same frames as segment-major would give, only in another order
    assert len(frames) == len(_nonempty_pairs(truth))


# --------------------------------------------------------------------------- round trip through the reference decoder


@pytest.mark.parametrize(
    "case_id",
    [
        "quick/cine-mr-binary",
        "quick/cine-mr-labelmap",
        "quick/segments-interleaved",
        "quick/projection-dx-binary",
        "quick/projection-cr-labelmap",
        "quick/segment-metadata",
        "quick/binary-unaligned-23x38",
        "quick/binary-unaligned-multiframe",
        "quick/binary-single-row",
        "quick/binary-frames-shuffled",
        "quick/binary-position-only",
        "quick/labelmap-partial-references",
        "quick/fractional-occupancy",
        "quick/fractional-max-1",
        "quick/labelmap-16bit-sparse-numbers",
        "quick/labelmap-palette-8bit",
        "quick/binary-explicit-be",
        "quick/labelmap-16bit-explicit-be",
    ],
)
def test_reference_decoder_reads_back_the_truth(case_id: str, truth_of: TruthOf, tmp_path: Path) -> None:
    seg, truth = _write(case_id, truth_of, tmp_path)
    labelmap = loaded(case_id).case.encoding.type.value == "LABELMAP"
    checks = compare(truth, _decode(seg, truth, tmp_path), labelmap=labelmap)
    ok, message = verdict(checks)
    assert ok, message
    by_name = {c.name: c for c in checks}
    assert by_name["voxels"].status is CheckStatus.PASS
    assert by_name["numbers-labels"].status is CheckStatus.PASS


def test_a_wrong_frame_is_caught(truth_of: TruthOf, tmp_path: Path) -> None:
    """The round trip can fail: give one frame of the interleaved object to another segment and it must."""
    seg, truth = _write("quick/segments-interleaved", truth_of, tmp_path)
    ds = pydicom.dcmread(seg)
    fg = ds.PerFrameFunctionalGroupsSequence[0]
    current = int(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
    fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber = current % len(truth.segments) + 1
    broken = tmp_path / "broken.dcm"
    ds.save_as(broken, enforce_file_format=True)
    ok, message = verdict(compare(truth, _decode(broken, truth, tmp_path), labelmap=False))
    assert not ok and "voxels" in message


def test_odd_sized_frames_pack_across_bytes(tmp_path: Path) -> None:
    """9 x 11 frames are 99 bits: frames start mid-byte, and Pixel Data is padded to an even length."""
    case = Case.model_validate(
        {
            "description": "odd sized BINARY frames, interleaved",
            "features": ["binary", "overlap", "single-frame-source", "segments-interleaved", "ts-explicit-le"],
            "tier": "quick",
            "source": {"rows": 9, "columns": 11, "frames": 7},
            "segments": {"count": 3, "generator": "ellipsoids", "overlap": True, "seed": 3, "fill": 0.5},
            "encoding": {"type": "BINARY", "bits": 1, "frame_order": "position-major"},
        }
    )
    truth = build_case(LoadedCase("test/odd", tmp_path / "odd.toml", case), tmp_path / "build")
    seg = tmp_path / "odd.dcm"
    ReferenceProducer().write(WriteRequest("test/odd", case, truth, seg))
    ds = pydicom.dcmread(seg)
    need = (int(ds.NumberOfFrames) * 99 + 7) // 8
    assert len(ds.PixelData) == need + need % 2
    ok, message = verdict(compare(truth, _decode(seg, truth, tmp_path), labelmap=False))
    assert ok, message


def _pack_by_hand(planes: list[np.ndarray]) -> bytes:
    """1-bit Pixel Data the slow, obvious way (PS3.5 8.1.1 and 8.2): pixel n of the whole frame sequence is bit
    n % 8 of byte n // 8, with no padding between frames; the value is padded to an even length."""
    out = bytearray((sum(p.size for p in planes) + 7) // 8)
    n = 0
    for plane in planes:
        for value in plane.ravel().tolist():
            if value:
                out[n // 8] |= 1 << (n % 8)
            n += 1
    if len(out) % 2:
        out.append(0)
    return bytes(out)


@pytest.mark.parametrize(
    "case_id",
    [
        "quick/binary-unaligned-23x38",
        "quick/binary-unaligned-multiframe",
        "quick/binary-single-row",
        "quick/binary-frames-shuffled",
    ],
)
def test_binary_pixel_data_is_packed_across_frames_byte_for_byte(
    case_id: str, truth_of: TruthOf, tmp_path: Path
) -> None:
    """The writer's packing against an independent packer, frame by frame in the object's own order."""
    seg, truth = _write(case_id, truth_of, tmp_path)
    ds = pydicom.dcmread(seg)
    if "unaligned-frames" in " ".join(loaded(case_id).case.features):
        assert (int(ds.Rows) * int(ds.Columns)) % 8  # the frames end mid-byte: what the case is for
    index = {key: k for k, key in enumerate(truth.frame_keys)}
    planes = []
    with truth.masks() as masks:
        crops = dict(masks)
    for fg in ds.PerFrameFunctionalGroupsSequence:
        number = int(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        ref = fg.DerivationImageSequence[0].SourceImageSequence[0]
        frame = ref.get("ReferencedFrameNumber")
        key = str(ref.ReferencedSOPInstanceUID) + (f"#{int(frame)}" if frame is not None else "")
        plane = np.zeros((truth.geometry.rows, truth.geometry.columns), dtype=bool)
        crop = crops.get(number)
        k = index[key]
        if crop is not None and crop.offset[0] <= k < crop.stop[0]:
            (z0, y0, x0), (_, y1, x1) = crop.offset, crop.stop
            plane[y0:y1, x0:x1] = crop.data[k - z0].astype(bool)
        planes.append(plane)
    assert len(planes) == int(ds.NumberOfFrames) > 1
    assert ds.PixelData == _pack_by_hand(planes)


def test_shuffled_frames_follow_neither_segments_nor_positions(truth_of: TruthOf, tmp_path: Path) -> None:
    seg, truth = _write("quick/binary-frames-shuffled", truth_of, tmp_path)
    ds = pydicom.dcmread(seg, stop_before_pixels=True)
    order = [
        (
            int(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber),
            int(fg.FrameContentSequence[0].DimensionIndexValues[1]),
        )
        for fg in ds.PerFrameFunctionalGroupsSequence
    ]
    assert order != sorted(order)  # not segment by segment
    assert order != sorted(order, key=lambda t: (t[1], t[0]))  # not slice by slice
    assert sorted(order) == sorted(set(order))  # every frame once


def test_position_only_frames_reference_no_instance(truth_of: TruthOf, tmp_path: Path) -> None:
    seg, _ = _write("quick/binary-position-only", truth_of, tmp_path)
    ds = pydicom.dcmread(seg, stop_before_pixels=True)
    assert "ReferencedSeriesSequence" not in ds
    assert all("DerivationImageSequence" not in fg for fg in ds.PerFrameFunctionalGroupsSequence)
    assert all("PlanePositionSequence" in fg for fg in ds.PerFrameFunctionalGroupsSequence)


def test_partial_references_list_only_the_segmented_instances(truth_of: TruthOf, tmp_path: Path) -> None:
    seg, truth = _write("quick/labelmap-partial-references", truth_of, tmp_path)
    ds = pydicom.dcmread(seg, stop_before_pixels=True)
    listed = {
        str(i.ReferencedSOPInstanceUID) for s in ds.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence
    }
    framed = {
        str(fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        for fg in ds.PerFrameFunctionalGroupsSequence
    }
    assert listed == framed and len(listed) < len(truth.frame_keys)  # some slices hold no segment: not listed


def test_a_palette_label_map_colours_its_segments_in_its_lookup_table(truth_of: TruthOf, tmp_path: Path) -> None:
    seg, truth = _write("quick/labelmap-palette-8bit", truth_of, tmp_path)
    ds = pydicom.dcmread(seg, stop_before_pixels=True)
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    assert all("RecommendedDisplayCIELabValue" not in item for item in ds.SegmentSequence)  # Sup 243: the LUT's job
    entries, first, bits = (int(v) for v in ds.RedPaletteColorLookupTableDescriptor)
    assert (first, bits) == (0, 16) and entries == max(s.number for s in truth.segments) + 1
    luts = [np.frombuffer(ds[tag].value, "<u2") for tag in (0x00281201, 0x00281202, 0x00281203)]
    for s in truth.segments:
        assert s.color_rgb is not None
        assert tuple(int(lut[s.number]) // 257 for lut in luts) == s.color_rgb
    assert tuple(int(lut[0]) for lut in luts) == (0, 0, 0)
    assert bytes(ds.ICCProfile[12:16]) == b"spac"  # PS3.3 C.11.15.1.1: an Input or ColorSpace profile


def test_fractional_type_and_maximum_are_written_as_asked(truth_of: TruthOf, tmp_path: Path) -> None:
    seg, _ = _write("quick/fractional-occupancy", truth_of, tmp_path)
    ds = pydicom.dcmread(seg, stop_before_pixels=True)
    assert (ds.SegmentationFractionalType, int(ds.MaximumFractionalValue)) == ("OCCUPANCY", 100)


# --------------------------------------------------------------------------- pieces


def test_native_sink_packs_little_endian_without_gaps(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    planes = [rng.random((3, 5)) > 0.5 for _ in range(3)]  # 15 bits a frame
    sink = NativeSink(tmp_path / "px.raw", 1)
    for p in planes:
        sink.add(p)
    _, value = sink.finish()
    assert isinstance(value, BufferedIOBase)  # the native sink hands over an open file
    data = value.read()
    sink.close()
    assert len(data) == 6  # 45 bits -> 6 bytes, already even
    bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")[:45].reshape(3, 3, 5)
    assert np.array_equal(bits.astype(bool), np.stack(planes))


def test_display_colour_round_trips() -> None:
    steps = range(0, 256, 51)
    for rgb in itertools.product(steps, steps, steps):
        back = dicom_lab_to_rgb(rgb_to_dicom_lab(rgb))
        assert max(abs(a - b) for a, b in zip(back, rgb)) <= 1, rgb
    assert rgb_to_dicom_lab((255, 255, 255)) == [65535, 32896, 32896]


def test_refusals_say_why(truth_of: TruthOf, tmp_path: Path) -> None:
    case = loaded("quick/binary-3-disjoint").case
    truth = truth_of("quick/binary-3-disjoint")
    for ts, words in (("RLELossless", "Bits Allocated 1"), ("JPEGLSLossless", "not written by the reference producer")):
        asked = case.model_copy(update={"encoding": case.encoding.model_copy(update={"transfer_syntax": ts})})
        with pytest.raises(ValueError, match=words):
            ReferenceProducer().write(WriteRequest("quick/binary-3-disjoint", asked, truth, tmp_path / "x.dcm"))
    assert not (tmp_path / "x.dcm").exists()


def test_highdicom_places_a_position_only_object_by_its_volume(truth_of: TruthOf, tmp_path: Path) -> None:
    """The real highdicom, on frames that name no source image: get_volume(), placed on the sources by position."""
    from dicom4qi.tools.highdicom.consumer import HighdicomConsumer

    seg, truth = _write("quick/binary-position-only", truth_of, tmp_path)
    writer = HighdicomConsumer().read(ReadRequest(seg, truth.source_paths))
    assert any("get_volume" in n for n in writer.notes), writer.notes
    writer.write(tmp_path / "hd.npz")
    ok, message = verdict(compare(truth, Decoded(tmp_path / "hd.npz"), labelmap=False))
    assert ok, message


# --------------------------------------------------------------------------- one segmentation in several instances


def _write_instances(case_id: str, truth_of: TruthOf, out: Path) -> tuple[list[Path], Truth]:
    truth = truth_of(case_id)
    path = out / "seg.dcm"
    request = WriteRequest(case_id, loaded(case_id).case, truth, path)
    ReferenceProducer().write(request)
    return [path, *request.instances], truth


@pytest.mark.parametrize("case_id", ["quick/binary-two-instances", "quick/labelmap-overlap-instances"])
def test_several_instances_are_one_series_and_their_union_is_the_truth(
    case_id: str, truth_of: TruthOf, tmp_path: Path
) -> None:
    from dicom4qi.model.decoded import merge_decoded

    paths, truth = _write_instances(case_id, truth_of, tmp_path)
    case = loaded(case_id).case
    assert [p.name for p in paths] == ["seg.dcm", "seg.2.dcm"]
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    assert len({h.SeriesInstanceUID for h in headers}) == 1
    assert len({h.SOPInstanceUID for h in headers}) == 2
    assert [int(h.InstanceNumber) for h in headers] == [1, 2]
    numbering = case.encoding.instance_numbering()
    for h, to_case in zip(headers, numbering):
        # BINARY numbers from 1 in each instance (PS3.3 C.8.20.2); a label map keeps the case's numbers
        assert [int(s.SegmentNumber) for s in h.SegmentSequence] == sorted(to_case)
        assert h.SegmentsOverlap == "NO"  # a label map instance holds no overlap; the BINARY case is disjoint
    parts = []
    for p in paths:
        d = _decode(p, truth, tmp_path)
        d.close()
        parts.append(tmp_path / f"{p.stem}.npz")
    merge_decoded(parts, tmp_path / "union.npz", numbering)
    union = Decoded(tmp_path / "union.npz")
    try:
        ok, msg = verdict(compare(truth, union, labelmap=case.encoding.type.value == "LABELMAP"))
    finally:
        union.close()
    assert ok, msg
    # One instance alone is not the segmentation: half its segments are missing.
    alone = Decoded(parts[0])
    try:
        ok, msg = verdict(compare(truth, alone, labelmap=case.encoding.type.value == "LABELMAP"))
    finally:
        alone.close()
    assert not ok and "segment" in msg


def test_big_endian_objects_hold_big_endian_values(truth_of: TruthOf, tmp_path: Path) -> None:
    """Explicit VR Big Endian: 16-bit labels most significant byte first (OW), 1-bit data the little-endian bytes (OB);
    pydicom's own decoder, independent of ours, finds the same labels."""
    seg, truth = _write("quick/labelmap-16bit-explicit-be", truth_of, tmp_path)
    ds = pydicom.dcmread(seg)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2" and ds["PixelData"].VR == "OW"
    raw = np.frombuffer(ds.PixelData, dtype=np.uint8)
    values = raw.view(">u2")
    assert set(np.unique(values).tolist()) <= {0, *(s.number for s in truth.segments)}
    assert raw[0::2].max() == 0 and raw[1::2].max() > 0  # the labels are < 256: their high byte comes first
    assert np.array_equal(ds.pixel_array.reshape(-1), values)
    case = loaded("quick/binary-explicit-be").case
    big_seg, _ = _write("quick/binary-explicit-be", truth_of, tmp_path / "be")
    as_le = case.model_copy(
        update={"encoding": case.encoding.model_copy(update={"transfer_syntax": "ExplicitVRLittleEndian"})}
    )
    little_seg, _ = _write("quick/binary-explicit-be", truth_of, tmp_path / "le", as_le)
    big, little = pydicom.dcmread(big_seg), pydicom.dcmread(little_seg)
    assert big.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2" and big["PixelData"].VR == "OB"
    assert big.PixelData == little.PixelData and np.array_equal(big.pixel_array, little.pixel_array)


def test_given_two_series_the_seg_is_placed_on_the_one_it_references(truth_of: TruthOf, tmp_path: Path) -> None:
    from dicom4qi.formats.source_frames import SourceFrames
    from dicom4qi.model.decoded import DecodedWriter

    seg, truth = _write("quick/binary-source-two-series", truth_of, tmp_path)
    ds = pydicom.dcmread(seg, stop_before_pixels=True)
    assert [s.SeriesInstanceUID for s in ds.ReferencedSeriesSequence] == [truth.series_uid]
    writer = ReferenceConsumer().read(ReadRequest(seg, truth.reader_source_paths))
    writer.write(tmp_path / "read.npz")
    decoded = Decoded(tmp_path / "read.npz")
    try:
        ok, msg = verdict(compare(truth, decoded, labelmap=False))
    finally:
        decoded.close()
    assert ok, msg
    # The right voxels on the decoy's slices (the series beside the referenced one) are a FAIL, not a PASS.
    decoy = SourceFrames(truth.reader_source_paths[: len(truth.decoy_files)])
    wrong = DecodedWriter(decoy.keys, truth.geometry.rows, truth.geometry.columns)
    with truth.masks() as masks:
        for number, crop in masks:
            wrong.add_segment(next(s for s in truth.segments if s.number == number))
            wrong.set_crop(number, crop)
    wrong.write(tmp_path / "wrong.npz")
    decoded = Decoded(tmp_path / "wrong.npz")
    try:
        ok, msg = verdict(compare(truth, decoded, labelmap=False))
    finally:
        decoded.close()
    assert not ok and "a series the SEG does not reference" in msg, msg
