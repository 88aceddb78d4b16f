"""Producer ``itkwasm``: ``itkwasm_dicom.write_multi_segmentation`` (dcmqi's itkimage2segimage built to WebAssembly).

The truth goes in as dcmqi's writer takes it (:func:`dicom4qi.formats.dcmqi_io.dcmqi_inputs`): NRRD label images
on the source grid and dcmqi's metadata JSON, label IDs kept as segment numbers for disjoint segments. It writes
BINARY only (the package has no label map or compression option): it claims nothing else.
"""

from __future__ import annotations

import json

from dicom4qi.adapters.contract import Producer, WriteRequest, package_version
from dicom4qi.formats.dcmqi_io import dcmqi_inputs
from dicom4qi.tools.itkwasm import module_cache, warm_up

__all__ = ["ItkWasmProducer"]


class ItkWasmProducer(Producer):
    name = "itkwasm"
    preload = ("itkwasm_dicom",)
    tool = "itkwasm-dicom"
    homepage = "https://github.com/InsightSoftwareConsortium/ITK-Wasm"
    requirements = "itkwasm_dicom.requirements.txt"
    features = frozenset(
        {
            "binary",
            "binary-unaligned-frames",
            "disjoint",
            "overlap",
            "empty-frames",
            "oblique",
            "many-segments",
            "single-frame-source",
            "source-default-charset",
            "source-no-slice-thickness",
            "source-two-series",
            "segment-metadata",
            "non-ascii-text",
            "long-text",
            "anatomic-region",
            "multiple-algorithms",
            "ts-explicit-le",
        }
    )

    def version(self) -> str | None:
        return package_version("itkwasm-dicom")

    def warm_up(self) -> str | None:
        from itkwasm_dicom import write_multi_segmentation

        return warm_up(
            "write_multi_segmentation",
            lambda scratch: write_multi_segmentation({}, str(scratch / "out.dcm"), ref_dicom_series=[], seg_images=[]),
        )

    def write(self, request: WriteRequest) -> list[str]:
        module_cache()
        from itkwasm_dicom import write_multi_segmentation

        truth = request.truth
        inputs, meta_path = dcmqi_inputs(
            truth, request.output.parent / "itkwasm-input", f"SEG itkwasm {request.case_id}"
        )
        meta = json.loads(meta_path.read_text())
        write_multi_segmentation(
            meta,
            str(request.output),
            ref_dicom_series=[str(p) for p in truth.source_paths],
            seg_images=[str(p) for p in inputs],
            skip_empty_slices=True,
            use_labelid_as_segmentnumber=not truth.overlap,
        )
        return [
            "itkwasm_dicom.write_multi_segmentation(meta, seg.dcm, ref_dicom_series=<sources>, "
            f"seg_images=[{', '.join(p.name for p in inputs)}], skip_empty_slices=True, "
            f"use_labelid_as_segmentnumber={not truth.overlap})"
        ]
