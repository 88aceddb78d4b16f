"""Exchange folders: segmentations as NIfTI or NRRD plus a ``segments.json``, to and from the outside.

The bundle's truth is written in this form (:func:`write_truth`); an executable
adapter's ``read`` and a vendor's consumer submission hand their decodings back
in it, and :func:`read_exchange` turns such a folder into the canonical decoded
form, checking every size before it reads a voxel (the folder may come from
anyone). The format is described in ``docs/protocol.md``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dicom4qi.model.decoded import DecodedWriter
from dicom4qi.model.protocol import EXCHANGE_FORMAT, ExchangeDoc, ExchangeSegment
from dicom4qi.model.segment import Segment

__all__ = ["ExchangeError", "Limits", "read_exchange", "write_truth", "load_json_bounded", "ras_affine"]

SEGMENTS_JSON = "segments.json"
_PIXEL_FILE = re.compile(r"^(labelmap|segment-([1-9][0-9]{0,4}))\.(nii|nii\.gz|nrrd)$")
_INT_TYPES = {np.dtype(t) for t in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "bool")}
_FLOAT_TYPES = {np.dtype("float32"), np.dtype("float64")}


class ExchangeError(ValueError):
    """An exchange folder that cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what an exchange folder may hold."""

    json_bytes: int = 16 * 2**20
    #: Pixel files per folder (one per segment at most, plus a label map).
    files: int = 5001


#: How deep arrays and objects of an untrusted JSON file may nest (a deeper one is a parser bomb, not data).
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(r'"(?:\\.|[^"\\])*"')


def json_depth(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest (strings do not count)."""
    brackets = np.frombuffer(_JSON_STRING.sub("", text).encode("ascii", "replace"), dtype=np.uint8)
    steps = np.zeros(len(brackets), dtype=np.int64)
    steps[(brackets == ord("[")) | (brackets == ord("{"))] = 1
    steps[(brackets == ord("]")) | (brackets == ord("}"))] = -1
    return int(np.cumsum(steps).max()) if len(steps) else 0


