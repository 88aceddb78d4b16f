"""Producer ``dcmqi``: the static binaries of the PyPI ``dcmqi`` wheel.

The truth goes to dcmqi as ITK images (NRRD, on the source grid) plus dcmqi's
metadata JSON built from the case's segment metadata:

- BINARY, disjoint: one label image, ``itkimage2segimage --useLabelIDAsSegmentNumber``;
- BINARY, overlapping: one image per segment (dcmqi lets segments of different files overlap);
- LABELMAP: ``itkimage2segimage --segmentationType labelmap``; for RLE, or 16 bits with
  fewer than 256 segments, a BINARY SEG first, then ``bin2labelsegimage --compress rle
  [--force16Bit]``;
- deflate where asked (``--compress deflate``).

FRACTIONAL, JPEG 2000, JPEG-LS and Implicit VR are not offered by dcmqi: not claimed.
Every command run is recorded in the notes.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from dicom4qi.adapters.contract import Producer, WriteRequest, package_version, run_tool
from dicom4qi.formats.dcmqi_io import dcmqi_inputs

__all__ = ["DcmqiProducer", "dcmqi_binary", "run_tool"]


def dcmqi_binary(name: str) -> Path:
    """The path of one of the wheel's static binaries."""
    import dcmqi

    path = Path(dcmqi.__file__).resolve().parent / "bin" / name
    if not path.is_file():
        raise FileNotFoundError(f"dcmqi binary {name} not found at {path}")
    return path


class DcmqiProducer(Producer):
    name = "dcmqi"
    tool = "dcmqi"
    homepage = "https://github.com/QIICR/dcmqi"
    pypi = "dcmqi"  # any release a row group of its own: dcmqi@1.5.6
    calls = ("dcmqi:__file__",)
    #: The wheel holds only the binaries: the suite's child code needs numpy and pydicom beside any release.
    release_pins = (("", ("numpy", "pydicom")),)
    #: The wheel's binaries the adapter runs: a release without one of them is not available.
    binaries: ClassVar[tuple[str, ...]] = ("itkimage2segimage", "bin2labelsegimage")
    features = frozenset(
        {
            "binary",
            "binary-unaligned-frames",
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
            "source-default-charset",
            "source-no-slice-thickness",
            "source-two-series",  # producers get the referenced series only; readers get both
            "segment-metadata",
            "non-ascii-text",
            "long-text",
            "anatomic-region",
            "multiple-algorithms",
            "ts-explicit-le",
            "ts-deflate",
            "ts-rle",
        }
    )
    # Not claimed: projection sources (dcmqi takes ITK volumes; QIICR/dcmqi#319 is open), cine and uneven
    # spacing (an ITK image has one regular grid), multi-frame sources (itkimage2segimage reads a series).
    # RLE comes only from bin2labelsegimage, which writes label maps.
    unsupported_combinations: ClassVar[tuple[frozenset[str], ...]] = (frozenset({"binary", "ts-rle"}),)

    def version(self) -> str | None:
        return package_version("dcmqi")

    def available(self) -> tuple[bool, str]:
        ok, why = super().available()
        if not ok:
            return ok, why
        missing = []
        for name in self.binaries:
            try:
                dcmqi_binary(name)
            except FileNotFoundError:
                missing.append(name)
        if missing:
            return False, f"dcmqi {self.version()} has no {', '.join(missing)}, which this adapter runs"
        return True, ""

    def via_bin2label(self, request: WriteRequest) -> bool:
        """Whether the label map is made by bin2labelsegimage from a BINARY SEG (dcmqi's only RLE path, and its
        16-bit path below 256 segments) rather than written directly."""
        enc = request.case.encoding
        return enc.type.value == "LABELMAP" and (
            enc.transfer_syntax == "RLELossless" or (enc.bits == 16 and len(request.truth.segments) < 256)
        )

    def bin2label_options(self, request: WriteRequest) -> list[str]:
        """bin2labelsegimage's options for the case's transfer syntax and bits."""
        enc = request.case.encoding
        ts = enc.transfer_syntax
        out = ["--compress", {"RLELossless": "rle", "DeflatedExplicitVRLittleEndian": "deflate"}.get(ts, "none")]
        if enc.bits == 16:
            out.append("--force16Bit")
        return out

    def write(self, request: WriteRequest) -> list[str]:
        work = request.output.parent / "dcmqi-input"
        notes: list[str] = []
        inputs, meta_path = dcmqi_inputs(request.truth, work, f"SEG dcmqi {request.case_id}")
        self._convert(request, inputs, meta_path, notes)
        return notes

    def _convert(self, request: WriteRequest, inputs: list[Path], meta_path: Path, notes: list[str]) -> None:
        truth, enc = request.truth, request.case.encoding
        labelmap = enc.type.value == "LABELMAP"
        ts = enc.transfer_syntax
        via_bin2label = self.via_bin2label(request)
        seg_out = meta_path.parent / "binary.dcm" if via_bin2label else request.output
        cmd = [
            str(dcmqi_binary("itkimage2segimage")),
            "--inputImageList",
            ",".join(str(p) for p in inputs),
            "--inputDICOMList",
            ",".join(str(p) for p in truth.source_paths),
            "--inputMetadata",
            str(meta_path),
            "--outputDICOM",
            str(seg_out),
        ]
        shown = [
            "itkimage2segimage",
            "--inputImageList",
            ",".join(p.name for p in inputs),
            "--inputDICOMList",
            f"<{len(truth.source_paths)} source files>",
            "--inputMetadata",
            "meta.json",
            "--outputDICOM",
            seg_out.name,
        ]
        extra: list[str] = []
        if not truth.overlap:
            extra.append("--useLabelIDAsSegmentNumber")
        if labelmap and not via_bin2label:
            extra += ["--segmentationType", "labelmap"]
        if ts == "DeflatedExplicitVRLittleEndian" and not via_bin2label:
            extra += ["--compress", "deflate"]
        run_tool(cmd + extra, notes, shown + extra)
        if via_bin2label:
            b2l = self.bin2label_options(request)
            cmd2 = [
                str(dcmqi_binary("bin2labelsegimage")),
                "--inputDICOM",
                str(seg_out),
                "--outputDICOM",
                str(request.output),
            ]
            run_tool(
                cmd2 + b2l,
                notes,
                ["bin2labelsegimage", "--inputDICOM", seg_out.name, "--outputDICOM", request.output.name, *b2l],
            )
