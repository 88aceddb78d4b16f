"""Consumer ``itkwasm``: ``itkwasm_dicom.read_segmentation`` (dcmqi's segimage2itkimage built to WebAssembly).

It returns what dcmqi's reader returns, in memory: a label image and dcmqi's metadata (``segmentAttributes`` with
each segment's label ID). Where segments overlap ``read_segmentation`` refuses the object, says to use ``read_overlapping_segmentation``
(one component per group of segments) and traps; the adapter then makes that call, as a user would;
FRACTIONAL objects are read with ``read_overlapping_segmentation`` from the start (``read_segmentation`` merges
their segments into one image). The volumes are placed on the source frames by their own
geometry, as for dcmqi's NRRD output; FRACTIONAL values are scaled by Maximum Fractional Value. It votes with
dcmqi (family ``dcmqi``): the same decoder, compiled to WebAssembly.

The first call of a fresh machine compiles the module (about 40 s): the handshake does it once
(:meth:`warm_up`), into the cache every later call loads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dicom4qi.adapters.contract import EVERY_FEATURE, Consumer, ReadRequest, package_version
from dicom4qi.formats.dcmqi_io import place_volumes
from dicom4qi.formats.source_frames import SourceFrames, itk_axes
from dicom4qi.model.decoded import DecodedWriter
from dicom4qi.tools.itkwasm import module_cache, warm_up

__all__ = ["ItkWasmConsumer"]


def _release(module: str) -> None:
    """Drop a pipeline module's cached WebAssembly instance (and its linear memory)."""
    import gc
    import sys

    loaded = sys.modules.get(module)
    if loaded is not None and hasattr(loaded, "_pipeline"):
        setattr(loaded, "_pipeline", None)  # noqa: B010  (a private cache of the wasi package)
    gc.collect()


class ItkWasmConsumer(Consumer):
    name = "itkwasm"
    preload = ("itkwasm_dicom",)
    tool = "itkwasm-dicom"
    homepage = "https://github.com/InsightSoftwareConsortium/ITK-Wasm"
    family = "dcmqi"
    requirements = "itkwasm_dicom.requirements.txt"
    features = EVERY_FEATURE  # it claims to read any SEG, as dcmqi does

    def version(self) -> str | None:
        return package_version("itkwasm-dicom")

    def warm_up(self) -> str | None:
        from itkwasm_dicom import read_segmentation

        def first(scratch: Path) -> object:
            probe = scratch / "not-dicom.bin"
            probe.write_bytes(b"\0" * 256)
            return read_segmentation(probe)

        return warm_up("read_segmentation", first)

    def read(self, request: ReadRequest) -> DecodedWriter:
        import pydicom

        module_cache()
        from itkwasm_dicom import read_overlapping_segmentation, read_segmentation

        header = pydicom.dcmread(request.seg, stop_before_pixels=True)
        fractional = str(header.get("SegmentationType", "")) == "FRACTIONAL"
        if fractional:  # fractional segments overlap in general: the call documented for overlapping segments
            image, meta = read_overlapping_segmentation(request.seg)
            calls = ["FRACTIONAL: itkwasm_dicom.read_overlapping_segmentation(seg), one component per segment"]
        else:
            failure = None
            try:
                image, meta = read_segmentation(request.seg)
                calls = ["itkwasm_dicom.read_segmentation(seg)"]
            except Exception as exc:  # noqa: BLE001  (a wasm trap, as on overlapping segments)
                failure = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
            if failure is not None:
                # On segments that overlap it says "Output is not a single scalar image. Try using
                # read-overlap-segmentation instead." and traps: the call it names, as a user would make it. The
                # trapped instance is let go first (two would not fit the call's address-space limit).
                _release("itkwasm_dicom_wasi.read_segmentation")
                image, meta = read_overlapping_segmentation(request.seg)
                calls = [
                    f"itkwasm_dicom.read_segmentation(seg) failed ({failure}); as its message advises, "
                    "itkwasm_dicom.read_overlapping_segmentation(seg)"
                ]
        groups = meta.get("segmentAttributes", [])
        data = np.asarray(image.data)
        origin, axes = itk_axes(image.origin, image.spacing, image.direction)
        if len(groups) > 1:
            if data.ndim != 4 or data.shape[3] != len(groups):
                raise ValueError(f"{len(groups)} groups but an image of shape {data.shape}")
            volumes = [(data[..., g], origin, axes) for g in range(len(groups))]
        else:
            volumes = [(data if data.ndim == 3 else data[np.newaxis], origin, axes)]
        src = SourceFrames(request.sources)
        writer = DecodedWriter(src.keys, src.rows, src.columns, fractional=fractional)
        writer.notes.extend(calls)
        scale = 1.0 / float(header.get("MaximumFractionalValue", 255)) if fractional else 1.0
        place_volumes(writer, src, volumes, groups, fractional=fractional, scale=scale)
        return writer
