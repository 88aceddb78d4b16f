"""The negative corpus: broken SEG objects made from valid ones by declared mutations.

``corpus/negative.toml`` lists the mutants as data (name, base case, mutation,
parameters, what it tests); this module holds the mutations. Every consumer
reads every mutant and is graded on its reaction (:data:`REACTIONS`); the
expected reaction is always a clean rejection with a message.
"""

from __future__ import annotations

import struct
import tomllib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid

__all__ = ["MUTATIONS", "Mutant", "REACTIONS", "load_mutants", "mutate", "reaction_of"]

#: How a consumer met a broken object.
REACTIONS = {
    "clean-reject": "refused it with an error message (the expected reaction)",
    "crash": "the process died (signal, abort)",
    "hang": "did not finish within the time limit",
    "memory": "exceeded the memory limit",
    "silent-accept": "returned data without a word",
}


@dataclass(frozen=True)
class Mutant:
    name: str
    base: str
    mutation: str
    description: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"negative/{self.name}"


def _frames(ds: Dataset) -> Any:
    return ds.PerFrameFunctionalGroupsSequence


def truncate_pixel_data(ds: Dataset, keep: float) -> None:
    ds.PixelData = bytes(ds.PixelData)[: int(len(ds.PixelData) * keep)]


def number_of_frames(ds: Dataset, value: int | None = None, factor: float | None = None) -> None:
    n = int(ds.NumberOfFrames)
    ds.NumberOfFrames = value if value is not None else int(n * (factor or 1))


def frame_segment(ds: Dataset, number: int, which: str = "first") -> None:
    items = _frames(ds) if which == "all" else [_frames(ds)[0]]
    for fg in items:
        fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber = number


def segment_number(ds: Dataset, index: int, number: int) -> None:
    ds.SegmentSequence[index].SegmentNumber = number


def unknown_source(ds: Dataset, which: str = "all") -> None:
    items = _frames(ds) if which == "all" else [_frames(ds)[len(_frames(ds)) // 2]]
    for fg in items:
        for src in fg.DerivationImageSequence[0].SourceImageSequence:
            src.ReferencedSOPInstanceUID = generate_uid(
                entropy_srcs=["dicom4qi-negative", str(src.ReferencedSOPInstanceUID)]
            )


def set_attribute(ds: Dataset, keyword: str, value: Any) -> None:
    setattr(ds, keyword, value)


def delete_attribute(ds: Dataset, keyword: str) -> None:
    delattr(ds, keyword)


def transfer_syntax(ds: Dataset, uid: str) -> None:
    """Claim another transfer syntax; native frames claimed as compressed go in fragments unchanged."""
    from pydicom.encaps import encapsulate

    new = UID(uid)
    if new.is_transfer_syntax and new.is_encapsulated and not ds.file_meta.TransferSyntaxUID.is_encapsulated:
        n = int(ds.NumberOfFrames)
        size = len(ds.PixelData) // n
        ds.PixelData = encapsulate([bytes(ds.PixelData[i * size : (i + 1) * size]) for i in range(n)])
    ds.file_meta.TransferSyntaxUID = new


def broken_rle(ds: Dataset, how: str) -> None:
    """Corrupt the RLE header (segment count and offsets) of every encapsulated frame."""
    from pydicom.encaps import encapsulate, generate_frames

    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    broken = []
    for frame in frames:
        header = list(struct.unpack("<16I", frame[:64]))
        if how == "offset-past-end":
            header[1] = len(frame) + 1_000_000
        elif how == "too-many-segments":
            header[0] = 15
        elif how == "zero-segments":
            header = [0] * 16
        broken.append(struct.pack("<16I", *header) + frame[64:])
    ds.PixelData = encapsulate(broken)


def frame_position(ds: Dataset, value: str, which: str = "first") -> None:
    if value == "swap":
        a, b = _frames(ds)[0], _frames(ds)[-1]
        pa = list(a.PlanePositionSequence[0].ImagePositionPatient)
        a.PlanePositionSequence[0].ImagePositionPatient = list(b.PlanePositionSequence[0].ImagePositionPatient)
        b.PlanePositionSequence[0].ImagePositionPatient = pa
        return
    items = _frames(ds) if which == "all" else [_frames(ds)[0]]
    for fg in items:
        pos = list(fg.PlanePositionSequence[0].ImagePositionPatient)
        pos[2] = value
        fg.PlanePositionSequence[0].ImagePositionPatient = pos


def segment_sequence(ds: Dataset, how: str) -> None:
    if how == "empty":
        ds.SegmentSequence = pydicom.Sequence([])
    elif how == "missing":
        del ds.SegmentSequence


def shared_group(ds: Dataset, keyword: str) -> None:
    delattr(ds.SharedFunctionalGroupsSequence[0], keyword)


MUTATIONS: dict[str, Callable[..., None]] = {
    "truncate-pixel-data": truncate_pixel_data,
    "number-of-frames": number_of_frames,
    "frame-segment": frame_segment,
    "segment-number": segment_number,
    "unknown-source": unknown_source,
    "set-attribute": set_attribute,
    "delete-attribute": delete_attribute,
    "transfer-syntax": transfer_syntax,
    "broken-rle": broken_rle,
    "frame-position": frame_position,
    "segment-sequence": segment_sequence,
    "shared-group": shared_group,
}


def load_mutants(path: Path) -> list[Mutant]:
    """The mutants declared in ``corpus/negative.toml``; a bad entry is an error naming it."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    out = []
    for i, raw in enumerate(data.get("mutant", [])):
        try:
            m = Mutant(
                name=raw["name"],
                base=raw["base"],
                mutation=raw["mutation"],
                description=raw["description"],
                params=raw.get("params", {}),
            )
        except KeyError as exc:
            raise ValueError(f"{path}: mutant #{i + 1}: missing {exc}") from None
        if m.mutation not in MUTATIONS:
            raise ValueError(
                f"{path}: mutant {m.name}: unknown mutation {m.mutation!r} (known: {', '.join(MUTATIONS)})"
            )
        out.append(m)
    names = [m.name for m in out]
    if len(names) != len(set(names)):
        raise ValueError(f"{path}: a mutant name is used twice")
    return out


def mutate(mutant: Mutant, base: Path, target: Path) -> None:
    """Write ``target``: the object at ``base`` with the mutant's mutation applied."""
    ds = pydicom.dcmread(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the mutations write invalid values on purpose
        MUTATIONS[mutant.mutation](ds, **mutant.params)
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["dicom4qi-negative", mutant.name])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ts = ds.file_meta.TransferSyntaxUID
        if ts.is_transfer_syntax:
            ds.save_as(target, enforce_file_format=False)
        else:  # an unknown transfer syntax: encode as the base object was, claim the unknown one
            ds.save_as(target, enforce_file_format=False, implicit_vr=False, little_endian=True)


def reaction_of(kind: str, limit: str | None) -> str:
    """The reaction of a consumer to a mutant, from the kind of outcome of its call."""
    if limit == "memory":
        return "memory"
    return {"ok": "silent-accept", "error": "clean-reject", "crash": "crash", "timeout": "hang"}[kind]
