"""One segment, as everything in the suite speaks of it: truth, decoded output, exchange folders, reports.

A :class:`Segment` is what the Segment Sequence of PS3.3 C.8.20.4 says of one
segment: its number, label, coded concepts (category, type and its modifier,
anatomic region and its modifier), tracking, algorithm identification,
description and recommended display colour. The truth of a case
(:class:`dicom4qi.model.truth.Truth`) lists one per segment and marks those
with no voxel (``empty``); a consumer's decoding
(:class:`dicom4qi.model.decoded.DecodedWriter`) reports one per segment it
found, with what it could read (None where it reports nothing). Codes are
:class:`Code` dicts, as they are stored in JSON.

Documents from outside the suite (a vendor's ``segments.json``) are checked
against a bounded form of the same fields,
:class:`dicom4qi.model.protocol.ExchangeSegment`, and converted into this one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, TypedDict

__all__ = ["CODE_ATTRIBUTES", "Code", "Segment"]


class Code(TypedDict):
    """A coded concept: Code Value, Coding Scheme Designator, Code Meaning."""

    value: str
    scheme: str
    meaning: str


#: The coded attributes of a segment.
CODE_ATTRIBUTES = ("category", "type", "type_modifier", "anatomic_region", "anatomic_region_modifier")


@dataclass(kw_only=True)
class Segment:
    """One segment's metadata (what a reader is expected to report, or what it did report)."""

    number: int
    label: str | None = None
    category: Code | None = None
    type: Code | None = None
    type_modifier: Code | None = None
    anatomic_region: Code | None = None
    anatomic_region_modifier: Code | None = None
    tracking_id: str | None = None
    tracking_uid: str | None = None
    algorithm_type: str | None = None
    algorithm_name: str | None = None
    algorithm_version: str | None = None
    description: str | None = None
    color_rgb: tuple[int, int, int] | None = None
    #: The truth's mark of a declared segment without a voxel (decodings leave it False).
    empty: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Segment:
        """A segment from its JSON object (unknown keys are an error: a TypeError)."""
        color = data.get("color_rgb")
        rgb = (int(color[0]), int(color[1]), int(color[2])) if color else None
        return cls(**{**data, "color_rgb": rgb})

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
