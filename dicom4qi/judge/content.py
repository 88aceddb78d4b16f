"""Verdicts that put the blame where it belongs: what a produced object holds, and whose fault a difference is.

The write step does not take a producer's word, nor only its header: two independent decoders (the
reference decoder and highdicom, :data:`CHECK_DECODERS`) decode every produced object and each decoding
is compared with the truth, with the same subchecks as a read. :func:`judge_content` turns their findings
into the object's :class:`~dicom4qi.model.results.ContentCheck`:

- ``matches``: every check decoder that could read the object finds the truth;
- ``differs``: every one finds a difference (with one decoder only, that one decides): the object is
  wrong, the producer's fault; ``agreed`` says whether they decoded it identically;
- ``disputed``: one finds the truth and the other does not: no verdict, no blame;
- ``unverified``: neither could read it.

A read is then judged by :func:`judge_read` against what the object holds where the object is wrong: a
reader that decodes a wrong object faithfully is PASS (marked "object wrong: producer's fault"); one that
decodes it differently again is FAIL for its own fault. What the object holds is one check decoder's
decoding, kept on disk and seen through :class:`ObjectContent`, which has the shape of a
:class:`~dicom4qi.model.truth.Truth` so :func:`dicom4qi.judge.compare.compare` judges against it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

import numpy as np

from dicom4qi.judge.compare import _to_truth_frames, agreement, compare, verdict
from dicom4qi.model.decoded import Decoded
from dicom4qi.model.masks import Crop
from dicom4qi.model.results import Check, CheckStatus, ContentCheck, Status
from dicom4qi.model.segment import Segment
from dicom4qi.model.truth import Geometry, Truth

__all__ = [
    "CHECK_DECODERS",
    "OBJECT_WRONG",
    "REFUSED",
    "DecoderFinding",
    "ObjectContent",
    "ReadVerdict",
    "judge_content",
    "judge_read",
]

#: The independent decoders that check every produced object: the suite's own and highdicom.
CHECK_DECODERS = ("reference", "highdicom")

Basis = Literal["truth", "object", "consensus"]


class ObjectContent:
    """What an object holds, as one check decoder decoded it, in the shape of the case's truth.

    Frames are the truth's (the source's); geometry, segments and voxels are the decoding's, with the
    truth's geometry where the decoder reports none. Crops are read lazily, one segment at a time.
    """

    def __init__(self, path: Path, truth: Truth, *, labelmap: bool, decoder: str = "") -> None:
        self.decoder = decoder
        self.path = path
        self.decoded = Decoded(path)
        self.frame_keys = truth.frame_keys
        self.decoy_keys = truth.decoy_keys
        self.fractional = self.decoded.fractional
        self.fractional_max = truth.fractional_max
        index = {k: i for i, k in enumerate(truth.frame_keys)}
        self._frame_map = np.array([index.get(k, -1) for k in self.decoded.frame_keys], dtype=np.int64)
        g, dg = truth.geometry, self.decoded.geometry
        # The decoded geometry is the reader's JSON, its lists' lengths unchecked here: tuple() keeps them as decoded.
        positions: list[tuple[float, float, float]] | None = None
        if g.positions is not None:
            positions = [
                cast("tuple[float, float, float]", tuple(dg.positions.get(k, p)))
                for k, p in zip(truth.frame_keys, g.positions)
            ]
        self.geometry = Geometry(
            rows=self.decoded.rows,
            columns=self.decoded.columns,
            orientation=tuple(dg.orientation)
            if dg.orientation is not None and g.orientation is not None
            else g.orientation,
            pixel_spacing=(
                cast("tuple[float, float]", tuple(dg.pixel_spacing))
                if dg.pixel_spacing is not None
                else g.pixel_spacing
            ),
            slice_spacing=g.slice_spacing,
            positions=positions,
            layout=g.layout,
        )
        with_pixels = set(self.decoded.numbers_with_pixels)
        self.segments = [
            Segment(
                number=s.number,
                label=s.label,
                category=s.category,
                type=s.type,
                algorithm_type=s.algorithm_type,
                algorithm_name=s.algorithm_name,
                algorithm_version=s.algorithm_version,
                description=s.description,
                type_modifier=s.type_modifier,
                anatomic_region=s.anatomic_region,
                anatomic_region_modifier=s.anatomic_region_modifier,
                tracking_id=s.tracking_id,
                tracking_uid=s.tracking_uid,
                empty=s.number not in with_pixels,
                color_rgb=cast("tuple[int, int, int]", tuple(s.color_rgb)) if s.color_rgb is not None else None,
            )
            for s in self.decoded.segments
            if not (labelmap and s.number == 0)
        ]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.frame_keys), self.geometry.rows, self.geometry.columns)

    @property
    def fractional_scale(self) -> float:
        return 1.0  # decoded fractional values are already in [0, 1]

    @property
    def fractional_step(self) -> float:
        return 1.0 / self.fractional_max

    def get(self, number: int) -> Crop | None:
        crop = self.decoded.pixels(number)
        if crop is None:
            return None
        mapped = _to_truth_frames(crop, self._frame_map)
        if isinstance(mapped, str):
            raise ValueError(f"{self.decoder or self.path.name}: segment {number}: {mapped}")
        return mapped

    def masks(self) -> ObjectContent:
        return self

    def __enter__(self) -> ObjectContent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass  # kept open until close(): compare() opens masks() once per call

    def close(self) -> None:
        self.decoded.close()


@dataclass
class DecoderFinding:
    """What one check decoder made of a produced object."""

    decoder: str
    #: Its decoding (the canonical .npz) when it read the object; None when it could not.
    decoded: Path | None
    #: Its subchecks against the truth; None when it could not read the object.
    checks: list[Check] | None = None
    #: Why it could not read the object.
    error: str = ""
    seconds: float | None = None

    @property
    def matches(self) -> bool:
        return self.checks is not None and verdict(self.checks)[0]

    def summary(self) -> str:
        if self.checks is None:
            return f"could not read: {self.error}"[:600]
        ok, msg = verdict(self.checks)
        return "matches the truth" if ok else f"differs: {msg}"[:600]


@dataclass
class ContentJudgement:
    """The write step's content verdict: the record's content check and the subchecks it adds."""

    content: ContentCheck
    checks: list[Check]
    message: str
    #: Check decoders whose decodings are what the object holds (kept on disk for the readers).
    keep: list[str] = field(default_factory=list)


def _joined(names: list[str]) -> str:
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


def judge_content(findings: list[DecoderFinding], *, labelmap: bool) -> ContentJudgement:
    """Turn the check decoders' findings on one object into its content verdict (see the module docstring)."""
    readable = [f for f in findings if f.checks is not None]
    decoders = {f.decoder: f.summary() for f in findings}
    names = [f.decoder for f in readable]
    unreadable = [f for f in findings if f.checks is None]
    alone = ""
    if readable and unreadable:
        alone = f" ({_joined(names)} alone: {_joined([f.decoder for f in unreadable])} could not read it)"
    if not readable:
        msg = (
            "not verified: no check decoder could read the object ("
            + "; ".join(f"{f.decoder}: {f.error[:200]}" for f in findings)
            + ")"
        )
        return ContentJudgement(
            ContentCheck(verdict="unverified", decoders=decoders),
            [Check(name="content", status=CheckStatus.NOT_CHECKED, message=msg)],
            msg,
        )
    differ = [f for f in readable if not f.matches]
    if not differ:
        msg = f"decoded by {_joined(names)}{alone}: the object holds the truth"
        return ContentJudgement(
            ContentCheck(verdict="matches", decoders=decoders),
            [Check(name="content", status=CheckStatus.PASS, message=msg)],
            "",
        )
    if len(differ) < len(readable):
        agree = [f.decoder for f in readable if f.matches]
        msg = (
            f"disputed: {_joined(agree)} find{'s' if len(agree) == 1 else ''} the truth in the object, "
            f"{_joined([f.decoder for f in differ])} find{'s' if len(differ) == 1 else ''} "
            + "; ".join(verdict(f.checks or [])[1] for f in differ)
        )[:1500]
        return ContentJudgement(
            ContentCheck(verdict="disputed", decoders=decoders),
            [Check(name="content", status=CheckStatus.NOT_CHECKED, message=msg)],
            msg,
            keep=[f.decoder for f in differ],
        )
    agreed = True
    if len(differ) > 1:
        first, *rest = differ
        assert first.decoded is not None
        a = Decoded(first.decoded)
        try:
            for other in rest:
                assert other.decoded is not None
                b = Decoded(other.decoded)
                try:
                    agreed = agreed and not agreement(a, b, labelmap=labelmap)
                finally:
                    b.close()
        finally:
            a.close()
    deciding = differ[0]
    failed = [c for c in deciding.checks or [] if c.status is CheckStatus.FAIL and not c.advisory]
    holds = " | ".join(f"{c.name}: {c.message}" for c in failed)
    how = (
        f"{_joined(names)} agree"
        if agreed and len(differ) > 1
        else f"{_joined(names)} both find a difference, but decode it differently"
        if len(differ) > 1
        else alone.strip(" ()") or f"decoded by {names[0]}"
    )
    msg = f"the object differs from the truth ({how}): {holds}"
    checks = [Check(name="content", status=CheckStatus.FAIL, message=msg[:2000])]
    checks += [c.model_copy(update={"name": f"object:{c.name}"}) for c in deciding.checks or [] if c.name != "opened"]
    return ContentJudgement(
        ContentCheck(verdict="differs", decoders=decoders, agreed=agreed), checks, msg, keep=[f.decoder for f in differ]
    )


