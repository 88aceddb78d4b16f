"""Consumer ``pydicom-seg``: pydicom-seg 0.4.1's readers, in their own environment.

``MultiClassReader`` for disjoint BINARY objects (what its documentation offers
for multi-class data), ``SegmentReader`` for overlapping or fractional ones
(``MultiClassReader`` refuses those, and that refusal is noted). Its volumes
(SimpleITK geometry) are placed back onto the source frames by geometry. Its
rejection of the Label Map Segmentation SOP class is a real outcome: ERROR with
its own message.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import numpy as np

from dicom4qi.adapters.contract import EVERY_FEATURE, Consumer, ReadRequest, package_version
from dicom4qi.formats.segmeta import segment_from_item
from dicom4qi.formats.source_frames import SourceFrames, itk_axes
from dicom4qi.model.decoded import DecodedWriter

__all__ = ["PydicomSegConsumer"]


class PydicomSegConsumer(Consumer):
    name = "pydicom-seg"
    preload = ("pydicom_seg", "pydicom_seg.reader")
    tool = "pydicom-seg"
    homepage = "https://github.com/razorx89/pydicom-seg"
    requirements: ClassVar[str | None] = "pydicom_seg.requirements.txt"
    features = EVERY_FEATURE  # it claims to read any SEG
    #: The import name and the distribution: the maintained fork (pydicom-seg-rb) is the same code under another.
    module: ClassVar[str] = "pydicom_seg"
    distribution: ClassVar[str] = "pydicom-seg"

    def version(self) -> str | None:
        return package_version(self.distribution)

    def read(self, request: ReadRequest) -> DecodedWriter:
        import pydicom

        pydicom_seg: Any = importlib.import_module(self.module)
        importlib.import_module(f"{self.module}.reader")

        ds = pydicom.dcmread(str(request.seg))
        fractional = str(ds.get("SegmentationType", "")) == "FRACTIONAL"
        src = SourceFrames(request.sources)
        writer = DecodedWriter(src.keys, src.rows, src.columns, fractional=fractional)
        result: Any = None
        if not fractional:
            try:
                result = pydicom_seg.MultiClassReader().read(ds)
                writer.notes.append(f"{self.module}.MultiClassReader().read(dataset)")
            except ValueError as exc:
                if "overlap" not in str(exc).lower():
                    raise
                writer.notes.append(f"MultiClassReader refused ({exc}); {self.module}.SegmentReader().read(dataset)")
        if result is None:
            result = pydicom_seg.SegmentReader().read(ds)
            if fractional:
                writer.notes.append(f"{self.module}.SegmentReader().read(dataset)")
        for number, info in sorted(result.segment_infos.items()):
            writer.add_segment(segment_from_item(info, number=int(number)))
        if isinstance(result, pydicom_seg.reader.MultiClassReadResult):
            image = result.image
            origin, axes = itk_axes(image.GetOrigin(), image.GetSpacing(), image.GetDirection())
            placement = src.place(origin, axes, image.GetSize()[2])
            writer.set_labelmap(src.to_grid(placement, np.asarray(result.data)))
        else:
            for number in sorted(result.available_segments):
                image = result.segment_image(number)
                origin, axes = itk_axes(image.GetOrigin(), image.GetSpacing(), image.GetDirection())
                placement = src.place(origin, axes, image.GetSize()[2])
                data = np.asarray(result.segment_data(number))
                writer.set_pixels(int(number), src.to_grid(placement, data.astype(np.float32 if fractional else bool)))
        writer.geometry.orientation = [*(axes[0] / np.linalg.norm(axes[0])), *(axes[1] / np.linalg.norm(axes[1]))]
        writer.geometry.pixel_spacing = [float(np.linalg.norm(axes[1])), float(np.linalg.norm(axes[0]))]
        return writer
