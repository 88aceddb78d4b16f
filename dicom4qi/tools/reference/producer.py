"""Producer ``reference``: the suite's own DICOM SEG writer, with pydicom and numpy only.

It exists because the tools under test refuse some sources that the standard allows:
highdicom, for one, will not segment a 2D+T cine (its frames share one plane
position) nor an image without a Frame of Reference. This writer follows the
standard directly:

- PS3.3 A.51 Segmentation IOD (BINARY, FRACTIONAL) and Sup 243 Label Map
  Segmentation IOD (SOP Class 1.2.840.10008.5.1.4.1.1.66.7, LABELMAP, 8 or 16 bits);
- modules: Patient and General Study (copied from the source), General Series,
  Segmentation Series, Frame of Reference (only when the source has one), General
  and Enhanced General Equipment, General Image, Image Pixel, Segmentation Image,
  Multi-frame Functional Groups, Multi-frame Dimension, Common Instance
  Reference, SOP Common (Specific Character Set ISO_IR 192);
- per frame: Derivation Image (the source frame it segments), Frame Content
  (Dimension Index Values, and the source's Temporal Position Index where it has
  one), Plane Position (Patient) where the source has positions, Segment
  Identification (BINARY and FRACTIONAL); shared: Pixel Measures and Plane
  Orientation (Patient);
- dimensions: Referenced Segment Number (BINARY, FRACTIONAL), then what tells the
  source frames apart: Image Position (Patient) for a volume, the Temporal
  Position Index for a cine (all frames at one position), and for an image
  without a position in patient space the Frame Label (Frame Content), which
  names the source frame (dciodvfy looks for a dimension's attribute directly
  in a functional group item, so the nested Referenced SOP Instance UID or
  Referenced Frame Number of the Derivation Image group would not do). With
  ``frame_order = "position-major"`` the frames go slice by slice with the
  segments interleaved, and the segment dimension comes second.

Frames without any segment voxel are left out (empty segments stay described
in the Segment Sequence; an object with no voxel at all keeps one empty frame).

Memory stays bounded: one segment's crop at a time; BINARY and FRACTIONAL frames
are encoded as they come, and spilled to a scratch file when the frame order is
position-major; a label map is painted into a memory-mapped scratch volume; the
native Pixel Data is streamed to a scratch file that pydicom copies into the
object (encapsulated RLE frames are kept, compressed, in memory).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from io import BufferedIOBase
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from dicom4qi.adapters.contract import Producer, WriteRequest, package_version
from dicom4qi.model.case import Encoding, SegmentationType
from dicom4qi.model.decoded import frame_key
from dicom4qi.model.truth import SegmentInfo, Truth
from dicom4qi.model.uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    LABEL_MAP_SEGMENTATION_STORAGE,
    RLE_LOSSLESS,
    SEGMENTATION_STORAGE,
    TRANSFER_SYNTAX_NAMES,
    VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE,
)

__all__ = ["ReferenceProducer", "rgb_to_dicom_lab"]

#: Transfer syntaxes written, with their names (RLE only for 8- and 16-bit data: see ReferenceProducer).
WRITTEN_SYNTAXES: dict[str, str] = {
    uid: TRANSFER_SYNTAX_NAMES[uid]
    for uid in (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, RLE_LOSSLESS)
}

# Tags of the attributes used as dimensions and of the functional groups holding them.
_REFERENCED_SEGMENT_NUMBER = 0x0062000B
_SEGMENT_IDENTIFICATION_SEQUENCE = 0x0062000A
_IMAGE_POSITION_PATIENT = 0x00200032
_PLANE_POSITION_SEQUENCE = 0x00209113
_TEMPORAL_POSITION_INDEX = 0x00209128
_FRAME_CONTENT_SEQUENCE = 0x00209111
_FRAME_LABEL = 0x00209453

#: (value, scheme, meaning) of the codes the writer uses.
_SOURCE_FOR_PROCESSING = ("121322", "DCM", "Source image for image processing operation")
_SEGMENTATION_DERIVATION = ("113076", "DCM", "Segmentation")
_ALGORITHM_FAMILY = ("123110", "DCM", "Artificial Intelligence")


# --------------------------------------------------------------------------- source


@dataclass(frozen=True)
class SourceFrame:
    """One frame of the truth's grid, as the source images describe it."""

    sop_class_uid: str
    sop_instance_uid: str
    series_uid: str
    #: 1-based frame number in a multi-frame source; None for a single-frame instance.
    frame_number: int | None
    #: Image Position (Patient) as the source states it; None where it has none.
    position: list[str] | None
    #: Temporal Position Index of the source frame; None where it has none.
    temporal_index: int | None


