"""Compare what a consumer decoded with the truth, segment by segment.

Memory stays bounded: one truth crop and one decoded crop (inside their union
box) are in memory at a time. Every failure message names the segment, the
source frame and how many voxels differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

import numpy as np

from dicom4qi.model.decoded import Decoded
from dicom4qi.model.masks import Crop
from dicom4qi.model.results import Check, CheckStatus
from dicom4qi.model.segment import Code, Segment
from dicom4qi.model.truth import Geometry

__all__ = ["Expected", "agreement", "compare", "first_voxel_difference", "verdict"]


class MaskSource(Protocol):
    def get(self, number: int) -> Crop | None: ...


class Expected(Protocol):
    """What a decoding is compared with: the case's truth (:class:`dicom4qi.model.truth.Truth`), or what an
    object holds as an independent decoder decoded it (:class:`dicom4qi.judge.content.ObjectContent`)."""

    @property
    def frame_keys(self) -> list[str]: ...

    @property
    def geometry(self) -> Geometry: ...

    @property
    def segments(self) -> list[Segment]: ...

    @property
    def fractional(self) -> bool: ...

    @property
    def fractional_scale(self) -> float: ...

    @property
    def fractional_step(self) -> float: ...

    def masks(self) -> AbstractContextManager[MaskSource]: ...


#: Tolerances: positions in mm, direction cosines, spacing (relative), colour per RGB channel.
POSITION_TOL_MM = 0.01
ORIENTATION_TOL = 1e-3
SPACING_RTOL = 1e-3
COLOR_TOL = 3
_MAX_LISTED = 5


def _pass(name: str, message: str = "", advisory: bool = False) -> Check:
    return Check(name=name, status=CheckStatus.PASS, message=message, advisory=advisory)


def _fail(name: str, problems: list[str], advisory: bool = False) -> Check:
    shown = "; ".join(problems[:_MAX_LISTED])
    if len(problems) > _MAX_LISTED:
        shown += f"; and {len(problems) - _MAX_LISTED} more"
    return Check(name=name, status=CheckStatus.FAIL, message=shown, advisory=advisory)


def _not_checked(name: str, message: str, advisory: bool = False) -> Check:
    return Check(name=name, status=CheckStatus.NOT_CHECKED, message=message, advisory=advisory)


def _seg_name(info: Segment | None, number: int) -> str:
    return f"segment {number}" + (f" {info.label!r}" if info else "")


def _code_str(c: Code | None) -> str:
    return "none" if not c else f"({c.get('value')}, {c.get('scheme')}, {c.get('meaning')!r})"


def _same_code(a: Code | None, b: Code | None) -> bool:
    if not a or not b:
        return a == b
    return (a.get("value"), a.get("scheme")) == (b.get("value"), b.get("scheme"))


def _is_background(seg: Segment, labelmap: bool) -> bool:
    """Segment 0 of a label map stands for the background (Sup 243) and is not a segment."""
    return labelmap and seg.number == 0


def _check_segments(truth: Expected, segs: list[Segment], complete: bool = False) -> list[Check]:
    checks: list[Check] = []
    expected = {s.number: s for s in truth.segments}
    got = {s.number: s for s in segs}
    problems = []
    if len(segs) != len(got):
        problems.append("a segment number is reported twice")
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing:
        problems.append(f"missing segment numbers {_short(missing)}")
    if extra:
        problems.append(f"unexpected segment numbers {_short(extra)}")
    count_msg = f"{len(got)} segments, expected {len(expected)}"
    checks.append(_fail("segment-count", [count_msg, *problems]) if problems else _pass("segment-count", count_msg))

    label_problems = [
        f"segment {n}: label {got[n].label!r}, expected {info.label!r}"
        for n, info in expected.items()
        if n in got and got[n].label != info.label
    ]
    checks.append(_fail("numbers-labels", label_problems) if label_problems else _pass("numbers-labels"))

    common = [n for n in expected if n in got]
    checks.append(_check_codes(expected, got, common))
    described = [n for n in common if expected[n].description]
    if described:
        if not complete and all(got[n].description is None for n in described):
            checks.append(_not_checked("descriptions", "the consumer reports no segment descriptions"))
        else:
            dp = [
                f"segment {n}: description {_clip(got[n].description)}, expected {_clip(expected[n].description)}"
                for n in described
                if got[n].description != expected[n].description
            ]
            checks.append(_fail("descriptions", dp) if dp else _pass("descriptions", f"{len(described)} compared"))
    checks.append(_check_algorithms(expected, got, common))
    tracked = [n for n in common if expected[n].tracking_id or expected[n].tracking_uid]
    if tracked:
        if not complete and all(got[n].tracking_id is None and got[n].tracking_uid is None for n in tracked):
            checks.append(_not_checked("tracking", "the consumer reports no tracking identifiers"))
        else:
            tp = [
                f"segment {n}: tracking ({got[n].tracking_id!r}, {got[n].tracking_uid}), "
                f"expected ({expected[n].tracking_id!r}, {expected[n].tracking_uid})"
                for n in tracked
                if (got[n].tracking_id, got[n].tracking_uid) != (expected[n].tracking_id, expected[n].tracking_uid)
            ]
            checks.append(_fail("tracking", tp) if tp else _pass("tracking"))

    coloured = {
        n: (g, e) for n in common if (e := expected[n].color_rgb) is not None and (g := got[n].color_rgb) is not None
    }
    if not coloured:
        checks.append(_not_checked("display-color", "no display colours reported", advisory=True))
    else:
        cp = [
            f"segment {n}: colour {tuple(g)}, expected {tuple(e)}"
            for n, (g, e) in coloured.items()
            if max(abs(a - b) for a, b in zip(g, e)) > COLOR_TOL
        ]
        checks.append(_fail("display-color", cp, advisory=True) if cp else _pass("display-color", advisory=True))
    return checks


#: Coded attributes of a segment: always compared (category, type) or where the truth has them.
_CODES = ("category", "type", "type_modifier", "anatomic_region", "anatomic_region_modifier")
_OPTIONAL_CODES = frozenset(_CODES[2:])


def _check_codes(expected: dict[int, Segment], got: dict[int, Segment], common: list[int]) -> Check:
    """Category and type for every segment; modifiers and anatomic region where the truth has them.

    An attribute the consumer reports for no segment at all is not checked (the adapter cannot
    see it), and the message says which.
    """
    problems: list[str] = []
    compared: list[str] = []
    unseen: list[str] = []
    for attr in _CODES:
        wanted = [n for n in common if attr not in _OPTIONAL_CODES or getattr(expected[n], attr)]
        if not wanted:
            continue
        if all(getattr(got[n], attr) is None for n in wanted):
            unseen.append(attr.replace("_", " "))
            continue
        compared.append(attr.replace("_", " "))
        for n in wanted:
            want, have = getattr(expected[n], attr), getattr(got[n], attr)
            if not _same_code(want, have):
                problems.append(f"segment {n}: {attr.replace('_', ' ')} {_code_str(have)}, expected {_code_str(want)}")
    if problems:
        return _fail("coded-concepts", problems)
    if not compared:
        return _not_checked("coded-concepts", "the consumer reports no coded concepts")
    note = f"compared {', '.join(compared)}" + (f"; not reported: {', '.join(unseen)}" if unseen else "")
    return _pass("coded-concepts", note)


def _check_algorithms(expected: dict[int, Segment], got: dict[int, Segment], common: list[int]) -> Check:
    """Segment Algorithm Type, and the algorithm's name and version where the consumer reports them."""
    problems: list[str] = []
    compared = set()
    for n in common:
        e, g = expected[n], got[n]
        for attr in ("algorithm_type", "algorithm_name", "algorithm_version"):
            have, want = getattr(g, attr), getattr(e, attr)
            if attr != "algorithm_type" and e.algorithm_type == "MANUAL":
                continue  # a manual segment has no algorithm identification
            if have is None or want is None:
                continue  # not reported (by the consumer, or by the check decoder that says what an object holds)
            compared.add(attr.split("_")[1])
            if str(have) != str(want):
                problems.append(f"segment {n}: {attr.replace('_', ' ')} {have!r}, expected {want!r}")
    if problems:
        return _fail("algorithms", problems)
    if not compared:
        return _not_checked("algorithms", "the consumer reports no algorithm identification")
    return _pass("algorithms", "compared " + ", ".join(sorted(compared)))


