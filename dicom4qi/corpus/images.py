"""Synthesized source images: a single-frame CT/MR series, one Enhanced CT/MR multi-frame image,
a 2D+T Enhanced MR cine, a 2D projection image (DX, CR) or a tiled whole slide image (SM, in
:mod:`dicom4qi.corpus.slide`).

The pixel data are noise with brighter structures where the truth has segments,
so that a screenshot of a viewer shows something sensible under the SEG.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from dicom4qi.model.case import Source
from dicom4qi.model.decoded import frame_key
from dicom4qi.model.truth import Geometry
from dicom4qi.model.uids import (
    COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
    CT_IMAGE_STORAGE,
    DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    ENHANCED_CT_IMAGE_STORAGE,
    ENHANCED_MR_IMAGE_STORAGE,
    EXPLICIT_VR_LITTLE_ENDIAN,
    MR_IMAGE_STORAGE,
)

__all__ = ["write_decoy_series", "write_source"]

#: Fixed dates keep the synthesized objects reproducible.
DATE, TIME = "20260101", "120000"


def _ds(value: float) -> str:
    return f"{value:.8g}"


def _header(src: Source, sop_class: str, uids: dict[str, str], sop_uid: str, fp: str) -> Dataset:
    """Patient, study, series, frame of reference, equipment and image pixel basics."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_VR_LITTLE_ENDIAN)
    ds.SpecificCharacterSet = "" if src.character_set == "empty" else src.character_set
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.FrameOfReferenceUID = uids["for"]
    ds.PatientName = f"DICOM4QI^{fp[:8]}"
    ds.PatientID = f"D4QI-{fp[:8]}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDateTime = DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = TIME
    ds.AcquisitionDateTime = DATE + TIME
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.StudyDescription = "dicom4qi synthetic study"
    ds.SeriesDescription = "dicom4qi source"
    ds.Modality = src.modality
    ds.Manufacturer = "dicom4qi"
    ds.ManufacturerModelName = "synthetic"
    ds.DeviceSerialNumber = "1"
    ds.SoftwareVersions = "dicom4qi"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.AcquisitionNumber = 1
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = src.rows, src.columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.BurnedInAnnotation = "NO"
    return ds


def _pixels(src: Source, label_any: np.ndarray, seed: int, k: int) -> bytes:
    rng = np.random.default_rng([seed, 7919, k])
    hu = -80 + rng.normal(0, 15, (src.rows, src.columns)) + 60.0 * label_any
    return np.clip(hu + 1024, 0, 65535).astype("<u2").tobytes()


def _single_frame_series(
    src: Source,
    geometry: Geometry,
    uids: dict[str, str],
    fp: str,
    label_any: np.ndarray,
    seed: int,
    out: Path,
    *,
    folder: str = "source",
    series_number: int = 1,
    description: str = "dicom4qi source",
) -> tuple[list[str], list[str]]:
    sop_class = CT_IMAGE_STORAGE if src.modality == "CT" else MR_IMAGE_STORAGE
    files, keys = [], []
    positions = geometry.positions
    assert positions is not None  # CT and MR series lie in patient space
    for k in range(src.frames):
        ds = _header(src, sop_class, uids, uids[f"sop{k}"], fp)
        ds.SeriesNumber = series_number
        ds.SeriesDescription = description
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [_ds(v) for v in positions[k]]
        ds.ImageOrientationPatient = [_ds(v) for v in src.orientation]
        ds.PixelSpacing = [_ds(v) for v in src.pixel_spacing]
        ds.SliceThickness = _ds(src.slice_spacing) if src.slice_thickness else None
        if not src.is_uneven:  # an uneven series has no one spacing to declare
            ds.SpacingBetweenSlices = _ds(src.slice_spacing)
        if src.modality == "CT":
            ds.KVP = "120"
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
            ds.WindowCenter, ds.WindowWidth = "40", "400"
        else:
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
            ds.MRAcquisitionType = "2D"
            ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = "500", "15", "1"
            ds.MagneticFieldStrength = "1.5"
        ds.PixelData = _pixels(src, label_any[k], seed, k)
        name = f"{folder}/{k + 1:04d}.dcm"
        ds.save_as(out / name, enforce_file_format=True)
        files.append(name)
        keys.append(frame_key(ds.SOPInstanceUID))
    return files, keys


def _item(**kw: object) -> Dataset:
    d = Dataset()
    for k, v in kw.items():
        setattr(d, k, v)
    return d