@dataclass(frozen=True)
class SourceInfo:
    """What the writer takes from the source images: headers, frames in the truth's order, geometry."""

    header: Any  # the first source instance's header (patient, study, frame of reference)
    frames: list[SourceFrame]
    orientation: list[str] | None
    pixel_spacing: list[str] | None
    slice_thickness: str | None

    @property
    def has_positions(self) -> bool:
        return self.orientation is not None and all(f.position is not None for f in self.frames)

    def depth_ranks(self) -> list[int]:
        """1-based rank of each frame's position: along the slice normal, then by coordinates (equal positions share one)."""
        assert self.orientation is not None
        o = np.asarray([float(v) for v in self.orientation])
        normal = np.cross(o[:3], o[3:])
        keys = []
        for f in self.frames:
            xyz = tuple(round(float(v), 4) for v in f.position or ())
            keys.append((round(float(np.asarray(xyz) @ normal), 4), xyz))
        order = {k: i + 1 for i, k in enumerate(sorted(set(keys)))}
        return [order[k] for k in keys]


def _is_multiframe(ds: Any) -> bool:
    return int(ds.get("NumberOfFrames", 1) or 1) > 1 or "PerFrameFunctionalGroupsSequence" in ds


def _frames_of(ds: Any) -> Iterator[tuple[str, SourceFrame]]:
    """The frames of one source instance, with their keys."""
    sop_class, sop_uid, series = str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID)
    if not _is_multiframe(ds):
        pos = [str(v) for v in ds.ImagePositionPatient] if "ImagePositionPatient" in ds else None
        yield frame_key(sop_uid), SourceFrame(sop_class, sop_uid, series, None, pos, None)
        return
    n = int(ds.get("NumberOfFrames", 1) or 1)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or [None] * n
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    for i, fg in enumerate(per_frame):
        plane = _group(fg, shared, "PlanePositionSequence")
        content = _group(fg, None, "FrameContentSequence")
        pos = (
            [str(v) for v in plane.ImagePositionPatient]
            if plane is not None and "ImagePositionPatient" in plane
            else None
        )
        tpi = content.get("TemporalPositionIndex") if content is not None else None
        yield (
            frame_key(sop_uid, i + 1),
            SourceFrame(sop_class, sop_uid, series, i + 1, pos, int(tpi) if tpi is not None else None),
        )


def _group(per_frame: Any, shared: Any, keyword: str) -> Any:
    """The first item of a functional group, per frame or else shared (None if neither has it)."""
    for fg in (per_frame, shared):
        if fg is not None and keyword in fg and len(fg[keyword].value):
            return fg[keyword].value[0]
    return None


def _geometry_of(ds: Any) -> tuple[list[str] | None, list[str] | None, str | None]:
    """Orientation, pixel spacing and slice thickness of a source instance (its first frame's groups, else the shared ones)."""
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    first = ds.PerFrameFunctionalGroupsSequence[0] if "PerFrameFunctionalGroupsSequence" in ds else None
    orientation_item = _group(first, shared, "PlaneOrientationSequence")
    measures = _group(first, shared, "PixelMeasuresSequence")
    top = ds if not _is_multiframe(ds) else None
    orientation = orientation_item.get("ImageOrientationPatient") if orientation_item is not None else None
    spacing = measures.get("PixelSpacing") if measures is not None else None
    thickness = measures.get("SliceThickness") if measures is not None else None
    if top is not None:
        orientation = top.get("ImageOrientationPatient", orientation)
        spacing = top.get("PixelSpacing", top.get("ImagerPixelSpacing", spacing))
        thickness = top.get("SliceThickness", thickness)
    return (
        [str(v) for v in orientation] if orientation else None,
        [str(v) for v in spacing] if spacing else None,
        str(thickness) if thickness not in (None, "") else None,
    )