def _clip(text: str | None, width: int = 40) -> str:
    if text is None:
        return "none"
    return repr(text if len(text) <= width else text[:width] + "...")


def _short(numbers: list[int]) -> str:
    s = ", ".join(map(str, numbers[:10]))
    return s + (f", ... ({len(numbers)} in all)" if len(numbers) > 10 else "")


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7, 9, 10] as '1-3, 7, 9-10'."""
    runs: list[list[int]] = []
    for n in sorted(set(numbers)):
        if runs and runs[-1][1] == n - 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _values(v: object) -> np.ndarray:
    try:
        return np.asarray(v, dtype=float)
    except (TypeError, ValueError):
        return np.full(1, np.nan)


def _within(have: np.ndarray, want: np.ndarray, tol: float, *, relative: bool = False) -> bool:
    """Whether ``have`` is ``want`` within ``tol``: same shape, every value finite (NaN compares false with
    anything, so a plain ``diff > tol`` would pass it), the largest difference at most ``tol``."""
    if have.shape != want.shape or not np.all(np.isfinite(have)):
        return False
    diff = np.abs(have - want) / (np.abs(want) if relative else 1.0)
    return bool(np.all(diff <= tol))


def _shown(v: np.ndarray, digits: int) -> str:
    text = str(np.round(v, digits).tolist())
    return text + ("" if np.all(np.isfinite(v)) else " (not finite)")


def _check_geometry(truth: Expected, decoded: Decoded) -> Check:
    g = decoded.geometry
    index = {uid: i for i, uid in enumerate(truth.frame_keys)}
    given = set(getattr(truth, "decoy_keys", ()))  # a series the reader was given beside the source: listed, not wrong
    unknown = [k for k in decoded.frame_keys if k not in index and k not in given]
    problems: list[str] = []
    if unknown:
        problems.append(f"{len(unknown)} decoded frame(s) refer to no source frame (first {unknown[0]})")
    if len(set(decoded.frame_keys)) != len(decoded.frame_keys):
        problems.append("a source frame appears twice in the decoded frame list")
    if (decoded.rows, decoded.columns) != (truth.geometry.rows, truth.geometry.columns):
        problems.append(
            f"decoded matrix {decoded.rows}x{decoded.columns}, source {truth.geometry.rows}x{truth.geometry.columns}"
        )
    compared: list[str] = []
    if g.orientation is not None and truth.geometry.orientation is not None:
        compared.append("orientation")
        want = np.asarray(truth.geometry.orientation, dtype=float)
        have = _values(g.orientation)
        if not _within(have, want, ORIENTATION_TOL):
            problems.append(f"orientation {_shown(have, 4)}, source {np.round(want, 4).tolist()}")
    if g.pixel_spacing is not None and truth.geometry.pixel_spacing is not None:
        compared.append("pixel spacing")
        want = np.asarray(truth.geometry.pixel_spacing, dtype=float)
        have = _values(g.pixel_spacing)
        if not _within(have, want, SPACING_RTOL, relative=True):
            problems.append(f"pixel spacing {_shown(have, 6)}, source {want.tolist()}")
    if g.positions and truth.geometry.positions is not None:
        compared.append(f"{sum(k in index for k in g.positions)} frame positions")
        bad = []
        for key, pos in g.positions.items():
            if key not in index:
                continue
            want = np.asarray(truth.geometry.positions[index[key]], dtype=float)
            have = _values(pos)
            if not _within(have, want, POSITION_TOL_MM):
                bad.append((index[key], have, want))
        if bad:
            i, have, want = bad[0]
            problems.append(
                f"{len(bad)} frame position(s) differ from the source; first: frame {i} at "
                f"{_shown(have, 3)}, source {np.round(want, 3).tolist()}"
            )
    if problems:
        return _fail("geometry", problems)
    if not compared:
        return _not_checked("geometry", "the consumer reports frames by source UID only, no positions")
    return _pass("geometry", ", ".join(compared))


def _to_truth_frames(crop: Crop, frame_map: np.ndarray) -> Crop | str:
    """Re-index a decoded crop's frame axis onto the truth's frame order."""
    z0, z1 = crop.offset[0], crop.stop[0]
    if z0 < 0 or z1 > len(frame_map):
        return f"pixels on frames {z0}..{z1 - 1} but only {len(frame_map)} frames decoded"
    target = frame_map[z0:z1]
    has = crop.data.reshape(crop.data.shape[0], -1).any(axis=1)
    if np.any(target[has] < 0):
        return "pixels on a frame that is not in the source series"
    if np.all(np.diff(target) == 1):
        return Crop((int(target[0]), crop.offset[1], crop.offset[2]), crop.data)
    keep = target >= 0
    t = target[keep]
    lo, hi = int(t.min()), int(t.max())
    out = np.zeros((hi - lo + 1, *crop.data.shape[1:]), dtype=crop.data.dtype)
    out[t - lo] = crop.data[keep]
    return Crop((lo, crop.offset[1], crop.offset[2]), out)


def _union(a: Crop | None, b: Crop | None) -> tuple[np.ndarray, np.ndarray]:
    crops = [c for c in (a, b) if c is not None]
    lo = np.min([c.offset for c in crops], axis=0)
    hi = np.max([c.stop for c in crops], axis=0)
    return lo, hi


def _place(crop: Crop | None, lo: np.ndarray, hi: np.ndarray, dtype: type) -> np.ndarray:
    out = np.zeros(tuple(hi - lo), dtype=dtype)
    if crop is not None:
        s = tuple(slice(o - low, o - low + n) for o, low, n in zip(crop.offset, lo, crop.data.shape))
        out[s] = crop.data
    return out


def _compare_segment(
    number: int,
    info: Segment | None,
    want: Crop | None,
    have: Crop | None,
    truth: Expected,
    fractional: bool,
) -> tuple[str, int] | None:
    """How one segment's decoded voxels differ from the expected ones: the message and the first differing frame."""
    if want is None and have is None:
        return None
    lo, hi = _union(want, have)
    name = _seg_name(info, number)
    if fractional:
        step = truth.fractional_step
        t: np.ndarray = (
            _place(want, lo, hi, np.float32) * truth.fractional_scale
            if want is not None
            else np.zeros(tuple(hi - lo), np.float32)
        )
        d: np.ndarray = _place(have, lo, hi, np.float32)
        if have is not None and have.data.dtype == bool:
            d = d.astype(np.float32)
        diff = np.abs(d - t)
        bad = ~(diff <= step * 1.0001)  # a NaN or infinite decoded value differs, whatever the truth
        missing = int(np.count_nonzero(bad & (d < t)))
        extra = int(np.count_nonzero(bad & ~(d < t)))
    else:
        t = _place(want, lo, hi, bool)
        d = _place(have, lo, hi, bool)
        bad = t != d
        missing = int(np.count_nonzero(t & ~d))
        extra = int(np.count_nonzero(d & ~t))
    n_bad = missing + extra
    if n_bad == 0:
        return None
    per_frame = bad.reshape(bad.shape[0], -1).sum(axis=1)
    frames = np.flatnonzero(per_frame) + lo[0]
    first = int(frames[0])
    what = "below" if fractional else "missing"
    more = "above" if fractional else "extra"
    detail = ""
    if fractional:
        finite = np.isfinite(diff)
        detail = f"max difference {float(diff[finite].max()) if finite.any() else float('nan'):.3f}, "
        if not finite.all():
            detail += f"{int(np.count_nonzero(~finite))} value(s) not finite, "
    return (
        f"{name}: {n_bad} voxel(s) differ on {len(frames)} frame(s), first frame {first} "
        f"(source {truth.frame_keys[first]}): {detail}{missing} {what}, {extra} {more}",
        first,
    )


