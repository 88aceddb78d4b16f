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

Memory: one segment's extent for BINARY and FRACTIONAL, one volume for LABELMAP.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import numpy as np

from conformance.adapter import EVERY_FEATURE, Consumer, ReadRequest
from conformance.decoded import DecodedWriter, frame_key
from conformance.segmeta import segments_from_dataset
from conformance.sources import SourceFrames

__all__ = ["ReferenceConsumer"]

LABELMAP_SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"


class ReferenceConsumer(Consumer):
    name = "reference"
    tool = "dicom4qi reference decoder"
    homepage = None
    features = EVERY_FEATURE  # it claims to read any SEG

    def version(self) -> str | None:
        from conformance import __version__

        return f"{__version__} (pydicom {metadata.version('pydicom')})"

    def read(self, request: ReadRequest) -> DecodedWriter:
        import pydicom

        ds = pydicom.dcmread(request.seg)
        _check_consistency(ds)
        src = SourceFrames(request.sources)
        rows, cols = int(ds.Rows), int(ds.Columns)
        seg_type = str(ds.get("SegmentationType", ""))
        labelmap = str(ds.SOPClassUID) == LABELMAP_SEG_STORAGE or seg_type == "LABELMAP"
        fractional = seg_type == "FRACTIONAL"
        writer = DecodedWriter(src.keys, rows, cols, fractional=fractional)
        for s in segments_from_dataset(ds):
            writer.add_segment(s)

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
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        if per_frame is None:
            raise ValueError(
                f"no Per-frame Functional Groups (Dimension Organization Type {ds.get('DimensionOrganizationType', 'absent')}): "
                "the reference decoder places frames by them"
            )
        for i, fg in enumerate(per_frame):
            if "SegmentIdentificationSequence" in fg:
                segment_of[i] = int(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
            elif shared_seg is not None:
                segment_of[i] = shared_seg
            pos = fg.PlanePositionSequence[0].ImagePositionPatient if "PlanePositionSequence" in fg else None
            key = None
            if "DerivationImageSequence" in fg:
                ref = fg.DerivationImageSequence[0].SourceImageSequence[0]
                number = ref.get("ReferencedFrameNumber")
                key = frame_key(ref.ReferencedSOPInstanceUID, int(number) if number is not None else None)
            if key is not None and key not in src.index:
                raise ValueError(f"frame {i + 1} refers to source {key}, which is not among the source images")
            if key is not None:
                target[i] = src.index[key]
                if pos is not None and src.has_geometry:
                    off = float(np.max(np.abs(np.asarray([float(v) for v in pos]) - src.positions[target[i]])))
                    if off > 0.01:
                        raise ValueError(f"frame {i + 1}: its position is {off:.2f} mm from that of the source frame it refers to")
            elif pos is not None:
                target[i] = src.by_position([float(v) for v in pos])
            if target[i] < 0:
                unplaced += 1
            elif pos is not None:
                writer.geometry.positions.setdefault(src.keys[target[i]], [float(v) for v in pos])
        if unplaced:
            raise ValueError(f"{unplaced} of {n_frames} frame(s) match no source frame, by reference or by position")
        declared = {s.number for s in writer.segments}
        undeclared = sorted(set(segment_of.tolist()) - declared) if not labelmap else []
        if undeclared:
            raise ValueError(f"frames refer to segment(s) {undeclared[:5]} that the Segment Sequence does not describe")

        frames = _FrameReader(ds, rows, cols)
        if labelmap:
            dtype = np.uint16 if int(ds.BitsAllocated) > 8 else np.uint8
            volume = np.zeros((len(src.keys), rows, cols), dtype=dtype)
            for i in np.flatnonzero(target >= 0):
                volume[target[i]] = frames.get([int(i)])[0]
            writer.set_labelmap(volume)
            writer.notes.append("label map painted frame by frame onto the source grid")
            return writer
        scale = 1.0 / float(ds.get("MaximumFractionalValue", 255)) if fractional else None
        for number in np.unique(segment_of[target >= 0]):
            idx = np.flatnonzero((segment_of == number) & (target >= 0))
            z = target[idx]
            z0, z1 = int(z.min()), int(z.max()) + 1
            data = frames.get([int(i) for i in idx])
            dense = np.zeros((z1 - z0, rows, cols), dtype=np.float32 if fractional else bool)
            if fractional:
                dense[z - z0] = data.astype(np.float32) * scale
            else:
                dense[z - z0] = data.astype(bool)
            writer.set_pixels(int(number), dense, frame_offset=z0)
        writer.notes.append(f"{n_frames} frames, {len(np.unique(segment_of))} segments, decoded per segment")
        return writer


def _check_consistency(ds: Any) -> None:
    """Refuse, with the reason, an object whose header contradicts itself (the negative corpus's faults)."""
    n = int(ds.get("NumberOfFrames", 1) or 1)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) != n:
        raise ValueError(f"Number of Frames is {n} but there are {len(per_frame)} Per-frame Functional Groups items")
    numbers = [int(item.SegmentNumber) for item in ds.get("SegmentSequence", [])]
    if not numbers:
        raise ValueError("the Segment Sequence is missing or empty")
    if len(numbers) != len(set(numbers)):
        raise ValueError(f"Segment Numbers repeat: {numbers}")
    labelmap = str(ds.SOPClassUID) == LABELMAP_SEG_STORAGE or ds.get("SegmentationType") == "LABELMAP"
    if not labelmap and min(numbers) < 1:
        raise ValueError("a BINARY or FRACTIONAL segment is numbered 0")
    bits = int(ds.BitsAllocated)
    seg_type = str(ds.get("SegmentationType", ""))
    if (seg_type == "BINARY" and bits != 1) or (seg_type == "FRACTIONAL" and bits != 8) or (labelmap and bits not in (8, 16)):
        raise ValueError(f"Bits Allocated {bits} does not fit Segmentation Type {seg_type}")
    if "PixelData" not in ds or not ds.PixelData:
        raise ValueError("there is no Pixel Data, or it is empty")
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    # Pixel Measures are required where there is a frame of reference (not for a projection image's SEG).
    if "FrameOfReferenceUID" in ds and (shared is None or "PixelMeasuresSequence" not in shared) and not all(
        "PixelMeasuresSequence" in fg for fg in (per_frame or [])
    ):
        raise ValueError("no Pixel Measures, shared or per frame, although the object has a frame of reference")
    if not ds.file_meta.TransferSyntaxUID.is_encapsulated:
        need = (n * int(ds.Rows) * int(ds.Columns) * bits + 7) // 8
        have = len(ds.PixelData)
        if have not in (need, need + 1):
            raise ValueError(f"Pixel Data has {have} bytes, {n} frames of {int(ds.Rows)}x{int(ds.Columns)} at {bits} bits need {need}")
    for i, fg in enumerate(per_frame or []):
        plane = fg.get("PlanePositionSequence")
        if plane and not all(np.isfinite(float(v)) for v in plane[0].ImagePositionPatient):
            raise ValueError(f"frame {i + 1}: Image Position (Patient) is not finite")