@dataclass
class ReadVerdict:
    status: Status
    message: str
    checks: list[Check]
    basis: Basis
    notes: list[str] = field(default_factory=list)
    #: What the picture of a voxel difference should compare the read with (None: the truth).
    against: ObjectContent | None = None


OBJECT_WRONG = "object wrong: producer's fault"
#: A reader's error on an object its producer wrote wrong: recorded as it happened, charged to nobody.
REFUSED = f"{OBJECT_WRONG}; the reader refused it"


def judge_read(
    truth: Truth, decoded: Decoded, content: ContentCheck | None, run_dir: Path, *, labelmap: bool
) -> ReadVerdict:
    """Judge a read against the truth, or against what the object holds where its producer wrote it wrong.

    The caller closes ``verdict.against`` when it is set.
    """
    checks = compare(truth, decoded, labelmap=labelmap)
    ok, msg = verdict(checks)
    if content is None or content.verdict in ("matches", "unverified") or not content.content:
        return ReadVerdict(Status.PASS if ok else Status.FAIL, msg, checks, "truth")
    contents = []
    try:
        for name, rel in content.content.items():
            contents.append(ObjectContent(run_dir / rel, truth, labelmap=labelmap, decoder=name))
    except (OSError, ValueError) as exc:
        for c in contents:
            c.close()
        raise ValueError(f"what the object holds (the write step's decoding) cannot be read: {exc}") from None
    results = [(c, compare(c, decoded, labelmap=labelmap)) for c in contents]
    matching = [(c, ch) for c, ch in results if verdict(ch)[0]]
    matched = _joined([c.decoder for c, _ in matching])
    keep: ObjectContent | None = None
    try:
        if content.verdict == "disputed":
            # The check decoders disagree: the truth first; a read that matches the dissenting decoding is not blamed.
            if ok:
                return ReadVerdict(Status.PASS, "", checks, "truth")
            if matching:
                return ReadVerdict(
                    Status.DISPUTED,
                    f"disputed: differs from the truth ({msg}), but reads the object as {matched} does, "
                    "and the check decoders disagree on what it holds",
                    checks,
                    "truth",
                )
            return ReadVerdict(Status.FAIL, msg, checks, "truth")
        # differs: the producer wrote it wrong; the read is judged against what the object holds.
        everyone = _joined([c.decoder for c in contents])
        if matching and content.agreed is not False:
            note = (
                f"{OBJECT_WRONG}: the object differs from the truth, and this read matches what it holds "
                f"(as {everyone} decoded it)"
            )
            return ReadVerdict(Status.PASS, OBJECT_WRONG, matching[0][1], "object", [note])
        if matching:
            return ReadVerdict(
                Status.DISPUTED,
                "disputed: the object is wrong (its producer's fault) and the check decoders decode it differently; "
                f"this read matches {matched}",
                matching[0][1],
                "object",
            )
        if ok:
            return ReadVerdict(
                Status.DISPUTED,
                f"disputed: this read matches the case's truth, but not what {everyone} found in the object",
                checks,
                "truth",
            )
        keep, first = results[0]
        return ReadVerdict(
            Status.FAIL,
            f"differs from what the object holds (the object is wrong too, its producer's fault): {verdict(first)[1]}",
            first,
            "object",
            against=keep,
        )
    finally:
        for c in contents:
            if c is not keep:
                c.close()
