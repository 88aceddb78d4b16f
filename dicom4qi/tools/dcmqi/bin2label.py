"""Producer ``dcmqi-bin2label``: Label Map Segmentations made by dcmqi's ``bin2labelsegimage`` (PyPI ``dcmqi``).

``itkimage2segimage`` writes the case as a BINARY SEG first (as the ``dcmqi`` producer does), then
``bin2labelsegimage --inputDICOM binary.dcm --outputDICOM seg.dcm`` converts it, with ``--compress
none|rle|deflate`` for the transfer syntax, ``--force16Bit`` for 16-bit cases and ``--usePalette`` for PALETTE
COLOR. Every command run is in the notes. What the converter cannot write (BINARY, FRACTIONAL, JPEG 2000, JPEG-LS,
overlaps, several instances) is not claimed.
"""

from __future__ import annotations

from dicom4qi.adapters.contract import WriteRequest
from dicom4qi.tools.dcmqi.producer import DcmqiProducer

__all__ = ["DcmqiBin2LabelProducer"]


class DcmqiBin2LabelProducer(DcmqiProducer):
    name = "dcmqi-bin2label"
    tool = "dcmqi bin2labelsegimage"
    features = frozenset(
        {
            "labelmap",
            "labelmap-8bit",
            "labelmap-16bit",
            "labelmap-palette",
            "disjoint",
            "empty-frames",
            "oblique",
            "many-segments",
            "single-frame-source",
            "source-default-charset",
            "source-no-slice-thickness",
            "source-two-series",
            "segment-metadata",
            "non-ascii-text",
            "long-text",
            "anatomic-region",
            "multiple-algorithms",
            "ts-explicit-le",
            "ts-deflate",
            "ts-rle",
        }
    )
    # Not claimed: labelmap-sparse-numbers and empty-segment. itkimage2segimage, the first step, refuses label
    # numbers that do not run 1, 2, 3... ("Cannot sort segments by label, because the label numbers are not
    # monotonically increasing"): the dcmqi producer's row shows that fault (known issue dcmqi-write-empty-segment);
    # this row is about what bin2labelsegimage makes of a BINARY SEG.
    unsupported_combinations = ()

    def via_bin2label(self, request: WriteRequest) -> bool:
        return True

    def bin2label_options(self, request: WriteRequest) -> list[str]:
        out = super().bin2label_options(request)
        if request.case.encoding.photometric == "PALETTE COLOR":
            out.append("--usePalette")
        return out
