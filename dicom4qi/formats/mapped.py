"""A DICOM file memory-mapped, so that the long values pydicom leaves in the file are viewed, never copied.

``pydicom.dcmread(path, defer_size=DEFER_BYTES)`` parses the header and leaves every value
longer than :data:`DEFER_BYTES` (the Pixel Data, a long Per-frame Functional Groups
Sequence) in the file, with its offset. :meth:`MappedFile.value` returns such a value as a
view of the mapped file: native frames are then read in place, page by page from the page
cache, instead of being copied into a new ``bytes`` object first (for a 160 MB BINARY
object the copy alone is about 0.1 s, the whole pixel scan through the map 0.015 s).
Reading a deferred value through pydicom (``ds.PixelData``) still works and reads the file
again.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any

from dicom4qi.formats.headerscan import UNDEFINED_LENGTH
from dicom4qi.model.uids import DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN

__all__ = ["DEFER_BYTES", "PIXEL_DATA", "MappedFile", "pixel_length"]

#: Values longer than this are left in the file by pydicom (``defer_size``) and read through the map.
DEFER_BYTES = 1 << 20
PIXEL_DATA = 0x7FE00010


class MappedFile:
    """A file mapped read-only (nothing mapped for an empty file)."""

    def __init__(self, path: Path | str) -> None:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            self.buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None

    def value(self, ds: Any, tag: int) -> memoryview | None:
        """The bytes of top-level element ``tag`` that pydicom left in the file, as a view of the map; None
        when it read the value itself (short, undefined length), the element is absent, or the data set is not
        the file's bytes as they stand (Deflated Explicit VR Little Endian)."""
        from pydicom.dataelem import RawDataElement

        elem = ds.get_item(tag, keep_deferred=True) if tag in ds else None
        meta = getattr(ds, "file_meta", None)
        if (
            self.buf is None
            # a deflated data set was inflated into memory before it was parsed: its offsets are not the file's
            or meta is None
            or meta.get("TransferSyntaxUID") == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
            or not isinstance(elem, RawDataElement)
            or elem.value is not None
            or elem.value_tell is None
            or elem.length == UNDEFINED_LENGTH
            or elem.value_tell + elem.length > len(self.buf)
        ):
            return None
        return memoryview(self.buf)[elem.value_tell : elem.value_tell + elem.length]


def pixel_length(ds: Any, mapped: MappedFile | None) -> int:
    """The length in bytes of the Pixel Data value (0 if absent or empty), without reading a deferred one."""
    if "PixelData" not in ds:
        return 0
    if mapped is not None and (view := mapped.value(ds, PIXEL_DATA)) is not None:
        return len(view)
    return len(ds.PixelData or b"")
