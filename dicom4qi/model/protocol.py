"""The documents the suite exchanges with the outside: adapter protocol, exchange folders, bundles, submissions.

Everything here may come from a program or a person the suite does not control,
so every model forbids unknown fields and bounds its strings and lists; the
JSON Schemas in ``reports/schema/`` are generated from these models
(``dicom4qi schema``). The protocol itself is described in ``docs/protocol.md``,
the vendor workflow in ``docs/vendors.md``.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from dicom4qi.model.segment import Code, Segment

__all__ = [
    "PROTOCOL",
    "EXCHANGE_FORMAT",
    "BUNDLE_FORMAT",
    "SUBMISSION_FORMAT",
    "AdapterManifest",
    "Request",
    "InfoResponse",
    "CallResponse",
    "ExchangeCode",
    "ExchangeSegment",
    "ExchangeDoc",
    "SubmissionEntry",
    "SelfReport",
    "SubmissionDoc",
    "SubmittedTool",
    "schema_texts",
]

PROTOCOL: Final = 1
EXCHANGE_FORMAT: Final = "dicom4qi-exchange/1"
BUNDLE_FORMAT = "dicom4qi-bundle/1"
SUBMISSION_FORMAT: Final = "dicom4qi-submission/1"

#: Text with no control characters (newlines and tabs aside), bounded.
_TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"

Short = Annotated[str, StringConstraints(max_length=256, pattern=_TEXT_PATTERN)]
Long = Annotated[str, StringConstraints(max_length=4096, pattern=_TEXT_PATTERN)]
Text1000 = Annotated[str, StringConstraints(max_length=1000, pattern=_TEXT_PATTERN)]
Text1024 = Annotated[str, StringConstraints(max_length=1024, pattern=_TEXT_PATTERN)]
Text2000 = Annotated[str, StringConstraints(max_length=2000, pattern=_TEXT_PATTERN)]
#: A name safe as one path component (vendor ids, adapter names).
SafeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
#: A relative path inside a submission: forward slashes; no component starts with '.' (so no '..'), none is absolute.
RelPath = Annotated[
    str,
    StringConstraints(
        max_length=512, pattern=r"^[A-Za-z0-9_+@=-][A-Za-z0-9._+@=-]*(/[A-Za-z0-9_+@=-][A-Za-z0-9._+@=-]*)*$"
    ),
]
#: A web link: http or https only (a link from outside must not run script on the dashboard).
HttpUrl = Annotated[str, StringConstraints(max_length=512, pattern=r"^https?://[^\s\"'<>`]+$")]
FeatureName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
UidText = Annotated[str, StringConstraints(max_length=64, pattern=r"^[0-9]+(\.[0-9]+)*$")]
FrameKey = Annotated[str, StringConstraints(max_length=80, pattern=r"^[0-9]+(\.[0-9]+)*(#[1-9][0-9]{0,8})?$")]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- the adapter protocol
class AdapterManifest(_Doc):
    """``dicom4qi-adapter.json``: how the harness runs an executable adapter."""

    protocol: Literal[1] = Field(description="The protocol version the adapter speaks.")
    command: list[Short] = Field(
        min_length=1, max_length=32, description="Run in the adapter's folder, once per request."
    )
    transport: Literal["stdio", "files"] = Field(
        "stdio",
        description="stdio: the request on standard input, the response on standard output; files: the command gets "
        "two more arguments, the request file to read and the response file to write.",
    )
    setup: list[Short] | None = Field(
        None, max_length=32, description="Run once in the folder before the first request."
    )
    setup_inputs: list[RelPath] = Field(
        default_factory=list, max_length=32, description="Files whose change reruns setup."
    )
    requires: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._+-]{1,64}$")]] = Field(
        default_factory=list, max_length=16, description="Programs that must be on PATH."
    )
    releases: list[Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$")]] = Field(
        default_factory=list,
        max_length=64,
        description="The releases of its tool the adapter installs and takes as its variant (NAME@RELEASE), if any: "
        "what `dicom4qi sweep NAME` puts side by side.",
    )


class Request(_Doc):
    """What the harness sends on the adapter's standard input."""

    protocol: Literal[1] = PROTOCOL
    op: Literal["info", "read", "write"]
    supported_protocols: list[int] | None = Field(None, description="info: the protocol versions the harness speaks.")
    seg: str | None = Field(None, description="read: the SEG file.")
    sources: list[str] | None = Field(None, description="read, write: the source image files.")
    output: str | None = Field(
        None, description="read: an empty folder for the exchange format; write: the SEG file to write."
    )
    case: dict[str, Any] | None = Field(None, description="write: the case (its file, as JSON, with its id).")
    truth: str | None = Field(None, description="write: a folder in the exchange format holding the truth.")
    variant: str | None = Field(
        None,
        description="every op: the adapter's parameter where it was named as name@param (a release of the tool, a "
        "mode); absent otherwise.",
    )


