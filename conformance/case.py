"""The case model: one TOML file under ``corpus/cases`` declares one case.

The model is written once, here, with pydantic; the JSON Schema in
``corpus/case.schema.json`` is generated from it (``dicom4qi schema``) and a
test checks that the committed copy is current. A case's identifier is its
path below the cases folder without the ``.toml`` suffix, e.g.
``quick/binary-3-disjoint``.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "Case",
    "CaseError",
    "Code",
    "Encoding",
    "Metadata",
    "SegmentationType",
    "SegmentOverride",
    "Segments",
    "Source",
    "Tier",
    "TRANSFER_SYNTAXES",
    "implied_features",
    "load_case",
    "load_cases",
    "load_features",
    "schema_text",
]

#: Transfer syntaxes a case may request, by keyword: UID and feature name.
TRANSFER_SYNTAXES: dict[str, tuple[str, str]] = {
    "ImplicitVRLittleEndian": ("1.2.840.10008.1.2", "ts-implicit-le"),
    "ExplicitVRLittleEndian": ("1.2.840.10008.1.2.1", "ts-explicit-le"),
    "DeflatedExplicitVRLittleEndian": ("1.2.840.10008.1.2.1.99", "ts-deflate"),
    "RLELossless": ("1.2.840.10008.1.2.5", "ts-rle"),
    "JPEG2000Lossless": ("1.2.840.10008.1.2.4.90", "ts-jpeg2000"),
    "JPEGLSLossless": ("1.2.840.10008.1.2.4.80", "ts-jpegls"),
}

#: Bumped whenever the synthesis of sources or truth changes, so caches renew.
SYNTHESIS_VERSION = 3


class Tier(str, Enum):
    """How often a case runs: every run, the full (nightly) run, stress runs."""

    QUICK = "quick"
    FULL = "full"
    STRESS = "stress"


class SegmentationType(str, Enum):
    """Segmentation Type (0062,0001) the case asks the producer to write."""

    BINARY = "BINARY"
    FRACTIONAL = "FRACTIONAL"
    LABELMAP = "LABELMAP"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Code(_Strict):
    """A coded concept (Code Value, Coding Scheme Designator, Code Meaning)."""

    value: str = Field(min_length=1, max_length=64)
    scheme: str = Field(min_length=1, max_length=16)
    meaning: str = Field(min_length=1, max_length=64)


class Source(_Strict):
    """The image series the segmentation refers to (synthesized by the suite)."""

    modality: Literal["CT", "MR"] = "CT"
    layout: Literal["single-frame-series", "enhanced-multiframe"] = Field(
        "single-frame-series",
        description="How the source is stored: a series of single-frame instances, "
        "or one Enhanced CT/MR multi-frame instance.",
    )
    rows: int = Field(ge=8, le=4096)
    columns: int = Field(ge=8, le=4096)
    frames: int = Field(ge=1, le=5000, description="Number of slices.")
    pixel_spacing: tuple[float, float] = Field(
        (1.0, 1.0), description="Row spacing and column spacing in mm."
    )
    slice_spacing: float = Field(2.0, gt=0, description="Distance between slices in mm.")
    orientation: tuple[float, float, float, float, float, float] = Field(
        (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        description="Image Orientation (Patient): row direction then column direction.",
    )
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @model_validator(mode="after")
    def _orthonormal(self) -> Source:
        r, c = self.orientation[:3], self.orientation[3:]
        nr = math.sqrt(sum(v * v for v in r))
        nc = math.sqrt(sum(v * v for v in c))
        dot = sum(a * b for a, b in zip(r, c))
        if abs(nr - 1) > 1e-4 or abs(nc - 1) > 1e-4 or abs(dot) > 1e-4:
            raise ValueError("orientation must be two orthonormal direction cosines")
        if min(self.pixel_spacing) <= 0:
            raise ValueError("pixel_spacing must be positive")
        return self

    @property
    def is_oblique(self) -> bool:
        """Whether any direction cosine is not aligned with a patient axis."""
        return any(1e-6 < abs(v) < 1 - 1e-6 for v in self.orientation)


class Segments(_Strict):
    """How the truth is generated: how many segments, where, which quirks."""

    count: int = Field(ge=1, le=5000)
    generator: Literal["blobs", "ellipsoids"] = Field(
        "blobs",
        description="blobs: disjoint Voronoi cells clipped to spheres; "
        "ellipsoids: independent ellipsoids that may overlap and may be fractional.",
    )
    seed: int = Field(0, ge=0)
    fill: float = Field(0.3, gt=0, le=1, description="Approximate share of the volume covered.")
    overlap: bool = Field(False, description="Segments overlap (ellipsoids generator only).")
    fractional: bool = Field(False, description="Soft-edged segments with fractional values.")
    empty: list[int] = Field(default_factory=list, description="Segment numbers left empty.")
    gaps: list[int] = Field(
        default_factory=list,
        description="Segment numbers given an empty frame in the middle of their extent.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Segments:
        for name in ("empty", "gaps"):
            for n in getattr(self, name):
                if not 1 <= n <= self.count:
                    raise ValueError(f"{name}: segment {n} is not in 1..{self.count}")
        if set(self.empty) & set(self.gaps):
            raise ValueError("a segment cannot be both empty and have a gap")
        if self.generator == "blobs" and (self.overlap or self.fractional):
            raise ValueError("the blobs generator makes disjoint binary segments only")
        if self.overlap and self.count < 2:
            raise ValueError("overlap needs at least two segments")
        return self


class Encoding(_Strict):
    """What the producer is asked to write."""

    type: SegmentationType
    bits: Literal[1, 8, 16] = Field(
        description="Bits Allocated: 1 for BINARY, 8 for FRACTIONAL, 8 or 16 for LABELMAP."
    )
    transfer_syntax: Literal[tuple(TRANSFER_SYNTAXES)] = "ExplicitVRLittleEndian"  # type: ignore[valid-type]
    max_fractional_value: int = Field(255, ge=1, le=255)

    @property
    def transfer_syntax_uid(self) -> str:
        return TRANSFER_SYNTAXES[self.transfer_syntax][0]


class SegmentOverride(_Strict):
    """Explicit metadata for one segment; unset fields take the defaults."""

    number: int = Field(ge=1)
    label: str | None = Field(None, max_length=64)
    description: str | None = None
    category: Code | None = None
    type: Code | None = None
    tracking_id: str | None = Field(None, max_length=64)
    tracking_uid: str | None = Field(None, pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64)
    color: tuple[int, int, int] | None = Field(None, description="Recommended display colour, RGB 0-255.")


class Metadata(_Strict):
    """Segment metadata: defaults for every segment plus per-segment overrides."""

    label_pattern: str = Field("Segment {n}", description="Python format string; {n} is the number.")
    category: Code = Code(value="91723000", scheme="SCT", meaning="Anatomical structure")
    type: Code = Code(value="85756007", scheme="SCT", meaning="Tissue")
    algorithm_type: Literal["AUTOMATIC", "SEMIAUTOMATIC", "MANUAL"] = "AUTOMATIC"
    algorithm_name: str = "dicom4qi synthetic truth"
    algorithm_version: str = "1"
    tracking_ids: bool = Field(False, description="Give every segment a tracking ID and UID.")
    segment: list[SegmentOverride] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Metadata:
        numbers = [s.number for s in self.segment]
        if len(numbers) != len(set(numbers)):
            raise ValueError("segment overrides name a segment number twice")
        try:
            self.label_pattern.format(n=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"label_pattern: {exc}") from None
        return self


Identifier = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]


class Case(_Strict):
    """One conformance case: a source, a truth and the encoding asked for."""

    description: str = Field(min_length=10, max_length=200)
    features: list[Identifier] = Field(min_length=1)
    tier: Tier
    standard: str | None = Field(None, description="The part of the standard the case exercises.")
    source: Source
    segments: Segments
    encoding: Encoding
    metadata: Metadata = Metadata()

    @model_validator(mode="after")
    def _consistent(self) -> Case:
        e, s = self.encoding, self.segments
        if e.type is SegmentationType.BINARY and e.bits != 1:
            raise ValueError("encoding.bits: BINARY is 1 bit")
        if e.type is SegmentationType.FRACTIONAL and e.bits != 8:
            raise ValueError("encoding.bits: FRACTIONAL is 8 bit")
        if e.type is SegmentationType.LABELMAP:
            if e.bits not in (8, 16):
                raise ValueError("encoding.bits: LABELMAP is 8 or 16 bit")
            if e.bits == 8 and s.count > 255:
                raise ValueError("encoding.bits: an 8-bit label map holds at most 255 segments")
            if s.overlap:
                raise ValueError("segments.overlap: a label map cannot hold overlapping segments")
        if s.fractional != (e.type is SegmentationType.FRACTIONAL):
            raise ValueError("segments.fractional must be true exactly for FRACTIONAL encoding")
        for o in self.metadata.segment:
            if o.number > s.count:
                raise ValueError(f"metadata.segment: number {o.number} > segments.count")
        if len(set(self.features)) != len(self.features):
            raise ValueError("features: listed twice")
        return self

    def fingerprint(self) -> str:
        """A hash of everything that determines the source and the truth."""
        payload = {
            "v": SYNTHESIS_VERSION,
            "source": self.source.model_dump(mode="json"),
            "segments": self.segments.model_dump(mode="json"),
            "metadata": self.metadata.model_dump(mode="json"),
            "fractional_max": self.encoding.max_fractional_value,
        }
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def implied_features(case: Case) -> set[str]:
    """The features a case exercises by its content, whatever it declares."""
    e, s = case.encoding, case.segments
    layout = "single-frame-source" if case.source.layout == "single-frame-series" else "multiframe-source"
    out = {e.type.value.lower(), TRANSFER_SYNTAXES[e.transfer_syntax][1], layout}
    if e.type is SegmentationType.LABELMAP:
        out.add(f"labelmap-{e.bits}bit")
    out.add("overlap" if s.overlap else "disjoint")
    if s.empty:
        out.add("empty-segment")
    if s.gaps:
        out.add("empty-frames")
    if case.source.is_oblique:
        out.add("oblique")
    if s.count >= 100:
        out.add("many-segments")
    if case.metadata.segment or case.metadata.tracking_ids:
        out.add("segment-metadata")
    return out


class CaseError(Exception):
    """A case file that cannot be used, with where and why."""

    def __init__(self, path: Path, field: str, reason: str) -> None:
        self.path, self.field, self.reason = path, field, reason
        super().__init__(f"{path}: {field}: {reason}")


@dataclass(frozen=True)
class LoadedCase:
    """A validated case with its identifier and file."""

    id: str
    path: Path
    case: Case


def load_features(path: Path) -> dict[str, str]:
    """Read the controlled feature list: name to description."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, text = line.partition(" ")
        out[name] = text.strip()
    return out


