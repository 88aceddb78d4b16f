"""Pixel Data of the reference producer: frames encoded as they come, in object order.

Frames without any segment voxel are left out (empty segments stay described
in the Segment Sequence; an object with no voxel at all keeps one empty frame).

Memory stays bounded: one segment's crop at a time; BINARY and FRACTIONAL frames
are encoded as they come, and spilled to a scratch file when the frame order is
position-major; a label map is painted into a memory-mapped scratch volume; the
native Pixel Data is streamed to a scratch file that pydicom copies into the
object, 1-bit frames packed with no padding between them (encapsulated RLE
frames are kept, compressed, in memory).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from io import BufferedIOBase
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

import numpy as np

from dicom4qi.model.truth import Truth
from dicom4qi.tools.reference.frames import OutFrame

T = TypeVar("T")

__all__ = [
    "FrameStore",
    "NativeSink",
    "PixelSink",
    "RleSink",
    "reordered",
    "segment_planes",
    "write_labelmap_frames",
    "write_segment_frames",
]


class PixelSink(Protocol):
    """Where encoded frames go, in object order."""

    def add(self, plane: np.ndarray) -> None: ...

    def finish(self) -> tuple[str, bytes | BufferedIOBase]:
        """The Pixel Data's VR and value (bytes, or an open file pydicom copies from)."""
        ...


class NativeSink:
    """Uncompressed frames streamed to a scratch file; 1-bit frames packed with no padding between them.

    ``big_endian``: 16-bit values in big-endian byte order (Explicit VR Big Endian, an OW value); 1- and
    8-bit data are OB, the same bytes in either byte order.
    """

    def __init__(self, path: Path, bits: int, *, big_endian: bool = False) -> None:
        self.path, self.bits = path, bits
        self._order = ">" if big_endian else "<"
        self._fh: BinaryIO = open(path, "wb")  # open until finish(), closed by close()
        self._carry = np.zeros(0, dtype=np.uint8)  # bits (< 8) not yet written, for 1-bit data
        self._reader: BinaryIO | None = None

    def add(self, plane: np.ndarray) -> None:
        if self.bits == 1:
            bits = np.concatenate([self._carry, plane.astype(bool, copy=False).ravel().view(np.uint8)])
            whole = len(bits) // 8 * 8
            self._fh.write(np.packbits(bits[:whole], bitorder="little").tobytes())
            self._carry = bits[whole:].copy()
        else:
            self._fh.write(np.ascontiguousarray(plane, dtype=f"{self._order}u{self.bits // 8}").tobytes())

    def finish(self) -> tuple[str, bytes | BufferedIOBase]:
        if len(self._carry):
            self._fh.write(np.packbits(self._carry, bitorder="little").tobytes())
        # Pad to an even length here: pydicom 3.0.2 writes a buffered value's odd length as its
        # Value Length and then appends the pad byte, which leaves the element malformed.
        if self._fh.tell() % 2:
            self._fh.write(b"\x00")
        self._fh.close()
        self._reader = open(self.path, "rb")  # pydicom reads it at save time; close() closes it
        return ("OW" if self.bits == 16 else "OB"), self._reader

    def close(self) -> None:
        for fh in (self._fh, self._reader):
            if fh is not None and not fh.closed:
                fh.close()


class RleSink:
    """RLE Lossless frames (PS3.5 G), encoded one by one by pydicom's encoder and encapsulated."""

    def __init__(self, rows: int, columns: int, bits: int) -> None:
        if bits not in (8, 16):
            raise ValueError(f"RLE Lossless is written for 8- and 16-bit data here, not {bits}-bit")
        self.kwargs: dict[str, Any] = {
            "rows": rows,
            "columns": columns,
            "samples_per_pixel": 1,
            "bits_allocated": bits,
            "bits_stored": bits,
            "pixel_representation": 0,
            "photometric_interpretation": "MONOCHROME2",
            "number_of_frames": 1,
        }
        self.dtype = np.uint8 if bits == 8 else np.uint16
        self.frames: list[bytes] = []

    def add(self, plane: np.ndarray) -> None:
        from pydicom.pixels.encoders import RLELosslessEncoder

        self.frames.append(RLELosslessEncoder.encode(np.ascontiguousarray(plane, dtype=self.dtype), **self.kwargs))

    def finish(self) -> tuple[str, bytes | BufferedIOBase]:
        from pydicom.encaps import encapsulate

        return "OB", encapsulate(self.frames, has_bot=True)


