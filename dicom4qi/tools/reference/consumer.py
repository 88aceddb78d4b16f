"""Consumer ``reference``: the suite's own minimal, independent SEG decoder (numpy and pydicom only).

It answers the mission's open question: how fast the format reads when it is
implemented well. Nothing here comes from the tools under test:

- frames are placed by the per-frame functional groups: the referenced source
  SOP Instance UID (and frame number) when the object gives one, otherwise the
  Plane Position projected on the source's slice normal;
- BINARY frames are bit-unpacked with one vectorized ``np.unpackbits`` per
  segment (frames of a segment gathered first), without ever unpacking the
  whole object;
- LABELMAP frames are painted into one label volume on the source grid;
- FRACTIONAL stored values are scaled by Maximum Fractional Value;
- encapsulated frames go through pydicom's decoders one frame at a time.

A SEG of a whole slide image is decoded onto the slide's total pixel matrix (the
one frame of the grid), tile by tile: with Dimension Organization Type TILED_FULL
by the implicit order of PS3.3 C.7.6.17.3 (see :func:`tiled_full_layout`),
otherwise (TILED_SPARSE) by each frame's Plane Position (Slide) Row and Column
Position In Total Image Pixel Matrix. The SEG's total pixel matrix must be the
slide's: same size, spacing, origin and orientation.

Memory: one segment's extent for BINARY and FRACTIONAL, one volume (or matrix) for LABELMAP.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dicom4qi.adapters.contract import EVERY_FEATURE, Consumer, ReadRequest
from dicom4qi.formats.framescan import FrameRefs, scan_per_frame
from dicom4qi.formats.mapped import DEFER_BYTES, PIXEL_DATA, MappedFile, pixel_length
from dicom4qi.formats.segmeta import segments_from_dataset
from dicom4qi.formats.source_frames import SourceFrames
from dicom4qi.model.decoded import DecodedWriter, frame_key
from dicom4qi.model.masks import Crop, crop_from_dense
from dicom4qi.model.uids import LABEL_MAP_SEGMENTATION_STORAGE, RLE_LOSSLESS

__all__ = ["ReferenceConsumer"]

#: Tiles decoded at once when placing the frames of a slide SEG.
TILE_BATCH = 256
#: How far (in pixels) a slide SEG's total pixel matrix origin may lie from the slide's (DS rounding).
ORIGIN_TOLERANCE_PX = 0.1


class ReferenceConsumer(Consumer):
    name = "reference"
    tool = "dicom4qi reference decoder"
    homepage = None
    features = EVERY_FEATURE  # it claims to read any SEG

    def version(self) -> str | None:
        from importlib import metadata  # here, not at the top: 20 ms of every read's start-up

        from dicom4qi import __version__

        return f"{__version__} (pydicom {metadata.version('pydicom')})"

    def read(self, request: ReadRequest) -> DecodedWriter:
        from pydicom import config

        # pydicom checks every value it converts against its VR (a warning at most, the values unchanged): judging
        # the object is the validators' work, and the checks are a third of the time the Segment Sequence takes
        mode = config.settings.reading_validation_mode
        config.settings.reading_validation_mode = config.IGNORE
        try:
            return self._read(request)
        finally:
            config.settings.reading_validation_mode = mode

    def _read(self, request: ReadRequest) -> DecodedWriter:
        import pydicom

        # Values over DEFER_BYTES (the pixels, a long per-frame sequence) stay in the file, read through a
        # memory map: native frames are viewed in place, never copied (a quarter of a 160 MB object's read time).
        ds = pydicom.dcmread(request.seg, defer_size=DEFER_BYTES)
        mapped = MappedFile(request.seg)
        refs = frame_refs(ds, mapped)
        _check_consistency(ds, refs, mapped)
        src = SourceFrames(request.sources)
        rows, cols = int(ds.Rows), int(ds.Columns)
        seg_type = str(ds.get("SegmentationType", ""))
        labelmap = str(ds.SOPClassUID) == LABEL_MAP_SEGMENTATION_STORAGE or seg_type == "LABELMAP"
        fractional = seg_type == "FRACTIONAL"
        grid = (src.rows, src.columns) if src.slide else (rows, cols)  # a slide: its total pixel matrix
        writer = DecodedWriter(src.keys, *grid, fractional=fractional)
        for s in segments_from_dataset(ds):
            writer.add_segment(s)
        if src.slide:
            return _read_slide(ds, src, writer, labelmap=labelmap, fractional=fractional)

        shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
        if shared is not None and "PlaneOrientationSequence" in shared:
            writer.geometry.orientation = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
        if shared is not None and "PixelMeasuresSequence" in shared:
            writer.geometry.pixel_spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
        shared_seg = None
        if shared is not None and "SegmentIdentificationSequence" in shared:
            shared_seg = int(shared.SegmentIdentificationSequence[0].ReferencedSegmentNumber)

        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        segment_of = np.zeros(n_frames, dtype=np.int64)
        target = np.full(n_frames, -1, dtype=np.int64)
        unplaced = 0
        referenced: list[int] = []  # frames placed by reference that also give a position: checked below
        if refs is None:
            raise ValueError(
                f"no Per-frame Functional Groups (Dimension Organization Type {ds.get('DimensionOrganizationType', 'absent')}): "
                "the reference decoder places frames by them"
            )
        for i in range(len(refs)):
            segment = refs.segment[i]
            if segment is not None:
                segment_of[i] = segment
            elif shared_seg is not None:
                segment_of[i] = shared_seg
            pos = refs.position[i]
            key = None
            sop_uid = refs.sop_uid[i]
            if sop_uid is not None:
                key = frame_key(sop_uid, refs.frame_number[i])
            if key is not None and key not in src.index:
                raise ValueError(f"frame {i + 1} refers to source {key}, which is not among the source images")
            if key is not None:
                target[i] = src.index[key]
                if pos is not None and src.has_geometry:
                    referenced.append(i)
            elif pos is not None:
                target[i] = src.by_position(list(pos))
            if target[i] < 0:
                unplaced += 1
            elif pos is not None:
                writer.geometry.positions.setdefault(src.keys[target[i]], list(pos))
        if referenced:
            ref_idx = np.asarray(referenced)
            given = np.asarray([refs.position[i] for i in referenced], dtype=float)
            off = np.max(np.abs(given - src.positions[target[ref_idx]]), axis=1)
            bad = np.flatnonzero(off > 0.01)
            if len(bad):
                i = int(ref_idx[bad[0]])
                raise ValueError(
                    f"frame {i + 1}: its position is {float(off[bad[0]]):.2f} mm from that of the source frame it refers to"
                )
        if unplaced:
            raise ValueError(f"{unplaced} of {n_frames} frame(s) match no source frame, by reference or by position")
        declared = {s.number for s in writer.segments}
        undeclared = sorted(set(segment_of.tolist()) - declared) if not labelmap else []
        if undeclared:
            raise ValueError(f"frames refer to segment(s) {undeclared[:5]} that the Segment Sequence does not describe")

        frames = _FrameReader(ds, rows, cols, mapped)
        if labelmap:
            dtype = np.uint16 if int(ds.BitsAllocated) > 8 else np.uint8
            volume = np.zeros((len(src.keys), rows, cols), dtype=dtype)
            placed = [int(f) for f in np.flatnonzero(target >= 0)]
            for f, frame in zip(placed, frames.each(placed), strict=True):
                volume[target[f]] = frame
            writer.set_labelmap(volume)
            writer.notes.append("label map painted frame by frame onto the source grid")
            return writer
        scale = 1.0 / float(ds.get("MaximumFractionalValue", 255)) if fractional else 1.0  # used only if fractional
        packed_rows = frames.packed_rows()
        for number in np.unique(segment_of[target >= 0]):
            idx = np.flatnonzero((segment_of == number) & (target >= 0))
            z = target[idx]
            if packed_rows is not None:
                # native 1-bit frames whose rows start on a byte: the extent is found on the packed bytes, and
                # only what lies in it is unpacked (an organ is a small part of every frame it is in)
                crop = packed_crop(_take(packed_rows, idx), z)
                if crop is not None:
                    writer.set_crop(int(number), crop)
                continue
            z0, z1 = int(z.min()), int(z.max()) + 1
            data = frames.get([int(i) for i in idx])
            if not fractional:
                # unpacked native bits are 0 or 1: a view, not a copy; decoded frames are tested
                data = data.view(bool) if frames.native and frames.bits == 1 else data.astype(bool)
            if np.array_equal(z, np.arange(z0, z1)):
                # the usual order: one frame per source frame, ascending, none missing
                dense = data.astype(np.float32) * scale if fractional else data
            else:
                dense = np.zeros((z1 - z0, rows, cols), dtype=np.float32 if fractional else bool)
                dense[z - z0] = data.astype(np.float32) * scale if fractional else data
            writer.set_pixels(int(number), dense, frame_offset=z0)
        how = "unpacked within each segment's extent" if packed_rows is not None else "decoded per segment"
        writer.notes.append(f"{n_frames} frames, {len(np.unique(segment_of))} segments, {how}")
        return writer


def _take(frames: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Frames ``idx`` of an array: a view where they are consecutive, a copy otherwise."""
    if len(idx) and int(idx[-1]) - int(idx[0]) + 1 == len(idx) and np.all(np.diff(idx) == 1):
        return frames[int(idx[0]) : int(idx[-1]) + 1]
    return frames[idx]


