"""Baselines for the benchmark: the same truth as a label map in .nii.gz and in 3D Slicer's .seg.nrrd.

The mission's question is whether DICOM SEG is slow by nature or by
implementation; these are what a user compares it with. Each baseline runs as
a whole process, like every tool call (``python -m dicom4qi.adapters.child`` with
op ``baseline``):

- ``write``: the truth's crops painted into one label volume and saved
  (nibabel for .nii.gz, the suite's NRRD writer for .seg.nrrd with Slicer's
  ``Segment<i>_*`` fields), like a producer writes from the same truth;
- ``read``: the file loaded into a numpy array by nibabel or SimpleITK, what a
  user of those formats does.

Only disjoint, non-fractional truths have a label-map baseline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np

from dicom4qi.model.wire import BaselineCall, BaselineReply

__all__ = ["BASELINES", "Baseline", "floor_read", "run_baseline"]


class Baseline:
    """One baseline format with its writer and its readers."""

    def __init__(self, name: str, suffix: str, writer: str, readers: tuple[str, ...]) -> None:
        self.name, self.suffix, self.writer, self.readers = name, suffix, writer, readers


BASELINES = (
    Baseline("nifti", ".nii.gz", "nibabel", ("nibabel", "SimpleITK")),
    Baseline("seg-nrrd", ".seg.nrrd", "dicom4qi nrrd", ("SimpleITK",)),
)


def _ras_affine(truth: Any) -> np.ndarray:
    """The NIfTI affine (RAS) of the truth's grid, array axes (column, row, slice) as NIfTI's i, j, k."""
    from dicom4qi.formats.exchange import ras_affine

    return ras_affine(truth.geometry)


def _labelmap(truth: Any) -> np.ndarray:
    from dicom4qi.model.masks import labelmap_from_crops

    dtype = np.uint8 if len(truth.segments) < 256 else np.uint16
    with truth.masks() as masks:
        return labelmap_from_crops(dict(masks), truth.shape, dtype=dtype)


def _write(fmt: str, truth: Any, path: Path) -> None:
    labels = _labelmap(truth)
    if fmt == "nifti":
        import nibabel as nib

        # NIfTI's first axis is the column (i), then row (j), then slice (k).
        nib.save(nib.Nifti1Image(np.ascontiguousarray(labels.transpose(2, 1, 0)), _ras_affine(truth)), str(path))
    elif fmt == "seg-nrrd":
        from dicom4qi.formats.nrrd import write_nrrd

        fields = {}
        for i, s in enumerate(truth.segments):
            fields[f"Segment{i}_ID"] = f"Segment_{s.number}"
            fields[f"Segment{i}_Name"] = s.label.replace("\n", " ")
            fields[f"Segment{i}_LabelValue"] = str(s.number)
            fields[f"Segment{i}_Layer"] = "0"
        write_nrrd(path, labels, truth.geometry, fields=fields)
    else:
        raise ValueError(f"unknown baseline format {fmt!r}")


def floor_read(path: Path) -> int:
    """The least a reader of a SEG must do, placing nothing: its header parsed (pydicom, with the long values
    left in the file), and every pixel byte looked at once through a memory map (native frames: a count of the
    set bytes) or every frame decoded (compressed: pydicom's decoders, one run over every frame). Parsing the
    per-frame functional groups is left out: how fast that goes is the implementation's (a compiled reader
    takes milliseconds). Returns the bytes the file holds."""
    import pydicom
    from pydicom.pixels import iter_pixels

    from dicom4qi.formats.mapped import DEFER_BYTES, PIXEL_DATA, MappedFile

    mapped = MappedFile(path)
    ds = pydicom.dcmread(path, defer_size=DEFER_BYTES)
    if not ds.file_meta.TransferSyntaxUID.is_encapsulated:
        view = mapped.value(ds, PIXEL_DATA)
        np.count_nonzero(np.frombuffer(view if view is not None else ds.PixelData, dtype=np.uint8))
    else:
        for _frame in iter_pixels(ds, raw=True):
            pass  # each frame decoded, then dropped: the work is the decoding
    return len(mapped.buf) if mapped.buf is not None else 0


def _read(fmt: str, reader: str, path: Path) -> np.ndarray:
    if reader == "nibabel":
        import nibabel as nib
        from nibabel.dataobj_images import DataobjImage

        # nibabel annotates load() as returning the base FileBasedImage; its images with voxel data are DataobjImages
        return np.asarray(cast(DataobjImage, nib.load(str(path))).dataobj)
    if reader == "SimpleITK":
        import SimpleITK as sitk

        return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    raise ValueError(f"unknown baseline reader {reader!r} for {fmt}")


def run_baseline(call: BaselineCall) -> BaselineReply:
    """The child side: write or read one baseline file; a read reports what it found, to be checked."""
    import time

    from dicom4qi.model.truth import Truth

    path = Path(call.path)
    start = time.perf_counter()
    if call.action == "floor":
        size = floor_read(path)
        return BaselineReply(seconds=time.perf_counter() - start, size=size)
    if call.action == "write":
        _write(call.format, Truth.load(Path(call.truth_dir)), path)
        return BaselineReply(seconds=time.perf_counter() - start, size=path.stat().st_size)
    data = _read(call.format, call.reader or "", path)
    seconds = time.perf_counter() - start
    if call.bench:
        return BaselineReply(seconds=seconds)
    return BaselineReply(seconds=seconds, shape=list(data.shape), voxels=int(np.count_nonzero(data)))
