"""The canonical decoded form every consumer hands to the harness.

A consumer reads a SEG (and its source series) and reports:

- the segments it found: number, label, coded concepts, tracking identifiers,
  algorithm, display colour;
- for each segment, its pixel data in *source-frame coordinates*: a crop whose
  frame axis indexes ``frame_keys``, the source SOP Instance UIDs in the order
  the consumer chose;
- the geometry it decoded, where it knows it (orientation, spacing, and the
  position of each frame), so that a consumer that places pixels right but
  reports a mirrored or shifted geometry fails the geometry check.

It is written as one ``.npz`` (crops) whose JSON header holds the rest, with
:class:`DecodedWriter`, one segment at a time, so a consumer never needs every
segment in memory at once. The harness reads it with :class:`Decoded`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from dicom4qi.model.masks import (
    Crop,
    MaskFile,
    crop_from_dense,
    crops_from_labelmap,
    write_masks,
)
from dicom4qi.model.segment import Segment

__all__ = ["Decoded", "DecodedGeometry", "DecodedWriter", "frame_key", "merge_decoded"]

FORMAT = "dicom4qi-decoded/1"


def frame_key(sop_instance_uid: str, frame_number: int | None = None) -> str:
    """The key of one source frame.

    The SOP Instance UID of a single-frame image, or ``"<UID>#<n>"`` for frame
    ``n`` (1-based) of a multi-frame image.
    """
    return str(sop_instance_uid) if frame_number is None else f"{sop_instance_uid}#{int(frame_number)}"


@dataclass
class DecodedGeometry:
    """Geometry as decoded; ``positions`` maps a frame key to its position (mm)."""

    orientation: list[float] | None = None
    pixel_spacing: list[float] | None = None
    positions: dict[str, list[float]] = field(default_factory=dict)


class DecodedWriter:
    """Collects a consumer's output segment by segment and writes the ``.npz``."""

    def __init__(self, frame_keys: list[str], rows: int, columns: int, *, fractional: bool = False) -> None:
        self.frame_keys = list(frame_keys)
        self.rows, self.columns = rows, columns
        self.fractional = fractional
        self.segments: list[Segment] = []
        self.geometry = DecodedGeometry()
        self.notes: list[str] = []
        self.info: dict[str, Any] = {}
        #: A viewer's memory outside the call's process (its browser's peak while it read, MiB), if it measured it.
        self.service_peak_rss_mb: float | None = None
        #: The seconds of the tool's own work, where the adapter tells them apart from what it does around it (a
        #: viewer: opening the viewer and showing the segmentation, not uploading the object); None: the whole read.
        self.tool_s: float | None = None
        self._crops: dict[int, Crop] = {}
        self._labelmaps: list[tuple[np.ndarray, int]] = []

    def add_segment(self, segment: Segment) -> None:
        self.segments.append(segment)

    def set_pixels(self, number: int, dense: np.ndarray, *, frame_offset: int = 0) -> None:
        """Give a segment's pixels as a dense (frames, rows, columns) array.

        Binary data is stored as booleans; fractional data as float32 in [0, 1].
        """
        if dense.ndim != 3 or dense.shape[1:] != (self.rows, self.columns):
            raise ValueError(
                f"segment {number}: pixel array shape {dense.shape} is not (n, {self.rows}, {self.columns})"
            )
        data = dense.astype(np.float32 if self.fractional else bool, copy=False)
        crop = crop_from_dense(data, base=(frame_offset, 0, 0))
        if crop is not None:
            self._crops[number] = crop

    def set_crop(self, number: int, crop: Crop) -> None:
        """Give a segment's pixels directly as a crop (frame axis indexes ``frame_keys``)."""
        self._crops[number] = crop

    def set_labelmap(self, labelmap: np.ndarray, *, frame_offset: int = 0) -> None:
        """Give the pixels of many disjoint segments as one label map (0 = none).

        The map is kept as given and cut into per-segment crops only when written, so that a
        benchmark of the tool's decode does not time the suite's conversion.
        """
        self._labelmaps.append((labelmap, frame_offset))

    def write(self, path: Path) -> None:
        for labelmap, offset in self._labelmaps:
            self._crops.update(crops_from_labelmap(labelmap, base_frame=offset))
        self._labelmaps.clear()
        meta = {
            "format": FORMAT,
            "frame_keys": self.frame_keys,
            "rows": self.rows,
            "columns": self.columns,
            "fractional": self.fractional,
            "segments": [s.to_json() for s in self.segments],
            "geometry": asdict(self.geometry),
            "notes": self.notes,
            "info": self.info,
        }
        write_masks(path, self._crops, meta)


