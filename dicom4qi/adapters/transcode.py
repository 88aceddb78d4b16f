"""Transcoded producers: ``<producer>+rle``, ``+jpegls``, ``+jpeg2000``.

The inner producer writes the case uncompressed (Explicit VR Little Endian);
an independent toolkit then re-encodes the object into the transfer syntax the
case asks for, so that every consumer meets compressed versions of the same
content even where the original writer cannot compress:

- ``rle``: DCMTK ``dcmcrle`` (Debian package dcmtk);
- ``jpegls``: DCMTK ``dcmcjpls`` (lossless, the default);
- ``jpeg2000``: pydicom's encoder (``Dataset.compress``, pylibjpeg-openjpeg); GDCM's
  ``gdcmconv --j2k`` cannot read the Label Map Segmentation SOP class.

None of these encoders takes 1-bit BINARY frames (dcmcrle: "No conversion to
transfer syntax RLE Lossless possible"; dcmcjpls: "Unsupported bit depth";
gdcmconv: "Could not change the Transfer Syntax"; pydicom: Bits Allocated 1 is
not valid for the encoders), so BINARY is declared unsupported.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

from dicom4qi.adapters.contract import Producer, WriteRequest, run_tool
from dicom4qi.model.case import TRANSFER_SYNTAXES
from dicom4qi.model.uids import JPEG_2000_LOSSLESS

__all__ = ["TRANSCODERS", "transcoded"]

#: variant -> (case keyword of the transfer syntax, how it is encoded)
TRANSCODERS: dict[str, tuple[str, str]] = {
    "rle": ("RLELossless", "dcmcrle"),
    "jpegls": ("JPEGLSLossless", "dcmcjpls"),
    "jpeg2000": ("JPEG2000Lossless", "pydicom"),
}
_TS_FEATURES = {feature for _, feature in TRANSFER_SYNTAXES.values()}


def _transcode(variant: str, source: Path, target: Path, notes: list[str]) -> None:
    keyword, how = TRANSCODERS[variant]
    if how == "pydicom":
        import pydicom

        ds = pydicom.dcmread(source)
        ds.compress(JPEG_2000_LOSSLESS, generate_instance_uid=False)
        ds.save_as(target, enforce_file_format=True)
        notes.append(f"pydicom {pydicom.__version__}: Dataset.compress(JPEG2000Lossless, generate_instance_uid=False)")
        return
    exe = shutil.which(how)
    if exe is None:
        raise FileNotFoundError(f"{how} is not installed (Debian package dcmtk)")
    run_tool([exe, str(source), str(target)], notes, [how, source.name, target.name])


def transcoded(inner: type[Producer], variant: str) -> type[Producer]:
    """A producer class: ``inner`` writes uncompressed, ``variant``'s toolkit re-encodes."""
    if variant not in TRANSCODERS:
        raise ValueError(f"unknown transcoding {variant!r} (known: {', '.join(TRANSCODERS)})")
    keyword, how = TRANSCODERS[variant]
    feature = TRANSFER_SYNTAXES[keyword][1]
    if "ts-explicit-le" not in inner.features:
        raise ValueError(f"{inner.name} cannot write Explicit VR Little Endian to transcode from")

    class Transcoded(inner):  # type: ignore[valid-type, misc]  # mypy cannot type a class on a runtime base
        name: ClassVar[str] = f"{inner.name}+{variant}"
        tool: ClassVar[str] = f"{inner.tool} + {how}"
        features: ClassVar[frozenset[str]] = frozenset((inner.features - _TS_FEATURES) | {feature})
        unsupported_combinations: ClassVar[tuple[frozenset[str], ...]] = (
            *inner.unsupported_combinations,
            frozenset({"binary", feature}),
        )

        def version(self) -> str | None:
            base = super().version()
            if base is None:
                return None
            if how == "pydicom":
                import pydicom

                return f"{base} + pydicom {pydicom.__version__}"
            return f"{base} + {how} (DCMTK)" if shutil.which(how) else None

        def available(self) -> tuple[bool, str]:
            ok, why = super().available()
            if ok and how != "pydicom" and shutil.which(how) is None:
                return False, f"{how} is not installed (Debian package dcmtk)"
            return ok, why

        def write(self, request: WriteRequest) -> list[str]:
            enc = request.case.encoding.model_copy(update={"transfer_syntax": "ExplicitVRLittleEndian"})
            plain = request.output.with_name("uncompressed.dcm")
            inner_request = WriteRequest(
                case_id=request.case_id,
                case=request.case.model_copy(update={"encoding": enc}),
                truth=request.truth,
                output=plain,
            )
            notes = [f"{inner.name}, uncompressed:"] + list(super().write(inner_request))
            _transcode(variant, plain, request.output, notes)
            plain.unlink(missing_ok=True)
            return notes

    Transcoded.__name__ = Transcoded.__qualname__ = f"{inner.__name__}Plus{variant.capitalize()}"
    Transcoded.__module__ = inner.__module__  # its environment (requirements) is the inner producer's
    return Transcoded
