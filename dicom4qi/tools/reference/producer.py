"""Producer ``reference``: the suite's own DICOM SEG writer, with pydicom and numpy only.

It exists because the tools under test refuse some sources that the standard allows:
highdicom, for one, will not segment a 2D+T cine (its frames share one plane
position) nor an image without a Frame of Reference. This writer follows the
standard directly: PS3.3 A.51 Segmentation IOD (BINARY, FRACTIONAL) and Sup 243
Label Map Segmentation IOD (SOP Class 1.2.840.10008.5.1.4.1.1.66.7, LABELMAP, 8 or
16 bits).

The writer in parts, each with what it writes:

- :mod:`~dicom4qi.tools.reference.sources`: the source images, read and lined up with the truth;
- :mod:`~dicom4qi.tools.reference.frames`: the object's frames, their dimensions and functional groups;
- :mod:`~dicom4qi.tools.reference.pixels`: the Pixel Data, encoded frame by frame in bounded memory;
- :mod:`~dicom4qi.tools.reference.header`: the other modules of the header, the Segment Sequence.

This module checks the request, assembles the object from those parts and writes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from dicom4qi.adapters.contract import Producer, WriteRequest, package_version
from dicom4qi.model.case import Encoding, SegmentationType
from dicom4qi.model.masks import Crop, MaskFile
from dicom4qi.model.truth import Truth
from dicom4qi.model.uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    LABEL_MAP_SEGMENTATION_STORAGE,
    RLE_LOSSLESS,
    SEGMENTATION_STORAGE,
    TRANSFER_SYNTAX_NAMES,
)
from dicom4qi.tools.reference.frames import (
    Dimension,
    OutFrame,
    dimension_module,
    frame_group,
    plan_dimensions,
    shared_groups,
)
from dicom4qi.tools.reference.header import (
    Identity,
    common_instance_reference,
    image_pixel_segmentation,
    make_seq,
    patient_study,
    rgb_to_dicom_lab,
    series_equipment_image,
)
from dicom4qi.tools.reference.pixels import (
    NativeSink,
    PixelSink,
    RleSink,
    write_labelmap_frames,
    write_segment_frames,
)
from dicom4qi.tools.reference.sources import SourceInfo, read_sources

# rgb_to_dicom_lab lives in header; it stays exported from here, as before the split.
__all__ = ["ReferenceProducer", "rgb_to_dicom_lab"]

#: Transfer syntaxes written, with their names (RLE only for 8- and 16-bit data: see ReferenceProducer).
WRITTEN_SYNTAXES: dict[str, str] = {
    uid: TRANSFER_SYNTAX_NAMES[uid]
    for uid in (
        IMPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_BIG_ENDIAN,
        DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        RLE_LOSSLESS,
    )
}


# --------------------------------------------------------------------------- one instance of several


class _RenumberedMasks:
    """The masks of some of a truth's segments, under the numbers one instance gives them."""

    def __init__(self, masks: MaskFile, to_case: dict[int, int]) -> None:
        self._masks, self._to_case = masks, to_case

    def __enter__(self) -> _RenumberedMasks:
        return self

    def __exit__(self, *exc: object) -> None:
        self._masks.close()

    def get(self, number: int) -> Crop | None:
        return self._masks.get(self._to_case[number]) if number in self._to_case else None

    def __iter__(self) -> Iterator[tuple[int, Crop]]:
        for number, case_number in self._to_case.items():
            crop = self._masks.get(case_number)
            if crop is not None:
                yield number, crop


@dataclass(frozen=True)
class _InstanceTruth(Truth):
    """One instance's share of a truth: some of its segments, numbered as that instance numbers them."""

    to_case: dict[int, int] = field(default_factory=dict)

    def masks(self) -> Any:  # a MaskFile's reading interface
        return _RenumberedMasks(super().masks(), self.to_case)


def instance_truth(truth: Truth, to_case: dict[int, int], labelmap: bool) -> Truth:
    """The part of ``truth`` one instance holds (``to_case``: the instance's segment numbers to the case's)."""
    by_number = {s.number: s for s in truth.segments}
    fields = {f.name: getattr(truth, f.name) for f in dataclasses.fields(Truth)}
    fields["segments"] = [replace(by_number[c], number=n) for n, c in to_case.items()]
    fields["overlap"] = truth.overlap and not labelmap  # a label map instance holds no overlap
    return _InstanceTruth(**fields, to_case=to_case)


# --------------------------------------------------------------------------- the object


