"""Consumer ``simpleitk``: ``SimpleITK.ReadImage`` (GDCM underneath) on the SEG object, as pipelines do.

What a pipeline that knows no SEG semantics gets, read the way such pipelines read it:

- a LABELMAP SEG is opened as a volume: ``ReadImage``, its voxels taken as segment numbers, placed on the source
  frames by the image's own origin, spacing and direction;
- a BINARY or FRACTIONAL SEG is a stack of frames: ``ReadImage`` gives one 2D frame per SEG frame; each frame is
  mapped to its segment and source frame by the object's Per-frame Functional Groups (read with pydicom: Segment
  Identification, then the derivation's source image reference, else the plane position). Any non-zero value is
  foreground (BINARY); FRACTIONAL values are divided by Maximum Fractional Value.

The segment attributes come from the Segment Sequence (pydicom): SimpleITK gives none. Nothing corrects
SimpleITK's pixels: what it gets wrong is the result.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from dicom4qi.adapters.contract import EVERY_FEATURE, Consumer, ReadRequest, package_version
from dicom4qi.formats.segmeta import segment_from_item
from dicom4qi.formats.source_frames import SourceFrames, itk_axes
from dicom4qi.model.decoded import DecodedWriter, frame_key
from dicom4qi.model.uids import LABEL_MAP_SEGMENTATION_STORAGE

__all__ = ["SimpleItkConsumer"]


def _frame_source(fg: Any, src: SourceFrames) -> int:
    """The source frame one SEG frame lies on, from its functional groups (-1: none found)."""
    deriv = fg.get("DerivationImageSequence")
    if deriv and "SourceImageSequence" in deriv[0] and deriv[0].SourceImageSequence:
        ref = deriv[0].SourceImageSequence[0]
        uid = str(ref.get("ReferencedSOPInstanceUID", ""))
        number = ref.get("ReferencedFrameNumber")
        for key in (frame_key(uid, int(number)) if number is not None else None, frame_key(uid)):
            if key is not None and key in src.index:
                return src.index[key]
    plane = fg.get("PlanePositionSequence")
    if plane and "ImagePositionPatient" in plane[0]:
        return src.by_position([float(v) for v in plane[0].ImagePositionPatient])
    return -1


class SimpleItkConsumer(Consumer):
    name = "simpleitk"
    preload = ("SimpleITK",)
    tool = "SimpleITK"
    homepage = "https://github.com/SimpleITK/SimpleITK"
    # It opens any DICOM image; a whole slide SEG is not what a volume pipeline reads.
    features = EVERY_FEATURE - {"slide-source"}

    def version(self) -> str | None:
        return package_version("SimpleITK")

    def read(self, request: ReadRequest) -> DecodedWriter:
        import pydicom
        import SimpleITK as sitk

        ds = pydicom.dcmread(str(request.seg), stop_before_pixels=True)
        seg_type = str(ds.get("SegmentationType", ""))
        labelmap = str(ds.SOPClassUID) == LABEL_MAP_SEGMENTATION_STORAGE or seg_type == "LABELMAP"
        fractional = seg_type == "FRACTIONAL"
        src = SourceFrames(request.sources)
        writer = DecodedWriter(src.keys, src.rows, src.columns, fractional=fractional)
        for item in ds.SegmentSequence:
            if not (labelmap and int(item.SegmentNumber) == 0):
                writer.add_segment(segment_from_item(item))
        image = sitk.ReadImage(str(request.seg))
        data = sitk.GetArrayFromImage(image)
        writer.notes.append(
            f"SimpleITK.ReadImage(seg): size {list(image.GetSize())}, {image.GetPixelIDTypeAsString()}, "
            f"{image.GetNumberOfComponentsPerPixel()} component(s)"
        )
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(
                f"SimpleITK gives {image.GetNumberOfComponentsPerPixel()} components per pixel (colour), not labels"
            )
        if data.ndim == 2:
            data = data[np.newaxis]
        if labelmap:
            origin, axes = itk_axes(image.GetOrigin(), image.GetSpacing(), image.GetDirection())
            placement = src.place(origin, axes, data.shape[0])
            writer.set_labelmap(src.to_grid(placement, data.astype(np.uint16)))
            writer.notes.append("label map: the volume's voxels as segment numbers, placed by its own geometry")
            return writer
        per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
        if len(per_frame) != data.shape[0]:
            raise ValueError(f"SimpleITK gives {data.shape[0]} frames; the object has {len(per_frame)} per-frame items")
        scale = 1.0 / float(ds.get("MaximumFractionalValue", 255) or 255) if fractional else 1.0
        frames: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)
        unplaced = 0
        for fg, pixels in zip(per_frame, data):
            ident = fg.get("SegmentIdentificationSequence")
            k = _frame_source(fg, src)
            if not ident or k < 0:
                unplaced += 1
                continue
            frames[int(ident[0].ReferencedSegmentNumber)].append((k, pixels))
        if unplaced:
            writer.notes.append(f"{unplaced} frame(s) without a segment or a source frame: left out")
        for number, items in frames.items():
            lo, hi = min(k for k, _ in items), max(k for k, _ in items)
            dense = np.zeros((hi - lo + 1, src.rows, src.columns), dtype=np.float32 if fractional else bool)
            for k, pixels in items:
                if pixels.shape != (src.rows, src.columns):
                    raise ValueError(f"SimpleITK gives frames of {pixels.shape}, the source {src.rows}x{src.columns}")
                value = pixels.astype(np.float32) * scale if fractional else pixels != 0
                dense[k - lo] = np.maximum(dense[k - lo], value)
            writer.set_pixels(number, dense, frame_offset=lo)
        writer.notes.append("frames mapped to segments and source frames by the Per-frame Functional Groups (pydicom)")
        return writer