def _enhanced(
    src: Source, geometry: Geometry, uids: dict[str, str], fp: str, label_any: np.ndarray, seed: int, out: Path
) -> tuple[list[str], list[str]]:
    """One Enhanced CT / MR image: shared pixel measures and orientation, a plane position per frame.

    A cine (2D+T) is one plane at successive times: the same plane position on every frame, the
    Temporal Position Index as the dimension, Frame Reference DateTime advancing by ``frame_time``.
    """
    ct = src.modality == "CT"
    cine = src.layout == "cine"
    sop_class = ENHANCED_CT_IMAGE_STORAGE if ct else ENHANCED_MR_IMAGE_STORAGE
    ds = _header(src, sop_class, uids, uids["sop0"], fp)
    ds.NumberOfFrames = src.frames
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ContentQualification = "RESEARCH"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.AcquisitionContextSequence = Sequence()
    if ct:
        ds.KVP = "120"
    else:
        ds.ComplexImageComponent = "MAGNITUDE"
        ds.AcquisitionContrast = "T1"
        ds.MagneticFieldStrength = "1.5"
        ds.ResonantNucleus = "1H"
        ds.ApplicableSafetyStandardAgency = "IEC"
        ds.ImagedNucleus = "1H"
    dim_org = uids["dimension"]
    ds.DimensionOrganizationSequence = Sequence([_item(DimensionOrganizationUID=dim_org)])
    if cine:
        ds.DimensionOrganizationType = "3D_TEMPORAL"
        index = _item(
            DimensionOrganizationUID=dim_org,
            DimensionIndexPointer=0x00209128,  # Temporal Position Index
            FunctionalGroupPointer=0x00209111,  # Frame Content Sequence
            DimensionDescriptionLabel="Temporal Position",
        )
    else:
        ds.DimensionOrganizationType = "3D"
        index = _item(
            DimensionOrganizationUID=dim_org,
            DimensionIndexPointer=0x00209057,  # In-Stack Position Number
            FunctionalGroupPointer=0x00209111,  # Frame Content Sequence
            DimensionDescriptionLabel="In-Stack Position",
        )
    ds.DimensionIndexSequence = Sequence([index])
    if cine:
        ds.NumberOfTemporalPositions = src.frames
    shared = Dataset()
    measures = _item(PixelSpacing=[_ds(v) for v in src.pixel_spacing], SliceThickness=_ds(src.slice_spacing))
    if not (src.is_uneven or cine):
        measures.SpacingBetweenSlices = _ds(src.slice_spacing)
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([_item(ImageOrientationPatient=[_ds(v) for v in src.orientation])])
    shared.FrameVOILUTSequence = Sequence([_item(WindowCenter="40", WindowWidth="400")])
    frame_type = _item(
        FrameType=["ORIGINAL", "PRIMARY", "VOLUME", "NONE"],
        PixelPresentation="MONOCHROME",
        VolumetricProperties="VOLUME",
        VolumeBasedCalculationTechnique="NONE",
    )
    if ct:
        shared.PixelValueTransformationSequence = Sequence(
            [_item(RescaleIntercept="-1024", RescaleSlope="1", RescaleType="HU")]
        )
        shared.CTImageFrameTypeSequence = Sequence([frame_type])
    else:
        frame_type.ComplexImageComponent = "MAGNITUDE"
        frame_type.AcquisitionContrast = "T1"
        shared.MRImageFrameTypeSequence = Sequence([frame_type])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    positions = geometry.positions
    assert positions is not None  # enhanced CT and MR lie in patient space
    for k in range(src.frames):
        fg = Dataset()
        if cine:
            when = _datetime_plus_ms(k * src.frame_time)
            content = _item(
                TemporalPositionIndex=k + 1,
                DimensionIndexValues=[k + 1],
                FrameAcquisitionDateTime=when,
                FrameReferenceDateTime=when,
                FrameAcquisitionDuration=float(src.frame_time),
            )
        else:
            content = _item(
                StackID="1",
                InStackPositionNumber=k + 1,
                DimensionIndexValues=[k + 1],
                FrameAcquisitionDateTime=DATE + TIME,
                FrameReferenceDateTime=DATE + TIME,
                FrameAcquisitionDuration=0.0,
            )
        fg.FrameContentSequence = Sequence([content])
        fg.PlanePositionSequence = Sequence([_item(ImagePositionPatient=[_ds(v) for v in positions[k]])])
        per_frame.append(fg)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = b"".join(_pixels(src, label_any[k], seed, k) for k in range(src.frames))
    name = "source/multiframe.dcm"
    ds.save_as(out / name, enforce_file_format=True)
    return [name], [frame_key(ds.SOPInstanceUID, k + 1) for k in range(src.frames)]