def read_sources(truth: Truth) -> SourceInfo:
    """Read the source headers and line their frames up with the truth's frame keys."""
    import pydicom

    by_key: dict[str, SourceFrame] = {}
    header = None
    geometry: tuple[list[str] | None, list[str] | None, str | None] = (None, None, None)
    for path in truth.source_paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if (
            str(ds.SOPClassUID) == VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE
            or ds.get("DimensionOrganizationType") == "TILED_FULL"
        ):
            raise ValueError(f"{path.name}: a tiled whole slide image; the reference producer does not segment slides")
        if header is None:
            header, geometry = ds, _geometry_of(ds)
        by_key.update(_frames_of(ds))
    if header is None:
        raise ValueError("the case has no source images")
    missing = [k for k in truth.frame_keys if k not in by_key]
    if missing:
        raise ValueError(f"{len(missing)} frame(s) of the truth are in no source image (first {missing[0]})")
    return SourceInfo(header, [by_key[k] for k in truth.frame_keys], *geometry)


# --------------------------------------------------------------------------- dimensions


@dataclass(frozen=True)
class OutFrame:
    """One frame of the object: the segment it holds (None in a label map) and its source frame (truth index)."""

    segment: int | None
    index: int


@dataclass(frozen=True)
class Dimension:
    """One item of the Dimension Index Sequence and how a frame's index value is found."""

    pointer: int
    group: int
    label: str
    value: Callable[[OutFrame], int]


def plan_dimensions(source: SourceInfo, segmented: bool, position_major: bool) -> tuple[list[Dimension], str | None]:
    """The dimensions of the object, in order, and its Dimension Organization Type (None: not stated).

    Raise ValueError when nothing tells the source frames apart.
    """
    frames = source.frames
    ranks = source.depth_ranks() if source.has_positions else []
    if ranks and len(set(ranks)) == len(frames):
        spatial = Dimension(
            _IMAGE_POSITION_PATIENT, _PLANE_POSITION_SEQUENCE, "Image Position (Patient)", lambda f: ranks[f.index]
        )
        kind: str | None = "3D"
    elif all(f.temporal_index is not None for f in frames) and len({f.temporal_index for f in frames}) == len(frames):

        def temporal_index(f: OutFrame) -> int:
            t = frames[f.index].temporal_index
            assert t is not None  # every frame has one (checked above)
            return int(t)

        spatial = Dimension(
            _TEMPORAL_POSITION_INDEX,
            _FRAME_CONTENT_SEQUENCE,
            "Temporal Position Index",
            temporal_index,
        )
        kind = "3D_TEMPORAL"
    elif not source.has_positions:
        spatial = Dimension(_FRAME_LABEL, _FRAME_CONTENT_SEQUENCE, "Source Frame", lambda f: f.index + 1)
        kind = None
    else:
        raise ValueError(
            "the source frames share positions but carry no distinct Temporal Position Index: "
            "nothing tells them apart as a dimension"
        )
    if not segmented:
        return [spatial], kind
    segment = Dimension(
        _REFERENCED_SEGMENT_NUMBER, _SEGMENT_IDENTIFICATION_SEQUENCE, "Segment Number", lambda f: int(f.segment or 0)
    )
    return ([spatial, segment] if position_major else [segment, spatial]), kind


# --------------------------------------------------------------------------- pixel data


class PixelSink(Protocol):
    """Where encoded frames go, in object order."""

    def add(self, plane: np.ndarray) -> None: ...

    def finish(self) -> tuple[str, bytes | BufferedIOBase]:
        """The Pixel Data's VR and value (bytes, or an open file pydicom copies from)."""
        ...


