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

from dicom4qi.model.segment import Code as SegmentCode
from dicom4qi.model.uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    JPEG_2000_LOSSLESS,
    JPEG_LS_LOSSLESS,
    RLE_LOSSLESS,
)

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
    "uncovered_features",
]

#: Transfer syntaxes a case may request, by keyword: UID and feature name.
TRANSFER_SYNTAXES: dict[str, tuple[str, str]] = {
    "ImplicitVRLittleEndian": (IMPLICIT_VR_LITTLE_ENDIAN, "ts-implicit-le"),
    "ExplicitVRLittleEndian": (EXPLICIT_VR_LITTLE_ENDIAN, "ts-explicit-le"),
    "ExplicitVRBigEndian": (EXPLICIT_VR_BIG_ENDIAN, "ts-explicit-be"),
    "DeflatedExplicitVRLittleEndian": (DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, "ts-deflate"),
    "RLELossless": (RLE_LOSSLESS, "ts-rle"),
    "JPEG2000Lossless": (JPEG_2000_LOSSLESS, "ts-jpeg2000"),
    "JPEGLSLossless": (JPEG_LS_LOSSLESS, "ts-jpegls"),
}
#: The keys of TRANSFER_SYNTAXES, in the same order, as a type.
TransferSyntax = Literal[
    "ImplicitVRLittleEndian",
    "ExplicitVRLittleEndian",
    "ExplicitVRBigEndian",
    "DeflatedExplicitVRLittleEndian",
    "RLELossless",
    "JPEG2000Lossless",
    "JPEGLSLossless",
]

#: A Segment Description longer than this (the 64 characters of an LO) is "long text".
LONG_TEXT = 64

#: Bumped whenever the synthesis of sources or truth changes, so caches renew.
SYNTHESIS_VERSION = 4


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
    # NaN and infinity are refused everywhere (TOML can spell both): a source with NaN geometry would be
    # synthesized, and every tool blamed for it.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


#: The farthest a position (origin, slice position) may lie from the patient origin, in mm.
MAX_POSITION_MM = 1e6
#: The largest pixel or slice spacing, in mm.
MAX_SPACING_MM = 1000.0
Position = Annotated[float, Field(ge=-MAX_POSITION_MM, le=MAX_POSITION_MM)]
Spacing = Annotated[float, Field(gt=0, le=MAX_SPACING_MM)]
DirectionCosine = Annotated[float, Field(ge=-1, le=1)]


class Code(_Strict):
    """A coded concept (Code Value, Coding Scheme Designator, Code Meaning)."""

    value: str = Field(min_length=1, max_length=64)
    scheme: str = Field(min_length=1, max_length=16)
    meaning: str = Field(min_length=1, max_length=64)

    def as_code(self) -> SegmentCode:
        return {"value": self.value, "scheme": self.scheme, "meaning": self.meaning}


#: Source layouts and the feature each one implies.
LAYOUT_FEATURES: dict[str, tuple[str, ...]] = {
    "single-frame-series": ("single-frame-source",),
    "enhanced-multiframe": ("multiframe-source",),
    "projection": ("projection-source",),
    "cine": ("multiframe-source", "temporal"),
    "slide-tiled-full": ("slide-source",),
}

#: Which modalities each layout can hold.
_LAYOUT_MODALITIES: dict[str, tuple[str, ...]] = {
    "single-frame-series": ("CT", "MR"),
    "enhanced-multiframe": ("CT", "MR"),
    "projection": ("DX", "CR"),
    "cine": ("MR",),
    "slide-tiled-full": ("SM",),
}