class InfoResponse(BaseModel):
    """The handshake's answer (unknown fields are ignored, for adapters newer than the harness)."""

    model_config = ConfigDict(extra="ignore")

    protocol: int
    ok: bool
    error: Long | None = None
    name: SafeName | None = None
    tool: Short | None = None
    version: Short | None = None
    role: Literal["producer", "consumer"] | None = None
    available: bool = True
    reason: Long = ""
    features: list[FeatureName] = Field(default_factory=list, max_length=256)
    unsupported_combinations: list[list[FeatureName]] = Field(default_factory=list, max_length=256)
    homepage: HttpUrl | None = None
    summary: Long | None = None
    family: SafeName | None = None

    @model_validator(mode="after")
    def _complete(self) -> InfoResponse:
        if self.ok and self.protocol == PROTOCOL and not (self.name and self.tool and self.role):
            raise ValueError("an ok info response needs name, tool and role")
        return self


class CallResponse(BaseModel):
    """The answer to read and write."""

    model_config = ConfigDict(extra="ignore")

    protocol: int
    ok: bool
    error: Long | None = None
    notes: list[Long] = Field(default_factory=list, max_length=256)


# --------------------------------------------------------------------------- the exchange format
class ExchangeCode(_Doc):
    value: Short
    scheme: Short
    meaning: Short

    def as_code(self) -> Code:
        return {"value": self.value, "scheme": self.scheme, "meaning": self.meaning}


class ExchangeSegment(_Doc):
    """A :class:`dicom4qi.model.segment.Segment` as an outside document gives it: the same fields, bounded."""

    number: int = Field(ge=1, le=65535)
    label: Short | None = None
    category: ExchangeCode | None = None
    type: ExchangeCode | None = None
    type_modifier: ExchangeCode | None = None
    anatomic_region: ExchangeCode | None = None
    anatomic_region_modifier: ExchangeCode | None = None
    tracking_id: Short | None = None
    tracking_uid: UidText | None = None
    algorithm_type: Short | None = None
    algorithm_name: Short | None = None
    algorithm_version: Short | None = None
    description: Text1024 | None = None
    color_rgb: (
        tuple[
            Annotated[int, Field(ge=0, le=255)],
            Annotated[int, Field(ge=0, le=255)],
            Annotated[int, Field(ge=0, le=255)],
        ]
        | None
    ) = None

    def to_segment(self) -> Segment:
        def code(c: ExchangeCode | None) -> Code | None:
            return None if c is None else c.as_code()

        return Segment(
            number=self.number,
            label=self.label,
            category=code(self.category),
            type=code(self.type),
            type_modifier=code(self.type_modifier),
            anatomic_region=code(self.anatomic_region),
            anatomic_region_modifier=code(self.anatomic_region_modifier),
            tracking_id=self.tracking_id,
            tracking_uid=self.tracking_uid,
            algorithm_type=self.algorithm_type,
            algorithm_name=self.algorithm_name,
            algorithm_version=self.algorithm_version,
            description=self.description,
            color_rgb=self.color_rgb,
        )


class ExchangeDoc(_Doc):
    """``segments.json`` of an exchange folder."""

    format: Literal["dicom4qi-exchange/1"] = EXCHANGE_FORMAT
    frames: list[FrameKey] | None = Field(None, max_length=100_000, description="The source frame of each slice k.")
    positions: list[tuple[float, float, float]] | None = Field(
        None, max_length=100_000, description="Image Position (Patient) of each slice k (LPS, mm), where not regular."
    )
    fractional: bool = False
    segments: list[ExchangeSegment] = Field(max_length=65535)
    notes: list[Long] = Field(default_factory=list, max_length=256)

    @model_validator(mode="after")
    def _consistent(self) -> ExchangeDoc:
        numbers = [s.number for s in self.segments]
        if len(set(numbers)) != len(numbers):
            raise ValueError("segment numbers repeat")
        if self.frames is not None and len(set(self.frames)) != len(self.frames):
            raise ValueError("frames repeat")
        if self.positions is not None and self.frames is not None and len(self.positions) != len(self.frames):
            raise ValueError("positions and frames differ in length")
        return self


