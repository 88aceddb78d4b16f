"""Consumer ``pydicom-seg-rb``: the fork's ``MultiClassReader`` and ``SegmentReader``, called as for pydicom-seg.

It votes with pydicom-seg (family ``pydicom-seg``): the same decoding code, forked.
"""

from __future__ import annotations

from typing import ClassVar

from dicom4qi.tools.pydicom_seg.consumer import PydicomSegConsumer

__all__ = ["PydicomSegRbConsumer"]


class PydicomSegRbConsumer(PydicomSegConsumer):
    name = "pydicom-seg-rb"
    preload = ("pydicom_seg_rb", "pydicom_seg_rb.reader")
    tool = "pydicom-seg-rb"
    homepage = "https://github.com/pritamrungta/pydicom-seg-rb"
    family = "pydicom-seg"
    requirements = None  # pydicom 3 and numpy 2: the suite's own environment
    module: ClassVar[str] = "pydicom_seg_rb"
    distribution: ClassVar[str] = "pydicom-seg-rb"
