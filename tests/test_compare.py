"""The comparison catches seeded defects and passes correct objects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dicom4qi.judge.compare import compare, verdict
from dicom4qi.model.decoded import Decoded, DecodedWriter
from dicom4qi.model.masks import Crop
from dicom4qi.model.results import CheckStatus
from dicom4qi.model.segment import Segment
from dicom4qi.model.truth import Truth

Mutator = Callable[[DecodedWriter, Truth], None]


def decode_truth(truth: Truth, path: Path, mutate: Mutator | None = None, *, order: list[int] | None = None) -> Decoded:
    """A perfect decoded object built from the truth, then mutated."""
    order = order if order is not None else list(range(len(truth.frame_keys)))
    keys = [truth.frame_keys[i] for i in order]
    w = DecodedWriter(keys, truth.geometry.rows, truth.geometry.columns, fractional=truth.fractional)
    for s in truth.segments:
        w.add_segment(
            Segment(
                number=s.number,
                label=s.label,
                category=s.category,
                type=s.type,
                tracking_id=s.tracking_id,
                tracking_uid=s.tracking_uid,
                color_rgb=s.color_rgb,
                description=s.description,
                type_modifier=s.type_modifier,
                anatomic_region=s.anatomic_region,
                anatomic_region_modifier=s.anatomic_region_modifier,
                algorithm_type=s.algorithm_type,
                algorithm_name=s.algorithm_name if s.algorithm_type != "MANUAL" else None,
                algorithm_version=s.algorithm_version if s.algorithm_type != "MANUAL" else None,
            )
        )
    g = truth.geometry
    w.geometry.orientation = list(g.orientation) if g.orientation is not None else None
    w.geometry.pixel_spacing = list(g.pixel_spacing)
    if g.positions is not None:
        w.geometry.positions = {truth.frame_keys[i]: list(g.positions[i]) for i in order}
    inverse = np.argsort(order)
    with truth.masks() as masks:
        for n, crop in masks:
            data = crop.data.astype(np.float32) / truth.fractional_max if truth.fractional else crop.data
            # re-index the frame axis into the decoded order
            dense = np.zeros((len(order), *data.shape[1:]), dtype=data.dtype)
            for z in range(data.shape[0]):
                dense[inverse[crop.offset[0] + z]] = data[z]
            w.set_crop(n, Crop((0, crop.offset[1], crop.offset[2]), dense))
    if mutate:
        mutate(w, truth)
    w.write(path)
    return Decoded(path)


def _checks(truth: Truth, tmp_path: Path, mutate: Mutator | None = None, **kw):
    decoded = decode_truth(truth, tmp_path / "d.npz", mutate, **kw)
    try:
        return compare(truth, decoded, labelmap=False)
    finally:
        decoded.close()


def _failed(checks) -> dict[str, str]:
    return {c.name: c.message for c in checks if c.status is CheckStatus.FAIL and not c.advisory}


@pytest.mark.parametrize(
    "case_id",
    ["quick/binary-3-disjoint", "quick/binary-overlap", "quick/fractional", "quick/oblique", "quick/empty-segment"],
)
def test_correct_objects_pass(truth_of, tmp_path: Path, case_id: str) -> None:
    checks = _checks(truth_of(case_id), tmp_path)
    assert verdict(checks) == (True, "")
    assert {c.name for c in checks} >= {
        "opened",
        "segment-count",
        "numbers-labels",
        "coded-concepts",
        "geometry",
        "voxels",
    }


def test_frames_in_another_order_still_pass(truth_of, tmp_path: Path) -> None:
    truth = truth_of("quick/binary-3-disjoint")
    order = list(range(len(truth.frame_keys)))[::-1]
    assert verdict(_checks(truth, tmp_path, order=order))[0]


def _edit(number: int, fn: Callable[[np.ndarray], np.ndarray]) -> Mutator:
    def mutate(w: DecodedWriter, truth: Truth) -> None:
        crop = w._crops[number]
        w._crops[number] = Crop(crop.offset, fn(crop.data.copy()))

    return mutate


def _flip_one(data: np.ndarray) -> np.ndarray:
    idx = tuple(int(i[0]) for i in np.nonzero(data))
    data[idx] = 0
    return data


def test_one_flipped_voxel_fails(truth_of, tmp_path: Path) -> None:
    truth = truth_of("quick/binary-3-disjoint")
    failed = _failed(_checks(truth, tmp_path, _edit(2, _flip_one)))
    assert set(failed) == {"voxels"}
    assert "segment 2 'Segment 2': 1 voxel(s) differ on 1 frame(s)" in failed["voxels"]
    assert "1 missing, 0 extra" in failed["voxels"]


def test_frame_shifted_by_one_fails(truth_of, tmp_path: Path) -> None:
    truth = truth_of("quick/binary-3-disjoint")

    def shift(w: DecodedWriter, t: Truth) -> None:
        c = w._crops[1]
        data = np.roll(c.data, 1, axis=0)
        w._crops[1] = Crop(c.offset, data)

    failed = _failed(_checks(truth, tmp_path, shift))
    assert "segment 1" in failed["voxels"] and "first frame" in failed["voxels"]


def test_two_segments_swapped_fail(truth_of, tmp_path: Path) -> None:
    truth = truth_of("quick/binary-3-disjoint")

    def swap(w: DecodedWriter, t: Truth) -> None:
        w._crops[1], w._crops[2] = w._crops[2], w._crops[1]

    failed = _failed(_checks(truth, tmp_path, swap))
    assert "segment 1" in failed["voxels"] and "segment 2" in failed["voxels"]


def test_wrong_label_fails(truth_of, tmp_path: Path) -> None:
    truth = truth_of("quick/segment-metadata")

    def relabel(w: DecodedWriter, t: Truth) -> None:
        w.segments[1].label = "Right kidney"

    failed = _failed(_checks(truth, tmp_path, relabel))
    assert failed == {"numbers-labels": "segment 2: label 'Right kidney', expected 'Left kidney'"}


def test_wrong_code_and_tracking_fail(truth_of, tmp_path: Path) -> None:
    truth = truth_of("quick/segment-metadata")

    def recode(w: DecodedWriter, t: Truth) -> None:
        w.segments[0].type = {"value": "64033007", "scheme": "SCT", "meaning": "Kidney"}
        w.segments[2].tracking_uid = "1.2.3"

    failed = _failed(_checks(truth, tmp_path, recode))
    assert "segment 1: type (64033007, SCT, 'Kidney'), expected (10200004, SCT, 'Liver')" in failed["coded-concepts"]
    assert "segment 3: tracking" in failed["tracking"]


def test_a_description_and_tracking_an_object_lacks_fail_only_for_a_complete_decoder(truth_of, tmp_path: Path) -> None:
    """A reader that reports no description is not checked on it; a check decoder, which reports every description
    and tracking identifier an object holds, finds them missing (the producer dropped them)."""
    truth = truth_of("quick/segment-metadata")

    def drop(w: DecodedWriter, t: Truth) -> None:
        for seg in w.segments:
            seg.description = None
            seg.tracking_id = seg.tracking_uid = None

    decoded = decode_truth(truth, tmp_path / "d.npz", drop)
    try:
        as_reader = _failed(compare(truth, decoded, labelmap=False))
        as_check = _failed(compare(truth, decoded, labelmap=False, complete=True))
    finally:
        decoded.close()
    assert as_reader == {}
    assert "segment 2: description none, expected 'Left kidney including the renal pelvis'" in as_check["descriptions"]
    assert "tracking" in as_check


def test_mirrored_orientation_fails(truth_of, tmp_path: Path) -> None:
    truth = truth_of("quick/oblique")

    def mirror_geometry(w: DecodedWriter, t: Truth) -> None:
        assert t.geometry.orientation is not None
        o = list(t.geometry.orientation)
        w.geometry.orientation = [-v for v in o[:3]] + o[3:]

    failed = _failed(_checks(truth, tmp_path, mirror_geometry))
    assert set(failed) == {"geometry"} and "orientation" in failed["geometry"]

    def mirror_pixels(w: DecodedWriter, t: Truth) -> None:
        for n, c in list(w._crops.items()):
            x0 = t.geometry.columns - c.stop[2]
            w._crops[n] = Crop((c.offset[0], c.offset[1], x0), c.data[:, :, ::-1].copy())

    failed = _failed(_checks(truth, tmp_path, mirror_pixels))
    assert set(failed) == {"voxels"}


def test_wrong_position_fails(truth_of, tmp_path: Path) -> None:
    truth = truth_of("quick/binary-3-disjoint")

    def move(w: DecodedWriter, t: Truth) -> None:
        uid = t.frame_keys[3]
        w.geometry.positions[uid] = [p + 0.5 for p in w.geometry.positions[uid]]

    failed = _failed(_checks(truth, tmp_path, move))
    assert "1 frame position(s) differ" in failed["geometry"] and "frame 3" in failed["geometry"]


@pytest.mark.parametrize("field", ["position", "orientation", "spacing"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_geometry_fails(truth_of, tmp_path: Path, field: str, value: float) -> None:
    """NaN compares false with everything: a check written as 'difference > tolerance' would pass it."""
    truth = truth_of("quick/binary-3-disjoint")

    def spoil(w: DecodedWriter, t: Truth) -> None:
        if field == "position":
            w.geometry.positions = {k: [value, value, value] for k in w.geometry.positions}
        elif field == "orientation":
            w.geometry.orientation = [value] * 6
        else:
            w.geometry.pixel_spacing = [value, value]

    failed = _failed(_checks(truth, tmp_path, spoil))
    assert "geometry" in failed and "not finite" in failed["geometry"]


def test_non_finite_fractional_values_fail(truth_of, tmp_path: Path) -> None:
    truth = truth_of("quick/fractional")

    def spoil(w: DecodedWriter, t: Truth) -> None:
        c = w._crops[1]
        data = c.data.copy()
        data[data > 0] = np.nan
        w._crops[1] = Crop(c.offset, data)

    failed = _failed(_checks(truth, tmp_path, spoil))
    assert "segment 1" in failed["voxels"] and "not finite" in failed["voxels"]


def test_fractional_tolerance_is_one_step(truth_of, tmp_path: Path) -> None:
    truth = truth_of("quick/fractional")
    step = 1.0 / truth.fractional_max

    def nudge(by: float) -> Mutator:
        def mutate(w: DecodedWriter, t: Truth) -> None:
            c = w._crops[1]
            data = c.data.copy()
            idx = tuple(int(i[0]) for i in np.nonzero(data > 0.5))
            data[idx] -= by
            w._crops[1] = Crop(c.offset, data)

        return mutate

    assert verdict(_checks(truth, tmp_path, nudge(step)))[0]
    failed = _failed(_checks(truth, tmp_path, nudge(2.5 * step)))
    assert "segment 1" in failed["voxels"] and "1 below" in failed["voxels"]


def test_missing_and_extra_segments_fail(truth_of, tmp_path: Path) -> None:
    truth = truth_of("quick/binary-3-disjoint")

    def drop(w: DecodedWriter, t: Truth) -> None:
        w.segments.pop(2)
        w._crops.pop(3)
        w.add_segment(Segment(number=7, label="ghost"))
        w._crops[7] = Crop((0, 0, 0), np.ones((1, 2, 2), dtype=bool))

    failed = _failed(_checks(truth, tmp_path, drop))
    assert "missing segment numbers 3" in failed["segment-count"]
    assert "unexpected segment numbers 7" in failed["segment-count"]
    assert "segment 7: 4 voxel(s) for a segment that does not exist" in failed["voxels"]


def test_pixels_on_unknown_frame_fail(truth_of, tmp_path: Path) -> None:
    truth = truth_of("quick/binary-3-disjoint")

    def foreign(w: DecodedWriter, t: Truth) -> None:
        w.frame_keys[5] = "1.2.3.4.5"

    failed = _failed(_checks(truth, tmp_path, foreign))
    assert "refer to no source frame" in failed["geometry"]


def test_many_differing_segments_are_summarized_as_ranges(truth_of, tmp_path: Path) -> None:
    truth = truth_of("quick/labelmap-16bit-300")

    def wrap(w: DecodedWriter, t: Truth) -> None:
        # what an 8-bit reader does to a 16-bit label map: 256.. become 0.., 257 lands on 1
        for n in range(256, 301):
            crop = w._crops.pop(n)
            if n % 256:
                w._crops[n % 256] = crop

    failed = _failed(_checks(truth, tmp_path, wrap))
    assert failed["voxels"].startswith("89 of 300 segments differ (1-44, 256-300)")


def test_reference_decoder_agrees_with_truth_on_every_highdicom_encoding(truth_of, tmp_path: Path) -> None:
    """The reference decoder in-process on highdicom objects: BINARY, FRACTIONAL, LABELMAP, compressed, multi-frame."""
    import highdicom  # noqa: F401 - the producer below needs it

    from dicom4qi.adapters.contract import ReadRequest, WriteRequest
    from dicom4qi.tools.highdicom.producer import HighdicomProducer
    from dicom4qi.tools.reference.consumer import ReferenceConsumer

    from .conftest import loaded

    for case_id in (
        "quick/binary-overlap",
        "quick/fractional-jpegls",
        "quick/labelmap-16bit-rle",
        "quick/multiframe-enhanced-ct",
        "quick/empty-frames-middle",
    ):
        case, truth = loaded(case_id), truth_of(case_id)
        seg = tmp_path / f"{case_id.replace('/', '_')}.dcm"
        HighdicomProducer().write(WriteRequest(case.id, case.case, truth, seg))
        writer = ReferenceConsumer().read(ReadRequest(seg, truth.source_paths))
        writer.write(tmp_path / "ref.npz")
        decoded = Decoded(tmp_path / "ref.npz")
        try:
            checks = compare(truth, decoded, labelmap=case.case.encoding.type.value == "LABELMAP")
        finally:
            decoded.close()
        assert verdict(checks) == (True, ""), (case_id, verdict(checks))
        geometry = next(c for c in checks if c.name == "geometry")
        assert geometry.status is CheckStatus.PASS and "frame positions" in geometry.message


def _segment(w: DecodedWriter, number: int) -> Segment:
    return next(s for s in w.segments if s.number == number)


def _description(w: DecodedWriter, number: int) -> str:
    description = _segment(w, number).description
    assert description is not None
    return description


@pytest.mark.parametrize(
    ("mutate", "check", "expected"),
    [
        (
            lambda w, t: setattr(
                _segment(w, 5), "anatomic_region", {"value": "64033007", "scheme": "SCT", "meaning": "Kidney"}
            ),
            "coded-concepts",
            "segment 5: anatomic region (64033007",
        ),
        (
            lambda w, t: setattr(
                _segment(w, 5), "anatomic_region_modifier", {"value": "7771000", "scheme": "SCT", "meaning": "Left"}
            ),
            "coded-concepts",
            "segment 5: anatomic region modifier (7771000",
        ),
        (
            lambda w, t: setattr(
                _segment(w, 2), "type_modifier", {"value": "24028007", "scheme": "SCT", "meaning": "Right"}
            ),
            "coded-concepts",
            "segment 2: type modifier (24028007",
        ),
        (
            lambda w, t: setattr(_segment(w, 5), "description", _description(w, 5)[:255]),
            "descriptions",
            "segment 5: description",
        ),
        (
            lambda w, t: setattr(_segment(w, 5), "algorithm_name", "TotalSegmentator-like"),
            "algorithms",
            "segment 5: algorithm name 'TotalSegmentator-like', expected 'Lesion grower'",
        ),
        (
            lambda w, t: setattr(_segment(w, 6), "algorithm_type", "AUTOMATIC"),
            "algorithms",
            "segment 6: algorithm type 'AUTOMATIC', expected 'MANUAL'",
        ),
    ],
)
def test_metadata_breadth_defects_are_caught(
    truth_of, tmp_path: Path, mutate: Mutator, check: str, expected: str
) -> None:
    truth = truth_of("quick/metadata-breadth")
    assert verdict(_checks(truth, tmp_path))[0]
    failed = _failed(_checks(truth, tmp_path, mutate))
    assert set(failed) == {check} and expected in failed[check]


def test_unreported_metadata_is_not_checked_rather_than_passed(truth_of, tmp_path: Path) -> None:
    def strip(w: DecodedWriter, t: Truth) -> None:
        for s in w.segments:
            s.description = s.anatomic_region = s.anatomic_region_modifier = s.type_modifier = None
            s.algorithm_type = s.algorithm_name = s.algorithm_version = None

    checks = {c.name: c for c in _checks(truth_of("quick/metadata-breadth"), tmp_path, strip)}
    assert checks["descriptions"].status is CheckStatus.NOT_CHECKED
    assert checks["algorithms"].status is CheckStatus.NOT_CHECKED
    assert checks["coded-concepts"].status is CheckStatus.PASS
    assert "not reported: type modifier, anatomic region, anatomic region modifier" in checks["coded-concepts"].message


@pytest.mark.parametrize("case_id", ["quick/projection-dx-binary", "quick/cine-mr-binary", "quick/uneven-spacing-gap"])
def test_new_sources_compare_clean_and_catch_a_shifted_frame(truth_of, tmp_path: Path, case_id: str) -> None:
    truth = truth_of(case_id)
    assert verdict(_checks(truth, tmp_path))[0]

    def shift(w: DecodedWriter, t: Truth) -> None:
        n, crop = next(iter(w._crops.items()))
        w._crops[n] = Crop((crop.offset[0], crop.offset[1] + 1, crop.offset[2]), crop.data)

    assert "voxels" in _failed(_checks(truth, tmp_path, shift))


# --------------------------------------------------------------------------- the union of several instances


def _part(truth: Truth, path: Path, to_case: dict[int, int], order: list[int]) -> Path:
    """A decoding of one instance holding ``to_case``'s segments (under the instance's numbers), frames in ``order``."""

    def keep(w: DecodedWriter, _truth: Truth) -> None:
        w.segments = [replace(s, number=n) for n, c in to_case.items() for s in w.segments if s.number == c]
        crops = {n: w._crops[c] for n, c in to_case.items() if c in w._crops}
        w._crops.clear()
        w._crops.update(crops)

    decode_truth(truth, path, keep, order=order).close()
    return path


def test_the_union_of_instances_decoded_apart_is_graded_as_one(truth_of, tmp_path: Path) -> None:
    from dicom4qi.model.decoded import merge_decoded

    truth = truth_of("quick/binary-3-disjoint")
    n = len(truth.frame_keys)
    first = _part(truth, tmp_path / "1.npz", {1: 1, 2: 2}, list(range(n)))
    second = _part(truth, tmp_path / "2.npz", {1: 3}, list(reversed(range(n))))  # another frame order
    merge_decoded([first, second], tmp_path / "union.npz", [{1: 1, 2: 2}, {1: 3}])
    union = Decoded(tmp_path / "union.npz")
    try:
        ok, msg = verdict(compare(truth, union, labelmap=False))
        assert ok, msg
    finally:
        union.close()
    # Without the numbering, instance 2's segment 1 clashes with instance 1's.
    with pytest.raises(ValueError, match="segment 1 is decoded from instance 1 and 2"):
        merge_decoded([first, second], tmp_path / "clash.npz")
    # A reader that loses the second instance's segment fails: the union lacks it.
    merge_decoded([first], tmp_path / "half.npz", [{1: 1, 2: 2}])
    half = Decoded(tmp_path / "half.npz")
    try:
        ok, msg = verdict(compare(truth, half, labelmap=False))
        assert not ok and "3" in msg
    finally:
        half.close()