def _datetime_plus_ms(ms: float) -> str:
    """The fixed acquisition date and time plus ``ms`` milliseconds, as a DT value."""
    from datetime import datetime, timedelta

    t = datetime.strptime(DATE + TIME, "%Y%m%d%H%M%S") + timedelta(milliseconds=ms)
    return t.strftime("%Y%m%d%H%M%S.%f")


def _projection(
    src: Source, uids: dict[str, str], fp: str, label_any: np.ndarray, seed: int, out: Path
) -> tuple[list[str], list[str]]:
    """One 2D projection image, DX (for presentation) or CR: no frame of reference, no position."""
    dx = src.modality == "DX"
    sop_class = DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION if dx else COMPUTED_RADIOGRAPHY_IMAGE_STORAGE
    ds = _header(src, sop_class, uids, uids["sop0"], fp)
    del ds.FrameOfReferenceUID
    del ds.PositionReferenceIndicator
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""] if dx else ["ORIGINAL", "PRIMARY"]
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.ImagerPixelSpacing = [_ds(v) for v in src.pixel_spacing]
    ds.PixelSpacing = [_ds(v) for v in src.pixel_spacing]
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    ds.BitsStored, ds.HighBit = 12, 11
    ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
    ds.WindowCenter, ds.WindowWidth = "1024", "2048"
    ds.KVP = "120"
    if dx:
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.RescaleType = "US"
        ds.DetectorType = "DIRECT"
        ds.PresentationLUTShape = "IDENTITY"
        ds.LossyImageCompression = "00"
    rng = np.random.default_rng([seed, 7919, 0])
    value = 900 + rng.normal(0, 40, (src.rows, src.columns)) + 400.0 * label_any[0]
    ds.PixelData = np.clip(value, 0, 4095).astype("<u2").tobytes()
    name = "source/projection.dcm"
    ds.save_as(out / name, enforce_file_format=True)
    return [name], [frame_key(ds.SOPInstanceUID)]


def write_source(
    src: Source, geometry: Geometry, uids: dict[str, str], fp: str, label_any: np.ndarray, seed: int, out: Path
) -> tuple[list[str], list[str]]:
    """Write the source images under ``out/source``; return their files and the frame keys in order.

    Frame keys name what one frame of the truth's grid is: a single-frame instance, frame n of a
    multi-frame instance, or, for a slide, the whole total pixel matrix of the instance.
    """
    (out / "source").mkdir(parents=True, exist_ok=True)
    if src.layout in ("enhanced-multiframe", "cine"):
        return _enhanced(src, geometry, uids, fp, label_any, seed, out)
    if src.layout == "projection":
        return _projection(src, uids, fp, label_any, seed, out)
    if src.layout == "slide-tiled-full":
        from dicom4qi.corpus.slide import write_slide

        return write_slide(src, uids, fp, label_any, seed, out)
    return _single_frame_series(src, geometry, uids, fp, label_any, seed, out)


def write_decoy_series(
    src: Source, geometry: Geometry, uids: dict[str, str], fp: str, label_any: np.ndarray, seed: int, out: Path
) -> tuple[list[str], list[str]]:
    """A second series of the source's study and Frame of Reference under ``out/decoy`` (``uids``: its own
    series and SOP Instance UIDs): Series Number 2, every slice half a spacing further along the normal, so that
    a reader that places the SEG on it (or mixes the two) puts voxels where the truth has none. Returns its files
    and frame keys."""
    assert geometry.positions is not None
    shift = geometry.normal * (geometry.slice_spacing / 2)
    positions = [(float(p[0] + shift[0]), float(p[1] + shift[1]), float(p[2] + shift[2])) for p in geometry.positions]
    (out / "decoy").mkdir(parents=True, exist_ok=True)
    return _single_frame_series(
        src,
        replace(geometry, positions=positions),
        uids,
        fp,
        label_any,
        seed + 1,
        out,
        folder="decoy",
        series_number=2,
        description="dicom4qi decoy series (not referenced by the SEG)",
    )