def _or_reduce(a: np.ndarray, axis: int) -> np.ndarray:
    """Bitwise OR of uint8 data along an axis, eight bytes at a time where the last axis allows it."""
    if axis != a.ndim - 1 and a.shape[-1] % 8 == 0 and a.flags.c_contiguous:
        return np.bitwise_or.reduce(a.view(np.uint64), axis=axis).view(np.uint8)
    return np.bitwise_or.reduce(a, axis=axis)


def packed_crop(packed: np.ndarray, z: np.ndarray) -> Crop | None:
    """One segment's crop from its 1-bit frames, packed least significant bit first, one row per whole bytes.

    ``packed`` is (frames, rows, columns / 8) bytes, ``z`` the source frame of each. The extent is found on the
    bytes (empty frames, then the OR of the frames: rows and bytes in use, then the bits of the edge bytes),
    and only the bytes inside it are unpacked. Frames placed on one source frame overwrite each other in their
    order, as when they are painted one by one; an empty segment is None.
    """
    k = packed.shape[0]
    flat = packed.reshape(k, -1)
    used = flat.view(np.uint64).any(axis=1) if flat.shape[1] % 8 == 0 and flat.flags.c_contiguous else flat.any(axis=1)
    if not used.any():
        return None
    z0, z1 = int(z[used].min()), int(z[used].max()) + 1
    inside = (z >= z0) & (z < z1)
    if not inside.all():
        packed, z = packed[inside], z[inside]
    proj = _or_reduce(packed, axis=0)  # (rows, bytes): every bit set in any frame
    ys = np.flatnonzero(proj.any(axis=1))
    bs = np.flatnonzero(proj.any(axis=0))
    y0, y1, b0, b1 = int(ys[0]), int(ys[-1]) + 1, int(bs[0]), int(bs[-1]) + 1
    xbits = np.flatnonzero(np.unpackbits(np.bitwise_or.reduce(proj[y0:y1, b0:b1], axis=0), bitorder="little"))
    xa, xb = int(xbits[0]), int(xbits[-1]) + 1
    bits = np.unpackbits(packed[:, y0:y1, b0:b1], axis=2, bitorder="little")[:, :, xa:xb].view(bool)
    if len(z) == z1 - z0 and np.array_equal(z, np.arange(z0, z1)):
        return Crop((z0, y0, b0 * 8 + xa), np.ascontiguousarray(bits))
    data = np.zeros((z1 - z0, y1 - y0, xb - xa), dtype=bool)
    data[z - z0] = bits
    # frames out of order, with gaps or on one source frame: what a later frame overwrote may have been the
    # extent's edge, so the painted extent is cropped again (it is small)
    return crop_from_dense(data, base=(z0, y0, b0 * 8 + xa))


