"""Consumer ``dcmqi``: ``segimage2itkimage`` from the PyPI wheel, the reader 3D Slicer uses.

3D Slicer's DICOMSegmentationPlugin (QuantitativeReporting, in Slicer core since
2026) converts a SEG by running ``segimage2itkimage --mergeSegments``; the column
``dcmqi@mergeSegments`` is that call, ``dcmqi`` the plain one (one file per
segment). The NRRD volumes and ``meta.json`` it writes are placed back onto the
source frames by their geometry (slice position along the normal, in-plane
offset); segment numbers are dcmqi's label IDs, labels, codes and colours come
from its ``meta.json``. dcmqi writes FRACTIONAL objects as their stored values:
they are scaled by the object's Maximum Fractional Value, as a user would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import numpy as np

from dicom4qi.adapters.contract import EVERY_FEATURE, Consumer, ReadRequest, is_release, package_version, run_tool
from dicom4qi.formats.dcmqi_io import place_volumes
from dicom4qi.formats.nrrd import read_nrrd
from dicom4qi.formats.source_frames import SourceFrames
from dicom4qi.model.decoded import DecodedWriter
from dicom4qi.tools.dcmqi.producer import dcmqi_binary

__all__ = ["DcmqiConsumer"]


class DcmqiConsumer(Consumer):
    name = "dcmqi"
    tool = "dcmqi"
    homepage = "https://github.com/QIICR/dcmqi"
    features = EVERY_FEATURE  # it claims to read any SEG
    pypi = "dcmqi"  # any release a column of its own: dcmqi@1.5.6 (the plain call; mergeSegments is a mode)
    calls = ("dcmqi:__file__",)
    release_pins = (("", ("numpy", "pydicom")),)

    def version(self) -> str | None:
        return package_version("dcmqi")

    def available(self) -> tuple[bool, str]:
        ok, why = super().available()
        if not ok:
            return ok, why
        try:
            dcmqi_binary("segimage2itkimage")
        except FileNotFoundError as exc:
            return False, str(exc)
        return True, ""

    def read(self, request: ReadRequest) -> DecodedWriter:
        import pydicom

        if self.variant not in (None, "mergeSegments") and not is_release(self.variant):
            raise ValueError(f"unknown dcmqi variant {self.variant!r} (known: mergeSegments, or a release)")
        header = pydicom.dcmread(request.seg, stop_before_pixels=True)
        fractional = str(header.get("SegmentationType", "")) == "FRACTIONAL"
        out_dir = (request.workdir or request.seg.parent) / "dcmqi-output"
        out_dir.mkdir(parents=True, exist_ok=True)
        notes: list[str] = []
        args = ["--inputDICOM", str(request.seg), "--outputDirectory", str(out_dir), "--outputType", "nrrd"]
        if self.variant == "mergeSegments":  # a release column (dcmqi@1.5.6) makes the plain call
            args.append("--mergeSegments")
        shown = ["segimage2itkimage", "--inputDICOM", "seg.dcm", "--outputDirectory", "dcmqi-output", *args[4:]]
        run_tool([str(dcmqi_binary("segimage2itkimage")), *args], notes, shown)

        meta = json.loads((out_dir / "meta.json").read_text())
        files = sorted(out_dir.glob("*.nrrd"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
        groups = meta.get("segmentAttributes", [])
        if len(groups) != len(files):
            raise RuntimeError(f"dcmqi wrote {len(files)} NRRD files but {len(groups)} groups in meta.json")
        src = SourceFrames(request.sources)
        writer = DecodedWriter(src.keys, src.rows, src.columns, fractional=fractional)
        writer.notes.extend(notes)
        scale = 1.0 / float(header.get("MaximumFractionalValue", 255)) if fractional else 1.0  # used only if fractional
        if fractional:
            writer.notes.append(
                f"NRRD values scaled by 1/{int(header.get('MaximumFractionalValue', 255))} (Maximum Fractional Value)"
            )

        def volumes() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
            """One NRRD at a time: dcmqi writes each segment's volume at the source's full size (104 of them on the
            body CT are 8 GB, which the suite had held at once and charged to dcmqi as a memory limit)."""
            for path in files:
                image = read_nrrd(path)
                assert image.origin is not None and image.axes is not None  # read_nrrd requires a geometry
                yield image.data, image.origin, image.axes

        place_volumes(writer, src, volumes(), groups, fractional=fractional, scale=scale)
        return writer
