"""Deterministic synthesis of a case's source series and truth.

Everything is derived from the case and its seed: the same case file gives
byte-identical truth and the same UIDs on every machine. Built cases are cached
under the build folder by the case's fingerprint, so a rebuild is free.
"""

from __future__ import annotations

import colorsys
import math
import os
import shutil
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid
from scipy.spatial import cKDTree

from dicom4qi.corpus.images import write_decoy_series, write_source
from dicom4qi.model.case import Case, LoadedCase
from dicom4qi.model.masks import Crop, crop_from_dense, crops_from_labelmap, write_masks
from dicom4qi.model.segment import Segment
from dicom4qi.model.truth import Geometry, Truth

__all__ = ["SynthesisError", "build_case", "case_directory", "synthesize_masks"]


class SynthesisError(Exception):
    """The case asks for something the generator cannot make."""


def case_directory(build_root: Path, loaded: LoadedCase) -> Path:
    """Where a case's source and truth are built: shared by every case with the same fingerprint
    (cases that differ only in their encoding, e.g. the same body CT as BINARY and as label map)."""
    return build_root / "corpus" / loaded.case.fingerprint()


def _uid(fingerprint: str, *parts: object) -> str:
    return generate_uid(entropy_srcs=[fingerprint, *map(str, parts)])


# --------------------------------------------------------------------------- masks


def _blobs(case: Case, rng: np.random.Generator) -> dict[int, Crop]:
    """Disjoint blobs: Voronoi cells of random seeds, each clipped to a sphere."""
    src, seg = case.source, case.segments
    shape = (src.frames, src.rows, src.columns)
    spacing = np.array([src.slice_spacing, *src.pixel_spacing])
    total = math.prod(shape)
    if seg.count > total:
        raise SynthesisError(f"segments.count {seg.count} exceeds the {total} voxels of the grid")
    flat = rng.choice(total, size=seg.count, replace=False)
    seeds = np.stack(np.unravel_index(flat, shape), axis=1).astype(float) * spacing
    volume_mm3 = total * float(np.prod(spacing))
    r0 = (3 * seg.fill * volume_mm3 / seg.count / (4 * math.pi)) ** (1 / 3)
    radii = r0 * rng.uniform(0.7, 1.3, seg.count)
    tree = cKDTree(seeds)
    yy, xx = np.mgrid[0 : src.rows, 0 : src.columns].astype(float)
    plane = np.column_stack([yy.ravel() * spacing[1], xx.ravel() * spacing[2]])
    dtype = np.uint16 if seg.count < 65535 else np.uint32
    labels = np.zeros(shape, dtype=dtype)
    for z in range(src.frames):
        pts = np.column_stack([np.full(len(plane), z * spacing[0]), plane])
        dist, idx = tree.query(pts)
        labels[z] = np.where(dist <= radii[idx], idx + 1, 0).reshape(src.rows, src.columns)
    crops = crops_from_labelmap(labels)
    del labels
    return crops