class Source(_Strict):
    """The image(s) the segmentation refers to (synthesized by the suite).

    The truth lives on a grid of ``frames`` x ``rows`` x ``columns``:

    - ``single-frame-series`` and ``enhanced-multiframe``: slices of a volume (CT, MR);
    - ``projection``: one 2D image (DX, CR) without a position in patient space; ``frames`` is 1;
    - ``cine``: an Enhanced MR multi-frame image of one plane at ``frames`` successive times
      (2D+T, Temporal Position Index), all frames at the same position;
    - ``slide-tiled-full``: a VL Whole Slide Microscopy image stored TILED_FULL in tiles of
      ``tile`` x ``tile`` pixels; ``rows`` x ``columns`` is its total pixel matrix and ``frames`` is 1.
    """

    modality: Literal["CT", "MR", "DX", "CR", "SM"] = "CT"
    layout: Literal["single-frame-series", "enhanced-multiframe", "projection", "cine", "slide-tiled-full"] = Field(
        "single-frame-series",
        description="How the source is stored: a series of single-frame instances, one Enhanced CT/MR "
        "multi-frame instance, one 2D projection image, a 2D+T cine multi-frame, or a tiled whole slide image.",
    )
    rows: int = Field(ge=1, le=65536)
    columns: int = Field(ge=1, le=65536)
    frames: int = Field(ge=1, le=5000, description="Number of slices (time points for cine).")
    pixel_spacing: tuple[Spacing, Spacing] = Field((1.0, 1.0), description="Row spacing and column spacing in mm.")
    slice_spacing: Spacing = Field(2.0, description="Distance between slices in mm.")
    slice_positions: list[Position] | None = Field(
        None,
        description="Position of each slice along the normal in mm, from the origin (strictly increasing): "
        "uneven spacing or a gap. Default: evenly spaced by slice_spacing.",
    )
    orientation: tuple[
        DirectionCosine, DirectionCosine, DirectionCosine, DirectionCosine, DirectionCosine, DirectionCosine
    ] = Field(
        (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        description="Image Orientation (Patient): row direction then column direction.",
    )
    origin: tuple[Position, Position, Position] = (0.0, 0.0, 0.0)
    frame_time: float = Field(40.0, gt=0, le=1e6, description="cine: milliseconds between frames.")
    tile: int = Field(256, ge=16, le=4096, description="slide-tiled-full: tile rows and columns.")
    character_set: Literal["ISO_IR 192", "empty"] = Field(
        "ISO_IR 192",
        description="Specific Character Set of the source images: UTF-8, or present but empty (the default "
        "repertoire), as some scanners write it.",
    )
    slice_thickness: bool = Field(
        True, description="single-frame-series: false leaves Slice Thickness (Type 2) empty in every image."
    )
    decoy_series: bool = Field(
        False,
        description="single-frame-series: a second series in the same study and Frame of Reference (its own UIDs, "
        "Series Number 2, slices half a spacing apart from the source's), handed to every reader with the source; "
        "the SEG references only the source.",
    )

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
        allowed = _LAYOUT_MODALITIES[self.layout]
        if self.modality not in allowed:
            raise ValueError(f"layout {self.layout!r} holds modality {' or '.join(allowed)}, not {self.modality}")
        if self.layout in ("projection", "slide-tiled-full") and self.frames != 1:
            raise ValueError(f"layout {self.layout!r} is one 2D image: frames must be 1")
        if self.layout != "slide-tiled-full" and max(self.rows, self.columns) > 4096:
            raise ValueError("rows and columns are at most 4096 but for a slide's total pixel matrix")
        if not self.slice_thickness and self.layout != "single-frame-series":
            raise ValueError("slice_thickness: only a series of single-frame images is written without one")
        if self.decoy_series and self.layout != "single-frame-series":
            raise ValueError("decoy_series: a second series is written beside a series of single-frame images only")
        if self.slice_positions is not None:
            if self.layout not in ("single-frame-series", "enhanced-multiframe"):
                raise ValueError("slice_positions apply to volumes (single-frame-series, enhanced-multiframe)")
            if len(self.slice_positions) != self.frames:
                raise ValueError(f"slice_positions has {len(self.slice_positions)} values for {self.frames} frames")
            if any(b <= a for a, b in zip(self.slice_positions, self.slice_positions[1:])):
                raise ValueError("slice_positions must increase strictly")
        return self

    @property
    def is_oblique(self) -> bool:
        """Whether any direction cosine is not aligned with a patient axis."""
        return self.has_patient_geometry and any(1e-6 < abs(v) < 1 - 1e-6 for v in self.orientation)

    @property
    def has_patient_geometry(self) -> bool:
        """Whether frames have a position in patient space (not projection or slide images)."""
        return self.layout not in ("projection", "slide-tiled-full")

    @property
    def offsets(self) -> list[float]:
        """Each frame's distance from the origin along the normal, in mm (0 for every cine frame)."""
        if self.layout == "cine":
            return [0.0] * self.frames
        if self.slice_positions is not None:
            return list(self.slice_positions)
        return [k * self.slice_spacing for k in range(self.frames)]

    @property
    def is_uneven(self) -> bool:
        """Whether the slices are not evenly spaced (a gap or varying spacing)."""
        o = self.offsets
        gaps = [b - a for a, b in zip(o, o[1:])]
        return bool(gaps) and max(gaps) - min(gaps) > 1e-3 * max(gaps)


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
    numbers: list[Annotated[int, Field(ge=1, le=65535)]] | None = Field(
        None,
        description="The segment numbers, increasing, one per segment (default 1 to count); gaps between them "
        "(1, 2, 7, 300) are allowed in a label map (Sup 243).",
    )

    @property
    def segment_numbers(self) -> list[int]:
        """The number of each segment, in order."""
        return list(self.numbers) if self.numbers is not None else list(range(1, self.count + 1))

    @property
    def contiguous(self) -> bool:
        return self.segment_numbers == list(range(1, self.count + 1))

    @model_validator(mode="after")
    def _consistent(self) -> Segments:
        if self.numbers is not None:
            if len(self.numbers) != self.count:
                raise ValueError(f"numbers: {len(self.numbers)} numbers for {self.count} segments")
            if any(b <= a for a, b in zip(self.numbers, self.numbers[1:])):
                raise ValueError("numbers must increase strictly")
        known = set(self.segment_numbers)
        for name in ("empty", "gaps"):
            for n in getattr(self, name):
                if n not in known:
                    raise ValueError(f"{name}: segment {n} is not one of the segment numbers")
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
    bits: Literal[1, 8, 16] = Field(description="Bits Allocated: 1 for BINARY, 8 for FRACTIONAL, 8 or 16 for LABELMAP.")
    transfer_syntax: TransferSyntax = "ExplicitVRLittleEndian"
    max_fractional_value: int = Field(255, ge=1, le=255)
    fractional_type: Literal["PROBABILITY", "OCCUPANCY"] = Field(
        "PROBABILITY", description="Segmentation Fractional Type of a FRACTIONAL object (PS3.3 C.8.20.2)."
    )
    frame_order: Literal["segment-major", "position-major", "shuffled"] = Field(
        "segment-major",
        description="Order of the frames: all frames of segment 1, then of segment 2... (what most writers do), "
        "position by position with the segments interleaved (BINARY, FRACTIONAL), or shuffled (seeded by the "
        "case's segments.seed): neither by segment nor by position.",
    )
    source_references: Literal["per-frame", "position-only"] = Field(
        "per-frame",
        description="per-frame: each frame names its source image (Derivation Image Sequence); position-only: "
        "frames are placed by Plane Position (Patient) alone, with no per-frame source image reference.",
    )
    photometric: Literal["MONOCHROME2", "PALETTE COLOR"] = Field(
        "MONOCHROME2",
        description="Photometric Interpretation of a LABELMAP object: plain labels, or labels with a Palette Color "
        "Lookup Table that gives each segment its display colour (Sup 243).",
    )
    referenced_instances: Literal["all", "segmented"] = Field(
        "all",
        description="The source instances the Referenced Series Sequence lists: all of the series, or only "
        "those holding a segment voxel.",
    )
    instances: list[list[int]] | None = Field(
        None,
        description="One segmentation delivered as several instances of one series: the case's segment numbers "
        "each instance holds, every segment in exactly one (for example [[1, 3], [2, 4]]). Overlapping segments "
        "go in different LABELMAP instances, the way Sup 243 carries overlaps. A LABELMAP instance keeps the "
        "case's numbers (Sup 243 allows any); a BINARY or FRACTIONAL instance numbers its segments from 1 in the "
        "order listed (PS3.3 C.8.20.2: from 1, by 1, within the instance). Readers read each instance on its own "
        "and are graded on the union of what they decode.",
    )

    @property
    def transfer_syntax_uid(self) -> str:
        return TRANSFER_SYNTAXES[self.transfer_syntax][0]

    def instance_numbering(self) -> list[dict[int, int]]:
        """For each instance (of ``instances``), its segment numbers mapped to the case's (one instance: [])."""
        if not self.instances:
            return []
        if self.type is SegmentationType.LABELMAP:
            return [{n: n for n in inst} for inst in self.instances]
        return [{k: n for k, n in enumerate(inst, 1)} for inst in self.instances]


class SegmentOverride(_Strict):
    """Explicit metadata for one segment; unset fields take the defaults."""

    number: int = Field(ge=1)
    label: str | None = Field(None, max_length=64, description="Segment Label (LO, 64 characters).")
    description: str | None = Field(None, max_length=1024, description="Segment Description (ST, 1024 characters).")
    category: Code | None = None
    type: Code | None = None
    type_modifier: Code | None = Field(None, description="Segmented Property Type Modifier, e.g. Left.")
    anatomic_region: Code | None = Field(None, description="Anatomic Region Sequence.")
    anatomic_region_modifier: Code | None = Field(None, description="Anatomic Region Modifier Sequence.")
    tracking_id: str | None = Field(None, max_length=64)
    tracking_uid: str | None = Field(None, pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64)
    color: tuple[int, int, int] | None = Field(None, description="Recommended display colour, RGB 0-255.")
    algorithm_type: Literal["AUTOMATIC", "SEMIAUTOMATIC", "MANUAL"] | None = None
    algorithm_name: str | None = Field(None, max_length=64)
    algorithm_version: str | None = Field(None, max_length=64)


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
        _check_label_pattern(self.label_pattern)
        return self


#: Segment Label is an LO: at most this many characters.
LABEL_MAX = 64


def _check_label_pattern(pattern: str, count: int = 1) -> None:
    """A label pattern whose labels fit an LO, refused before it is ever expanded in full.

    Only ``{n}`` may be substituted, with a format spec whose width and precision stay within the 64
    characters (``{n:>999999999}`` would build a gigabyte in memory before any length check).
    """
    import re
    import string

    try:
        fields = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise ValueError(f"label_pattern: {exc}") from None
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name != "n" or conversion:
            raise ValueError(
                f"label_pattern: only {{n}} may be substituted, not {{{name}{'!' + conversion if conversion else ''}}}"
            )
        if any(int(d) > LABEL_MAX for d in re.findall(r"\d+", spec or "")):
            raise ValueError(
                f"label_pattern: the format spec {spec!r} asks for more than the {LABEL_MAX} characters of a label"
            )
    for n in {1, count}:
        try:
            label = pattern.format(n=n)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"label_pattern: {exc}") from None
        if len(label) > LABEL_MAX:
            raise ValueError(
                f"label_pattern: segment {n}'s label is {len(label)} characters; a Segment Label (LO) holds {LABEL_MAX}"
            )


