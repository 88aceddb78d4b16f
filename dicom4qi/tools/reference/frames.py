"""The frames of the reference producer's object: which source frame each segments, the dimensions that tell
them apart, and their functional groups.

- dimensions: Referenced Segment Number (BINARY, FRACTIONAL), then what tells the
  source frames apart: Image Position (Patient) for a volume, the Temporal
  Position Index for a cine (all frames at one position), and for an image
  without a position in patient space the Frame Label (Frame Content), which
  names the source frame (dciodvfy looks for a dimension's attribute directly
  in a functional group item, so the nested Referenced SOP Instance UID or
  Referenced Frame Number of the Derivation Image group would not do). With
  ``frame_order = "position-major"`` the frames go slice by slice with the
  segments interleaved, and the segment dimension comes second; ``shuffled``
  frames keep the dimensions of segment-major order;
- per frame: Derivation Image (the source frame it segments; left out with
  ``source_references = "position-only"``), Frame Content
  (Dimension Index Values, and the source's Temporal Position Index where it has
  one), Plane Position (Patient) where the source has positions, Segment
  Identification (BINARY and FRACTIONAL); shared: Pixel Measures and Plane
  Orientation (Patient); and the Multi-frame Dimension module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dicom4qi.model.truth import Truth
from dicom4qi.tools.reference.header import make_code, make_item, make_seq
from dicom4qi.tools.reference.sources import SourceInfo

__all__ = [
    "Dimension",
    "OutFrame",
    "dimension_module",
    "frame_group",
    "frame_label",
    "plan_dimensions",
    "shared_groups",
]

# Tags of the attributes used as dimensions and of the functional groups holding them.
_REFERENCED_SEGMENT_NUMBER = 0x0062000B
_SEGMENT_IDENTIFICATION_SEQUENCE = 0x0062000A
_IMAGE_POSITION_PATIENT = 0x00200032
_PLANE_POSITION_SEQUENCE = 0x00209113
_TEMPORAL_POSITION_INDEX = 0x00209128
_FRAME_CONTENT_SEQUENCE = 0x00209111
_FRAME_LABEL = 0x00209453

#: (value, scheme, meaning) of the codes the per-frame groups use.
_SOURCE_FOR_PROCESSING = ("121322", "DCM", "Source image for image processing operation")
_SEGMENTATION_DERIVATION = ("113076", "DCM", "Segmentation")


@dataclass(frozen=True)
class OutFrame:
    """One frame of the object: the segment it holds (None in a label map) and its source frame (truth index)."""

    segment: int | None
    index: int


@dataclass(frozen=True)
class Dimension:
    """One item of the Dimension Index Sequence and how a frame's index value is found."""

    pointer: int
    group: int
    label: str
    value: Callable[[OutFrame], int]


def plan_dimensions(source: SourceInfo, segmented: bool, position_major: bool) -> tuple[list[Dimension], str | None]:
    """The dimensions of the object, in order, and its Dimension Organization Type (None: not stated).

    Raise ValueError when nothing tells the source frames apart.
    """
    frames = source.frames
    ranks = source.depth_ranks() if source.has_positions else []
    if ranks and len(set(ranks)) == len(frames):
        spatial = Dimension(
            _IMAGE_POSITION_PATIENT, _PLANE_POSITION_SEQUENCE, "Image Position (Patient)", lambda f: ranks[f.index]
        )
        kind: str | None = "3D"
    elif all(f.temporal_index is not None for f in frames) and len({f.temporal_index for f in frames}) == len(frames):

        def temporal_index(f: OutFrame) -> int:
            t = frames[f.index].temporal_index
            assert t is not None  # every frame has one (checked above)
            return int(t)

        spatial = Dimension(
            _TEMPORAL_POSITION_INDEX,
            _FRAME_CONTENT_SEQUENCE,
            "Temporal Position Index",
            temporal_index,
        )
        kind = "3D_TEMPORAL"
    elif not source.has_positions:
        spatial = Dimension(_FRAME_LABEL, _FRAME_CONTENT_SEQUENCE, "Source Frame", lambda f: f.index + 1)
        kind = None
    else:
        raise ValueError(
            "the source frames share positions but carry no distinct Temporal Position Index: "
            "nothing tells them apart as a dimension"
        )
    if not segmented:
        return [spatial], kind
    segment = Dimension(
        _REFERENCED_SEGMENT_NUMBER, _SEGMENT_IDENTIFICATION_SEQUENCE, "Segment Number", lambda f: int(f.segment or 0)
    )
    return ([spatial, segment] if position_major else [segment, spatial]), kind


