"""Reading DICOM files the suite did not write, within bounds: headers without pixels, inflation with a cap.

Everything here runs in a child process (:mod:`dicom4qi.adapters.child`), under the call's time and memory
limits: the harness parses no byte of an untrusted object itself. A Deflated object (a decompression bomb:
a megabyte that inflates to gigabytes) is never inflated whole for its header: :func:`read_header`
inflates only as much of the data set as the header needs, at most :data:`HEADER_CAP` bytes, and
:func:`inflate_to` streams a full inflation to a file, refusing it beyond :data:`INFLATE_CAP` bytes.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

from dicom4qi.model.uids import DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN
from dicom4qi.model.wire import Header

__all__ = ["HEADER_CAP", "INFLATE_CAP", "InflateError", "header_summary", "inflate_to", "read_header"]

#: The most bytes of a deflated data set inflated to read its header (everything before Pixel Data).
HEADER_CAP = 256 * 2**20
#: The most bytes a deflated data set may inflate to (for the validator's inflated copy).
INFLATE_CAP = 4 * 2**30
_CHUNK = 1 << 20


class InflateError(ValueError):
    """A deflated data set that inflates beyond its cap, or is not deflate data."""


def _meta_end(path: Path) -> tuple[bytes, int]:
    """The preamble and file meta bytes (to the end of group 0002) and their length."""
    with open(path, "rb") as fh:
        head = fh.read(144)
        if len(head) < 144 or head[128:132] != b"DICM" or head[132:136] != b"\x02\x00\x00\x00":
            raise ValueError("no File Meta Information Group Length after the DICM prefix")
        group_length = struct.unpack("<I", head[140:144])[0]
        if group_length > 64 * 2**10:
            raise ValueError(f"File Meta Information Group Length {group_length} is implausible")
        start = 144 + group_length
        fh.seek(0)
        return fh.read(start), start


def _step(limit: int, written: int) -> int:
    """How much one decompress call may return: enough to see the limit crossed, never more than 16 MiB."""
    return max(1, min(limit - written + 1, 16 * 2**20))


def _inflate(path: Path, start: int, limit: int, sink: Any, *, stop_early: bool) -> int:
    """Inflate the data set from ``start`` into ``sink`` chunk by chunk; at most ``limit`` bytes.

    With ``stop_early`` the inflation ends quietly at the limit (a header needs only the beginning);
    otherwise going past it raises :class:`InflateError`.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    written = 0
    with open(path, "rb") as fh:
        fh.seek(start)
        while True:
            block = fh.read(_CHUNK)
            data = inflater.decompress(block, _step(limit, written)) if block else inflater.flush()
            while True:
                if written + len(data) > limit:
                    if stop_early:
                        sink.write(data[: limit - written])
                        return limit
                    raise InflateError(f"the deflated data set inflates to more than {limit} bytes (the cap)")
                sink.write(data)
                written += len(data)
                if not inflater.unconsumed_tail:
                    break
                data = inflater.decompress(inflater.unconsumed_tail, _step(limit, written))
            if not block:
                return written


def read_header(path: Path, cap: int = HEADER_CAP) -> Any:
    """The data set without Pixel Data (pydicom), of any transfer syntax; a Deflated one inflated only in part."""
    import pydicom
    from pydicom.filereader import read_file_meta_info

    meta = read_file_meta_info(path)
    if str(meta.get("TransferSyntaxUID", "")) != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return pydicom.dcmread(path, stop_before_pixels=True)
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import UID

    prefix, start = _meta_end(path)
    body = io.BytesIO()
    try:
        _inflate(path, start, cap, body, stop_early=True)
    except zlib.error as exc:
        raise InflateError(f"the data set is not deflate data: {exc}") from None
    meta.TransferSyntaxUID = UID(EXPLICIT_VR_LITTLE_ENDIAN)
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_file_meta_info(buf, meta, enforce_standard=False)
    ds = pydicom.dcmread(io.BytesIO(prefix[:132] + buf.getvalue() + body.getvalue()), stop_before_pixels=True)
    # what the object says, not the copy read here
    ds.file_meta.TransferSyntaxUID = UID(DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)
    return ds


def inflate_to(path: Path, out: Path, cap: int = INFLATE_CAP) -> bool:
    """Write ``out``: ``path`` with its deflated data set inflated (byte for byte), streamed; False if not deflated."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_file_meta_info
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import UID

    meta = read_file_meta_info(path)
    if str(meta.get("TransferSyntaxUID", "")) != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return False
    prefix, start = _meta_end(path)
    meta.TransferSyntaxUID = UID(EXPLICIT_VR_LITTLE_ENDIAN)
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_file_meta_info(buf, meta, enforce_standard=False)
    try:
        with open(out, "wb") as fh:
            fh.write(prefix[:132] + buf.getvalue())
            _inflate(path, start, cap, fh, stop_early=False)
    except (InflateError, zlib.error) as exc:
        out.unlink(missing_ok=True)
        raise InflateError(str(exc)) from None
    return True


def header_summary(path: Path) -> Header:
    """What the write step checks of a produced object's header."""
    ds = read_header(path)
    frames = ds.get("NumberOfFrames")
    return Header(
        sop_class_uid=str(ds.get("SOPClassUID", "")),
        transfer_syntax_uid=str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else "",
        segmentation_type=str(ds.get("SegmentationType", "")),
        bits_allocated=int(ds.BitsAllocated) if "BitsAllocated" in ds else None,
        segment_numbers=[int(item.get("SegmentNumber", -1)) for item in ds.get("SegmentSequence", [])],
        frames=int(frames) if frames is not None else None,
        fractional_type=str(ds.get("SegmentationFractionalType", "")),
        max_fractional_value=int(ds.MaximumFractionalValue) if "MaximumFractionalValue" in ds else None,
        photometric=str(ds.get("PhotometricInterpretation", "")),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
        instance_number=_int_or_none(ds.get("InstanceNumber")),
    )


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def sop_class_of(path: Path) -> str | None:
    """The SOP Class the file meta names (Media Storage SOP Class UID), read without the data set; None if unreadable."""
    from pydicom.errors import InvalidDicomError
    from pydicom.filereader import read_file_meta_info

    try:
        return str(read_file_meta_info(path).get("MediaStorageSOPClassUID", "")) or None
    except (OSError, InvalidDicomError, ValueError, EOFError):
        return None
