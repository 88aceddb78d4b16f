"""dcmqi's file formats on both sides: the inputs its writers take (NRRD label images on the source grid and its
metadata JSON) and the output its readers give (one volume per group of non-overlapping segments with its
``segmentAttributes``), placed back on the source frames. Shared by the adapters of dcmqi's binaries and of
dcmqi built to WebAssembly (itk-wasm).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from dicom4qi.formats.dcmqi_json import dcmqi_metadata
from dicom4qi.formats.nrrd import write_nrrd
from dicom4qi.formats.source_frames import SourceFrames
from dicom4qi.model.decoded import DecodedWriter
from dicom4qi.model.masks import labelmap_from_crops
from dicom4qi.model.segment import Code, Segment
from dicom4qi.model.truth import Truth

__all__ = ["dcmqi_inputs", "place_volumes"]


def _code(c: dict[str, str] | None) -> Code | None:
    if not c:
        return None
    return {
        "value": str(c.get("CodeValue")),
        "scheme": str(c.get("CodingSchemeDesignator")),
        "meaning": str(c.get("CodeMeaning")),
    }


def dcmqi_inputs(truth: Truth, work: Path, series_description: str) -> tuple[list[Path], Path]:
    """The truth as dcmqi's writers take it: NRRD label images on the source grid (one for disjoint segments, their
    label values the segment numbers; one per segment where they overlap) and the metadata JSON."""
    work.mkdir(parents=True, exist_ok=True)
    numbers = [s.number for s in truth.segments]
    inputs: list[Path] = []
    with truth.masks() as masks:
        if truth.overlap:
            groups = [[(n, 1)] for n in numbers]
            for n in numbers:
                crop = masks.get(n)
                single = {1: crop} if crop is not None else {}
                path = work / f"segment-{n}.nrrd"
                write_nrrd(path, labelmap_from_crops(single, truth.shape, dtype=np.uint8), truth.geometry)
                inputs.append(path)
        else:
            groups = [[(n, n) for n in numbers]]
            dtype = np.uint8 if max(numbers) < 256 else np.uint16
            path = work / "labels.nrrd"
            write_nrrd(path, labelmap_from_crops(dict(masks), truth.shape, dtype=dtype), truth.geometry)
            inputs.append(path)
    meta_path = work / "meta.json"
    meta_path.write_text(json.dumps(dcmqi_metadata(truth, series_description, groups), indent=1))
    return inputs, meta_path


def place_volumes(
    writer: DecodedWriter,
    src: SourceFrames,
    volumes: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    groups: list[list[dict[str, Any]]],
    *,
    fractional: bool,
    scale: float,
) -> None:
    """dcmqi's output (one volume per group of non-overlapping segments, and its ``segmentAttributes``) placed on
    the source frames: each volume (slices, rows, columns) with its origin and axis steps (column, row, slice), taken
    one at a time from ``volumes`` (give a generator: one volume in memory, however many segments)."""
    first = None
    for (data, origin, axes), group in zip(volumes, groups):
        placement = src.place(origin, axes, data.shape[0])
        first = first or (origin, axes, placement)
        grid = src.to_grid(placement, data)
        for attrs in group:
            number = int(attrs["labelID"])
            writer.add_segment(
                Segment(
                    number=number,
                    label=attrs.get("SegmentLabel"),
                    category=_code(attrs.get("SegmentedPropertyCategoryCodeSequence")),
                    type=_code(attrs.get("SegmentedPropertyTypeCodeSequence")),
                    tracking_id=attrs.get("TrackingIdentifier"),
                    tracking_uid=attrs.get("TrackingUniqueIdentifier"),
                    algorithm_type=attrs.get("SegmentAlgorithmType"),
                    algorithm_name=attrs.get("SegmentAlgorithmName"),
                    description=attrs.get("SegmentDescription"),
                    type_modifier=_code(attrs.get("SegmentedPropertyTypeModifierCodeSequence")),
                    anatomic_region=_code(attrs.get("AnatomicRegionSequence")),
                    anatomic_region_modifier=_code(attrs.get("AnatomicRegionModifierSequence")),
                    color_rgb=tuple(attrs["recommendedDisplayRGBValue"])
                    if attrs.get("recommendedDisplayRGBValue")
                    else None,
                )
            )
            if fractional:
                # one segment per file: its values are the stored fractions
                writer.set_pixels(number, grid.astype(np.float32) * scale)
            else:
                writer.set_pixels(number, grid == number)
        del grid
    if first is not None:
        origin, ax, placement = first
        writer.geometry.orientation = [*(ax[0] / np.linalg.norm(ax[0])), *(ax[1] / np.linalg.norm(ax[1]))]
        writer.geometry.pixel_spacing = [float(np.linalg.norm(ax[1])), float(np.linalg.norm(ax[0]))]
        for k in np.flatnonzero(placement.frames >= 0):
            corner = origin + k * ax[2] - placement.col_offset * ax[0] - placement.row_offset * ax[1]
            writer.geometry.positions[src.keys[placement.frames[k]]] = [float(v) for v in corner]