def _voxel_differences(truth: Expected, decoded: Decoded, labelmap: bool) -> Iterator[tuple[int, str, int | None]]:
    """Each segment whose voxels differ: its number, the message, and its first differing frame (truth order)."""
    index = {uid: i for i, uid in enumerate(truth.frame_keys)}
    frame_map = np.array([index.get(k, -1) for k in decoded.frame_keys], dtype=np.int64)
    infos = {s.number: s for s in truth.segments}
    with truth.masks() as tm:
        numbers = sorted(set(infos) | set(decoded.numbers_with_pixels))
        for number in numbers:
            if labelmap and number == 0:
                continue
            have_raw = decoded.pixels(number)
            have: Crop | None = None
            if have_raw is not None:
                mapped = _to_truth_frames(have_raw, frame_map)
                if isinstance(mapped, str):
                    on_decoy = _on_decoy(truth, decoded, have_raw)
                    if on_decoy:
                        mapped = (
                            f"{on_decoy} voxel(s) on the slices of a series the SEG does not reference (the second "
                            "series of the study, given to the reader beside the source)"
                        )
                    yield number, f"{_seg_name(infos.get(number), number)}: {mapped}", None
                    continue
                have = mapped
            if number not in infos:
                if have is not None and have.voxels:
                    yield (
                        number,
                        f"segment {number}: {have.voxels} voxel(s) for a segment that does not exist",
                        have.offset[0],
                    )
                continue
            found = _compare_segment(number, infos.get(number), tm.get(number), have, truth, truth.fractional)
            if found:
                yield number, found[0], found[1]


