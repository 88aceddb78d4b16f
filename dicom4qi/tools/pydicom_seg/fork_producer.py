"""Producer ``pydicom-seg-rb``: the fork's ``MultiClassWriter``, called as for pydicom-seg, with the same claims."""

from __future__ import annotations

from typing import ClassVar

from dicom4qi.tools.pydicom_seg.producer import PydicomSegProducer

__all__ = ["PydicomSegRbProducer"]


class PydicomSegRbProducer(PydicomSegProducer):
    name = "pydicom-seg-rb"
    preload = ("pydicom_seg_rb", "pydicom_seg_rb.template", "SimpleITK")
    tool = "pydicom-seg-rb"
    homepage = "https://github.com/pritamrungta/pydicom-seg-rb"
    requirements = None  # pydicom 3 and numpy 2: the suite's own environment
    module: ClassVar[str] = "pydicom_seg_rb"
    distribution: ClassVar[str] = "pydicom-seg-rb"
