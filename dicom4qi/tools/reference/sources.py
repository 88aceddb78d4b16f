"""What the reference producer takes from the source images: their headers, their frames lined up with the
truth's frame keys, and the geometry of the first one.

A multi-frame source is read per frame from its functional groups (per frame, else shared); a single-frame
instance from its top-level attributes. Tiled whole slide images are refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from dicom4qi.model.decoded import frame_key
from dicom4qi.model.truth import Truth
from dicom4qi.model.uids import VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE

__all__ = ["SourceFrame", "SourceInfo", "read_sources"]


@dataclass(frozen=True)
class SourceFrame:
    """One frame of the truth's grid, as the source images describe it."""

    sop_class_uid: str
    sop_instance_uid: str
    series_uid: str
    #: 1-based frame number in a multi-frame source; None for a single-frame instance.
    frame_number: int | None
    #: Image Position (Patient) as the source states it; None where it has none.
    position: list[str] | None
    #: Temporal Position Index of the source frame; None where it has none.
    temporal_index: int | None


@dataclass(frozen=True)
class SourceInfo:
    """What the writer takes from the source images: headers, frames in the truth's order, geometry."""

    header: Any  # the first source instance's header (patient, study, frame of reference)
    frames: list[SourceFrame]
    orientation: list[str] | None
    pixel_spacing: list[str] | None
    slice_thickness: str | None

    @property
    def has_positions(self) -> bool:
        return self.orientation is not None and all(f.position is not None for f in self.frames)

    def depth_ranks(self) -> list[int]:
        """1-based rank of each frame's position: along the slice normal, then by coordinates (equal positions share one)."""
        assert self.orientation is not None
        o = np.asarray([float(v) for v in self.orientation])
        normal = np.cross(o[:3], o[3:])
        keys = []
        for f in self.frames:
            xyz = tuple(round(float(v), 4) for v in f.position or ())
            keys.append((round(float(np.asarray(xyz) @ normal), 4), xyz))
        order = {k: i + 1 for i, k in enumerate(sorted(set(keys)))}
        return [order[k] for k in keys]


def _is_multiframe(ds: Any) -> bool:
    return int(ds.get("NumberOfFrames", 1) or 1) > 1 or "PerFrameFunctionalGroupsSequence" in ds


def _frames_of(ds: Any) -> Iterator[tuple[str, SourceFrame]]:
    """The frames of one source instance, with their keys."""
    sop_class, sop_uid, series = str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID)
    if not _is_multiframe(ds):
        pos = [str(v) for v in ds.ImagePositionPatient] if "ImagePositionPatient" in ds else None
        yield frame_key(sop_uid), SourceFrame(sop_class, sop_uid, series, None, pos, None)
        return
    n = int(ds.get("NumberOfFrames", 1) or 1)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or [None] * n
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    for i, fg in enumerate(per_frame):
        plane = _group(fg, shared, "PlanePositionSequence")
        content = _group(fg, None, "FrameContentSequence")
        pos = (
            [str(v) for v in plane.ImagePositionPatient]
            if plane is not None and "ImagePositionPatient" in plane
            else None
        )
        tpi = content.get("TemporalPositionIndex") if content is not None else None
        yield (
            frame_key(sop_uid, i + 1),
            SourceFrame(sop_class, sop_uid, series, i + 1, pos, int(tpi) if tpi is not None else None),
        )


def _group(per_frame: Any, shared: Any, keyword: str) -> Any:
    """The first item of a functional group, per frame or else shared (None if neither has it)."""
    for fg in (per_frame, shared):
        if fg is not None and keyword in fg and len(fg[keyword].value):
            return fg[keyword].value[0]
    return None


def _geometry_of(ds: Any) -> tuple[list[str] | None, list[str] | None, str | None]:
    """Orientation, pixel spacing and slice thickness of a source instance (its first frame's groups, else the shared ones)."""
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    first = ds.PerFrameFunctionalGroupsSequence[0] if "PerFrameFunctionalGroupsSequence" in ds else None
    orientation_item = _group(first, shared, "PlaneOrientationSequence")
    measures = _group(first, shared, "PixelMeasuresSequence")
    top = ds if not _is_multiframe(ds) else None
    orientation = orientation_item.get("ImageOrientationPatient") if orientation_item is not None else None
    spacing = measures.get("PixelSpacing") if measures is not None else None
    thickness = measures.get("SliceThickness") if measures is not None else None
    if top is not None:
        orientation = top.get("ImageOrientationPatient", orientation)
        spacing = top.get("PixelSpacing", top.get("ImagerPixelSpacing", spacing))
        thickness = top.get("SliceThickness", thickness)
    return (
        [str(v) for v in orientation] if orientation else None,
        [str(v) for v in spacing] if spacing else None,
        str(thickness) if thickness not in (None, "") else None,
    )


def read_sources(truth: Truth) -> SourceInfo:
    """Read the source headers and line their frames up with the truth's frame keys."""
    import pydicom

    by_key: dict[str, SourceFrame] = {}
    header = None
    geometry: tuple[list[str] | None, list[str] | None, str | None] = (None, None, None)
    for path in truth.source_paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if (
            str(ds.SOPClassUID) == VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE
            or ds.get("DimensionOrganizationType") == "TILED_FULL"
        ):
            raise ValueError(f"{path.name}: a tiled whole slide image; the reference producer does not segment slides")
        if header is None:
            header, geometry = ds, _geometry_of(ds)
        by_key.update(_frames_of(ds))
    if header is None:
        raise ValueError("the case has no source images")
    missing = [k for k in truth.frame_keys if k not in by_key]
    if missing:
        raise ValueError(f"{len(missing)} frame(s) of the truth are in no source image (first {missing[0]})")
    return SourceInfo(header, [by_key[k] for k in truth.frame_keys], *geometry)
