"""DICOM Recommended Display CIELab values to RGB (D65, sRGB), for consumers that report colours."""

from __future__ import annotations

import numpy as np

__all__ = ["dicom_lab_to_rgb"]

_WHITE = np.array([0.95047, 1.0, 1.08883])
_XYZ_TO_RGB = np.array(
    [[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560], [0.0556434, -0.2040259, 1.0572252]]
)


def dicom_lab_to_rgb(value: list[int] | tuple[int, ...]) -> tuple[int, int, int]:
    """Scaled CIELab (PS3.3 C.10.7.1.1: L 0-100, a and b -128-127 on 0-65535) to 8-bit sRGB, clipped."""
    l_star = value[0] * 100.0 / 65535.0
    a_star = value[1] * 255.0 / 65535.0 - 128.0
    b_star = value[2] * 255.0 / 65535.0 - 128.0
    fy = (l_star + 16.0) / 116.0
    f = np.array([fy + a_star / 500.0, fy, fy - b_star / 200.0])
    delta = 6.0 / 29.0
    xyz = np.where(f > delta, f**3, 3 * delta**2 * (f - 4.0 / 29.0)) * _WHITE
    lin = _XYZ_TO_RGB @ xyz
    srgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * np.power(np.clip(lin, 0, None), 1 / 2.4) - 0.055)
    r, g, b = (int(round(float(v))) for v in np.clip(srgb, 0.0, 1.0) * 255.0)
    return (r, g, b)