def frame_refs(ds: Any, mapped: MappedFile | None = None) -> FrameRefs | None:
    """Segment, source reference and position of every frame: scanned from the raw bytes when they are
    Explicit VR Little Endian (fast), read through pydicom otherwise; None without per-frame groups."""
    from pydicom.dataelem import RawDataElement

    if 0x52009230 not in ds:
        return None
    raw = ds.get_item(0x52009230, keep_deferred=True)
    if isinstance(raw, RawDataElement) and not raw.is_implicit_VR and raw.is_little_endian:
        value = raw.value if isinstance(raw.value, bytes) else mapped.value(ds, 0x52009230) if mapped else None
        refs = scan_per_frame(value) if value is not None else None
        if refs is not None:
            return refs
    out = FrameRefs([], [], [], [])
    for fg in ds.PerFrameFunctionalGroupsSequence:
        seg = fg.get("SegmentIdentificationSequence")
        out.segment.append(int(seg[0].ReferencedSegmentNumber) if seg else None)
        plane = fg.get("PlanePositionSequence")
        out.position.append(
            tuple(float(v) for v in plane[0].ImagePositionPatient)
            if plane and "ImagePositionPatient" in plane[0]
            else None
        )
        ref = None
        if (
            "DerivationImageSequence" in fg
            and fg.DerivationImageSequence
            and "SourceImageSequence" in fg.DerivationImageSequence[0]
        ):
            ref = fg.DerivationImageSequence[0].SourceImageSequence[0]
        out.sop_uid.append(
            str(ref.ReferencedSOPInstanceUID) if ref is not None and "ReferencedSOPInstanceUID" in ref else None
        )
        number = ref.get("ReferencedFrameNumber") if ref is not None else None
        out.frame_number.append(int(number) if number is not None else None)
    return out


