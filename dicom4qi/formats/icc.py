"""An sRGB ICC profile, for colour images the suite's writers produce (PALETTE COLOR label maps).

A PALETTE COLOR Segmentation carries the ICC Profile module (PS3.3 C.11.15, Type 1 ICC Profile): the
profile of the colour space its lookup table is in, which PS3.3 C.11.15.1.1 wants an Input or ColorSpace
profile. Little CMS (through Pillow) builds sRGB as a display ("mntr") profile; its device class is set
to ColorSpace ("spac") and its optional profile ID (an MD5 of the profile) cleared, as ICC.1 allows.
"""

from __future__ import annotations

from functools import cache

__all__ = ["srgb_icc_profile"]


@cache
def srgb_icc_profile() -> bytes:
    """The bytes of an sRGB ICC profile (even length, as a DICOM OB value needs)."""
    from PIL import ImageCms

    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    data[12:16] = b"spac"  # profile/device class (ICC.1 7.2.5)
    data[84:100] = bytes(16)  # profile ID: zero means not computed (ICC.1 7.2.18)
    return bytes(data + b"\x00" if len(data) % 2 else data)