class _FrameReader:
    """Frames on demand: bit-unpacked or viewed for native encodings, pydicom's decoders otherwise."""

    def __init__(self, ds: Any, rows: int, cols: int) -> None:
        self.ds, self.rows, self.cols = ds, rows, cols
        self.bits = int(ds.BitsAllocated)
        self.native = not ds.file_meta.TransferSyntaxUID.is_encapsulated
        self.raw = np.frombuffer(ds.PixelData, dtype=np.uint8) if self.native else None

    def _check_rle(self, indices: list[int]) -> None:
        """An RLE frame holds one segment per byte of a sample (PS3.5 G.2): refuse a header that says otherwise."""
        from pydicom.encaps import get_frame

        expected = max(1, self.bits // 8)
        n = int(self.ds.get("NumberOfFrames", 1) or 1)
        for i in indices:
            frame = get_frame(self.ds.PixelData, i, number_of_frames=n)
            count = int(np.frombuffer(frame[:4], dtype="<u4")[0]) if len(frame) >= 64 else -1
            if count != expected:
                raise ValueError(f"frame {i + 1}: the RLE header declares {count} segment(s), {self.bits}-bit data has {expected}")

    def get(self, indices: list[int]) -> np.ndarray:
        n = self.rows * self.cols
        if not self.native:
            from pydicom.pixels import pixel_array

            if self.ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5":
                self._check_rle(indices)
            return np.stack([pixel_array(self.ds, index=i, raw=True).reshape(self.rows, self.cols) for i in indices])
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
        dtype = np.dtype(f"<u{self.bits // 8}")
        frames = self.raw.view(dtype)[: (len(self.raw) // dtype.itemsize // n) * n].reshape(-1, self.rows, self.cols)
        return frames[indices]