def _check_consistency(ds: Any, refs: FrameRefs | None, mapped: MappedFile | None = None) -> None:
    """Refuse, with the reason, an object whose header contradicts itself (the negative corpus's faults)."""
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if refs is not None and len(refs) != n:
        raise ValueError(f"Number of Frames is {n} but there are {len(refs)} Per-frame Functional Groups items")
    numbers = [int(item.SegmentNumber) for item in ds.get("SegmentSequence", [])]
    if not numbers:
        raise ValueError("the Segment Sequence is missing or empty")
    if len(numbers) != len(set(numbers)):
        raise ValueError(f"Segment Numbers repeat: {numbers}")
    labelmap = str(ds.SOPClassUID) == LABEL_MAP_SEGMENTATION_STORAGE or ds.get("SegmentationType") == "LABELMAP"
    if not labelmap and min(numbers) < 1:
        raise ValueError("a BINARY or FRACTIONAL segment is numbered 0")
    bits = int(ds.BitsAllocated)
    seg_type = str(ds.get("SegmentationType", ""))
    if (
        (seg_type == "BINARY" and bits != 1)
        or (seg_type == "FRACTIONAL" and bits != 8)
        or (labelmap and bits not in (8, 16))
    ):
        raise ValueError(f"Bits Allocated {bits} does not fit Segmentation Type {seg_type}")
    have = pixel_length(ds, mapped)
    if not have:
        raise ValueError("there is no Pixel Data, or it is empty")
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    # Pixel Measures are required where there is a frame of reference (not for a projection image's SEG).
    if (
        "FrameOfReferenceUID" in ds
        and (shared is None or "PixelMeasuresSequence" not in shared)
        and not all("PixelMeasuresSequence" in fg for fg in ds.get("PerFrameFunctionalGroupsSequence", []))
    ):
        raise ValueError("no Pixel Measures, shared or per frame, although the object has a frame of reference")
    if not ds.file_meta.TransferSyntaxUID.is_encapsulated:
        need = (n * int(ds.Rows) * int(ds.Columns) * bits + 7) // 8
        if have not in (need, need + 1):
            raise ValueError(
                f"Pixel Data has {have} bytes, {n} frames of {int(ds.Rows)}x{int(ds.Columns)} at {bits} bits need {need}"
            )
    for i, pos in enumerate(refs.position if refs is not None else []):
        if pos is not None and not all(math.isfinite(v) for v in pos):
            raise ValueError(f"frame {i + 1}: Image Position (Patient) is not finite")