class NativeSink:
    """Uncompressed frames streamed to a scratch file; 1-bit frames packed with no padding between them."""

    def __init__(self, path: Path, bits: int) -> None:
        self.path, self.bits = path, bits
        self._fh: BinaryIO = open(path, "wb")  # open until finish(), closed by close()
        self._carry = np.zeros(0, dtype=np.uint8)  # bits (< 8) not yet written, for 1-bit data
        self._reader: BinaryIO | None = None

    def add(self, plane: np.ndarray) -> None:
        if self.bits == 1:
            bits = np.concatenate([self._carry, plane.astype(bool, copy=False).ravel().view(np.uint8)])
            whole = len(bits) // 8 * 8
            self._fh.write(np.packbits(bits[:whole], bitorder="little").tobytes())
            self._carry = bits[whole:].copy()
        else:
            self._fh.write(np.ascontiguousarray(plane, dtype=f"<u{self.bits // 8}").tobytes())

    def finish(self) -> tuple[str, bytes | BufferedIOBase]:
        if len(self._carry):
            self._fh.write(np.packbits(self._carry, bitorder="little").tobytes())
        # Pad to an even length here: pydicom 3.0.2 writes a buffered value's odd length as its
        # Value Length and then appends the pad byte, which leaves the element malformed.
        if self._fh.tell() % 2:
            self._fh.write(b"\x00")
        self._fh.close()
        self._reader = open(self.path, "rb")  # pydicom reads it at save time; close() closes it
        return ("OW" if self.bits == 16 else "OB"), self._reader

    def close(self) -> None:
        for fh in (self._fh, self._reader):
            if fh is not None and not fh.closed:
                fh.close()


class RleSink:
    """RLE Lossless frames (PS3.5 G), encoded one by one by pydicom's encoder and encapsulated."""

    def __init__(self, rows: int, columns: int, bits: int) -> None:
        if bits not in (8, 16):
            raise ValueError(f"RLE Lossless is written for 8- and 16-bit data here, not {bits}-bit")
        self.kwargs: dict[str, Any] = {
            "rows": rows,
            "columns": columns,
            "samples_per_pixel": 1,
            "bits_allocated": bits,
            "bits_stored": bits,
            "pixel_representation": 0,
            "photometric_interpretation": "MONOCHROME2",
            "number_of_frames": 1,
        }
        self.dtype = np.uint8 if bits == 8 else np.uint16
        self.frames: list[bytes] = []

    def add(self, plane: np.ndarray) -> None:
        from pydicom.pixels.encoders import RLELosslessEncoder

        self.frames.append(RLELosslessEncoder.encode(np.ascontiguousarray(plane, dtype=self.dtype), **self.kwargs))

    def finish(self) -> tuple[str, bytes | BufferedIOBase]:
        from pydicom.encaps import encapsulate

        return "OB", encapsulate(self.frames, has_bot=True)


class FrameStore:
    """A scratch file of encoded frames, read back in another order (position-major output)."""

    def __init__(self, path: Path, shape: tuple[int, int], packed: bool) -> None:
        self.shape, self.packed = shape, packed
        self._fh = open(path, "w+b")  # written then read back; close() closes it
        self._where: dict[tuple[int, int], tuple[int, int, np.dtype]] = {}

    def put(self, segment: int, index: int, plane: np.ndarray) -> None:
        data = (
            np.packbits(plane.astype(bool).ravel(), bitorder="little") if self.packed else np.ascontiguousarray(plane)
        )
        self._fh.seek(0, 2)
        self._where[(segment, index)] = (self._fh.tell(), data.nbytes, data.dtype)
        self._fh.write(data.tobytes())

    def keys(self) -> list[tuple[int, int]]:
        return list(self._where)

    def get(self, segment: int, index: int) -> np.ndarray:
        offset, size, dtype = self._where[(segment, index)]
        self._fh.seek(offset)
        raw = np.frombuffer(self._fh.read(size), dtype=dtype)
        if self.packed:
            n = self.shape[0] * self.shape[1]
            return np.unpackbits(raw, count=n, bitorder="little").astype(bool).reshape(self.shape)
        return raw.reshape(self.shape)

    def close(self) -> None:
        self._fh.close()


