"""The header modules of the reference producer's object, and the pydicom items and codes they are built of.

The modules: Patient and General Study (copied from the source), General Series,
Segmentation Series, Frame of Reference (only when the source has one), General
and Enhanced General Equipment, General Image, Image Pixel, Segmentation Image
(with the Segment Sequence), Common Instance Reference, SOP Common (Specific
Character Set ISO_IR 192). The functional groups and the Multi-frame Dimension
module are in :mod:`dicom4qi.tools.reference.frames`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dicom4qi.model.case import Encoding, SegmentationType
from dicom4qi.model.segment import Code, Segment
from dicom4qi.model.truth import Truth
from dicom4qi.tools.reference.sources import SourceInfo

__all__ = [
    "Identity",
    "common_instance_reference",
    "image_pixel_segmentation",
    "make_code",
    "make_item",
    "make_seq",
    "patient_study",
    "rgb_to_dicom_lab",
    "segment_item",
    "series_equipment_image",
]

#: (value, scheme, meaning) of the Algorithm Family of a segment that is not MANUAL.
_ALGORITHM_FAMILY = ("123110", "DCM", "Artificial Intelligence")


def make_item(**attributes: Any) -> Any:
    """A data set (a sequence item) with the attributes given by keyword, in that order."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def make_seq(*items: Any) -> Any:
    """A sequence of the items given."""
    from pydicom.sequence import Sequence

    return Sequence(list(items))


def make_code(value: str, scheme: str, meaning: str) -> Any:
    """A code sequence item (Code Value, Coding Scheme Designator, Code Meaning)."""
    return make_item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def _code_of(c: Code) -> Any:
    return make_code(c["value"], c["scheme"], c["meaning"])


#: sRGB (linear) to CIE XYZ, and the D65 white point.
_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_D65 = np.array([0.95047, 1.0, 1.08883])


def rgb_to_dicom_lab(rgb: tuple[int, int, int]) -> list[int]:
    """8-bit sRGB to DICOM scaled CIELab (PS3.3 C.10.7.1.1: L* 0-100, a* b* -128-127, on 0-65535)."""
    c = np.clip(np.asarray(rgb, dtype=float) / 255.0, 0.0, 1.0)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    t = (_RGB_TO_XYZ @ linear) / _D65
    delta = 6.0 / 29.0
    f = np.where(t > delta**3, np.cbrt(t), t / (3 * delta**2) + 4.0 / 29.0)
    lightness, a_star, b_star = 116.0 * f[1] - 16.0, 500.0 * (f[0] - f[1]), 200.0 * (f[1] - f[2])
    return [
        round(float(np.clip(lightness, 0, 100)) * 65535 / 100),
        round((float(np.clip(a_star, -128, 127)) + 128) * 65535 / 255),
        round((float(np.clip(b_star, -128, 127)) + 128) * 65535 / 255),
    ]


def segment_item(info: Segment, colour: bool = True) -> Any:
    """One Segment Sequence item (Segment Description Macro, PS3.3 C.8.20.2); ``colour``: its Recommended
    Display CIELab Value (not in a PALETTE COLOR label map, whose lookup table gives the colours)."""
    item = make_item(SegmentNumber=info.number, SegmentLabel=info.label)
    if info.description:
        item.SegmentDescription = info.description
    item.SegmentAlgorithmType = info.algorithm_type
    if info.algorithm_type != "MANUAL":
        item.SegmentAlgorithmName = info.algorithm_name
        algorithm = make_item(
            AlgorithmFamilyCodeSequence=make_seq(make_code(*_ALGORITHM_FAMILY)),
            AlgorithmName=info.algorithm_name,
            AlgorithmVersion=info.algorithm_version,
        )
        item.SegmentationAlgorithmIdentificationSequence = make_seq(algorithm)
    assert info.category is not None and info.type is not None  # the truth always has them
    item.SegmentedPropertyCategoryCodeSequence = make_seq(_code_of(info.category))
    prop = _code_of(info.type)
    if info.type_modifier:
        prop.SegmentedPropertyTypeModifierCodeSequence = make_seq(_code_of(info.type_modifier))
    item.SegmentedPropertyTypeCodeSequence = make_seq(prop)
    if info.anatomic_region:
        region = _code_of(info.anatomic_region)
        if info.anatomic_region_modifier:
            region.AnatomicRegionModifierSequence = make_seq(_code_of(info.anatomic_region_modifier))
        item.AnatomicRegionSequence = make_seq(region)
    if info.tracking_id:
        item.TrackingID = info.tracking_id
    if info.tracking_uid:
        item.TrackingUID = info.tracking_uid
    if info.color_rgb and colour:
        item.RecommendedDisplayCIELabValue = rgb_to_dicom_lab(info.color_rgb)
    return item


def _copy(target: Any, source: Any, keywords: tuple[str, ...], *, empty_if_absent: bool) -> None:
    for keyword in keywords:
        if keyword in source:
            setattr(target, keyword, source[keyword].value)
        elif empty_if_absent:
            setattr(target, keyword, "")


