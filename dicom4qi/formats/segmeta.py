"""Segment metadata from a SEG's Segment Sequence, in the canonical form (shared by consumers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dicom4qi.model.color import dicom_lab_to_rgb
from dicom4qi.model.segment import Code, Segment

__all__ = ["code_from_sequence", "segment_from_item", "segments_from_dataset"]

ColorFn = Callable[[list[int]], tuple[int, int, int]]


def code_from_sequence(seq: Any) -> Code | None:
    """The first item of a code sequence as {value, scheme, meaning}, or None."""
    if not seq:
        return None
    item = seq[0]
    return {"value": str(item.CodeValue), "scheme": str(item.CodingSchemeDesignator), "meaning": str(item.CodeMeaning)}


def segment_from_item(item: Any, number: int | None = None, color: ColorFn = dicom_lab_to_rgb) -> Segment:
    """One Segment Sequence item; ``color`` turns Recommended Display CIELab into RGB."""
    algo = item.get("SegmentationAlgorithmIdentificationSequence")
    lab = item.get("RecommendedDisplayCIELabValue")
    return Segment(
        number=int(item.SegmentNumber) if number is None else number,
        label=str(item.SegmentLabel) if "SegmentLabel" in item else None,
        category=code_from_sequence(item.get("SegmentedPropertyCategoryCodeSequence")),
        type=code_from_sequence(item.get("SegmentedPropertyTypeCodeSequence")),
        tracking_id=str(item.TrackingID) if "TrackingID" in item else None,
        tracking_uid=str(item.TrackingUID) if "TrackingUID" in item else None,
        algorithm_type=str(item.get("SegmentAlgorithmType", "")) or None,
        # Segment Algorithm Name (Type 1C) is the standard's place for it; the identification sequence is Type 3.
        algorithm_name=str(item.SegmentAlgorithmName)
        if "SegmentAlgorithmName" in item
        else str(algo[0].AlgorithmName)
        if algo and "AlgorithmName" in algo[0]
        else None,
        algorithm_version=str(algo[0].AlgorithmVersion) if algo and "AlgorithmVersion" in algo[0] else None,
        color_rgb=color([int(v) for v in lab]) if lab else None,
        description=str(item.SegmentDescription) if "SegmentDescription" in item else None,
        type_modifier=_nested_code(
            item, "SegmentedPropertyTypeCodeSequence", "SegmentedPropertyTypeModifierCodeSequence"
        ),
        anatomic_region=code_from_sequence(item.get("AnatomicRegionSequence")),
        anatomic_region_modifier=_nested_code(item, "AnatomicRegionSequence", "AnatomicRegionModifierSequence"),
    )


def _nested_code(item: Any, outer: str, inner: str) -> Code | None:
    """A modifier code, which the standard nests in the first item of the code it modifies."""
    seq = item.get(outer)
    return code_from_sequence(seq[0].get(inner)) if seq else None


def segments_from_dataset(ds: Any, color: ColorFn = dicom_lab_to_rgb) -> list[Segment]:
    return [segment_from_item(item, color=color) for item in ds.get("SegmentSequence", [])]
