"""A built case on disk: the source series, the truth masks and their description.

Layout of a built case (``build/corpus/<case-slug>-<fingerprint>/``)::

    source/0001.dcm ...   the synthesized source series
    truth.npz             the truth, one crop per segment (see masks.py)
    truth.json            geometry, source UIDs, segment metadata
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dicom4qi.model.masks import MaskFile
from dicom4qi.model.segment import Segment

__all__ = ["Geometry", "Truth"]


@dataclass(frozen=True)
class Geometry:
    """Where each source frame lies in patient space."""

    rows: int
    columns: int
    #: Image Orientation (Patient); None for images with no position in patient space (projection, slide).
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float]
    slice_spacing: float
    #: Image Position (Patient) of each frame; None where frames have none.
    positions: list[tuple[float, float, float]] | None
    #: How the source is stored (the case's source.layout).
    layout: str = "single-frame-series"

    @property
    def normal(self) -> np.ndarray:
        if self.orientation is None:
            raise ValueError(f"a {self.layout} source has no orientation in patient space")
        o = np.asarray(self.orientation, dtype=float)
        return np.cross(o[:3], o[3:])


@dataclass(frozen=True)
class Truth:
    """Everything the harness knows about a built case, loaded from disk."""

    directory: Path
    case_id: str
    fingerprint: str
    geometry: Geometry
    frame_keys: list[str]
    source_files: list[str]
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    segments: list[Segment]
    overlap: bool
    fractional: bool
    fractional_max: int
    extra: dict[str, Any] = field(default_factory=dict)
    #: A second series of the study on the same Frame of Reference that the SEG does not reference
    #: (``source.decoy_series``): given to readers with the source, never to producers.
    decoy_files: list[str] = field(default_factory=list)
    #: The decoy series' frame keys: a reader may list them (it was given them), but never with voxels.
    decoy_keys: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        g = self.geometry
        return (len(self.frame_keys), g.rows, g.columns)

    @property
    def fractional_scale(self) -> float:
        """What a stored fractional value of the truth's masks is multiplied by to lie in [0, 1]."""
        return 1.0 / self.fractional_max

    @property
    def fractional_step(self) -> float:
        """One quantization step in [0, 1]: how far a decoded fractional value may lie from the truth."""
        return 1.0 / self.fractional_max

    @property
    def source_paths(self) -> list[Path]:
        """The source series the case segments (what a producer is given, and the SEG references)."""
        return [self.directory / f for f in self.source_files]

    @property
    def reader_source_paths(self) -> list[Path]:
        """What a reader is given: the source series and, where the case has one, the decoy series first (a reader
        must place the SEG on the series it references, not on the first it is handed)."""
        return [self.directory / f for f in self.decoy_files] + self.source_paths

    def masks(self) -> MaskFile:
        """Open the truth crops (lazily, one segment at a time)."""
        return MaskFile(self.directory / "truth.npz")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("directory")
        return d

    def save(self) -> None:
        tmp = self.directory / "truth.json.part"
        tmp.write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")
        tmp.replace(self.directory / "truth.json")

    @classmethod
    def load(cls, directory: Path) -> Truth:
        d = json.loads((directory / "truth.json").read_text(encoding="utf-8"))
        g = d.pop("geometry")
        geometry = Geometry(
            rows=g["rows"],
            columns=g["columns"],
            orientation=tuple(g["orientation"]) if g["orientation"] is not None else None,
            pixel_spacing=tuple(g["pixel_spacing"]),
            slice_spacing=g["slice_spacing"],
            positions=[tuple(p) for p in g["positions"]] if g["positions"] is not None else None,
            layout=g.get("layout", "single-frame-series"),
        )
        segments = [Segment.from_json(s) for s in d.pop("segments")]
        return cls(directory=directory, geometry=geometry, segments=segments, **d)
