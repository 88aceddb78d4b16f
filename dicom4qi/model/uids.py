"""The DICOM UIDs the suite speaks, in one place: SOP Classes (PS3.4, registry in PS3.6 Annex A) and transfer
syntaxes (PS3.5 Chapter 10), named after their PS3.6 names.

Plain strings: pydicom turns them into ``UID`` objects where it needs them. The suite's own maps of UIDs (which
class is which kind of SEG, what a transfer syntax is called) live here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = [
    "COMPUTED_RADIOGRAPHY_IMAGE_STORAGE",
    "CT_IMAGE_STORAGE",
    "DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN",
    "DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION",
    "ENHANCED_CT_IMAGE_STORAGE",
    "ENHANCED_MR_IMAGE_STORAGE",
    "EXPLICIT_VR_BIG_ENDIAN",
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "IMPLICIT_VR_LITTLE_ENDIAN",
    "JPEG_2000_LOSSLESS",
    "JPEG_LS_LOSSLESS",
    "LABEL_MAP_SEGMENTATION_STORAGE",
    "MR_IMAGE_STORAGE",
    "RLE_LOSSLESS",
    "SEGMENTATION_CLASSES",
    "SEGMENTATION_STORAGE",
    "TRANSFER_SYNTAX_NAMES",
    "VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE",
]

# --------------------------------------------------------------------------- SOP Classes: segmentations

#: Segmentation Storage (PS3.3 A.51 Segmentation IOD: BINARY, FRACTIONAL).
SEGMENTATION_STORAGE: Final[str] = "1.2.840.10008.5.1.4.1.1.66.4"
#: Label Map Segmentation Storage (Sup 243 Label Map Segmentation IOD: LABELMAP).
LABEL_MAP_SEGMENTATION_STORAGE: Final[str] = "1.2.840.10008.5.1.4.1.1.66.7"

#: The SOP Classes of DICOM SEG, with the kind of object each holds.
SEGMENTATION_CLASSES: Final[Mapping[str, str]] = {
    SEGMENTATION_STORAGE: "SEG",
    LABEL_MAP_SEGMENTATION_STORAGE: "LABELMAP",
}

# --------------------------------------------------------------------------- SOP Classes: sources

#: CT Image Storage.
CT_IMAGE_STORAGE: Final[str] = "1.2.840.10008.5.1.4.1.1.2"
#: Enhanced CT Image Storage.
ENHANCED_CT_IMAGE_STORAGE: Final[str] = "1.2.840.10008.5.1.4.1.1.2.1"
#: MR Image Storage.
MR_IMAGE_STORAGE: Final[str] = "1.2.840.10008.5.1.4.1.1.4"
#: Enhanced MR Image Storage.
ENHANCED_MR_IMAGE_STORAGE: Final[str] = "1.2.840.10008.5.1.4.1.1.4.1"
#: Computed Radiography Image Storage.
COMPUTED_RADIOGRAPHY_IMAGE_STORAGE: Final[str] = "1.2.840.10008.5.1.4.1.1.1"
#: Digital X-Ray Image Storage - For Presentation.
DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION: Final[str] = "1.2.840.10008.5.1.4.1.1.1.1"
#: VL Whole Slide Microscopy Image Storage.
VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE: Final[str] = "1.2.840.10008.5.1.4.1.1.77.1.6"

# --------------------------------------------------------------------------- transfer syntaxes

#: Implicit VR Little Endian: Default Transfer Syntax for DICOM.
IMPLICIT_VR_LITTLE_ENDIAN: Final[str] = "1.2.840.10008.1.2"
#: Explicit VR Little Endian.
EXPLICIT_VR_LITTLE_ENDIAN: Final[str] = "1.2.840.10008.1.2.1"
#: Explicit VR Big Endian (retired, PS3.5 A.3): SEG objects in it exist.
EXPLICIT_VR_BIG_ENDIAN: Final[str] = "1.2.840.10008.1.2.2"
#: Deflated Explicit VR Little Endian.
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: Final[str] = "1.2.840.10008.1.2.1.99"
#: RLE Lossless (PS3.5 Annex G).
RLE_LOSSLESS: Final[str] = "1.2.840.10008.1.2.5"
#: JPEG 2000 Image Compression (Lossless Only).
JPEG_2000_LOSSLESS: Final[str] = "1.2.840.10008.1.2.4.90"
#: JPEG-LS Lossless Image Compression.
JPEG_LS_LOSSLESS: Final[str] = "1.2.840.10008.1.2.4.80"

#: The transfer syntaxes above, with their PS3.6 names (Implicit VR Little Endian without its "Default Transfer Syntax").
TRANSFER_SYNTAX_NAMES: Final[Mapping[str, str]] = {
    IMPLICIT_VR_LITTLE_ENDIAN: "Implicit VR Little Endian",
    EXPLICIT_VR_LITTLE_ENDIAN: "Explicit VR Little Endian",
    EXPLICIT_VR_BIG_ENDIAN: "Explicit VR Big Endian",
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: "Deflated Explicit VR Little Endian",
    RLE_LOSSLESS: "RLE Lossless",
    JPEG_2000_LOSSLESS: "JPEG 2000 Image Compression (Lossless Only)",
    JPEG_LS_LOSSLESS: "JPEG-LS Lossless Image Compression",
}
