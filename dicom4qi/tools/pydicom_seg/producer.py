"""Producer ``pydicom-seg``: ``MultiClassWriter`` of pydicom-seg 0.4.1, in its own environment.

The truth goes in as one SimpleITK label image on the source grid and dcmqi-style
metadata, which pydicom-seg validates against dcmqi's schema
(``template.from_dcmqi_metainfo``). pydicom-seg writes BINARY segmentations of
disjoint segments only, uncompressed: it claims nothing else.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import numpy as np

from dicom4qi.adapters.contract import Producer, WriteRequest, package_version
from dicom4qi.formats.dcmqi_json import dcmqi_metadata
from dicom4qi.model.masks import labelmap_from_crops

__all__ = ["PydicomSegProducer"]


class PydicomSegProducer(Producer):
    name = "pydicom-seg"
    preload = ("pydicom_seg", "pydicom_seg.template", "SimpleITK")
    tool = "pydicom-seg"
    homepage = "https://github.com/razorx89/pydicom-seg"
    requirements: ClassVar[str | None] = "pydicom_seg.requirements.txt"
    features = frozenset(
        {
            "binary",
            "binary-unaligned-frames",
            "disjoint",
            "empty-segment",
            "empty-frames",
            "oblique",
            "many-segments",
            "single-frame-source",
            "source-default-charset",
            "source-no-slice-thickness",
            "source-two-series",  # producers get the referenced series only; readers get both
            "segment-metadata",
            "ts-explicit-le",
            "non-ascii-text",
            "long-text",
            "anatomic-region",
            "multiple-algorithms",
        }
    )

    #: The import name and the distribution: the maintained fork (pydicom-seg-rb) is the same code under another.
    module: ClassVar[str] = "pydicom_seg"
    distribution: ClassVar[str] = "pydicom-seg"

    def version(self) -> str | None:
        return package_version(self.distribution)

    def write(self, request: WriteRequest) -> list[str]:
        import pydicom
        import SimpleITK as sitk

        pydicom_seg: Any = importlib.import_module(self.module)
        importlib.import_module(f"{self.module}.template")

        truth = request.truth
        numbers = [s.number for s in truth.segments]
        meta = dcmqi_metadata(truth, f"SEG pydicom-seg {request.case_id}", [[(n, n) for n in numbers]])
        template = pydicom_seg.template.from_dcmqi_metainfo(meta)
        writer = pydicom_seg.MultiClassWriter(
            template=template, inplane_cropping=False, skip_empty_slices=True, skip_missing_segment=False
        )
        with truth.masks() as masks:
            labels = labelmap_from_crops(dict(masks), truth.shape, dtype=np.uint16)
        g = truth.geometry
        positions = g.positions
        assert positions is not None  # the sources this producer claims lie in patient space
        o = np.asarray(g.orientation, dtype=float)
        normal = np.cross(o[:3], o[3:])
        step = np.asarray(positions[1]) - np.asarray(positions[0]) if len(positions) > 1 else normal * g.slice_spacing
        image = sitk.GetImageFromArray(labels)
        image.SetOrigin(tuple(float(v) for v in positions[0]))
        image.SetSpacing((g.pixel_spacing[1], g.pixel_spacing[0], float(np.linalg.norm(step))))
        # SimpleITK's direction matrix has the axis directions as columns (row-major flattened).
        image.SetDirection(tuple(float(v) for v in np.column_stack([o[:3], o[3:], normal]).ravel()))
        sources = [pydicom.dcmread(str(p), stop_before_pixels=True) for p in truth.source_paths]
        ds = writer.write(image, sources)
        ds.save_as(str(request.output), write_like_original=False)
        return [
            f"{self.module}.MultiClassWriter(template=template.from_dcmqi_metainfo(meta), inplane_cropping=False, "
            "skip_empty_slices=True, skip_missing_segment=False).write(<SimpleITK label image on the source grid>, sources)",
            f"{int(ds.NumberOfFrames)} frames",
        ]