# --------------------------------------------------------------------------- submissions
class SubmittedTool(_Doc):
    name: Short = Field(min_length=1, max_length=100)
    version: Short = Field(min_length=1, max_length=64)
    homepage: HttpUrl | None = None


class SelfReport(_Doc):
    status: Literal["PASS", "FAIL", "ERROR", "CRASH", "TIMEOUT", "UNSUPPORTED"]
    message: Text1000 = ""


class SubmissionEntry(_Doc):
    """One object of a submission.

    Consumer submissions name a bundle ``object`` and give what the tool decoded: an exchange folder
    (``decoded``) or a SEG the tool re-exported (``seg``); or, without outputs, a ``self_reported`` status.
    Producer submissions name a ``case`` and give the ``seg`` the tool wrote for it.
    """

    object: RelPath | None = None
    case: RelPath | None = None
    decoded: RelPath | None = None
    seg: RelPath | None = None
    self_reported: SelfReport | None = None
    notes: list[Text1000] = Field(default_factory=list, max_length=16)

    @model_validator(mode="after")
    def _one(self) -> SubmissionEntry:
        if (self.object is None) == (self.case is None):
            raise ValueError("an entry names either a bundle object (consumers) or a case (producers)")
        if self.decoded is not None and self.seg is not None:
            raise ValueError("an entry gives decoded output or a SEG, not both")
        if self.decoded is None and self.seg is None and self.self_reported is None:
            raise ValueError("an entry gives decoded output, a SEG or a self-reported status")
        return self


class SubmissionDoc(_Doc):
    """``submission.json``: who submits what, for which bundle."""

    format: Literal["dicom4qi-submission/1"] = SUBMISSION_FORMAT
    vendor: SafeName = Field(
        description="The submitter's id: letters, digits, '.', '_' and '-' (it names a folder); compared in lower case "
        "without trailing punctuation, so 'ACME', 'acme.' and 'acme' are one vendor."
    )
    tool: SubmittedTool

    @field_validator("vendor", mode="before")
    @classmethod
    def _normalized_vendor(cls, v: object) -> object:
        if not isinstance(v, str):
            return v
        norm = v.strip().lower().rstrip("._-")
        if re.search(r"[._-]{2,}", norm):
            raise ValueError(f"{v!r}: punctuation may not repeat in a vendor id")
        return norm

    role: Literal["consumer", "producer"]
    bundle: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")] = Field(
        description="The bundle's id (its manifest)."
    )
    contact: Short | None = None
    created: Short | None = None
    notes: Text2000 | None = None
    entries: list[SubmissionEntry] | None = Field(
        None,
        max_length=20_000,
        description="Consumers may leave this out: decoded/<object id>/ folders are then found by name.",
    )

    @model_validator(mode="after")
    def _roles(self) -> SubmissionDoc:
        for e in self.entries or []:
            if self.role == "consumer" and e.object is None:
                raise ValueError("a consumer submission's entries name bundle objects")
            if self.role == "producer" and (e.case is None or e.seg is None):
                raise ValueError("a producer submission's entries name a case and its seg")
        if self.role == "producer" and not self.entries:
            raise ValueError("a producer submission lists its entries (case and seg)")
        return self


def schema_texts() -> dict[str, str]:
    """The JSON Schemas of the outside documents, by file name under reports/schema."""
    out = {}
    for name, model, title in (
        ("adapter-manifest.schema.json", AdapterManifest, "dicom4qi adapter manifest (dicom4qi-adapter.json)"),
        ("adapter-request.schema.json", Request, "dicom4qi adapter protocol: request"),
        ("adapter-info-response.schema.json", InfoResponse, "dicom4qi adapter protocol: info response"),
        ("adapter-response.schema.json", CallResponse, "dicom4qi adapter protocol: read and write response"),
        ("exchange.schema.json", ExchangeDoc, "dicom4qi exchange folder: segments.json"),
        ("submission.schema.json", SubmissionDoc, "dicom4qi vendor submission: submission.json"),
    ):
        schema = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = title
        out[name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out
