"""A minimal NRRD writer and reader for label volumes in DICOM patient space (LPS).

Used to hand the truth to tools that read ITK images (dcmqi) and to read what
they write back. Arrays are (frames, rows, columns) in C order, which is NRRD's
order with the column index fastest.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conformance.truth import Geometry

__all__ = ["NrrdImage", "read_nrrd", "write_nrrd"]

_TYPES = {
    np.dtype("uint8"): "uint8", np.dtype("int8"): "int8", np.dtype("uint16"): "uint16", np.dtype("int16"): "int16",
    np.dtype("uint32"): "uint32", np.dtype("int32"): "int32", np.dtype("float32"): "float", np.dtype("float64"): "double",
}
_NAMES = {
    "uchar": "uint8", "unsigned char": "uint8", "uint8": "uint8", "uint8_t": "uint8",
    "signed char": "int8", "int8": "int8", "int8_t": "int8",
    "ushort": "uint16", "unsigned short": "uint16", "uint16": "uint16", "uint16_t": "uint16",
    "short": "int16", "int16": "int16", "int16_t": "int16", "signed short": "int16",
    "uint": "uint32", "unsigned int": "uint32", "uint32": "uint32", "uint32_t": "uint32",
    "int": "int32", "int32": "int32", "int32_t": "int32", "signed int": "int32",
    "float": "float32", "double": "float64",
}


@dataclass
class NrrdImage:
    """A 3D image: data (frames, rows, columns), origin, and axis vectors (mm per index step, LPS)."""

    data: np.ndarray
    origin: np.ndarray
    axes: np.ndarray  # 3x3: rows are the column, row and slice steps


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
    if len(geometry.positions) > 1:
        steps[2] = (np.asarray(geometry.positions[1]) - np.asarray(geometry.positions[0]))
    vec = " ".join("(" + ",".join(f"{v:.10g}" for v in s) + ")" for s in steps)
    origin = "(" + ",".join(f"{v:.10g}" for v in geometry.positions[0]) + ")"
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
        f"space origin: {origin}\n"
        + "".join(f"{k}:={v}\n" for k, v in (fields or {}).items())
        + "\n"
    )
    raw = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(gzip.compress(raw, compresslevel=1) if compress else raw)


def _vector(text: str) -> list[float]:
    return [float(v) for v in text.strip().strip("()").split(",")]


def read_nrrd(path: Path) -> NrrdImage:
    """Read a 3D NRRD with attached data (raw or gzip), as ITK and dcmqi write it."""
    blob = path.read_bytes()
    end = blob.find(b"\n\n")
    if not blob.startswith(b"NRRD") or end < 0:
        raise ValueError(f"{path.name}: not an NRRD file with attached data")
    fields: dict[str, str] = {}
    for line in blob[:end].decode("ascii", "replace").splitlines()[1:]:
        if line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.lstrip("=").strip()
    if int(fields.get("dimension", "0")) != 3:
        raise ValueError(f"{path.name}: dimension {fields.get('dimension')} is not 3")
    sizes = [int(v) for v in fields["sizes"].split()]
    dtype = np.dtype(_NAMES[fields["type"].lower()])
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder("<" if fields.get("endian", "little") == "little" else ">")
    payload = blob[end + 2 :]
    encoding = fields.get("encoding", "raw").lower()
    if encoding in ("gzip", "gz"):
        payload = gzip.decompress(payload)
    elif encoding != "raw":
        raise ValueError(f"{path.name}: encoding {encoding} is not supported")
    count = sizes[0] * sizes[1] * sizes[2]
    data = np.frombuffer(payload[: count * dtype.itemsize], dtype=dtype).reshape(sizes[2], sizes[1], sizes[0])
    axes = np.array([_vector(v) for v in fields["space directions"].replace(") (", ")|(").split("|")])
    origin = np.array(_vector(fields.get("space origin", "(0,0,0)")))
    space = fields.get("space", "left-posterior-superior").lower()
    if space in ("right-anterior-superior", "ras"):
        flip = np.array([-1.0, -1.0, 1.0])
        axes, origin = axes * flip, origin * flip
    return NrrdImage(data=data.astype(data.dtype.newbyteorder("=")), origin=origin, axes=axes)
