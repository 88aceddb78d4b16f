"""A minimal NRRD writer and reader for label volumes in DICOM patient space (LPS).

Used to hand the truth to tools that read ITK images (dcmqi) and to read what
they write back. Arrays are (frames, rows, columns) in C order, which is NRRD's
order with the column index fastest.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from dicom4qi.model.truth import Geometry

__all__ = ["NrrdImage", "read_nrrd", "write_nrrd"]

_TYPES = {
    np.dtype("uint8"): "uint8",
    np.dtype("int8"): "int8",
    np.dtype("uint16"): "uint16",
    np.dtype("int16"): "int16",
    np.dtype("uint32"): "uint32",
    np.dtype("int32"): "int32",
    np.dtype("float32"): "float",
    np.dtype("float64"): "double",
}
_NAMES = {
    "uchar": "uint8",
    "unsigned char": "uint8",
    "uint8": "uint8",
    "uint8_t": "uint8",
    "signed char": "int8",
    "int8": "int8",
    "int8_t": "int8",
    "ushort": "uint16",
    "unsigned short": "uint16",
    "uint16": "uint16",
    "uint16_t": "uint16",
    "short": "int16",
    "int16": "int16",
    "int16_t": "int16",
    "signed short": "int16",
    "uint": "uint32",
    "unsigned int": "uint32",
    "uint32": "uint32",
    "uint32_t": "uint32",
    "int": "int32",
    "int32": "int32",
    "int32_t": "int32",
    "signed int": "int32",
    "float": "float32",
    "double": "float64",
}


@dataclass
class NrrdImage:
    """A 3D image: data (frames, rows, columns), origin, and axis vectors (mm per index step, LPS).

    ``origin`` and ``axes`` are None for an image without a geometry (read with ``need_geometry=False``).
    """

    data: np.ndarray
    origin: np.ndarray | None
    axes: np.ndarray | None  # 3x3: rows are the column, row and slice steps


def write_nrrd(
    path: Path, data: np.ndarray, geometry: Geometry, *, compress: bool = True, fields: dict[str, str] | None = None
) -> None:
    """Write ``data`` (frames, rows, columns) on the source grid described by ``geometry``.

    ``fields`` are extra key/value pairs (``key:=value`` lines), e.g. 3D Slicer's segment metadata.
    """
    if data.ndim != 3:
        raise ValueError("write_nrrd takes a 3D array (frames, rows, columns)")
    o = np.asarray(geometry.orientation, dtype=float)
    row_dir, col_dir = o[:3], o[3:]
    normal = np.cross(row_dir, col_dir)
    steps = [row_dir * geometry.pixel_spacing[1], col_dir * geometry.pixel_spacing[0], normal * geometry.slice_spacing]
    positions = geometry.positions
    assert positions is not None  # an NRRD is written only on a grid in patient space
    if len(positions) > 1:
        steps[2] = np.asarray(positions[1]) - np.asarray(positions[0])
    vec = " ".join("(" + ",".join(f"{v:.10g}" for v in s) + ")" for s in steps)
    origin = "(" + ",".join(f"{v:.10g}" for v in positions[0]) + ")"
    header = (
        "NRRD0004\n"
        f"type: {_TYPES[data.dtype]}\n"
        "dimension: 3\n"
        "space: left-posterior-superior\n"
        f"sizes: {data.shape[2]} {data.shape[1]} {data.shape[0]}\n"
        f"space directions: {vec}\n"
        "kinds: domain domain domain\n"
        "endian: little\n"
        f"encoding: {'gzip' if compress else 'raw'}\n"
        f"space origin: {origin}\n" + "".join(f"{k}:={v}\n" for k, v in (fields or {}).items()) + "\n"
    )
    raw = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(gzip.compress(raw, compresslevel=1) if compress else raw)


def _vector(text: str) -> list[float]:
    return [float(v) for v in text.strip().strip("()").split(",")]


def read_nrrd(
    path: Path, check: Callable[[tuple[int, ...], np.dtype], None] | None = None, *, need_geometry: bool = True
) -> NrrdImage:
    """Read a 3D NRRD with attached data (raw or gzip), as ITK and dcmqi write it.

    Bounded for files from outside: the header is at most 64 KiB, ``check`` sees the declared sizes and voxel type
    before any voxel is read (and raises to refuse them), gzip data is inflated only up to the declared size (a
    payload that inflates further is refused), detached data files are refused. Without ``space directions`` the
    image has no geometry (``axes`` and ``origin`` None), which is an error when ``need_geometry``.
    """
    with open(path, "rb") as fh:
        head = fh.read(65536)
        end = head.find(b"\n\n")
        if not head.startswith(b"NRRD000") or end < 0:
            raise ValueError(f"{path.name}: not an NRRD file with attached data (or its header exceeds 64 KiB)")
        fields: dict[str, str] = {}
        for line in head[:end].decode("ascii", "replace").splitlines()[1:]:
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            if value.startswith("="):
                continue  # key/value pairs (3D Slicer's segment metadata): not the image's
            fields[key.strip().lower()] = value.strip()
        try:
            sizes = tuple(int(v) for v in fields["sizes"].split())
            dtype = np.dtype(_NAMES[fields["type"].lower()])
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{path.name}: NRRD header without a usable sizes or type ({exc})") from None
        if int(fields.get("dimension", len(sizes))) != len(sizes):
            raise ValueError(f"{path.name}: dimension {fields.get('dimension')} but {len(sizes)} sizes")
        if check is not None:
            check(sizes, dtype)
        if len(sizes) != 3 or min(sizes) < 1:
            raise ValueError(f"{path.name}: sizes {sizes}: a 3D image is needed")
        if fields.get("data file") or fields.get("datafile"):
            raise ValueError(f"{path.name}: detached NRRD data files are not accepted")
        if dtype.itemsize > 1:
            dtype = dtype.newbyteorder("<" if fields.get("endian", "little") == "little" else ">")
        need = sizes[0] * sizes[1] * sizes[2] * dtype.itemsize
        fh.seek(end + 2)
        encoding = fields.get("encoding", "raw").lower()
        if encoding == "raw":
            payload = fh.read(need + 1)
        elif encoding in ("gzip", "gz"):
            payload = _inflate_at_most(fh, need + 1)
        else:
            raise ValueError(f"{path.name}: NRRD encoding {encoding!r} is not supported (raw or gzip)")
    if len(payload) < need:
        raise ValueError(f"{path.name}: {len(payload)} bytes of voxel data, the header declares {need}")
    if len(payload) > need:
        raise ValueError(f"{path.name}: more voxel data than the header declares ({need} bytes)")
    data = np.frombuffer(payload, dtype=dtype).reshape(sizes[2], sizes[1], sizes[0])
    data = data.astype(data.dtype.newbyteorder("="))
    if "space directions" not in fields:
        if need_geometry:
            raise ValueError(f"{path.name}: no space directions")
        return NrrdImage(data=data, origin=None, axes=None)
    try:
        axes = np.array([_vector(p) for p in re.findall(r"\([^)]*\)", fields["space directions"])], dtype=float)
        origin = np.array(_vector(fields.get("space origin", "(0,0,0)")), dtype=float)
    except ValueError as exc:
        raise ValueError(f"{path.name}: unreadable space directions or origin ({exc})") from None
    if axes.shape != (3, 3) or origin.shape != (3,) or not (np.all(np.isfinite(axes)) and np.all(np.isfinite(origin))):
        raise ValueError(f"{path.name}: space directions must be three 3-vectors and the origin one")
    space = fields.get("space", "left-posterior-superior").lower()
    if space in ("right-anterior-superior", "ras"):
        flip = np.array([-1.0, -1.0, 1.0])
        axes, origin = axes * flip, origin * flip
    elif space not in ("left-posterior-superior", "lps"):
        raise ValueError(f"{path.name}: space {space!r} is not supported (left-posterior-superior or RAS)")
    return NrrdImage(data=data, origin=origin, axes=axes)


def _inflate_at_most(fh: BinaryIO, limit: int) -> bytes:
    """Inflate a gzip stream up to ``limit`` bytes of output (a bomb stops there)."""
    inflater = zlib.decompressobj(wbits=47)
    chunks: list[bytes] = []
    got = 0
    pending = b""
    while got < limit:
        block = pending or fh.read(1 << 20)
        if not block:
            break
        part = inflater.decompress(block, limit - got)
        pending = inflater.unconsumed_tail
        chunks.append(part)
        got += len(part)
        if not part and not pending and inflater.eof:
            break
    return b"".join(chunks)