Identifier = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]


class Case(_Strict):
    """One conformance case: a source, a truth and the encoding asked for."""

    description: str = Field(min_length=10, max_length=200)
    features: list[Identifier] = Field(min_length=1)
    tier: Tier
    standard: str | None = Field(None, description="The part of the standard the case exercises.")
    reading: str | None = Field(
        None,
        max_length=300,
        description="How readers are given the object and graded, where it is not one object read whole "
        "(a segmentation in several instances: each read on its own, graded on the union).",
    )
    bench_viewers: bool = Field(
        False,
        description="Time the viewers on this case too in the benchmark (dicom4qi bench): a read in a browser takes "
        "seconds to minutes, so only on the objects people open in viewers.",
    )
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
            if e.bits == 8 and max(s.segment_numbers) > 255:
                raise ValueError("encoding.bits: an 8-bit label map holds segment numbers up to 255")
            if s.overlap and not e.instances:
                raise ValueError(
                    "segments.overlap: one label map cannot hold overlapping segments "
                    "(give encoding.instances to put them in different instances)"
                )
        if s.fractional != (e.type is SegmentationType.FRACTIONAL):
            raise ValueError("segments.fractional must be true exactly for FRACTIONAL encoding")
        if e.frame_order == "position-major" and e.type is SegmentationType.LABELMAP:
            raise ValueError("encoding.frame_order: a label map has no segment frames to interleave")
        if e.photometric != "MONOCHROME2" and e.type is not SegmentationType.LABELMAP:
            raise ValueError("encoding.photometric: only a LABELMAP object may be PALETTE COLOR")
        if e.fractional_type != "PROBABILITY" and e.type is not SegmentationType.FRACTIONAL:
            raise ValueError("encoding.fractional_type: only a FRACTIONAL object has a fractional type")
        if e.max_fractional_value != 255 and e.type is not SegmentationType.FRACTIONAL:
            raise ValueError("encoding.max_fractional_value: only a FRACTIONAL object has one")
        if e.source_references == "position-only" and e.referenced_instances != "all":
            raise ValueError("encoding.referenced_instances: a position-only object references no instance at all")
        if e.source_references == "position-only" and not self.source.has_patient_geometry:
            raise ValueError(
                "encoding.source_references: frames without a position in patient space need their source reference"
            )
        if not s.contiguous and e.type is not SegmentationType.LABELMAP:
            raise ValueError(
                "segments.numbers: BINARY and FRACTIONAL segments are numbered 1 to count (PS3.3 C.8.20.4)"
            )
        numbers = set(s.segment_numbers)
        if e.instances and not self.reading:
            raise ValueError("reading: say how readers read a segmentation in several instances")
        if e.instances is not None:
            listed = [n for inst in e.instances for n in inst]
            if len(e.instances) < 2 or any(not inst for inst in e.instances):
                raise ValueError("encoding.instances: at least two instances, each with a segment")
            if len(listed) != len(set(listed)) or set(listed) != numbers:
                raise ValueError(
                    f"encoding.instances: every segment number ({sorted(numbers)}) in exactly one instance, "
                    f"got {e.instances}"
                )
        for o in self.metadata.segment:
            if o.number not in numbers:
                raise ValueError(f"metadata.segment: number {o.number} is not one of the segment numbers")
        if len(set(self.features)) != len(self.features):
            raise ValueError("features: listed twice")
        try:
            _check_label_pattern(self.metadata.label_pattern, max(s.segment_numbers))
        except ValueError as exc:
            raise ValueError(f"metadata.{exc}") from None
        return self

    def fingerprint(self) -> str:
        """A hash of everything that determines the source and the truth."""
        source = self.source.model_dump(mode="json")
        if not source["decoy_series"]:  # added later: cases without it keep their fingerprint (and cache)
            del source["decoy_series"]
        payload = {
            "v": SYNTHESIS_VERSION,
            "source": source,
            "segments": self.segments.model_dump(mode="json"),
            "metadata": self.metadata.model_dump(mode="json"),
            "fractional_max": self.encoding.max_fractional_value,
        }
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def implied_features(case: Case) -> set[str]:
    """The features a case exercises by its content, whatever it declares."""
    e, s, src = case.encoding, case.segments, case.source
    out = {e.type.value.lower(), TRANSFER_SYNTAXES[e.transfer_syntax][1], *LAYOUT_FEATURES[case.source.layout]}
    if case.source.is_uneven:
        out.add("uneven-spacing")
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
    meta = case.metadata
    if meta.segment or meta.tracking_ids:
        out.add("segment-metadata")
    texts = [meta.label_pattern] + [t for o in meta.segment for t in (o.label, o.description) if t]
    if any(not t.isascii() for t in texts):
        out.add("non-ascii-text")
    if any(o.description and len(o.description) > LONG_TEXT for o in meta.segment):
        out.add("long-text")
    if any(o.anatomic_region or o.anatomic_region_modifier or o.type_modifier for o in meta.segment):
        out.add("anatomic-region")
    overrides = {o.number: o for o in meta.segment}
    algorithms = set()
    for n in s.segment_numbers:
        o = overrides.get(n)
        algorithms.add(
            (
                (o and o.algorithm_type) or meta.algorithm_type,
                (o and o.algorithm_name) or meta.algorithm_name,
                (o and o.algorithm_version) or meta.algorithm_version,
            )
        )
    if len(algorithms) > 1:
        out.add("multiple-algorithms")
    if e.frame_order == "position-major":
        out.add("segments-interleaved")
    if e.frame_order == "shuffled":
        out.add("frames-shuffled")
    if not s.contiguous:
        out.add("labelmap-sparse-numbers")
    if e.photometric == "PALETTE COLOR":
        out.add("labelmap-palette")
    if src.character_set != "ISO_IR 192":
        out.add("source-default-charset")
    if not src.slice_thickness:
        out.add("source-no-slice-thickness")
    if src.decoy_series:
        out.add("source-two-series")
    frame_pixels = src.tile * src.tile if src.layout == "slide-tiled-full" else src.rows * src.columns
    if e.type is SegmentationType.BINARY and frame_pixels % 8:
        out.add("binary-unaligned-frames")
    if e.type is SegmentationType.FRACTIONAL:
        if e.fractional_type == "OCCUPANCY":
            out.add("fractional-occupancy")
        if e.max_fractional_value != 255:
            out.add("fractional-max-value")
    if e.source_references == "position-only":
        out.add("frames-position-only")
    if e.referenced_instances == "segmented":
        out.add("partial-references")
    if e.instances:
        out.add("multi-instance")
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
            raise CaseError(path, "features", f"the case exercises but does not declare: {', '.join(missing)}")
    tier_dir = case_id.split("/")[0]
    if tier_dir in {t.value for t in Tier} and tier_dir != case.tier.value:
        raise CaseError(path, "tier", f"{case.tier.value!r} but the file is under {tier_dir}/")
    return LoadedCase(case_id, path, case)


def load_cases(root: Path, features_path: Path | None = None) -> tuple[list[LoadedCase], list[CaseError]]:
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


def uncovered_features(cases: list[LoadedCase], features: dict[str, str]) -> list[str]:
    """Features of the controlled list that no quick case exercises (by content or declaration)."""
    covered: set[str] = set()
    for c in cases:
        if c.case.tier is Tier.QUICK:
            covered |= implied_features(c.case) | set(c.case.features)
    return sorted(set(features) - covered)


def schema_text() -> str:
    """The JSON Schema of a case file, as committed in corpus/case.schema.json."""
    schema = Case.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dicom4qi case"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