def segment_planes(truth: Truth) -> Iterator[tuple[int, int, np.ndarray]]:
    """(segment, truth frame, full plane) of every non-empty frame, segment by segment, one crop in memory."""
    rows, cols = truth.geometry.rows, truth.geometry.columns
    with truth.masks() as masks:
        for info in truth.segments:
            crop = masks.get(info.number)
            if crop is None:
                continue
            z0, y0, x0 = crop.offset
            h, w = crop.data.shape[1:]
            data = crop.data if truth.fractional else crop.data.astype(bool, copy=False)
            for i in np.flatnonzero(data.reshape(data.shape[0], -1).any(axis=1)):
                plane = np.zeros((rows, cols), dtype=data.dtype)
                plane[y0 : y0 + h, x0 : x0 + w] = data[i]
                yield info.number, z0 + int(i), plane


def write_segment_frames(truth: Truth, sink: PixelSink, position_major: bool, scratch: Path) -> list[OutFrame]:
    """BINARY / FRACTIONAL frames into ``sink``, segment-major or position-major; return them in object order."""
    frames: list[OutFrame] = []
    if not position_major:
        for number, index, plane in segment_planes(truth):
            sink.add(plane)
            frames.append(OutFrame(number, index))
    else:
        shape = (truth.geometry.rows, truth.geometry.columns)
        store = FrameStore(scratch / "frames.bin", shape, packed=not truth.fractional)
        try:
            for number, index, plane in segment_planes(truth):
                store.put(number, index, plane)
            for number, index in sorted(store.keys(), key=lambda key: (key[1], key[0])):
                sink.add(store.get(number, index))
                frames.append(OutFrame(number, index))
        finally:
            store.close()
    if not frames:  # every segment is empty: one empty frame keeps the object valid
        sink.add(np.zeros((truth.geometry.rows, truth.geometry.columns), dtype=np.uint8))
        frames.append(OutFrame(truth.segments[0].number, 0))
    return frames


def write_labelmap_frames(truth: Truth, sink: PixelSink, bits: int, scratch: Path) -> list[OutFrame]:
    """Paint the segments into a memory-mapped label volume, then send its non-empty frames to ``sink``."""
    dtype = np.uint8 if bits == 8 else np.uint16
    volume = np.memmap(scratch / "labels.raw", dtype=dtype, mode="w+", shape=truth.shape)
    try:
        with truth.masks() as masks:
            for number, crop in masks:
                (z0, y0, x0), (z1, y1, x1) = crop.offset, crop.stop
                region = volume[z0:z1, y0:y1, x0:x1]
                mask = crop.data.astype(bool, copy=False)
                taken = region[mask]
                if taken.any():
                    other = int(taken[taken > 0][0])
                    raise ValueError(
                        f"segments {other} and {number} share voxels: a label map cannot hold overlapping segments"
                    )
                region[mask] = number
        indices = [k for k in range(truth.shape[0]) if volume[k].any()] or [0]
        for k in indices:
            sink.add(np.asarray(volume[k]))
        return [OutFrame(None, k) for k in indices]
    finally:
        del volume


# --------------------------------------------------------------------------- header


def _item(**attributes: Any) -> Any:
    from pydicom.dataset import Dataset

    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def _seq(*items: Any) -> Any:
    from pydicom.sequence import Sequence

    return Sequence(list(items))


def _code(value: str, scheme: str, meaning: str) -> Any:
    return _item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def _code_of(c: dict[str, str]) -> Any:
    return _code(c["value"], c["scheme"], c["meaning"])


def _ds(value: float) -> str:
    """A DS value of at most 16 characters."""
    return f"{value:.10g}"[:16]


#: sRGB (linear) to CIE XYZ, and the D65 white point.
_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_D65 = np.array([0.95047, 1.0, 1.08883])


def rgb_to_dicom_lab(rgb: tuple[int, int, int]) -> list[int]:
    """8-bit sRGB to DICOM scaled CIELab (PS3.3 C.10.7.1.1: L* 0-100, a* b* -128-127, on 0-65535)."""
    c = np.clip(np.asarray(rgb, dtype=float) / 255.0, 0.0, 1.0)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    t = (_RGB_TO_XYZ @ linear) / _D65
    delta = 6.0 / 29.0
    f = np.where(t > delta**3, np.cbrt(t), t / (3 * delta**2) + 4.0 / 29.0)
    lightness, a_star, b_star = 116.0 * f[1] - 16.0, 500.0 * (f[0] - f[1]), 200.0 * (f[1] - f[2])
    return [
        round(float(np.clip(lightness, 0, 100)) * 65535 / 100),
        round((float(np.clip(a_star, -128, 127)) + 128) * 65535 / 255),
        round((float(np.clip(b_star, -128, 127)) + 128) * 65535 / 255),
    ]


