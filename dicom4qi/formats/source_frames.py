"""The source frames a consumer maps its output onto: keys, positions, and the in-plane grid.

Consumers whose tool hands back a volume (dcmqi's NRRD, pydicom-seg's SimpleITK
image, 3D Slicer's labelmaps) place each slice on a source frame by geometry:
slice position along the normal, in-plane offset along the row and column
directions. A volume that is not on the source grid (resampled, rotated) is an
error with the numbers that show it.

A VL Whole Slide Microscopy image is one frame of the grid whatever its number of
tiles: its key is the SOP Instance UID alone and ``rows`` x ``columns`` is its total
pixel matrix; ``slide`` is True and the tile size, origin and orientation in the
slide coordinate system are there for a consumer that places tiles itself.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dicom4qi.formats.headerscan import scan_header
from dicom4qi.model.decoded import frame_key
from dicom4qi.model.uids import VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE

__all__ = ["Placement", "SlideInfo", "SourceFrames", "itk_axes"]


def itk_axes(origin: Any, spacing: Any, direction: Any) -> tuple[np.ndarray, np.ndarray]:
    """Origin and per-index steps (column, row, slice) of an ITK-style image (SimpleITK, itk-wasm): its direction
    matrix (3 x 3, or flattened row-major) has the axis directions as columns."""
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    return np.asarray(origin, dtype=float), (d * np.asarray(spacing, dtype=float)).T


#: Top-level tags of a single-frame image that :func:`_single_frame_header` reads.
_SOP_CLASS, _SOP_INSTANCE, _POSITION, _ORIENTATION = 0x00080016, 0x00080018, 0x00200032, 0x00200037
_FRAMES, _ROWS, _COLUMNS, _SPACING = 0x00280008, 0x00280010, 0x00280011, 0x00280030
_SHARED, _PER_FRAME = 0x52009229, 0x52009230
_PLAIN_TAGS = (
    _SOP_CLASS,
    _SOP_INSTANCE,
    _POSITION,
    _ORIENTATION,
    _FRAMES,
    _ROWS,
    _COLUMNS,
    _SPACING,
    _SHARED,
    _PER_FRAME,
)


@dataclass(frozen=True)
class FrameHeader:
    """What a single-frame source image contributes: its key's UID, size and geometry (None where absent)."""

    sop_uid: str
    rows: int
    columns: int
    position: list[float] | None
    orientation: list[float] | None
    spacing: list[float] | None


def _numbers(text: str | None, count: int) -> list[float] | None:
    """A DS value of ``count`` numbers, or None when absent; refuses (ValueError) one that is not."""
    if text is None:
        return None
    values = [float(v) for v in text.split("\\")]
    if len(values) != count:
        raise ValueError("wrong multiplicity")
    return values


def _single_frame_header(path: Path | str) -> FrameHeader | None:
    """A single-frame image's header from its bytes (:func:`~dicom4qi.formats.headerscan.scan_header`), or None
    for anything else (multi-frame, functional groups, a slide, an unusual encoding or value): pydicom reads those.

    The values are those pydicom gives for a plain file; ``tests/test_framescan.py`` holds the two to each other.
    """
    scan = scan_header(path, _PLAIN_TAGS)
    if scan is None or scan.sequences:
        return None
    try:
        uid, frames = scan.text(_SOP_INSTANCE), scan.text(_FRAMES)
        if not uid or frames not in (None, "1") or scan.text(_SOP_CLASS) == VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE:
            return None
        if scan.vrs.get(_ROWS) != b"US" or scan.vrs.get(_COLUMNS) != b"US":
            return None
        rows, columns = (struct.unpack("<H", scan.values[t])[0] for t in (_ROWS, _COLUMNS))
        return FrameHeader(
            sop_uid=uid,
            rows=rows,
            columns=columns,
            position=_numbers(scan.text(_POSITION), 3),
            orientation=_numbers(scan.text(_ORIENTATION), 6),
            spacing=_numbers(scan.text(_SPACING), 2),
        )
    except (ValueError, struct.error):
        return None  # an empty or odd value: pydicom reads it and says what it thinks


@dataclass
class Placement:
    """Where a volume's slices go: source frame per slice (-1: none), in-plane offsets, flips."""

    frames: np.ndarray
    row_offset: int
    col_offset: int
    flip_rows: bool
    flip_cols: bool