def build_dataset(
    truth: Truth,
    enc: Encoding,
    source: SourceInfo,
    frames: list[OutFrame],
    dims: list[Dimension],
    kind: str | None,
    who: Identity,
) -> Any:
    """The object's header, without Pixel Data."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID

    labelmap = enc.type is SegmentationType.LABELMAP
    sop_class = LABEL_MAP_SEGMENTATION_STORAGE if labelmap else SEGMENTATION_STORAGE
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(who.sop_instance_uid)
    ds.file_meta.TransferSyntaxUID = UID(enc.transfer_syntax_uid)
    patient_study(ds, source.header)
    series_equipment_image(ds, who, source)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, who.sop_instance_uid
    image_pixel_segmentation(ds, truth, enc, len(frames))
    dimension_module(ds, dims, kind, who.dimension_uid)
    if enc.source_references == "per-frame":
        # Common Instance Reference: required where the object references instances, and only then
        # (dciodvfy: "ReferencedSeriesSequence present but Instance does not reference Instances").
        used = {f.index for f in frames} if enc.referenced_instances == "segmented" else None
        ds.ReferencedSeriesSequence = common_instance_reference(source, used)
    ds.SharedFunctionalGroupsSequence = make_seq(shared_groups(source, truth))
    per_frame_refs = enc.source_references == "per-frame"
    ds.PerFrameFunctionalGroupsSequence = make_seq(
        *(frame_group(f, source, dims, labelmap, per_frame_refs) for f in frames)
    )
    return ds


# --------------------------------------------------------------------------- producer


def _identity(request: WriteRequest, software: list[str], instance: int = 1) -> Identity:
    """Deterministic UIDs (same case and encoding, same UIDs), the current date and time.

    Instances of one segmentation in several share the series and the dimension UIDs.
    """
    from pydicom.uid import generate_uid

    seed = [
        request.truth.fingerprint,
        request.case_id,
        request.case.encoding.model_dump_json(),
        "dicom4qi reference producer",
    ]
    now = datetime.now()
    return Identity(
        sop_instance_uid=generate_uid(entropy_srcs=[*seed, "sop" if instance == 1 else f"sop {instance}"]),
        instance_number=instance,
        series_uid=generate_uid(entropy_srcs=[*seed, "series"]),
        dimension_uid=generate_uid(entropy_srcs=[*seed, "dimension"]),
        date=now.strftime("%Y%m%d"),
        time=now.strftime("%H%M%S"),
        series_description=f"SEG reference {request.case_id}"[:64],
        software=software,
    )


def check_request(truth: Truth, enc: Encoding) -> None:
    """Refuse, with the reason, what this writer cannot write."""
    if not truth.segments:
        raise ValueError("the truth has no segments; a Segment Sequence needs one")
    if enc.transfer_syntax_uid not in WRITTEN_SYNTAXES:
        known = ", ".join(WRITTEN_SYNTAXES.values())
        raise ValueError(f"transfer syntax {enc.transfer_syntax} is not written by the reference producer ({known})")
    if enc.transfer_syntax_uid == EXPLICIT_VR_BIG_ENDIAN and enc.photometric != "MONOCHROME2":
        raise ValueError(
            "a Palette Color Lookup Table in Explicit VR Big Endian is not written by the reference producer"
        )
    if enc.transfer_syntax_uid == RLE_LOSSLESS and enc.bits == 1:
        raise ValueError("RLE Lossless of 1-bit BINARY frames: pydicom's RLE encoder refuses Bits Allocated 1")
    if truth.fractional != (enc.type is SegmentationType.FRACTIONAL):
        raise ValueError(
            f"a {'fractional' if truth.fractional else 'binary'} truth cannot be written as {enc.type.value}"
        )
    if enc.type is SegmentationType.FRACTIONAL and truth.fractional_max != enc.max_fractional_value:
        raise ValueError(
            f"the truth is scaled to {truth.fractional_max}, the case asks for Maximum Fractional Value {enc.max_fractional_value}"
        )
    if enc.type is SegmentationType.LABELMAP:
        if truth.overlap and not enc.instances:  # in several instances, each instance is checked as it is painted
            raise ValueError("overlapping segments cannot be written as one label map")
        top = max(s.number for s in truth.segments)
        if top >= 1 << enc.bits:
            raise ValueError(f"segment number {top} does not fit a {enc.bits}-bit label map")


class ReferenceProducer(Producer):
    """The suite's own writer of BINARY, FRACTIONAL and LABELMAP objects (pydicom and numpy only)."""

    name = "reference"
    tool = "dicom4qi reference writer"
    homepage = None
    features = frozenset(
        {
            "binary",
            "binary-unaligned-frames",
            "fractional",
            "fractional-occupancy",
            "fractional-max-value",
            "frames-shuffled",
            "frames-position-only",
            "partial-references",
            "labelmap-sparse-numbers",
            "labelmap-palette",
            "labelmap",
            "labelmap-8bit",
            "labelmap-16bit",
            "disjoint",
            "overlap",
            "empty-segment",
            "empty-frames",
            "oblique",
            "many-segments",
            "single-frame-source",
            "source-default-charset",
            "source-no-slice-thickness",
            "source-two-series",  # producers get the referenced series only; readers get both
            "multiframe-source",
            "temporal",
            "projection-source",
            "uneven-spacing",
            "segments-interleaved",
            "segment-metadata",
            "non-ascii-text",
            "long-text",
            "anatomic-region",
            "multiple-algorithms",
            "ts-explicit-le",
            "ts-explicit-be",
            "ts-implicit-le",
            "ts-deflate",
            "ts-rle",
            "multi-instance",
        }
    )
    # pydicom's RLE encoder refuses Bits Allocated 1 ("not valid for pixel data encoded with 'RLE Lossless'").
    unsupported_combinations = (frozenset({"binary", "ts-rle"}),)

    def version(self) -> str | None:
        from dicom4qi import __version__

        return f"{__version__} (pydicom {package_version('pydicom')}, numpy {np.__version__})"

    def write(self, request: WriteRequest) -> list[str]:
        truth, enc = request.truth, request.case.encoding
        check_request(truth, enc)
        source = read_sources(truth)
        software = [f"dicom4qi {self.version()}"[:64]]
        request.output.parent.mkdir(parents=True, exist_ok=True)
        if not enc.instances:
            frames, dims = self._write_one(request, truth, source, _identity(request, software), request.output)
            return self._notes(enc, truth, frames, dims)
        notes: list[str] = []
        labelmap = enc.type is SegmentationType.LABELMAP
        for k, to_case in enumerate(enc.instance_numbering(), 1):
            part = instance_truth(truth, to_case, labelmap)
            output = request.output if k == 1 else request.instance_output(k)
            frames, dims = self._write_one(request, part, source, _identity(request, software, k), output)
            if k > 1:
                request.instances.append(output)
            held = ", ".join(str(c) if n == c else f"{c} (as {n})" for n, c in to_case.items())
            notes.append(f"instance {k} of {len(enc.instances)} ({output.name}): segments {held}")
            notes += [f"  {n}" for n in self._notes(enc, part, frames, dims)]
        return ["one segmentation in several instances of one series (same Series Instance UID)", *notes]

    def _write_one(
        self, request: WriteRequest, truth: Truth, source: SourceInfo, who: Identity, output: Path
    ) -> tuple[list[OutFrame], list[Dimension]]:
        """Write one instance holding ``truth``'s segments to ``output``; its frames and dimensions."""
        enc = request.case.encoding
        labelmap = enc.type is SegmentationType.LABELMAP
        position_major = enc.frame_order == "position-major" and not labelmap
        dims, kind = plan_dimensions(source, segmented=not labelmap, position_major=position_major)
        rows, cols = truth.geometry.rows, truth.geometry.columns
        with contextlib.ExitStack() as stack:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".reference-", dir=output.parent)))
            sink: PixelSink
            if enc.transfer_syntax_uid == RLE_LOSSLESS:
                sink = RleSink(rows, cols, enc.bits)
            else:
                native = NativeSink(
                    scratch / "pixels.raw", enc.bits, big_endian=enc.transfer_syntax_uid == EXPLICIT_VR_BIG_ENDIAN
                )
                stack.callback(native.close)
                sink = native
            seed = request.case.segments.seed
            if labelmap:
                frames = write_labelmap_frames(truth, sink, enc.bits, scratch, enc.frame_order, seed)
            else:
                frames = write_segment_frames(truth, sink, enc.frame_order, scratch, seed)
            vr, value = sink.finish()
            ds = build_dataset(truth, enc, source, frames, dims, kind, who)
            ds.add_new(0x7FE00010, vr, value)
            ds.save_as(output, enforce_file_format=True)
        return frames, dims

    @staticmethod
    def _notes(enc: Encoding, truth: Truth, frames: list[OutFrame], dims: list[Dimension]) -> list[str]:
        n_segments = len(truth.segments)
        empty = sum(1 for s in truth.segments if s.empty)
        order = {
            "segment-major": "segment-major",
            "position-major": "position-major: slice by slice, segments interleaved",
            "shuffled": "shuffled: neither by segment nor by position",
        }[enc.frame_order]
        if enc.type is SegmentationType.LABELMAP:
            order = "one label map frame per source frame with any segment, " + (
                "by position" if enc.frame_order == "segment-major" else order
            )
        listed = "all source instances" if enc.referenced_instances == "all" else "only the segmented source instances"
        refs = {
            "per-frame": f"each frame names its source image; the Referenced Series Sequence lists {listed}",
            "position-only": "frames placed by Plane Position (Patient) alone: no per-frame source reference, "
            "no Referenced Series Sequence (the object references no instance)",
        }[enc.source_references]
        return [
            f"{enc.type.value}, {enc.bits} bit(s) allocated, {WRITTEN_SYNTAXES[enc.transfer_syntax_uid]}",
            (
                f"{len(frames)} frames ({order}) for {n_segments} segments ({empty} empty) "
                f"on {len(truth.frame_keys)} source frames; empty frames omitted"
            ),
            "dimensions: " + ", then ".join(d.label for d in dims),
            refs,
        ]