def segment_item(info: SegmentInfo) -> Any:
    """One Segment Sequence item (Segment Description Macro, PS3.3 C.8.20.2)."""
    item = _item(SegmentNumber=info.number, SegmentLabel=info.label)
    if info.description:
        item.SegmentDescription = info.description
    item.SegmentAlgorithmType = info.algorithm_type
    if info.algorithm_type != "MANUAL":
        item.SegmentAlgorithmName = info.algorithm_name
        algorithm = _item(
            AlgorithmFamilyCodeSequence=_seq(_code(*_ALGORITHM_FAMILY)),
            AlgorithmName=info.algorithm_name,
            AlgorithmVersion=info.algorithm_version,
        )
        item.SegmentationAlgorithmIdentificationSequence = _seq(algorithm)
    assert info.category is not None and info.type is not None  # the truth always has them
    item.SegmentedPropertyCategoryCodeSequence = _seq(_code_of(info.category))
    prop = _code_of(info.type)
    if info.type_modifier:
        prop.SegmentedPropertyTypeModifierCodeSequence = _seq(_code_of(info.type_modifier))
    item.SegmentedPropertyTypeCodeSequence = _seq(prop)
    if info.anatomic_region:
        region = _code_of(info.anatomic_region)
        if info.anatomic_region_modifier:
            region.AnatomicRegionModifierSequence = _seq(_code_of(info.anatomic_region_modifier))
        item.AnatomicRegionSequence = _seq(region)
    if info.tracking_id:
        item.TrackingID = info.tracking_id
    if info.tracking_uid:
        item.TrackingUID = info.tracking_uid
    if info.color_rgb:
        item.RecommendedDisplayCIELabValue = rgb_to_dicom_lab(info.color_rgb)
    return item


def _copy(target: Any, source: Any, keywords: tuple[str, ...], *, empty_if_absent: bool) -> None:
    for keyword in keywords:
        if keyword in source:
            setattr(target, keyword, source[keyword].value)
        elif empty_if_absent:
            setattr(target, keyword, "")


