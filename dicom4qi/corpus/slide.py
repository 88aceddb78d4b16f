"""A synthesized VL Whole Slide Microscopy image: one instance, 8-bit MONOCHROME2, stored TILED_FULL.

The truth of a slide case is one frame: the whole total pixel matrix (``rows`` x ``columns``).
The image stores it as tiles of ``tile`` x ``tile`` pixels in the implicit TILED_FULL order
(PS3.3 C.7.6.17.3): along a row of tiles from left to right, then the rows of tiles from top to
bottom; the tiles of the last row and column are padded with 0 where the matrix ends.

The pixels look like a fluorescence image: a dark, slightly noisy background, brighter where the
truth has a segment (three brightness levels by segment number), so that a viewer shows cells.

Slide geometry: Image Orientation (Slide) is the usual (0, -1, 0, -1, 0, 0): the row direction
runs along -Y and the column direction along -X of the slide coordinate system. The total pixel
matrix origin is placed so that every pixel has positive slide coordinates.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from dicom4qi.corpus.images import _ds, _header, _item
from dicom4qi.model.case import Source
from dicom4qi.model.decoded import frame_key
from dicom4qi.model.uids import VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE

__all__ = ["ORIENTATION", "tile_grid", "tiles_of", "write_slide"]

#: Image Orientation (Slide): row direction then column direction, in the slide coordinate system.
ORIENTATION = (0.0, -1.0, 0.0, -1.0, 0.0, 0.0)
#: Margin in mm between the slide corner (the origin of the slide coordinate system) and the matrix.
_MARGIN_MM = 5.0
#: Stored values of the fluorescence-like image: background level and noise, and the added signal.
_BACKGROUND, _NOISE, _SIGNAL = 12.0, 4.0, 70.0
_FRAME_TYPE = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]


def tile_grid(rows: int, columns: int, tile_rows: int, tile_columns: int) -> tuple[int, int]:
    """How many tiles cover a total pixel matrix: (tiles down, tiles across)."""
    return math.ceil(rows / tile_rows), math.ceil(columns / tile_columns)


def tiles_of(matrix: np.ndarray, tile: int) -> np.ndarray:
    """Cut a 2D total pixel matrix into tiles in TILED_FULL order: shape (tiles, tile, tile).

    The matrix is padded with 0 at the bottom and right to a whole number of tiles; the tiles run
    along each row of tiles (columns fastest), then down the rows of tiles.
    """
    down, across = tile_grid(matrix.shape[0], matrix.shape[1], tile, tile)
    padded = np.zeros((down * tile, across * tile), dtype=matrix.dtype)
    padded[: matrix.shape[0], : matrix.shape[1]] = matrix
    grid = padded.reshape(down, tile, across, tile).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(grid).reshape(down * across, tile, tile)


def _matrix(src: Source, label_any: np.ndarray, seed: int) -> np.ndarray:
    """The 8-bit total pixel matrix: dark noise, brighter where ``label_any`` (1, rows, columns) is set."""
    if label_any.shape != (1, src.rows, src.columns):
        raise ValueError(f"label_any has shape {label_any.shape}, a slide needs (1, {src.rows}, {src.columns})")
    rng = np.random.default_rng([seed, 7919, 0])
    value = rng.normal(_BACKGROUND, _NOISE, (src.rows, src.columns)).astype(np.float32)
    value += np.float32(_SIGNAL) * label_any[0]
    return np.clip(np.rint(value), 0, 255).astype(np.uint8)


def _origin(src: Source) -> tuple[float, float]:
    """X and Y offsets (mm) of the top left pixel: the matrix extends along -X (rows) and -Y (columns)."""
    height = src.rows * src.pixel_spacing[0]
    width = src.columns * src.pixel_spacing[1]
    return _MARGIN_MM + height, _MARGIN_MM + width


def _specimen(ds: Dataset, fp: str) -> None:
    """Specimen module: the slide (container) and the one tissue section on it."""
    ds.ContainerIdentifier = f"D4QI-{fp[:8]}-SLIDE"
    ds.IssuerOfTheContainerIdentifierSequence = Sequence()
    ds.ContainerTypeCodeSequence = Sequence(
        [_item(CodeValue="433466003", CodingSchemeDesignator="SCT", CodeMeaning="Microscope slide")]
    )
    specimen = _item(
        SpecimenIdentifier=f"D4QI-{fp[:8]}-S1",
        SpecimenUID=generate_uid(entropy_srcs=[fp, "specimen"]),
        IssuerOfTheSpecimenIdentifierSequence=Sequence(),
        SpecimenPreparationSequence=Sequence(),
        SpecimenTypeCodeSequence=Sequence(
            [_item(CodeValue="430856003", CodingSchemeDesignator="SCT", CodeMeaning="Tissue section")]
        ),
    )
    ds.SpecimenDescriptionSequence = Sequence([specimen])


def _optical_path(ds: Dataset) -> None:
    """Optical Path module: one epifluorescence path at 488 nm (monochrome: no ICC profile needed)."""
    ds.NumberOfOpticalPaths = 1
    ds.OpticalPathSequence = Sequence(
        [
            _item(
                OpticalPathIdentifier="1",
                OpticalPathDescription="synthetic fluorescence channel",
                IlluminationTypeCodeSequence=Sequence(
                    [
                        _item(
                            CodeValue="111743", CodingSchemeDesignator="DCM", CodeMeaning="Epifluorescence illumination"
                        )
                    ]
                ),
                IlluminationWaveLength=488.0,
            )
        ]
    )


def _slide_image(ds: Dataset, src: Source, uids: dict[str, str]) -> None:
    """Whole Slide Microscopy Image, Multi-frame Dimension and Functional Groups modules."""
    down, across = tile_grid(src.rows, src.columns, src.tile, src.tile)
    ds.ImageType = _FRAME_TYPE
    ds.Rows = ds.Columns = src.tile
    ds.NumberOfFrames = down * across
    ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns = src.rows, src.columns
    ds.TotalPixelMatrixFocalPlanes = 1
    x0, y0 = _origin(src)
    ds.TotalPixelMatrixOriginSequence = Sequence(
        [_item(XOffsetInSlideCoordinateSystem=_ds(x0), YOffsetInSlideCoordinateSystem=_ds(y0))]
    )
    ds.ImageOrientationSlide = [_ds(v) for v in ORIENTATION]
    ds.ImagedVolumeWidth = float(src.columns * src.pixel_spacing[1])
    ds.ImagedVolumeHeight = float(src.rows * src.pixel_spacing[0])
    ds.ImagedVolumeDepth = float(src.slice_spacing * 1000.0)  # micrometres
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.AcquisitionDuration = 0.0
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
    ds.VolumetricProperties = "VOLUME"
    ds.SpecimenLabelInImage = "NO"
    ds.FocusMethod = "AUTO"
    ds.ExtendedDepthOfField = "NO"
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.DimensionOrganizationSequence = Sequence([_item(DimensionOrganizationUID=uids["dimension"])])
    ds.AcquisitionContextSequence = Sequence()
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence(
        [_item(PixelSpacing=[_ds(v) for v in src.pixel_spacing], SliceThickness=_ds(src.slice_spacing))]
    )
    shared.WholeSlideMicroscopyImageFrameTypeSequence = Sequence([_item(FrameType=_FRAME_TYPE)])
    shared.OpticalPathIdentificationSequence = Sequence([_item(OpticalPathIdentifier="1")])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])


def write_slide(
    src: Source, uids: dict[str, str], fp: str, label_any: np.ndarray, seed: int, out: Path
) -> tuple[list[str], list[str]]:
    """Write ``out/source/slide.dcm``; return its file and its one frame key (the total pixel matrix).

    ``label_any`` is (1, rows, columns) uint8: 0 where no segment lies, 1 to 3 elsewhere.
    Everything is derived from the arguments: the same case gives the same bytes.
    """
    sop_uid = uids["sop0"]
    ds = _header(src, VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE, uids, sop_uid, fp)
    ds.PositionReferenceIndicator = "SLIDE_CORNER"
    ds.SeriesDescription = "dicom4qi source slide"
    _slide_image(ds, src, uids)
    _specimen(ds, fp)
    _optical_path(ds)
    ds.PixelData = tiles_of(_matrix(src, label_any, seed), src.tile).tobytes()
    name = "source/slide.dcm"
    (out / "source").mkdir(parents=True, exist_ok=True)
    ds.save_as(out / name, enforce_file_format=True)
    return [name], [frame_key(sop_uid)]
