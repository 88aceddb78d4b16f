"""dcmqi's segmentation metadata JSON, generated from the truth's segment metadata.

dcmqi (``itkimage2segimage``) and pydicom-seg (``template.from_dcmqi_metainfo``)
both take it; pydicom-seg validates it against dcmqi's JSON schema.
"""

from __future__ import annotations

from typing import Any

from dicom4qi.model.segment import Code, Segment
from dicom4qi.model.truth import Truth

__all__ = ["dcmqi_metadata"]


def _code(c: Code) -> dict[str, str]:
    return {"CodeValue": c["value"], "CodingSchemeDesignator": c["scheme"], "CodeMeaning": c["meaning"]}


def _segment(info: Segment, label_id: int) -> dict[str, Any]:
    assert info.category is not None and info.type is not None  # the truth always has them
    out: dict[str, Any] = {
        "labelID": label_id,
        "SegmentLabel": info.label,
        "SegmentedPropertyCategoryCodeSequence": _code(info.category),
        "SegmentedPropertyTypeCodeSequence": _code(info.type),
        "SegmentAlgorithmType": info.algorithm_type,
    }
    if info.type_modifier:
        out["SegmentedPropertyTypeModifierCodeSequence"] = _code(info.type_modifier)
    if info.anatomic_region:
        out["AnatomicRegionSequence"] = _code(info.anatomic_region)
    if info.anatomic_region_modifier:
        out["AnatomicRegionModifierSequence"] = _code(info.anatomic_region_modifier)
    if info.description:
        out["SegmentDescription"] = info.description
    if info.algorithm_type != "MANUAL":
        out["SegmentAlgorithmName"] = info.algorithm_name
    if info.color_rgb:
        out["recommendedDisplayRGBValue"] = list(info.color_rgb)
    if info.tracking_id:
        out["TrackingIdentifier"] = info.tracking_id
    if info.tracking_uid:
        out["TrackingUniqueIdentifier"] = info.tracking_uid
    return out


def dcmqi_metadata(truth: Truth, series_description: str, groups: list[list[tuple[int, int]]]) -> dict[str, Any]:
    """The metadata for ``groups``: one list per input image of (segment number, label ID in that image)."""
    infos = {s.number: s for s in truth.segments}
    return {
        "ContentCreatorName": "DICOM4QI^Suite",
        "ClinicalTrialSeriesID": "Session1",
        "ClinicalTrialTimePointID": "1",
        "ClinicalTrialCoordinatingCenterName": "dicom4qi",
        "SeriesDescription": series_description[:64],
        "SeriesNumber": "100",
        "InstanceNumber": "1",
        "BodyPartExamined": "",
        "ContentLabel": "SEGMENTATION",
        "ContentDescription": "dicom4qi synthetic truth",
        "segmentAttributes": [[_segment(infos[n], label) for n, label in group] for group in groups],
    }