def _on_decoy(truth: Expected, decoded: Decoded, crop: Crop) -> int:
    """How many of a decoded crop's voxels lie on frames of the decoy series (0 where the case has none)."""
    decoy = set(getattr(truth, "decoy_keys", ()))
    if not decoy:
        return 0
    z0 = crop.offset[0]
    counts = crop.data.reshape(crop.data.shape[0], -1).astype(bool).sum(axis=1)
    return int(
        sum(
            int(n)
            for i, n in enumerate(counts)
            if 0 <= z0 + i < len(decoded.frame_keys) and decoded.frame_keys[z0 + i] in decoy
        )
    )


def _check_voxels(truth: Expected, decoded: Decoded, labelmap: bool) -> Check:
    problems: list[str] = []
    differing: list[int] = []
    for number, message, _ in _voxel_differences(truth, decoded, labelmap):
        problems.append(message)
        differing.append(number)
    if problems:
        if len(differing) > 1:
            problems.insert(0, f"{len(differing)} of {len(truth.segments)} segments differ ({_ranges(differing)})")
        return _fail("voxels", problems)
    tol = " (within one quantization step)" if truth.fractional else " (exact)"
    return _pass("voxels", f"{len(truth.segments)} segments on {len(truth.frame_keys)} frames{tol}")


