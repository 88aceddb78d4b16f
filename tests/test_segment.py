"""One segment model: truth, decodings and exchange folders speak of a segment with the same fields."""

from __future__ import annotations

import json

import pytest

from dicom4qi.model.case import SegmentOverride
from dicom4qi.model.protocol import ExchangeSegment
from dicom4qi.model.segment import CODE_ATTRIBUTES, Segment

LIVER = Segment(
    number=3,
    label="Liver",
    category={"value": "123037004", "scheme": "SCT", "meaning": "Anatomical Structure"},
    type={"value": "10200004", "scheme": "SCT", "meaning": "Liver"},
    anatomic_region={"value": "818981001", "scheme": "SCT", "meaning": "Abdomen"},
    tracking_id="D4QI-3",
    algorithm_type="AUTOMATIC",
    algorithm_name="nnU-Net",
    algorithm_version="2.1",
    description="the liver",
    color_rgb=(221, 130, 101),
)


def test_a_segment_survives_json_and_an_exchange_folder_unchanged() -> None:
    assert Segment.from_json(json.loads(json.dumps(LIVER.to_json()))) == LIVER  # colour back as a tuple
    outside = ExchangeSegment.model_validate(
        {k: v for k, v in LIVER.to_json().items() if v is not None and k != "empty"}
    )
    assert outside.to_segment() == LIVER


def test_the_outside_form_has_exactly_the_segment_fields() -> None:
    # The bounded outside form may not drift from the one model: a field added to one is added to the other.
    assert set(ExchangeSegment.model_fields) == set(Segment.field_names()) - {"empty"}
    assert set(CODE_ATTRIBUTES) <= set(Segment.field_names())
    # A case file's per-segment metadata names the same attributes (its colour is `color`; `empty` is computed).
    assert set(SegmentOverride.model_fields) == (set(Segment.field_names()) - {"empty", "color_rgb"}) | {"color"}


def test_a_segment_with_an_unknown_field_is_refused() -> None:
    with pytest.raises(TypeError):
        Segment.from_json({"number": 1, "colour": [1, 2, 3]})