def _ellipsoids(case: Case, rng: np.random.Generator) -> dict[int, Crop]:
    """Independent ellipsoids; soft-edged when fractional, overlapping when asked."""
    src, seg = case.source, case.segments
    shape = np.array([src.frames, src.rows, src.columns])
    spacing = np.array([src.slice_spacing, *src.pixel_spacing])
    extent = shape * spacing
    r0 = (3 * seg.fill * float(np.prod(extent)) / seg.count / (4 * math.pi)) ** (1 / 3)
    max_value = case.encoding.max_fractional_value
    centres: list[np.ndarray] = []
    crops: dict[int, Crop] = {}
    claimed = None if seg.overlap else np.zeros(tuple(shape), dtype=bool)
    for i in range(seg.count):
        radii = np.maximum(r0 * rng.uniform(0.6, 1.4, 3), spacing * 1.5)
        if seg.overlap and i % 2 == 1:
            centre = centres[-1] + rng.uniform(-0.5, 0.5, 3) * radii
        else:
            centre = rng.uniform(0.15, 0.85, 3) * extent
        centre = np.clip(centre, 0, extent - spacing)
        centres.append(centre)
        lo = np.clip(np.floor((centre - radii) / spacing).astype(int), 0, shape - 1)
        hi = np.clip(np.ceil((centre + radii) / spacing).astype(int) + 1, lo + 1, shape)
        grids = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi)), indexing="ij")
        d = np.sqrt(sum(((g * s - c) / r) ** 2 for g, s, c, r in zip(grids, spacing, centre, radii)))
        if seg.fractional:
            data = np.rint(np.clip((1.0 - d) / 0.5, 0.0, 1.0) * max_value).astype(np.uint8)
        else:
            data = d <= 1.0
        centre_idx = tuple(int(v) for v in np.clip(np.rint(centre / spacing).astype(int) - lo, 0, hi - lo - 1))
        if claimed is not None:
            region = claimed[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
            data = np.where(region, 0, data).astype(data.dtype)
            if not data.any() and not region[centre_idx]:
                data[centre_idx] = max_value if seg.fractional else True
            region |= data.astype(bool)
        elif not data.any():
            data[centre_idx] = max_value if seg.fractional else True
        crop = crop_from_dense(data, base=(int(lo[0]), int(lo[1]), int(lo[2])))
        if crop is None:
            raise SynthesisError(f"segment {i + 1} came out empty; try another seed or more fill")
        crops[i + 1] = crop
    if seg.overlap and not _any_overlap(crops):
        raise SynthesisError("segments.overlap is true but no two segments overlap; change the seed")
    return crops


def _any_overlap(crops: dict[int, Crop]) -> bool:
    items = list(crops.values())
    for i, a in enumerate(items):
        for b in items[i + 1 :]:
            lo = np.maximum(a.offset, b.offset)
            hi = np.minimum(a.stop, b.stop)
            if np.any(hi <= lo):
                continue
            sa = tuple(slice(low - o, h - o) for low, h, o in zip(lo, hi, a.offset))
            sb = tuple(slice(low - o, h - o) for low, h, o in zip(lo, hi, b.offset))
            if np.any((a.data[sa] > 0) & (b.data[sb] > 0)):
                return True
    return False


def _cut_gap(crop: Crop, number: int) -> Crop:
    """Empty the middle frame of a segment's extent."""
    frames = np.flatnonzero(crop.data.any(axis=(1, 2)))
    if frames[-1] - frames[0] < 2:
        raise SynthesisError(
            f"segments.gaps: segment {number} spans {frames[-1] - frames[0] + 1} frame(s); "
            "a gap needs at least 3 (give it more fill or more frames)"
        )
    data = crop.data.copy()
    data[(frames[0] + frames[-1]) // 2] = 0
    return Crop(crop.offset, data)


def synthesize_masks(case: Case) -> dict[int, Crop]:
    """The truth crops of a case, keyed by segment number (empty segments absent)."""
    rng = np.random.default_rng(case.segments.seed)
    gen = _blobs if case.segments.generator == "blobs" else _ellipsoids
    numbers = case.segments.segment_numbers
    crops = {numbers[i - 1]: crop for i, crop in gen(case, rng).items()}  # generated 1..count, then numbered
    for n in case.segments.empty:
        crops.pop(n, None)
    for n in case.segments.gaps:
        crops[n] = _cut_gap(crops[n], n)
    return crops


# --------------------------------------------------------------------------- source


def _palette(n: int) -> tuple[int, int, int]:
    """A distinct, deterministic display colour for segment ``n`` (golden-ratio hues)."""
    r, g, b = colorsys.hsv_to_rgb((n * 0.618033988749895) % 1.0, 0.75, 0.95)
    return (round(r * 255), round(g * 255), round(b * 255))


def _geometry(case: Case) -> Geometry:
    s = case.source
    spacing = (float(s.pixel_spacing[0]), float(s.pixel_spacing[1]))
    if not s.has_patient_geometry:
        return Geometry(
            rows=s.rows,
            columns=s.columns,
            orientation=None,
            pixel_spacing=spacing,
            slice_spacing=float(s.slice_spacing),
            positions=None,
            layout=s.layout,
        )
    o = np.asarray(s.orientation, dtype=float)
    normal = np.cross(o[:3], o[3:])
    origin = np.asarray(s.origin, dtype=float)
    positions: list[tuple[float, float, float]] = []
    for d in s.offsets:
        x, y, z = (round(float(v), 6) for v in origin + d * normal)
        positions.append((x, y, z))
    return Geometry(
        rows=s.rows,
        columns=s.columns,
        orientation=tuple(float(v) for v in s.orientation),
        pixel_spacing=spacing,
        slice_spacing=float(s.slice_spacing),
        positions=positions,
        layout=s.layout,
    )


def build_case(loaded: LoadedCase, build_root: Path, *, force: bool = False) -> Truth:
    """Synthesize (or reuse from the cache) the source series and truth of a case."""
    directory = case_directory(build_root, loaded)
    if not force and (directory / "truth.json").is_file() and (directory / "truth.npz").is_file():
        return Truth.load(directory)
    case, fp = loaded.case, loaded.case.fingerprint()
    tmp = directory.with_name(f"{directory.name}.part{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    crops = synthesize_masks(case)
    geometry = _geometry(case)
    s = case.source
    uids = {k: _uid(fp, k) for k in ("study", "series", "for", "dimension")}
    uids.update({f"sop{k}": _uid(fp, "sop", k) for k in range(s.frames)})

    # Source pixels: brighter structures where any segment lies.
    any_seg = np.zeros((s.frames, s.rows, s.columns), dtype=np.uint8)
    for number, crop in crops.items():
        z0, y0, x0 = crop.offset
        z1, y1, x1 = crop.stop
        region = any_seg[z0:z1, y0:y1, x0:x1]
        np.maximum(region, (crop.data > 0).astype(np.uint8) * (1 + number % 3), out=region)
    files, keys = write_source(s, geometry, uids, fp, any_seg, case.segments.seed, tmp)
    decoy_files: list[str] = []
    decoy_keys: list[str] = []
    if s.decoy_series:  # same study and Frame of Reference, its own series and instances
        decoy_uids = dict(uids, series=_uid(fp, "decoy-series"))
        decoy_uids.update({f"sop{k}": _uid(fp, "decoy-sop", k) for k in range(s.frames)})
        decoy_files, decoy_keys = write_decoy_series(s, geometry, decoy_uids, fp, any_seg, case.segments.seed, tmp)
    del any_seg

    meta = case.metadata
    overrides = {o.number: o for o in meta.segment}
    segments: list[Segment] = []
    for n in case.segments.segment_numbers:
        o = overrides.get(n)
        segments.append(
            Segment(
                number=n,
                label=(o.label if o and o.label else meta.label_pattern.format(n=n)),
                description=o.description if o else None,
                category=(o.category if o and o.category else meta.category).as_code(),
                type=(o.type if o and o.type else meta.type).as_code(),
                type_modifier=o.type_modifier.as_code() if o and o.type_modifier else None,
                anatomic_region=o.anatomic_region.as_code() if o and o.anatomic_region else None,
                anatomic_region_modifier=(
                    o.anatomic_region_modifier.as_code() if o and o.anatomic_region_modifier else None
                ),
                algorithm_type=(o.algorithm_type if o and o.algorithm_type else meta.algorithm_type),
                algorithm_name=(o.algorithm_name if o and o.algorithm_name else meta.algorithm_name),
                algorithm_version=(o.algorithm_version if o and o.algorithm_version else meta.algorithm_version),
                tracking_id=(o.tracking_id if o and o.tracking_id else (f"D4QI-{n}" if meta.tracking_ids else None)),
                tracking_uid=(
                    o.tracking_uid if o and o.tracking_uid else (_uid(fp, "track", n) if meta.tracking_ids else None)
                ),
                empty=n not in crops,
                color_rgb=(o.color if o and o.color else _palette(n)),
            )
        )
    write_masks(tmp / "truth.npz", crops, {"kind": "truth", "case": loaded.id})
    truth = Truth(
        directory=tmp,
        case_id=loaded.id,
        fingerprint=fp,
        geometry=geometry,
        frame_keys=keys,
        source_files=files,
        study_uid=uids["study"],
        series_uid=uids["series"],
        frame_of_reference_uid=uids["for"],
        segments=segments,
        overlap=case.segments.overlap,
        fractional=case.segments.fractional,
        fractional_max=case.encoding.max_fractional_value,
        decoy_files=decoy_files,
        decoy_keys=decoy_keys,
    )
    truth.save()
    if force:
        shutil.rmtree(directory, ignore_errors=True)
    try:
        tmp.replace(directory)
    except OSError:
        # Another process built the same fingerprint meanwhile: theirs is as good as ours.
        shutil.rmtree(tmp, ignore_errors=True)
    return Truth.load(directory)