def first_voxel_difference(truth: Expected, decoded: Decoded, *, labelmap: bool) -> tuple[int, int] | None:
    """The first segment whose voxels differ and its first differing frame (truth order), for the difference picture."""
    for number, _, frame in _voxel_differences(truth, decoded, labelmap):
        if frame is not None:
            return number, frame
    return None


def compare(truth: Expected, decoded: Decoded, *, labelmap: bool, complete: bool = False) -> list[Check]:
    """All subchecks of one decoded object against the truth.

    ``labelmap`` says that the object is a LABELMAP segmentation, whose segment
    0 (if reported) is the background and not compared. ``complete`` says that the
    decoder reports every segment description and tracking identifier the object
    holds (the write step's check decoders): one it reports as absent is then missing
    from the object, a fault of its producer, not a reader that reports none.
    """
    segs = [s for s in decoded.segments if not _is_background(s, labelmap)]
    checks = [_pass("opened")]
    checks += _check_segments(truth, segs, complete)
    checks.append(_check_geometry(truth, decoded))
    checks.append(_check_voxels(truth, decoded, labelmap))
    return checks


def verdict(checks: Iterable[Check]) -> tuple[bool, str]:
    """Whether the checks pass, and a one-line message of what failed."""
    failed = [c for c in checks if c.status is CheckStatus.FAIL and not c.advisory]
    if not failed:
        return True, ""
    return False, " | ".join(f"{c.name}: {c.message}" for c in failed)


#: Segment attributes two decodings are compared on, where both report them (for at least one segment).
_TEXTS = (
    "label",
    "description",
    "tracking_id",
    "tracking_uid",
    "algorithm_type",
    "algorithm_name",
    "algorithm_version",
)


def _reported(segs: dict[int, Segment], numbers: list[int], attr: str) -> bool:
    return any(getattr(segs[n], attr) is not None for n in numbers)


def _metadata_differences(sa: dict[int, Segment], sb: dict[int, Segment]) -> list[str]:
    """Segment attributes on which two decodings differ; an attribute one of them never reports is not compared."""
    problems: list[str] = []
    common = sorted(set(sa) & set(sb))
    for attr in (*_TEXTS, *_CODES):
        if not (_reported(sa, common, attr) and _reported(sb, common, attr)):
            continue
        code = attr in _CODES
        diff = [
            n
            for n in common
            if not (
                _same_code(getattr(sa[n], attr), getattr(sb[n], attr))
                if code
                else getattr(sa[n], attr) == getattr(sb[n], attr)
            )
        ]
        if diff:
            n = diff[0]
            va, vb = getattr(sa[n], attr), getattr(sb[n], attr)
            shown = (_code_str(va), _code_str(vb)) if code else (_clip(va), _clip(vb))
            more = f" (and {len(diff) - 1} more segment(s))" if len(diff) > 1 else ""
            problems.append(f"segment {n}: {attr.replace('_', ' ')} {shown[0]} vs {shown[1]}{more}")
    return problems