def _patient_study(ds: Any, src: Any) -> None:
    """Patient and General Study modules, copied from the source."""
    _copy(ds, src, ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"), empty_if_absent=True)
    _copy(
        ds,
        src,
        ("StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"),
        empty_if_absent=True,
    )
    _copy(ds, src, ("IssuerOfPatientID", "PatientAge", "StudyDescription"), empty_if_absent=False)
    ds.StudyInstanceUID = src.StudyInstanceUID


@dataclass(frozen=True)
class Identity:
    """The new object's UIDs, dates and names."""

    sop_instance_uid: str
    series_uid: str
    dimension_uid: str
    date: str
    time: str
    series_description: str
    software: list[str]


def _series_equipment_image(ds: Any, who: Identity, source: SourceInfo) -> None:
    """General and Segmentation Series, Frame of Reference, equipment, General Image, SOP Common."""
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.Modality = "SEG"
    ds.SeriesInstanceUID = who.series_uid
    ds.SeriesNumber = 900
    ds.SeriesDescription = who.series_description
    ds.SeriesDate, ds.SeriesTime = who.date, who.time
    src = source.header
    if "FrameOfReferenceUID" in src:
        ds.FrameOfReferenceUID = src.FrameOfReferenceUID
        ds.PositionReferenceIndicator = src.get("PositionReferenceIndicator", "")
    ds.Manufacturer = "dicom4qi"
    ds.ManufacturerModelName = "reference producer"
    ds.DeviceSerialNumber = "1"
    ds.SoftwareVersions = who.software
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = who.date, who.time
    ds.InstanceCreationDate, ds.InstanceCreationTime = who.date, who.time
    if source.orientation is None and "PatientOrientation" in src:
        ds.PatientOrientation = src.PatientOrientation  # General Image 2C: no Image Orientation (Patient)
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.LossyImageCompression = "00"


def _image_pixel_segmentation(ds: Any, truth: Truth, enc: Encoding, n_frames: int) -> None:
    """Image Pixel and Segmentation Image modules, with the Segment Sequence."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = truth.geometry.rows, truth.geometry.columns
    ds.NumberOfFrames = n_frames
    ds.BitsAllocated = ds.BitsStored = enc.bits
    ds.HighBit = enc.bits - 1
    ds.PixelRepresentation = 0
    ds.ContentLabel = "SEGMENTATION"
    ds.ContentDescription = "dicom4qi reference producer"
    ds.ContentCreatorName = ""
    ds.SegmentationType = enc.type.value
    if enc.type is SegmentationType.FRACTIONAL:
        ds.SegmentationFractionalType = "PROBABILITY"
        ds.MaximumFractionalValue = truth.fractional_max
    if enc.type is SegmentationType.LABELMAP:
        ds.PixelPaddingValue = 0
    ds.SegmentsOverlap = "YES" if truth.overlap else "NO"
    ds.SegmentSequence = _seq(*(segment_item(s) for s in sorted(truth.segments, key=lambda s: s.number)))


def _dimension_module(ds: Any, dims: list[Dimension], kind: str | None, uid: str) -> None:
    """Multi-frame Dimension module."""
    ds.DimensionOrganizationSequence = _seq(_item(DimensionOrganizationUID=uid))
    ds.DimensionIndexSequence = _seq(
        *(
            _item(
                DimensionOrganizationUID=uid,
                DimensionIndexPointer=d.pointer,
                FunctionalGroupPointer=d.group,
                DimensionDescriptionLabel=d.label,
            )
            for d in dims
        )
    )
    if kind is not None:
        ds.DimensionOrganizationType = kind


def _shared_groups(source: SourceInfo, truth: Truth) -> Any:
    """Pixel Measures and, for images in patient space, Plane Orientation (Patient)."""
    shared = _item()
    spacing = source.pixel_spacing or [_ds(v) for v in truth.geometry.pixel_spacing]
    measures = _item(PixelSpacing=spacing)
    if source.has_positions:
        measures.SliceThickness = source.slice_thickness or _ds(truth.geometry.slice_spacing)
    shared.PixelMeasuresSequence = _seq(measures)
    if source.orientation is not None:
        shared.PlaneOrientationSequence = _seq(_item(ImageOrientationPatient=source.orientation))
    return shared


def _frame_group(frame: OutFrame, source: SourceInfo, dims: list[Dimension], labelmap: bool) -> Any:
    """One item of the Per-frame Functional Groups Sequence."""
    src = source.frames[frame.index]
    ref = _item(ReferencedSOPClassUID=src.sop_class_uid, ReferencedSOPInstanceUID=src.sop_instance_uid)
    if src.frame_number is not None:
        ref.ReferencedFrameNumber = src.frame_number
    ref.PurposeOfReferenceCodeSequence = _seq(_code(*_SOURCE_FOR_PROCESSING))
    ref.SpatialLocationsPreserved = "YES"
    fg = _item(
        DerivationImageSequence=_seq(
            _item(SourceImageSequence=_seq(ref), DerivationCodeSequence=_seq(_code(*_SEGMENTATION_DERIVATION)))
        )
    )
    content = _item()
    if src.temporal_index is not None:
        content.TemporalPositionIndex = src.temporal_index
    content.DimensionIndexValues = [d.value(frame) for d in dims]
    if any(d.pointer == _FRAME_LABEL for d in dims):
        content.FrameLabel = frame_label(frame.index)
    fg.FrameContentSequence = _seq(content)
    if src.position is not None and source.orientation is not None:
        fg.PlanePositionSequence = _seq(_item(ImagePositionPatient=src.position))
    if not labelmap:
        fg.SegmentIdentificationSequence = _seq(_item(ReferencedSegmentNumber=frame.segment))
    return fg


def frame_label(index: int) -> str:
    """The Frame Label naming the source frame a frame segments (the dimension of images without a position)."""
    return f"source frame {index + 1}"


def _common_instance_reference(source: SourceInfo) -> Any:
    """Referenced Series Sequence: every source instance, by series."""
    series: dict[str, dict[str, str]] = {}
    for f in source.frames:
        series.setdefault(f.series_uid, {})[f.sop_instance_uid] = f.sop_class_uid
    return _seq(
        *(
            _item(
                SeriesInstanceUID=uid,
                ReferencedInstanceSequence=_seq(
                    *(_item(ReferencedSOPClassUID=c, ReferencedSOPInstanceUID=i) for i, c in instances.items())
                ),
            )
            for uid, instances in series.items()
        )
    )


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
    _patient_study(ds, source.header)
    _series_equipment_image(ds, who, source)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, who.sop_instance_uid
    _image_pixel_segmentation(ds, truth, enc, len(frames))
    _dimension_module(ds, dims, kind, who.dimension_uid)
    ds.ReferencedSeriesSequence = _common_instance_reference(source)
    ds.SharedFunctionalGroupsSequence = _seq(_shared_groups(source, truth))
    ds.PerFrameFunctionalGroupsSequence = _seq(*(_frame_group(f, source, dims, labelmap) for f in frames))
    return ds


# --------------------------------------------------------------------------- producer


def _identity(request: WriteRequest, software: list[str]) -> Identity:
    """Deterministic UIDs (same case and encoding, same UIDs), the current date and time."""
    from pydicom.uid import generate_uid

    seed = [
        request.truth.fingerprint,
        request.case_id,
        request.case.encoding.model_dump_json(),
        "dicom4qi reference producer",
    ]
    now = datetime.now()
    return Identity(
        sop_instance_uid=generate_uid(entropy_srcs=[*seed, "sop"]),
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
        if truth.overlap:
            raise ValueError("overlapping segments cannot be written as a label map")
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
            "fractional",
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
            "ts-implicit-le",
            "ts-deflate",
            "ts-rle",
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
        labelmap = enc.type is SegmentationType.LABELMAP
        position_major = enc.frame_order == "position-major" and not labelmap
        dims, kind = plan_dimensions(source, segmented=not labelmap, position_major=position_major)
        software = [f"dicom4qi {self.version()}"[:64]]
        who = _identity(request, software)
        rows, cols = truth.geometry.rows, truth.geometry.columns
        request.output.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            scratch = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix=".reference-", dir=request.output.parent))
            )
            sink: PixelSink
            if enc.transfer_syntax_uid == RLE_LOSSLESS:
                sink = RleSink(rows, cols, enc.bits)
            else:
                native = NativeSink(scratch / "pixels.raw", enc.bits)
                stack.callback(native.close)
                sink = native
            if labelmap:
                frames = write_labelmap_frames(truth, sink, enc.bits, scratch)
            else:
                frames = write_segment_frames(truth, sink, position_major, scratch)
            vr, value = sink.finish()
            ds = build_dataset(truth, enc, source, frames, dims, kind, who)
            ds.add_new(0x7FE00010, vr, value)
            ds.save_as(request.output, enforce_file_format=True)
        return self._notes(enc, truth, frames, dims, position_major)

    @staticmethod
    def _notes(
        enc: Encoding, truth: Truth, frames: list[OutFrame], dims: list[Dimension], position_major: bool
    ) -> list[str]:
        n_segments = len(truth.segments)
        empty = sum(1 for s in truth.segments if s.empty)
        if enc.type is SegmentationType.LABELMAP:
            order = "one label map frame per source frame with any segment"
        else:
            order = "position-major: slice by slice, segments interleaved" if position_major else "segment-major"
        return [
            f"{enc.type.value}, {enc.bits} bit(s) allocated, {WRITTEN_SYNTAXES[enc.transfer_syntax_uid]}",
            (
                f"{len(frames)} frames ({order}) for {n_segments} segments ({empty} empty) "
                f"on {len(truth.frame_keys)} source frames; empty frames omitted"
            ),
            "dimensions: " + ", then ".join(d.label for d in dims),
        ]