def load_case(path: Path, root: Path, features: dict[str, str] | None = None) -> LoadedCase:
    """Load, validate and lint one case file; raise :class:`CaseError` on any problem."""
    case_id = path.relative_to(root).with_suffix("").as_posix()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CaseError(path, "(file)", f"not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseError(path, "(file)", f"cannot read: {exc}") from None
    try:
        case = Case.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(case)"
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise CaseError(path, field, err["msg"] + more) from None
    if features is not None:
        unknown = [f for f in case.features if f not in features]
        if unknown:
            raise CaseError(path, "features", f"not in corpus/features.txt: {', '.join(unknown)}")
        missing = sorted(implied_features(case) - set(case.features))
        if missing:
            raise CaseError(
                path, "features", f"the case exercises but does not declare: {', '.join(missing)}"
            )
    tier_dir = case_id.split("/")[0]
    if tier_dir in {t.value for t in Tier} and tier_dir != case.tier.value:
        raise CaseError(path, "tier", f"{case.tier.value!r} but the file is under {tier_dir}/")
    return LoadedCase(case_id, path, case)


def load_cases(
    root: Path, features_path: Path | None = None
) -> tuple[list[LoadedCase], list[CaseError]]:
    """Load every case below ``root``; return the good ones and the errors."""
    features = load_features(features_path) if features_path else None
    good: list[LoadedCase] = []
    bad: list[CaseError] = []
    for path in sorted(root.rglob("*.toml")):
        try:
            good.append(load_case(path, root, features))
        except CaseError as exc:
            bad.append(exc)
    return good, bad


def schema_text() -> str:
    """The JSON Schema of a case file, as committed in corpus/case.schema.json."""
    schema = Case.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dicom4qi case"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