def _geometry_differences(a: Decoded, b: Decoded) -> list[str]:
    """Orientation, spacing and frame positions where both decodings report them (a non-finite value differs)."""
    problems: list[str] = []
    ga, gb = a.geometry, b.geometry

    def same(va: np.ndarray, vb: np.ndarray, tol: float, relative: bool = False) -> bool:
        return bool(np.all(np.isfinite(va))) and _within(vb, va, tol, relative=relative)

    if ga.orientation is not None and gb.orientation is not None:
        oa, ob = _values(ga.orientation), _values(gb.orientation)
        if not same(oa, ob, ORIENTATION_TOL):
            problems.append(f"orientation {_shown(oa, 4)} vs {_shown(ob, 4)}")
    if ga.pixel_spacing is not None and gb.pixel_spacing is not None:
        pa, pb = _values(ga.pixel_spacing), _values(gb.pixel_spacing)
        if not same(pa, pb, SPACING_RTOL, relative=True):
            problems.append(f"pixel spacing {_shown(pa, 6)} vs {_shown(pb, 6)}")
    bad = [(k, _values(ga.positions[k]), _values(gb.positions[k])) for k in ga.positions if k in gb.positions]
    bad = [(k, pa, pb) for k, pa, pb in bad if not same(pa, pb, POSITION_TOL_MM)]
    if bad:
        k, pa, pb = bad[0]
        problems.append(f"{len(bad)} frame position(s) differ; first: {k} at {_shown(pa, 3)} vs {_shown(pb, 3)}")
    return problems


def agreement(a: Decoded, b: Decoded, *, labelmap: bool, fractional_tol: float = 1.0001 / 255) -> list[str]:
    """Where two decodings of the same object differ (empty: they agree). Symmetric.

    Used where there is no truth to compare with (objects from the wild, the write step's two check
    decoders): segment numbers, every segment attribute and geometry that both report, and the voxels
    of every segment, ``b``'s frames mapped onto ``a``'s by source frame key. Display colours are not
    compared (tools convert CIELab differently; it is an advisory check against truth too).
    """
    problems: list[str] = []
    sa = {s.number: s for s in a.segments if not _is_background(s, labelmap)}
    sb = {s.number: s for s in b.segments if not _is_background(s, labelmap)}
    if set(sa) != set(sb):
        problems.append(f"segment numbers {_ranges(list(sa)) or 'none'} vs {_ranges(list(sb)) or 'none'}")
    problems += _metadata_differences(sa, sb)
    if (a.rows, a.columns) != (b.rows, b.columns):
        problems.append(f"decoded matrix {a.rows}x{a.columns} vs {b.rows}x{b.columns}")
        return problems
    problems += _geometry_differences(a, b)
    index = {k: i for i, k in enumerate(a.frame_keys)}
    frame_map = np.array([index.get(k, -1) for k in b.frame_keys], dtype=np.int64)
    fractional = a.fractional or b.fractional
    differing = []
    for number in sorted(set(a.numbers_with_pixels) | set(b.numbers_with_pixels)):
        if labelmap and number == 0:
            continue
        ca, cb_raw = a.pixels(number), b.pixels(number)
        cb = None
        if cb_raw is not None:
            mapped = _to_truth_frames(cb_raw, frame_map)
            if isinstance(mapped, str):
                problems.append(f"segment {number}: {mapped}")
                differing.append(number)
                continue
            cb = mapped
        if ca is None and cb is None:
            continue
        lo, hi = _union(ca, cb)
        if fractional:
            da, db = _place(ca, lo, hi, np.float32), _place(cb, lo, hi, np.float32)
            bad = ~(np.abs(da - db) <= fractional_tol)  # NaN is a difference
        else:
            bad = _place(ca, lo, hi, bool) != _place(cb, lo, hi, bool)
        n_bad = int(np.count_nonzero(bad))
        if n_bad:
            first = int(np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[0] + lo[0])
            differing.append(number)
            if len(differing) <= 3:
                problems.append(f"segment {number}: {n_bad} voxel(s) differ, first on frame {first}")
    if len(differing) > 3:
        problems.append(f"{len(differing)} segments differ in all ({_ranges(differing)})")
    return problems