class Decoded:
    """A consumer's output as the harness reads it (crops loaded one by one)."""

    def __init__(self, path: Path) -> None:
        self._file = MaskFile(path)
        meta = self._file.meta
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path.name}: not a {FORMAT} file (format={meta.get('format')!r})")
        try:
            self.frame_keys: list[str] = [str(k) for k in meta["frame_keys"]]
            self.rows = int(meta["rows"])
            self.columns = int(meta["columns"])
            self.fractional = bool(meta["fractional"])
            self.segments = [Segment.from_json(s) for s in meta["segments"]]
            self.geometry = DecodedGeometry(**meta["geometry"])
            self.notes: list[str] = list(meta.get("notes", []))
            self.info: dict[str, Any] = dict(meta.get("info", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path.name}: malformed decoded header ({exc})") from None

    def pixels(self, number: int) -> Crop | None:
        return self._file.get(number)

    @property
    def numbers_with_pixels(self) -> list[int]:
        return list(self._file.numbers)

    def __iter__(self) -> Iterator[tuple[int, Crop]]:
        return iter(self._file)

    def close(self) -> None:
        self._file.close()


def _placed(crop: Crop, where: list[int]) -> Crop:
    """``crop`` on another frame axis: its frame ``z`` goes to ``where[z]``."""
    z0, y0, x0 = crop.offset
    try:
        target = [where[z] for z in range(z0, z0 + crop.data.shape[0])]
    except IndexError:
        raise ValueError(f"a crop reaches frame {z0 + crop.data.shape[0] - 1}, past the frame keys") from None
    if target == list(range(target[0], target[0] + len(target))):
        return Crop((target[0], y0, x0), crop.data)
    lo, hi = min(target), max(target) + 1
    dense = np.zeros((hi - lo, *crop.data.shape[1:]), dtype=crop.data.dtype)
    for z, t in enumerate(target):
        dense[t - lo] = crop.data[z]
    return Crop((lo, y0, x0), dense)


def merge_decoded(parts: list[Path], path: Path, numbering: list[dict[int, int]] | None = None) -> None:
    """Write to ``path`` the union of one reader's decodings of the instances of one segmentation.

    A segmentation delivered in several instances of a series is read instance by instance; the reader is
    graded on what they hold together. ``numbering[k]`` maps instance ``k``'s segment numbers to the
    segmentation's (a BINARY instance numbers its segments from 1); a number it does not map is kept, for
    the comparison to find. Frame keys are united in order of first appearance, every crop is placed on the
    united axis, geometry is taken from the first instance that has it. A segment decoded from two instances
    is a ``ValueError``: each segment of the segmentation is in exactly one.
    """
    opened: list[Decoded] = []
    try:
        for p in parts:
            opened.append(Decoded(p))
        first = opened[0]
        keys: list[str] = []
        index: dict[str, int] = {}
        for i, d in enumerate(opened, 1):
            if (d.rows, d.columns, d.fractional) != (first.rows, first.columns, first.fractional):
                raise ValueError(
                    f"instance {i} is decoded as {d.rows} x {d.columns} ({'fractional' if d.fractional else 'binary'}), "
                    f"instance 1 as {first.rows} x {first.columns} ({'fractional' if first.fractional else 'binary'})"
                )
            for k in d.frame_keys:
                if k not in index:
                    index[k] = len(keys)
                    keys.append(k)
        out = DecodedWriter(keys, first.rows, first.columns, fractional=first.fractional)
        described: dict[int, int] = {}
        painted: dict[int, int] = {}
        for i, d in enumerate(opened, 1):
            to_whole = numbering[i - 1] if numbering else {}
            for seg in d.segments:
                number = to_whole.get(seg.number, seg.number)
                if number in described:
                    raise ValueError(f"segment {number} is decoded from instance {described[number]} and {i}")
                described[number] = i
                out.add_segment(replace(seg, number=number))
            where = [index[k] for k in d.frame_keys]
            for local, crop in d:
                number = to_whole.get(local, local)
                if number in painted:
                    raise ValueError(f"pixels of segment {number} are decoded from instance {painted[number]} and {i}")
                painted[number] = i
                out.set_crop(number, _placed(crop, where))
            g = d.geometry
            out.geometry.orientation = out.geometry.orientation or g.orientation
            out.geometry.pixel_spacing = out.geometry.pixel_spacing or g.pixel_spacing
            for k, pos in g.positions.items():
                out.geometry.positions.setdefault(k, pos)
            out.notes += [f"instance {i}: {n}" for n in d.notes]
        out.info = {"instances": [d.info for d in opened]}
        out.write(path)
    finally:
        for d in opened:
            d.close()