def _ds(value: float) -> str:
    """A DS value of at most 16 characters."""
    return f"{value:.10g}"[:16]


def dimension_module(ds: Any, dims: list[Dimension], kind: str | None, uid: str) -> None:
    """Multi-frame Dimension module."""
    ds.DimensionOrganizationSequence = make_seq(make_item(DimensionOrganizationUID=uid))
    ds.DimensionIndexSequence = make_seq(
        *(
            make_item(
                DimensionOrganizationUID=uid,
                DimensionIndexPointer=d.pointer,
                FunctionalGroupPointer=d.group,
                DimensionDescriptionLabel=d.label,
            )
            for d in dims
        )
    )
    if kind is not None:
        ds.DimensionOrganizationType = kind


def shared_groups(source: SourceInfo, truth: Truth) -> Any:
    """Pixel Measures and, for images in patient space, Plane Orientation (Patient)."""
    shared = make_item()
    spacing = source.pixel_spacing or [_ds(v) for v in truth.geometry.pixel_spacing]
    measures = make_item(PixelSpacing=spacing)
    if source.has_positions:
        measures.SliceThickness = source.slice_thickness or _ds(truth.geometry.slice_spacing)
    shared.PixelMeasuresSequence = make_seq(measures)
    if source.orientation is not None:
        shared.PlaneOrientationSequence = make_seq(make_item(ImageOrientationPatient=source.orientation))
    return shared


def frame_group(
    frame: OutFrame, source: SourceInfo, dims: list[Dimension], labelmap: bool, source_reference: bool = True
) -> Any:
    """One item of the Per-frame Functional Groups Sequence (``source_reference``: with its Derivation Image)."""
    src = source.frames[frame.index]
    fg = make_item()
    if source_reference:
        ref = make_item(ReferencedSOPClassUID=src.sop_class_uid, ReferencedSOPInstanceUID=src.sop_instance_uid)
        if src.frame_number is not None:
            ref.ReferencedFrameNumber = src.frame_number
        ref.PurposeOfReferenceCodeSequence = make_seq(make_code(*_SOURCE_FOR_PROCESSING))
        ref.SpatialLocationsPreserved = "YES"
        fg.DerivationImageSequence = make_seq(
            make_item(
                SourceImageSequence=make_seq(ref), DerivationCodeSequence=make_seq(make_code(*_SEGMENTATION_DERIVATION))
            )
        )
    content = make_item()
    if src.temporal_index is not None:
        content.TemporalPositionIndex = src.temporal_index
    content.DimensionIndexValues = [d.value(frame) for d in dims]
    if any(d.pointer == _FRAME_LABEL for d in dims):
        content.FrameLabel = frame_label(frame.index)
    fg.FrameContentSequence = make_seq(content)
    if src.position is not None and source.orientation is not None:
        fg.PlanePositionSequence = make_seq(make_item(ImagePositionPatient=src.position))
    if not labelmap:
        fg.SegmentIdentificationSequence = make_seq(make_item(ReferencedSegmentNumber=frame.segment))
    return fg


def frame_label(index: int) -> str:
    """The Frame Label naming the source frame a frame segments (the dimension of images without a position)."""
    return f"source frame {index + 1}"