class FrameStore:
    """A scratch file of encoded frames, read back in another order (position-major output)."""

    def __init__(self, path: Path, shape: tuple[int, int], packed: bool) -> None:
        self.shape, self.packed = shape, packed
        self._fh = open(path, "w+b")  # written then read back; close() closes it
        self._where: dict[tuple[int, int], tuple[int, int, np.dtype]] = {}

    def put(self, segment: int, index: int, plane: np.ndarray) -> None:
        data = (
            np.packbits(plane.astype(bool).ravel(), bitorder="little") if self.packed else np.ascontiguousarray(plane)
        )
        self._fh.seek(0, 2)
        self._where[(segment, index)] = (self._fh.tell(), data.nbytes, data.dtype)
        self._fh.write(data.tobytes())

    def keys(self) -> list[tuple[int, int]]:
        return list(self._where)

    def get(self, segment: int, index: int) -> np.ndarray:
        offset, size, dtype = self._where[(segment, index)]
        self._fh.seek(offset)
        raw = np.frombuffer(self._fh.read(size), dtype=dtype)
        if self.packed:
            n = self.shape[0] * self.shape[1]
            return np.unpackbits(raw, count=n, bitorder="little").astype(bool).reshape(self.shape)
        return raw.reshape(self.shape)

    def close(self) -> None:
        self._fh.close()


def segment_planes(truth: Truth) -> Iterator[tuple[int, int, np.ndarray]]:
    """(segment, truth frame, full plane) of every non-empty frame, segment by segment, one crop in memory."""
    rows, cols = truth.geometry.rows, truth.geometry.columns
    with truth.masks() as masks:
        for info in truth.segments:
            crop = masks.get(info.number)
            if crop is None:
                continue
            z0, y0, x0 = crop.offset
            h, w = crop.data.shape[1:]
            data = crop.data if truth.fractional else crop.data.astype(bool, copy=False)
            for i in np.flatnonzero(data.reshape(data.shape[0], -1).any(axis=1)):
                plane = np.zeros((rows, cols), dtype=data.dtype)
                plane[y0 : y0 + h, x0 : x0 + w] = data[i]
                yield info.number, z0 + int(i), plane


def write_segment_frames(truth: Truth, sink: PixelSink, order: str, scratch: Path, seed: int = 0) -> list[OutFrame]:
    """BINARY / FRACTIONAL frames into ``sink`` in ``order``; return them in object order.

    ``order``: segment-major (as they come), position-major (slice by slice, segments interleaved) or
    shuffled (a seeded permutation: neither by segment nor by position).
    """
    frames: list[OutFrame] = []
    if order == "segment-major":
        for number, index, plane in segment_planes(truth):
            sink.add(plane)
            frames.append(OutFrame(number, index))
    else:
        shape = (truth.geometry.rows, truth.geometry.columns)
        store = FrameStore(scratch / "frames.bin", shape, packed=not truth.fractional)
        try:
            for number, index, plane in segment_planes(truth):
                store.put(number, index, plane)
            keys = reordered(store.keys(), order, seed, position=lambda key: (key[1], key[0]))
            for number, index in keys:
                sink.add(store.get(number, index))
                frames.append(OutFrame(number, index))
        finally:
            store.close()
    if not frames:  # every segment is empty: one empty frame keeps the object valid
        sink.add(np.zeros((truth.geometry.rows, truth.geometry.columns), dtype=np.uint8))
        frames.append(OutFrame(truth.segments[0].number, 0))
    return frames


def reordered(keys: list[T], order: str, seed: int, position: Callable[[T], Any]) -> list[T]:
    """``keys`` (in writing order) as the object stores them: by ``position``, or shuffled with ``seed``."""
    if order == "position-major":
        return sorted(keys, key=position)
    if order == "shuffled":
        rng = np.random.default_rng(seed)
        return [keys[i] for i in rng.permutation(len(keys))]
    return list(keys)


def write_labelmap_frames(
    truth: Truth, sink: PixelSink, bits: int, scratch: Path, order: str = "segment-major", seed: int = 0
) -> list[OutFrame]:
    """Paint the segments into a memory-mapped label volume, then send its non-empty frames to ``sink``
    (by position, or shuffled)."""
    dtype = np.uint8 if bits == 8 else np.uint16
    volume = np.memmap(scratch / "labels.raw", dtype=dtype, mode="w+", shape=truth.shape)
    try:
        wanted = {s.number for s in truth.segments}  # an instance of several holds some of the masks
        with truth.masks() as masks:
            for number, crop in masks:
                if number not in wanted:
                    continue
                (z0, y0, x0), (z1, y1, x1) = crop.offset, crop.stop
                region = volume[z0:z1, y0:y1, x0:x1]
                mask = crop.data.astype(bool, copy=False)
                taken = region[mask]
                if taken.any():
                    other = int(taken[taken > 0][0])
                    raise ValueError(
                        f"segments {other} and {number} share voxels: a label map cannot hold overlapping segments"
                    )
                region[mask] = number
        indices = [k for k in range(truth.shape[0]) if volume[k].any()] or [0]
        indices = reordered(indices, order, seed, position=lambda k: k)
        for k in indices:
            sink.add(np.asarray(volume[k]))
        return [OutFrame(None, k) for k in indices]
    finally:
        del volume