@dataclass(frozen=True)
class SlideInfo:
    """Where a whole slide image's total pixel matrix lies in the slide coordinate system."""

    tile_rows: int
    tile_columns: int
    #: X, Y (and Z) offsets in mm of the top left pixel (Total Pixel Matrix Origin Sequence).
    origin: tuple[float, ...]
    #: Image Orientation (Slide): row direction then column direction.
    orientation: tuple[float, ...]


def _slide_info(ds: Any) -> SlideInfo:
    origin_item = ds.TotalPixelMatrixOriginSequence[0] if "TotalPixelMatrixOriginSequence" in ds else None
    origin = (
        tuple(
            float(origin_item.get(k, 0.0))
            for k in (
                "XOffsetInSlideCoordinateSystem",
                "YOffsetInSlideCoordinateSystem",
                "ZOffsetInSlideCoordinateSystem",
            )
        )
        if origin_item is not None
        else ()
    )
    orientation = tuple(float(v) for v in ds.get("ImageOrientationSlide", []) or [])
    return SlideInfo(int(ds.Rows), int(ds.Columns), origin, orientation)


class SourceFrames:
    """The frames of the source images, in the order of the paths, with their keys and geometry.

    Attributes: ``keys`` and ``index`` (key to frame index), ``rows`` and ``columns`` of a frame,
    ``has_geometry`` (every frame has a position in patient space), ``positions``, ``row_dir``,
    ``col_dir``, ``normal``, ``pixel_spacing``; for a whole slide image ``slide`` is True,
    ``slide_info`` holds its tiling and slide geometry, and ``tile_rows``/``tile_columns`` its tile size.
    """

    def __init__(self, paths: Sequence[Path | str]) -> None:
        import pydicom

        self.keys: list[str] = []
        positions: list[list[float] | None] = []
        orientation: list[float] | None = None
        spacing: list[float] | None = None
        #: Whether the source is a VL Whole Slide Microscopy image (one key: its total pixel matrix).
        self.slide = False
        self.slide_info: SlideInfo | None = None
        for path in paths:
            plain = _single_frame_header(path)
            if plain is not None:  # the usual single-frame image, its header scanned from the bytes
                self.rows, self.columns = plain.rows, plain.columns
                self.keys.append(frame_key(plain.sop_uid))
                positions.append(plain.position)
                orientation = plain.orientation or orientation
                spacing = plain.spacing or spacing
                continue
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            n = int(ds.get("NumberOfFrames", 1) or 1)
            if str(ds.get("SOPClassUID", "")) == VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE:
                spacing = self._add_slide(ds, positions) or spacing
                continue
            self.rows, self.columns = int(ds.Rows), int(ds.Columns)
            shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
            if n > 1 or "PerFrameFunctionalGroupsSequence" in ds:
                if shared is not None and "PlaneOrientationSequence" in shared:
                    orientation = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
                if shared is not None and "PixelMeasuresSequence" in shared:
                    spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
                per_frame = ds.get("PerFrameFunctionalGroupsSequence") or [None] * n
                for i, fg in enumerate(per_frame):
                    self.keys.append(frame_key(ds.SOPInstanceUID, i + 1))
                    plane = fg.get("PlanePositionSequence") if fg is not None else None
                    positions.append([float(v) for v in plane[0].ImagePositionPatient] if plane else None)
            else:
                self.keys.append(frame_key(ds.SOPInstanceUID))
                positions.append([float(v) for v in ds.ImagePositionPatient] if "ImagePositionPatient" in ds else None)
                if "ImageOrientationPatient" in ds:
                    orientation = [float(v) for v in ds.ImageOrientationPatient]
                if "PixelSpacing" in ds:
                    spacing = [float(v) for v in ds.PixelSpacing]
        if self.slide and len(self.keys) != 1:
            raise ValueError(
                f"{len(self.keys)} source frames with a whole slide image among them: "
                "a slide source is one instance (its total pixel matrix)"
            )
        #: Whether every source frame has a position in patient space (projection and slide images do not).
        self.has_geometry = bool(positions) and all(p is not None for p in positions) and orientation is not None
        positions = [p if p is not None else [np.nan] * 3 for p in positions]
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.positions = np.asarray(positions, dtype=float)
        o = np.asarray(orientation or [1, 0, 0, 0, 1, 0], dtype=float)
        self.row_dir, self.col_dir = o[:3], o[3:]
        self.normal = np.cross(self.row_dir, self.col_dir)
        self.pixel_spacing = spacing or [1.0, 1.0]
        self.depths = self.positions @ self.normal
        gaps = np.diff(np.sort(self.depths[np.isfinite(self.depths)]))
        self.slice_tolerance = max(0.1 * (float(np.median(gaps)) if len(gaps) else 1.0), 1e-3)

    @property
    def tile_rows(self) -> int | None:
        """Rows of a tile of the slide source (None when the source is not a slide)."""
        return self.slide_info.tile_rows if self.slide_info else None

    @property
    def tile_columns(self) -> int | None:
        """Columns of a tile of the slide source (None when the source is not a slide)."""
        return self.slide_info.tile_columns if self.slide_info else None

    def _add_slide(self, ds: Any, positions: list[Any]) -> list[float] | None:
        """Record a whole slide image as one frame: its total pixel matrix; return its pixel spacing."""
        if "TotalPixelMatrixRows" not in ds or "TotalPixelMatrixColumns" not in ds:
            raise ValueError(f"whole slide image {ds.SOPInstanceUID} has no Total Pixel Matrix Rows/Columns")
        self.slide = True
        self.slide_info = _slide_info(ds)
        self.rows, self.columns = int(ds.TotalPixelMatrixRows), int(ds.TotalPixelMatrixColumns)
        self.keys.append(frame_key(ds.SOPInstanceUID))
        positions.append(None)
        shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
        if shared is not None and "PixelMeasuresSequence" in shared:
            return [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
        return None

    def by_position(self, position: Any) -> int:
        """The source frame at a plane position (nearest along the normal, within a tenth of a slice), or -1."""
        if not self.has_geometry:
            return -1
        d = float(np.asarray(position, dtype=float) @ self.normal)
        i = int(np.argmin(np.abs(self.depths - d)))
        return i if abs(self.depths[i] - d) <= self.slice_tolerance else -1

    def place(self, origin: np.ndarray, axes: np.ndarray, n_slices: int) -> Placement:
        """Place a volume with ``origin`` and axis steps ``axes`` (column, row, slice) on the source grid."""
        if not self.has_geometry:
            raise ValueError("the source images have no position in patient space: a volume cannot be placed on them")
        col_step, row_step = self.row_dir * self.pixel_spacing[1], self.col_dir * self.pixel_spacing[0]
        flips = []
        for axis, step, name in ((axes[0], col_step, "column"), (axes[1], row_step, "row")):
            if np.allclose(axis, step, atol=1e-3):
                flips.append(False)
            elif np.allclose(axis, -step, atol=1e-3):
                flips.append(True)
            else:
                raise ValueError(
                    f"the volume's {name} axis {np.round(axis, 4).tolist()} is not the source's {np.round(step, 4).tolist()}: "
                    "not on the source grid"
                )
        frames = np.array([self.by_position(origin + k * axes[2]) for k in range(n_slices)], dtype=np.int64)
        placed = np.flatnonzero(frames >= 0)
        if len(placed) == 0:
            raise ValueError("no slice of the volume lies on a source frame")
        k = int(placed[0])
        delta = origin + k * axes[2] - self.positions[frames[k]]
        col = float(delta @ self.row_dir) / self.pixel_spacing[1]
        row = float(delta @ self.col_dir) / self.pixel_spacing[0]
        if abs(col - round(col)) > 0.01 or abs(row - round(row)) > 0.01:
            raise ValueError(f"the volume is offset by a fraction of a pixel ({row:.3f} rows, {col:.3f} columns)")
        return Placement(frames, int(round(row)), int(round(col)), flips[1], flips[0])

    def to_grid(self, placement: Placement, data: np.ndarray) -> np.ndarray:
        """A (slices, rows, columns) volume placed by ``placement``, as an array on the source grid."""
        out = np.zeros((len(self.keys), self.rows, self.columns), dtype=data.dtype)
        h, w = data.shape[1:]
        r0 = placement.row_offset - (h - 1 if placement.flip_rows else 0)
        c0 = placement.col_offset - (w - 1 if placement.flip_cols else 0)
        rs, re = max(r0, 0), min(r0 + h, self.rows)
        cs, ce = max(c0, 0), min(c0 + w, self.columns)
        if rs >= re or cs >= ce:
            return out
        for k in np.flatnonzero(placement.frames >= 0):
            plane = data[k]
            if placement.flip_rows:
                plane = plane[::-1]
            if placement.flip_cols:
                plane = plane[:, ::-1]
            out[placement.frames[k], rs:re, cs:ce] = plane[rs - r0 : re - r0, cs - c0 : ce - c0]
        return out