def patient_study(ds: Any, src: Any) -> None:
    """Patient and General Study modules, copied from the source."""
    _copy(ds, src, ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"), empty_if_absent=True)
    _copy(
        ds,
        src,
        ("StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"),
        empty_if_absent=True,
    )
    _copy(ds, src, ("IssuerOfPatientID", "PatientAge", "StudyDescription"), empty_if_absent=False)
    ds.StudyInstanceUID = src.StudyInstanceUID


@dataclass(frozen=True)
class Identity:
    """The new object's UIDs, dates and names."""

    sop_instance_uid: str
    series_uid: str
    dimension_uid: str
    date: str
    time: str
    series_description: str
    software: list[str]
    #: Instance Number: 1, or the instance's place in a segmentation delivered in several.
    instance_number: int = 1


def series_equipment_image(ds: Any, who: Identity, source: SourceInfo) -> None:
    """General and Segmentation Series, Frame of Reference, equipment, General Image, SOP Common."""
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.Modality = "SEG"
    ds.SeriesInstanceUID = who.series_uid
    ds.SeriesNumber = 900
    ds.SeriesDescription = who.series_description
    ds.SeriesDate, ds.SeriesTime = who.date, who.time
    src = source.header
    if "FrameOfReferenceUID" in src:
        ds.FrameOfReferenceUID = src.FrameOfReferenceUID
        ds.PositionReferenceIndicator = src.get("PositionReferenceIndicator", "")
    ds.Manufacturer = "dicom4qi"
    ds.ManufacturerModelName = "reference producer"
    ds.DeviceSerialNumber = "1"
    ds.SoftwareVersions = who.software
    ds.InstanceNumber = who.instance_number
    ds.ContentDate, ds.ContentTime = who.date, who.time
    ds.InstanceCreationDate, ds.InstanceCreationTime = who.date, who.time
    if source.orientation is None and "PatientOrientation" in src:
        ds.PatientOrientation = src.PatientOrientation  # General Image 2C: no Image Orientation (Patient)
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.LossyImageCompression = "00"


def image_pixel_segmentation(ds: Any, truth: Truth, enc: Encoding, n_frames: int) -> None:
    """Image Pixel and Segmentation Image modules, with the Segment Sequence."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = truth.geometry.rows, truth.geometry.columns
    ds.NumberOfFrames = n_frames
    ds.BitsAllocated = ds.BitsStored = enc.bits
    ds.HighBit = enc.bits - 1
    ds.PixelRepresentation = 0
    ds.ContentLabel = "SEGMENTATION"
    ds.ContentDescription = "dicom4qi reference producer"
    ds.ContentCreatorName = ""
    ds.SegmentationType = enc.type.value
    if enc.type is SegmentationType.FRACTIONAL:
        ds.SegmentationFractionalType = enc.fractional_type
        ds.MaximumFractionalValue = truth.fractional_max
    if enc.type is SegmentationType.LABELMAP:
        ds.PixelPaddingValue = 0
        if enc.photometric == "PALETTE COLOR":
            palette_color_lut(ds, truth, enc.bits)
    ds.SegmentsOverlap = "YES" if truth.overlap else "NO"
    colour = enc.photometric != "PALETTE COLOR"
    ds.SegmentSequence = make_seq(*(segment_item(s, colour) for s in sorted(truth.segments, key=lambda s: s.number)))


def palette_color_lut(ds: Any, truth: Truth, bits: int) -> None:
    """PALETTE COLOR with a Palette Color Lookup Table: 0 black, each segment number its display colour.

    16-bit entries (descriptor third value 16), one entry per label from 0 to the highest segment number:
    the unambiguous form of PS3.3 C.7.6.3.1.5-6 (8-bit entries are packed two to a word, a classic
    source of reader bugs).
    """
    import numpy as np

    from dicom4qi.formats.icc import srgb_icc_profile

    top = max(s.number for s in truth.segments)
    lut = np.zeros((top + 1, 3), dtype=np.uint16)
    for s in truth.segments:
        if s.color_rgb is not None:
            lut[s.number] = [c * 257 for c in s.color_rgb]
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.add_new(0x00282000, "OB", srgb_icc_profile())  # ICC Profile module: the LUT's colours are sRGB
    ds.ColorSpace = "SRGB"
    descriptor = [top + 1 if top + 1 < 65536 else 0, 0, 16]
    for i, name in enumerate(("Red", "Green", "Blue")):
        ds.add_new(_PALETTE_DESCRIPTOR[name], "US", descriptor)
        ds.add_new(_PALETTE_DATA[name], "OW", np.ascontiguousarray(lut[:, i], dtype="<u2").tobytes())


#: Red, Green and Blue Palette Color Lookup Table Descriptor (0028,1101-1103) and Data (0028,1201-1203).
_PALETTE_DESCRIPTOR = {"Red": 0x00281101, "Green": 0x00281102, "Blue": 0x00281103}
_PALETTE_DATA = {"Red": 0x00281201, "Green": 0x00281202, "Blue": 0x00281203}


def common_instance_reference(source: SourceInfo, used: set[int] | None = None) -> Any:
    """Referenced Series Sequence: every source instance, by series (``used``: only those of these frames)."""
    series: dict[str, dict[str, str]] = {}
    for k, f in enumerate(source.frames):
        if used is None or k in used:
            series.setdefault(f.series_uid, {})[f.sop_instance_uid] = f.sop_class_uid
    return make_seq(
        *(
            make_item(
                SeriesInstanceUID=uid,
                ReferencedInstanceSequence=make_seq(
                    *(make_item(ReferencedSOPClassUID=c, ReferencedSOPInstanceUID=i) for i, c in instances.items())
                ),
            )
            for uid, instances in series.items()
        )
    )