class _FrameReader:
    """Frames on demand: bit-unpacked or viewed for native encodings, pydicom's decoders otherwise."""

    def __init__(self, ds: Any, rows: int, cols: int, mapped: MappedFile | None = None) -> None:
        self.ds, self.rows, self.cols = ds, rows, cols
        self.bits = int(ds.BitsAllocated)
        self.native = not ds.file_meta.TransferSyntaxUID.is_encapsulated
        self.raw: np.ndarray | None = None
        if self.native:
            view = mapped.value(ds, PIXEL_DATA) if mapped is not None else None
            self.raw = np.frombuffer(view if view is not None else ds.PixelData, dtype=np.uint8)
        #: Explicit VR Big Endian (retired): 16-bit values big-endian; 1-bit data in an OW value packed in words.
        self.order = "<" if ds.file_meta.TransferSyntaxUID.is_little_endian else ">"
        if self.raw is not None and self.order == ">" and self.bits == 1 and ds["PixelData"].VR == "OW":
            self.raw = self.raw.view(">u2").astype("<u2").view(np.uint8)

    def _check_rle(self, indices: list[int]) -> None:
        """An RLE frame holds one segment per byte of a sample (PS3.5 G.2): refuse a header that says otherwise."""
        from pydicom.encaps import get_frame

        expected = max(1, self.bits // 8)
        n = int(self.ds.get("NumberOfFrames", 1) or 1)
        for i in indices:
            frame = get_frame(self.ds.PixelData, i, number_of_frames=n)
            count = int(np.frombuffer(frame[:4], dtype="<u4")[0]) if len(frame) >= 64 else -1
            if count != expected:
                raise ValueError(
                    f"frame {i + 1}: the RLE header declares {count} segment(s), {self.bits}-bit data has {expected}"
                )

    def packed_rows(self) -> np.ndarray | None:
        """Native 1-bit frames as (frames, rows, columns / 8) bytes, where each row starts on a byte; else None."""
        if not self.native or self.bits != 1 or self.cols % 8 or self.raw is None:
            return None
        per_frame = self.rows * self.cols // 8
        whole = (len(self.raw) // per_frame) * per_frame
        return self.raw[:whole].reshape(-1, self.rows, self.cols // 8)

    def each(self, indices: list[int]) -> Iterator[np.ndarray]:
        """Frames ``indices`` one at a time, in that order (compressed ones through one pydicom decoder run)."""
        if self.native:
            for i in indices:
                yield self.get([i])[0]
            return
        from pydicom.pixels import iter_pixels

        if self.ds.file_meta.TransferSyntaxUID == RLE_LOSSLESS:
            self._check_rle(indices)
        for frame in iter_pixels(self.ds, raw=True, indices=indices):
            yield frame.reshape(self.rows, self.cols)

    def get(self, indices: list[int]) -> np.ndarray:
        n = self.rows * self.cols
        if not self.native:
            return np.stack(list(self.each(indices)))
        assert self.raw is not None
        if self.bits == 1:
            if n % 8 == 0:
                packed = self.raw[: (len(self.raw) // (n // 8)) * (n // 8)].reshape(-1, n // 8)[indices]
                return np.unpackbits(packed, axis=1, bitorder="little").reshape(len(indices), self.rows, self.cols)
            out = np.empty((len(indices), self.rows, self.cols), dtype=np.uint8)
            for j, i in enumerate(indices):
                start, stop = i * n, (i + 1) * n
                chunk = np.unpackbits(self.raw[start // 8 : (stop + 7) // 8], bitorder="little")
                out[j] = chunk[start % 8 : start % 8 + n].reshape(self.rows, self.cols)
            return out
        dtype = np.dtype(f"{self.order}u{self.bits // 8}")
        frames = self.raw.view(dtype)[: (len(self.raw) // dtype.itemsize // n) * n].reshape(-1, self.rows, self.cols)
        return frames[indices]


# --------------------------------------------------------------------------- slides


@dataclass(frozen=True)
class TileLayout:
    """Where each frame of a slide SEG goes: its segment (0 for a label map) and top left pixel (0-based)."""

    segment: np.ndarray
    row: np.ndarray
    column: np.ndarray
    how: str


def tiled_full_layout(
    n_frames: int, total: tuple[int, int], tile: tuple[int, int], segments: list[int], *, focal_planes: int = 1
) -> TileLayout:
    """The implicit frame order of Dimension Organization Type TILED_FULL (PS3.3 C.7.6.17.3).

    Frames vary first along the row direction (left to right: the column position changes
    fastest), then along the column direction (top to bottom), then along the focal planes,
    then along the optical paths, then along the segments in ascending Segment Number.
    ``segments`` is empty for a label map, which has one set of tiles. A frame count that is
    not exactly tiles x focal planes x segments is refused.
    """
    down, across = -(-total[0] // tile[0]), -(-total[1] // tile[1])
    numbers = sorted(segments) or [0]
    expected = down * across * focal_planes * len(numbers)
    if n_frames != expected:
        per = f" x {len(numbers)} segments" if segments else " (label map: one set of tiles)"
        raise ValueError(
            f"TILED_FULL: Number of Frames is {n_frames}, but a {total[0]}x{total[1]} total pixel matrix in "
            f"{tile[0]}x{tile[1]} tiles has {down} x {across} = {down * across} tiles"
            f"{f' x {focal_planes} focal planes' if focal_planes != 1 else ''}{per}: {expected} frames"
        )
    i = np.arange(n_frames)
    t = i % (down * across)
    return TileLayout(
        segment=np.asarray(numbers, dtype=np.int64)[i // (down * across * focal_planes)],
        row=(t // across) * tile[0],
        column=(t % across) * tile[1],
        how="TILED_FULL implicit order (PS3.3 C.7.6.17.3)",
    )


def _sparse_layout(ds: Any, labelmap: bool) -> TileLayout:
    """Each frame's segment and position from its Per-frame Functional Groups (TILED_SPARSE)."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is None:
        raise ValueError(
            f"Dimension Organization Type is {ds.get('DimensionOrganizationType', 'absent')} and there are no "
            "Per-frame Functional Groups: the tiles of the slide SEG have no position"
        )
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    shared_seg = _segment_number(shared)
    shared_pos = _slide_position(shared)
    n = len(per_frame)
    segment, row, column = (np.zeros(n, dtype=np.int64) for _ in range(3))
    for i, fg in enumerate(per_frame):
        number = _segment_number(fg)
        number = number if number is not None else shared_seg
        if number is None and not labelmap:
            raise ValueError(f"frame {i + 1}: no Segment Identification, per frame or shared")
        segment[i] = number or 0
        pos = _slide_position(fg) or shared_pos
        if pos is None:
            raise ValueError(
                f"frame {i + 1}: no Plane Position (Slide) with Row/Column Position In Total Image Pixel Matrix"
            )
        row[i], column[i] = pos[0] - 1, pos[1] - 1
    return TileLayout(segment, row, column, "Plane Position (Slide) of each frame (TILED_SPARSE)")


def _segment_number(group: Any) -> int | None:
    if group is None or "SegmentIdentificationSequence" not in group:
        return None
    return int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)


def _slide_position(group: Any) -> tuple[int, int] | None:
    """(row, column), 1-based, of a frame's top left pixel in the total pixel matrix."""
    if group is None or "PlanePositionSlideSequence" not in group:
        return None
    item = group.PlanePositionSlideSequence[0]
    if "RowPositionInTotalImagePixelMatrix" not in item or "ColumnPositionInTotalImagePixelMatrix" not in item:
        return None
    return int(item.RowPositionInTotalImagePixelMatrix), int(item.ColumnPositionInTotalImagePixelMatrix)


def _check_slide_matrix(ds: Any, src: SourceFrames) -> None:
    """Refuse a slide SEG whose total pixel matrix is not the source slide's, or that does not reference it."""
    info = src.slide_info
    assert info is not None
    if "TotalPixelMatrixRows" not in ds or "TotalPixelMatrixColumns" not in ds:
        raise ValueError("the source is a whole slide image but the SEG has no Total Pixel Matrix Rows/Columns")
    matrix = (int(ds.TotalPixelMatrixRows), int(ds.TotalPixelMatrixColumns))
    if matrix != (src.rows, src.columns):
        raise ValueError(
            f"the SEG's total pixel matrix is {matrix[0]}x{matrix[1]}, the slide's {src.rows}x{src.columns}"
        )
    referenced = {
        str(inst.ReferencedSOPInstanceUID)
        for series in ds.get("ReferencedSeriesSequence", [])
        for inst in series.get("ReferencedInstanceSequence", [])
    }
    if src.keys[0] not in referenced:
        raise ValueError(f"the Referenced Series Sequence does not reference the source slide {src.keys[0]}")
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    if shared is not None and "PixelMeasuresSequence" in shared:
        spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
        if not np.allclose(spacing, src.pixel_spacing, rtol=1e-4, atol=0):
            raise ValueError(
                f"the SEG's pixel spacing {spacing} is not the slide's {src.pixel_spacing}: another resolution"
            )
    if "ImageOrientationSlide" in ds and info.orientation:
        orientation = [float(v) for v in ds.ImageOrientationSlide]
        if not np.allclose(orientation, info.orientation, atol=1e-4):
            raise ValueError(
                f"the SEG's Image Orientation (Slide) {orientation} is not the slide's {list(info.orientation)}"
            )
    if "TotalPixelMatrixOriginSequence" in ds and info.origin and len(info.orientation) == 6:
        item = ds.TotalPixelMatrixOriginSequence[0]
        origin = [float(item.get(k, 0.0)) for k in ("XOffsetInSlideCoordinateSystem", "YOffsetInSlideCoordinateSystem")]
        rows, columns = _pixel_offset(origin, info, src.pixel_spacing)
        if max(abs(rows), abs(columns)) > ORIGIN_TOLERANCE_PX:
            raise ValueError(
                f"the SEG's total pixel matrix origin ({origin[0]:.6f}, {origin[1]:.6f}) mm is {rows:+.2f} rows, "
                f"{columns:+.2f} columns from the slide's ({info.origin[0]:.6f}, {info.origin[1]:.6f}) mm: "
                "its Row/Column Positions In Total Image Pixel Matrix are not the slide's pixels"
                + (
                    "; yet its frames refer to source frames with Spatial Locations Preserved YES: the object "
                    "contradicts itself"
                    if _claims_preserved_locations(ds)
                    else ""
                )
            )


def _claims_preserved_locations(ds: Any) -> bool:
    """Whether the first frame refers to a source frame with Spatial Locations Preserved YES."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    try:
        ref = per_frame[0].DerivationImageSequence[0].SourceImageSequence[0]
    except (TypeError, AttributeError, IndexError):
        return False
    return str(ref.get("SpatialLocationsPreserved", "")) == "YES"


def _pixel_offset(origin: list[float], info: Any, spacing: list[float]) -> tuple[float, float]:
    """How many rows and columns of the slide a point (X, Y in mm) lies from the slide's top left pixel."""
    delta = np.array([origin[0] - info.origin[0], origin[1] - info.origin[1], 0.0])
    row_dir, col_dir = np.asarray(info.orientation[:3]), np.asarray(info.orientation[3:])
    return float(delta @ col_dir) / spacing[0], float(delta @ row_dir) / spacing[1]


def _slide_layout(ds: Any, labelmap: bool, numbers: list[int]) -> TileLayout:
    """Where each frame of a slide SEG goes, by the Dimension Organization Type; positions checked."""
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    total = (int(ds.TotalPixelMatrixRows), int(ds.TotalPixelMatrixColumns))
    tile = (int(ds.Rows), int(ds.Columns))
    for keyword in ("TotalPixelMatrixFocalPlanes", "NumberOfOpticalPaths"):
        if int(ds.get(keyword, 1) or 1) != 1:
            raise ValueError(
                f"{keyword} is {ds.get(keyword)}: the reference decoder places one plane of one optical path"
            )
    if ds.get("DimensionOrganizationType") == "TILED_FULL":
        layout = tiled_full_layout(n_frames, total, tile, [] if labelmap else numbers)
        if "PerFrameFunctionalGroupsSequence" in ds:
            explicit = _sparse_layout(ds, labelmap)
            bad = np.flatnonzero(
                (explicit.row != layout.row)
                | (explicit.column != layout.column)
                | ((explicit.segment != layout.segment) & (not labelmap))
            )
            if len(bad):
                i = int(bad[0])
                raise ValueError(
                    f"TILED_FULL with Per-frame Functional Groups that contradict the implicit order: frame {i + 1} "
                    f"is at row {explicit.row[i] + 1}, column {explicit.column[i] + 1} (segment {explicit.segment[i]}), "
                    f"the order puts it at row {layout.row[i] + 1}, column {layout.column[i] + 1} (segment {layout.segment[i]})"
                )
    else:
        layout = _sparse_layout(ds, labelmap)
    outside = np.flatnonzero(
        (layout.row < 0) | (layout.column < 0) | (layout.row >= total[0]) | (layout.column >= total[1])
    )
    if len(outside):
        i = int(outside[0])
        raise ValueError(
            f"{len(outside)} frame(s) lie outside the {total[0]}x{total[1]} total pixel matrix; first: frame {i + 1} "
            f"at row {layout.row[i] + 1}, column {layout.column[i] + 1}"
        )
    if not labelmap:
        undeclared = sorted(set(layout.segment.tolist()) - set(numbers))
        if undeclared:
            raise ValueError(f"frames refer to segment(s) {undeclared[:5]} that the Segment Sequence does not describe")
    return layout


def _paint(
    target: np.ndarray, tiles: Sequence[np.ndarray] | np.ndarray, rows: np.ndarray, columns: np.ndarray, *, merge: bool
) -> None:
    """Place tiles at their top left pixels in ``target``, clipped at its edges (the padding of edge tiles)."""
    height, width = target.shape
    for tile, r, c in zip(tiles, rows, columns):
        h, w = min(tile.shape[0], height - r), min(tile.shape[1], width - c)
        region = target[r : r + h, c : c + w]
        if merge:
            np.maximum(region, tile[:h, :w].astype(target.dtype), out=region)
        else:
            region[...] = tile[:h, :w]


def _read_slide(
    ds: Any, src: SourceFrames, writer: DecodedWriter, *, labelmap: bool, fractional: bool
) -> DecodedWriter:
    """Decode a SEG of a whole slide image onto its total pixel matrix (the one frame of the grid)."""
    _check_slide_matrix(ds, src)
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    if shared is not None and "PixelMeasuresSequence" in shared:
        writer.geometry.pixel_spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
    numbers = [s.number for s in writer.segments]
    layout = _slide_layout(ds, labelmap, numbers)
    frames = _FrameReader(ds, int(ds.Rows), int(ds.Columns))
    if labelmap:
        matrix = np.zeros((src.rows, src.columns), dtype=np.uint16 if int(ds.BitsAllocated) > 8 else np.uint8)
        for start in range(0, len(layout.row), TILE_BATCH):
            idx = list(range(start, min(start + TILE_BATCH, len(layout.row))))
            _paint(matrix, frames.get(idx), layout.row[idx], layout.column[idx], merge=False)
        writer.set_labelmap(matrix[np.newaxis])
        writer.notes.append(
            f"label map tiles placed on the {src.rows}x{src.columns} total pixel matrix by {layout.how}"
        )
        return writer
    scale = 1.0 / float(ds.get("MaximumFractionalValue", 255)) if fractional else 1.0
    for number in np.unique(layout.segment):
        _slide_segment(writer, frames, layout, int(number), scale, fractional, (src.rows, src.columns))
    writer.notes.append(
        f"{len(layout.row)} tiles of {len(np.unique(layout.segment))} segments placed on the "
        f"{src.rows}x{src.columns} total pixel matrix by {layout.how}, one segment at a time"
    )
    return writer


def _slide_segment(
    writer: DecodedWriter,
    frames: _FrameReader,
    layout: TileLayout,
    number: int,
    scale: float,
    fractional: bool,
    total: tuple[int, int],
) -> None:
    """One BINARY or FRACTIONAL segment: its non-empty tiles painted into the extent they cover, then cropped.

    A TILED_FULL object stores every tile of every segment; most tiles of a small segment are
    empty, so only the non-empty ones are kept (memory: the segment's tiles, at most its matrix).
    """
    idx = np.flatnonzero(layout.segment == number)
    kept: list[tuple[np.ndarray, int, int]] = []
    for start in range(0, len(idx), TILE_BATCH):
        part = idx[start : start + TILE_BATCH]
        for tile, i in zip(frames.get([int(i) for i in part]), part):
            if tile.any():
                kept.append((tile, int(layout.row[i]), int(layout.column[i])))
    if not kept:
        return
    rows = np.array([r for _, r, _ in kept])
    columns = np.array([c for _, _, c in kept])
    r0, c0 = int(rows.min()), int(columns.min())
    r1, c1 = min(int(rows.max()) + frames.rows, total[0]), min(int(columns.max()) + frames.cols, total[1])
    extent = np.zeros((r1 - r0, c1 - c0), dtype=np.float32 if fractional else np.uint8)
    _paint(extent, [t for t, _, _ in kept], rows - r0, columns - c0, merge=True)
    del kept
    data = extent * np.float32(scale) if fractional else extent.astype(bool)
    crop = crop_from_dense(data[np.newaxis], base=(0, r0, c0))
    if crop is not None:
        writer.set_crop(number, crop)
