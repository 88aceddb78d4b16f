"""Per-segment pixel data kept as bounding-box crops.

Truth and decoded segmentations are both stored this way: one small 3D array
per segment with the offset of its first voxel in (frame, row, column)
source-frame coordinates. Memory then grows with the segments' extent, not
with ``segments x volume`` (1000 segments on 512x512x300 would be 78 GB as
dense booleans).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Crop", "MaskFile", "crop_from_dense", "crops_from_labelmap", "labelmap_from_crops", "write_masks"]


@dataclass(frozen=True)
class Crop:
    """A segment's pixel data inside its bounding box.

    ``data`` is boolean for binary segments, or the fractional values: ``uint8``
    stored values in the truth, ``float32`` in [0, 1] in decoded output.
    """

    offset: tuple[int, int, int]
    data: np.ndarray

    @property
    def stop(self) -> tuple[int, int, int]:
        return tuple(o + s for o, s in zip(self.offset, self.data.shape))

    @property
    def voxels(self) -> int:
        return int(np.count_nonzero(self.data))


def crop_from_dense(dense: np.ndarray, base: tuple[int, int, int] = (0, 0, 0)) -> Crop | None:
    """Trim a dense 3D array to the bounding box of its non-zero voxels (None if empty)."""
    nz = np.flatnonzero(dense.any(axis=(1, 2)))
    if nz.size == 0:
        return None
    z0, z1 = nz[0], nz[-1] + 1
    sub = dense[z0:z1]
    ys = np.flatnonzero(sub.any(axis=(0, 2)))
    xs = np.flatnonzero(sub.any(axis=(0, 1)))
    y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    return Crop(
        (base[0] + int(z0), base[1] + int(y0), base[2] + int(x0)),
        np.ascontiguousarray(sub[:, y0:y1, x0:x1]),
    )


def crops_from_labelmap(labelmap: np.ndarray, *, base_frame: int = 0) -> dict[int, Crop]:
    """Split a 3D label map (0 = background) into one boolean crop per label."""
    out: dict[int, Crop] = {}
    max_label = int(labelmap.max()) if labelmap.size else 0
    if max_label == 0:
        return out
    from scipy import ndimage  # here, not at import: every adapter call imports this module

    for index, box in enumerate(ndimage.find_objects(labelmap, max_label=max_label), start=1):
        if box is None:
            continue
        out[index] = Crop(
            (box[0].start + base_frame, box[1].start, box[2].start),
            labelmap[box] == index,
        )
    return out


def labelmap_from_crops(crops: Mapping[int, Crop], shape: tuple[int, int, int], dtype: Any = np.uint16) -> np.ndarray:
    """Paint disjoint binary crops into one label map of ``shape``."""
    out = np.zeros(shape, dtype=dtype)
    for number, crop in crops.items():
        z0, y0, x0 = crop.offset
        z1, y1, x1 = crop.stop
        region = out[z0:z1, y0:y1, x0:x1]
        region[crop.data.astype(bool)] = number
    return out


def write_masks(path: Path, crops: Mapping[int, Crop], meta: Mapping[str, Any]) -> None:
    """Write crops and a JSON header into one ``.npz`` file (atomically)."""
    arrays: dict[str, Any] = {  # Any: numpy's savez_compressed types **kwds against its allow_pickle: bool
        "__meta__": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
    }
    for number, crop in crops.items():
        arrays[f"o{number}"] = np.asarray(crop.offset, dtype=np.int64)
        arrays[f"d{number}"] = crop.data
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    tmp.replace(path)


class MaskFile:
    """Lazy reader of a file written by :func:`write_masks`: one crop at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._npz = np.load(path, allow_pickle=False)
            self.meta: dict[str, Any] = json.loads(bytes(self._npz["__meta__"]).decode("utf-8"))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
            raise ValueError(f"{path.name}: not a readable mask file ({exc})") from None
        self.numbers: list[int] = sorted(int(k[1:]) for k in self._npz.files if k.startswith("o") and k[1:].isdigit())

    def __contains__(self, number: object) -> bool:
        return number in set(self.numbers)

    def get(self, number: int) -> Crop | None:
        """The crop of segment ``number``, or None when it has no voxels."""
        if f"o{number}" not in self._npz.files:
            return None
        offset = self._npz[f"o{number}"]
        data = self._npz[f"d{number}"]
        if offset.shape != (3,) or data.ndim != 3:
            raise ValueError(f"{self.path.name}: segment {number}: malformed crop")
        return Crop((int(offset[0]), int(offset[1]), int(offset[2])), data)

    def __iter__(self) -> Iterator[tuple[int, Crop]]:
        for n in self.numbers:
            crop = self.get(n)
            if crop is not None:
                yield n, crop

    def close(self) -> None:
        self._npz.close()

    def __enter__(self) -> MaskFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
