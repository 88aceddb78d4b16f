"""Synthesized source images: a single-frame CT/MR series or one Enhanced CT/MR multi-frame image.

The pixel data are noise with brighter structures where the truth has segments,
so that a screenshot of a viewer shows something sensible under the SEG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
)

from conformance.case import Source
from conformance.decoded import frame_key
from conformance.truth import Geometry

__all__ = ["write_source"]

#: Fixed dates keep the synthesized objects reproducible.
DATE, TIME = "20260101", "120000"


def _ds(value: float) -> str:
    return f"{value:.8g}"


def _header(src: Source, sop_class: str, uids: dict[str, str], sop_uid: str, fp: str) -> Dataset:
    """Patient, study, series, frame of reference, equipment and image pixel basics."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
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
    src: Source, geometry: Geometry, uids: dict[str, str], fp: str, label_any: np.ndarray, seed: int, out: Path
) -> tuple[list[str], list[str]]:
    sop_class = CTImageStorage if src.modality == "CT" else MRImageStorage
    files, keys = [], []
    for k in range(src.frames):
        ds = _header(src, sop_class, uids, uids[f"sop{k}"], fp)
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [_ds(v) for v in geometry.positions[k]]
        ds.ImageOrientationPatient = [_ds(v) for v in src.orientation]
        ds.PixelSpacing = [_ds(v) for v in src.pixel_spacing]
        ds.SliceThickness = _ds(src.slice_spacing)
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
        name = f"source/{k + 1:04d}.dcm"
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
    """One Enhanced CT / MR image: shared pixel measures and orientation, a plane position per frame."""
    ct = src.modality == "CT"
    sop_class = EnhancedCTImageStorage if ct else EnhancedMRImageStorage
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
    ds.DimensionOrganizationType = "3D"
    ds.DimensionIndexSequence = Sequence(
        [
            _item(
                DimensionOrganizationUID=dim_org,
                DimensionIndexPointer=0x00209057,  # In-Stack Position Number
                FunctionalGroupPointer=0x00209111,  # Frame Content Sequence
                DimensionDescriptionLabel="In-Stack Position",
            )
        ]
    )
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence(
        [_item(PixelSpacing=[_ds(v) for v in src.pixel_spacing], SliceThickness=_ds(src.slice_spacing),
               SpacingBetweenSlices=_ds(src.slice_spacing))]
    )
    shared.PlaneOrientationSequence = Sequence([_item(ImageOrientationPatient=[_ds(v) for v in src.orientation])])
    shared.FrameVOILUTSequence = Sequence([_item(WindowCenter="40", WindowWidth="400")])
    frame_type = _item(
        FrameType=["ORIGINAL", "PRIMARY", "VOLUME", "NONE"], PixelPresentation="MONOCHROME",
        VolumetricProperties="VOLUME", VolumeBasedCalculationTechnique="NONE",
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
    for k in range(src.frames):
        fg = Dataset()
        fg.FrameContentSequence = Sequence(
            [_item(StackID="1", InStackPositionNumber=k + 1, DimensionIndexValues=[k + 1],
                   FrameAcquisitionDateTime=DATE + TIME, FrameReferenceDateTime=DATE + TIME,
                   FrameAcquisitionDuration=0.0)]
        )
        fg.PlanePositionSequence = Sequence([_item(ImagePositionPatient=[_ds(v) for v in geometry.positions[k]])])
        per_frame.append(fg)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = b"".join(_pixels(src, label_any[k], seed, k) for k in range(src.frames))
    name = "source/multiframe.dcm"
    ds.save_as(out / name, enforce_file_format=True)
    return [name], [frame_key(ds.SOPInstanceUID, k + 1) for k in range(src.frames)]


def write_source(
    src: Source, geometry: Geometry, uids: dict[str, str], fp: str, label_any: np.ndarray, seed: int, out: Path
) -> tuple[list[str], list[str]]:
    """Write the source images under ``out/source``; return their files and the frame keys in order."""
    (out / "source").mkdir(parents=True, exist_ok=True)
    if src.layout == "enhanced-multiframe":
        return _enhanced(src, geometry, uids, fp, label_any, seed, out)
    return _single_frame_series(src, geometry, uids, fp, label_any, seed, out)