def load_json_bounded(path: Path, limit: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a JSON file of at most ``limit`` bytes, nested at most ``max_depth`` deep (refusing links)."""
    if path.is_symlink() or not path.is_file():
        raise ExchangeError(f"{path.name}: not a regular file")
    size = path.stat().st_size
    if size > limit:
        raise ExchangeError(f"{path.name}: {size} bytes, more than the limit of {limit}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExchangeError(f"{path.name}: not valid UTF-8 JSON ({exc})") from None
    depth = json_depth(text)
    if depth > max_depth:
        raise ExchangeError(f"{path.name}: nested {depth} levels deep, more than the limit of {max_depth}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ExchangeError(f"{path.name}: not valid JSON ({exc})") from None


# --------------------------------------------------------------------------- images
@dataclass
class _Image:
    data: np.ndarray  # (slices, rows, columns)
    origin: np.ndarray | None  # LPS
    axes: np.ndarray | None  # rows: column, row and slice steps (LPS, mm)


def _check_shape(
    name: str, shape: tuple[int, ...], dtype: np.dtype, rows: int, columns: int, max_slices: int
) -> tuple[int, int, int]:
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3:
        raise ExchangeError(f"{name}: {len(shape)} dimensions; a slice stack (columns, rows, slices) has 3")
    cols, rws, slices = (int(v) for v in shape)
    if cols > columns or rws > rows or slices > max_slices or min(cols, rws, slices) < 1:
        raise ExchangeError(
            f"{name}: size {cols}x{rws}x{slices} (columns x rows x slices) exceeds the source grid "
            f"{columns}x{rows}x{max_slices}"
        )
    if dtype not in _INT_TYPES | _FLOAT_TYPES:
        raise ExchangeError(f"{name}: voxel type {dtype} is not an integer or float type")
    return cols, rws, slices


def _read_nifti(path: Path, rows: int, columns: int, max_slices: int) -> _Image:
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many kinds on a bad file
        raise ExchangeError(f"{path.name}: not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ExchangeError(f"{path.name}: not a NIfTI-1 or NIfTI-2 image")
    shape = img.header.get_data_shape()
    _check_shape(path.name, shape, img.header.get_data_dtype(), rows, columns, max_slices)
    try:
        raw = np.asarray(img.dataobj)
    except Exception as exc:
        raise ExchangeError(f"{path.name}: cannot read its voxels ({type(exc).__name__}: {exc})") from None
    raw = raw.reshape(raw.shape[:3] if raw.ndim >= 3 else (*raw.shape, 1))
    data = np.ascontiguousarray(raw.transpose(2, 1, 0))
    sform, qform = int(img.header["sform_code"]), int(img.header["qform_code"])
    if sform > 0 or qform > 0:
        affine = np.array(img.affine, dtype=float)
        affine[:2] *= -1.0  # RAS to LPS
        return _Image(data, affine[:3, 3].copy(), affine[:3, :3].T.copy())
    return _Image(data, None, None)


def _read_nrrd(path: Path, rows: int, columns: int, max_slices: int) -> _Image:
    from dicom4qi.formats.nrrd import read_nrrd

    def check(sizes: tuple[int, ...], dtype: np.dtype) -> None:
        _check_shape(path.name, sizes, dtype, rows, columns, max_slices)

    try:
        image = read_nrrd(path, check, need_geometry=False)
    except ExchangeError:
        raise
    except (ValueError, OSError) as exc:
        raise ExchangeError(str(exc)) from None
    return _Image(image.data, image.origin, image.axes)


def _read_image(path: Path, rows: int, columns: int, max_slices: int) -> _Image:
    if path.name.endswith(".nrrd"):
        return _read_nrrd(path, rows, columns, max_slices)
    return _read_nifti(path, rows, columns, max_slices)


# --------------------------------------------------------------------------- reading
def _segment(s: ExchangeSegment) -> Segment:
    return s.to_segment()


def read_exchange(folder: Path, sources: list[Path], limits: Limits | None = None) -> DecodedWriter:
    """The canonical decoded form of an exchange folder, on the frames of ``sources``.

    Raises :class:`ExchangeError` (a clear message) on anything malformed, oversized or unplaceable.
    """
    from pydantic import ValidationError

    from dicom4qi.formats.source_frames import SourceFrames

    limits = limits or Limits()
    if folder.is_symlink() or not folder.is_dir():
        raise ExchangeError(f"{folder.name}: not a folder")
    names = sorted(p.name for p in folder.iterdir())
    if SEGMENTS_JSON not in names:
        raise ExchangeError(f"{folder.name}: no {SEGMENTS_JSON}")
    others = [n for n in names if n != SEGMENTS_JSON and not _PIXEL_FILE.match(n)]
    if others:
        raise ExchangeError(
            f"{folder.name}: unexpected file(s) {', '.join(others[:5])}: only {SEGMENTS_JSON}, labelmap.<ext> and "
            "segment-<n>.<ext> (nii, nii.gz, nrrd)"
        )
    pixel_files = [folder / n for n in names if n != SEGMENTS_JSON]
    if len(pixel_files) > limits.files:
        raise ExchangeError(f"{folder.name}: {len(pixel_files)} pixel files, more than {limits.files}")
    for p in pixel_files:
        if p.is_symlink() or not p.is_file():
            raise ExchangeError(f"{p.name}: not a regular file")
    try:
        doc = ExchangeDoc.model_validate(load_json_bounded(folder / SEGMENTS_JSON, limits.json_bytes))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "/".join(str(x) for x in first["loc"])
        raise ExchangeError(f"{SEGMENTS_JSON}: {where}: {first['msg']} ({exc.error_count()} problem(s))") from None

    src = SourceFrames(sources)
    keys = list(doc.frames) if doc.frames is not None else list(src.keys)
    writer = DecodedWriter(keys, src.rows, src.columns, fractional=doc.fractional)
    writer.notes.append(
        f"read from an exchange folder ({', '.join(p.name for p in pixel_files[:3])}{'...' if len(pixel_files) > 3 else ''})"
    )
    writer.notes.extend(doc.notes)
    listed = {s.number for s in doc.segments}
    for s in doc.segments:
        writer.add_segment(_segment(s))

    numbers_seen: set[int] = set()
    geometry_from: _Image | None = None
    for path in pixel_files:
        m = _PIXEL_FILE.match(path.name)
        assert m is not None
        number = int(m.group(2)) if m.group(2) else None
        if number is not None and number not in listed:
            raise ExchangeError(f"{path.name}: segment {number} is not in {SEGMENTS_JSON}")
        image = _read_image(path, src.rows, src.columns, len(keys))
        data = image.data
        if doc.frames is not None:
            if data.shape[0] != len(keys) or data.shape[1:] != (src.rows, src.columns):
                raise ExchangeError(
                    f"{path.name}: {data.shape[0]} slices of {data.shape[1]}x{data.shape[2]}; frames lists {len(keys)} "
                    f"slices of {src.rows}x{src.columns}"
                )
            grid = data
        elif src.has_geometry and image.axes is not None and image.origin is not None:
            try:
                placement = src.place(image.origin, image.axes, data.shape[0])
            except ValueError as exc:
                raise ExchangeError(f"{path.name}: cannot place it on the source frames: {exc}") from None
            grid = src.to_grid(placement, data)
        elif data.shape == (len(keys), src.rows, src.columns):
            grid = data
        else:
            raise ExchangeError(
                f"{path.name}: without a frames list in {SEGMENTS_JSON}, an image that is not the source grid "
                f"({src.columns}x{src.rows}x{len(keys)}) needs a geometry to be placed, and these sources have none"
            )
        if geometry_from is None and image.axes is not None:
            geometry_from = image
        if number is None:
            if doc.fractional:
                raise ExchangeError(f"{path.name}: a FRACTIONAL decoding gives one file per segment, not a label map")
            if grid.dtype not in _INT_TYPES:
                if not np.all(np.equal(np.mod(grid, 1), 0)):
                    raise ExchangeError(f"{path.name}: a label map holds integers")
                grid = grid.astype(np.int64)
            if grid.size and grid.min() < 0:
                raise ExchangeError(f"{path.name}: a label map holds no negative values")
            present = set(np.unique(grid).tolist()) - {0}
            unknown = sorted(present - listed)
            if unknown:
                raise ExchangeError(f"{path.name}: label value(s) {unknown[:5]} are not segments in {SEGMENTS_JSON}")
            both = present & numbers_seen
            if both:
                raise ExchangeError(f"segment(s) {sorted(both)[:5]} have pixels in two files")
            numbers_seen |= present
            writer.set_labelmap(grid.astype(np.uint16 if grid.max(initial=0) > 255 else np.uint8))
        else:
            if number in numbers_seen:
                raise ExchangeError(f"segment {number} has pixels in two files")
            numbers_seen.add(number)
            if doc.fractional:
                if grid.dtype in _FLOAT_TYPES and (
                    not np.all(np.isfinite(grid)) or grid.min(initial=0) < 0 or grid.max(initial=0) > 1
                ):
                    raise ExchangeError(f"{path.name}: FRACTIONAL values must lie in [0, 1]")
                if grid.dtype not in _FLOAT_TYPES and grid.max(initial=0) > 1:
                    raise ExchangeError(f"{path.name}: FRACTIONAL values are floats in [0, 1]")
                writer.set_pixels(number, grid.astype(np.float32))
            else:
                writer.set_pixels(number, grid != 0)
        del grid, data
    _geometry(writer, doc, geometry_from, src, keys)
    return writer


def _geometry(writer: DecodedWriter, doc: ExchangeDoc, image: _Image | None, src: Any, keys: list[str]) -> None:
    """The geometry the folder reports: orientation and spacing from the image, positions per frame."""
    if image is None or image.axes is None or image.origin is None or not src.has_geometry:
        return
    ax = image.axes
    n0, n1 = float(np.linalg.norm(ax[0])), float(np.linalg.norm(ax[1]))
    if n0 == 0 or n1 == 0:
        return
    writer.geometry.orientation = [*(ax[0] / n0), *(ax[1] / n1)]
    writer.geometry.pixel_spacing = [n1, n0]
    if doc.frames is None:
        return  # placed by its geometry: the positions are what placed it
    for k, key in enumerate(keys):
        pos = doc.positions[k] if doc.positions is not None else image.origin + k * ax[2]
        writer.geometry.positions[key] = [float(v) for v in pos]


# --------------------------------------------------------------------------- writing (the truth)
def ras_affine(geometry: Any) -> np.ndarray:
    """A NIfTI affine (RAS) for a truth grid; the identity (with spacing) where there is no patient space."""
    if geometry.orientation is None or geometry.positions is None:
        affine = np.diag([geometry.pixel_spacing[1], geometry.pixel_spacing[0], 1.0, 1.0])
        return affine
    o = np.asarray(geometry.orientation, dtype=float)
    row_dir, col_dir = o[:3], o[3:]
    normal = np.cross(row_dir, col_dir)
    positions = np.asarray(geometry.positions, dtype=float)
    step = positions[1] - positions[0] if len(positions) > 1 else normal * geometry.slice_spacing
    if np.linalg.norm(step) < 1e-6:  # one plane over time: no slice step in space
        step = normal * geometry.slice_spacing
    lps = np.eye(4)
    lps[:3, 0] = row_dir * geometry.pixel_spacing[1]
    lps[:3, 1] = col_dir * geometry.pixel_spacing[0]
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def write_truth(truth: Any, folder: Path) -> list[str]:
    """Write a case's truth as an exchange folder; return the files written.

    Disjoint binary truths become one ``labelmap.nii.gz``; overlapping or fractional ones one
    ``segment-<n>.nii.gz`` per segment (fractional: float32, the stored value over the maximum).
    """
    import nibabel as nib

    from dicom4qi.model.masks import labelmap_from_crops

    folder.mkdir(parents=True, exist_ok=True)
    g = truth.geometry
    affine = ras_affine(g)
    segments = []
    for s in truth.segments:
        entry: dict[str, Any] = {"number": s.number, "label": s.label, "category": s.category, "type": s.type}
        for key in (
            "type_modifier",
            "anatomic_region",
            "anatomic_region_modifier",
            "tracking_id",
            "tracking_uid",
            "algorithm_type",
            "algorithm_name",
            "algorithm_version",
            "description",
        ):
            value = getattr(s, key)
            if value:
                entry[key] = value
        if s.color_rgb:
            entry["color_rgb"] = list(s.color_rgb)
        segments.append(entry)
    doc: dict[str, Any] = {
        "format": EXCHANGE_FORMAT,
        "frames": list(truth.frame_keys),
        "fractional": bool(truth.fractional),
        "segments": segments,
        "notes": [f"truth of {truth.case_id}"],
    }
    if g.positions is not None:  # exact also where an affine cannot say it (uneven slices, a cine's one plane)
        doc["positions"] = [list(map(float, p)) for p in g.positions]
    ExchangeDoc.model_validate(doc)  # what the suite writes, it must accept
    written = []

    def save(name: str, array: np.ndarray) -> None:
        image = nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)), affine)
        image.header.set_xyzt_units("mm")
        if g.orientation is None:
            image.set_sform(affine, code=0)
            image.set_qform(affine, code=0)
        nib.save(image, str(folder / name))
        written.append(name)

    with truth.masks() as masks:
        if truth.overlap or truth.fractional:
            for number, crop in masks:
                dense = np.zeros(truth.shape, dtype=np.float32 if truth.fractional else np.uint8)
                z0, y0, x0 = crop.offset
                z1, y1, x1 = crop.stop
                if truth.fractional:
                    dense[z0:z1, y0:y1, x0:x1] = crop.data.astype(np.float32) / float(truth.fractional_max)
                else:
                    dense[z0:z1, y0:y1, x0:x1] = crop.data.astype(bool)
                save(f"segment-{number}.nii.gz", dense)
                del dense
        else:
            dtype = np.uint8 if max((s.number for s in truth.segments), default=0) < 256 else np.uint16
            save("labelmap.nii.gz", labelmap_from_crops(dict(masks), truth.shape, dtype=dtype))
    (folder / SEGMENTS_JSON).write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
    written.append(SEGMENTS_JSON)
    return written
