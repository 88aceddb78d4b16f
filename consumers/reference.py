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
            if key in src.index:
                target[i] = src.index[key]
            elif pos is not None:
                target[i] = src.by_position([float(v) for v in pos])
            if target[i] < 0:
                unplaced += 1
            elif pos is not None:
                writer.geometry.positions.setdefault(src.keys[target[i]], [float(v) for v in pos])
        if unplaced:
            writer.notes.append(f"{unplaced} frame(s) match no source frame by reference or position: skipped")

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


class _FrameReader:
    """Frames on demand: bit-unpacked or viewed for native encodings, pydicom's decoders otherwise."""

    def __init__(self, ds: Any, rows: int, cols: int) -> None:
        self.ds, self.rows, self.cols = ds, rows, cols
        self.bits = int(ds.BitsAllocated)
        self.native = not ds.file_meta.TransferSyntaxUID.is_encapsulated
        self.raw = np.frombuffer(ds.PixelData, dtype=np.uint8) if self.native else None

    def get(self, indices: list[int]) -> np.ndarray:
        n = self.rows * self.cols
        if not self.native:
            from pydicom.pixels import pixel_array

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
