"""The raw scan of per-frame functional groups gives exactly what pydicom gives, or steps aside."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from dicom4qi.adapters.contract import WriteRequest
from dicom4qi.formats.framescan import scan_per_frame
from dicom4qi.tools.highdicom.producer import HighdicomProducer
from dicom4qi.tools.reference.consumer import frame_refs
from dicom4qi.tools.reference.producer import ReferenceProducer

from .conftest import loaded


def _pydicom_refs(ds: pydicom.Dataset):
    """What the fallback path reads, through pydicom's own parsing of every item."""
    copy = pydicom.dcmread(ds.filename)
    _ = copy.PerFrameFunctionalGroupsSequence  # parse it: the fallback then runs on a Dataset, not raw bytes
    return frame_refs(copy)


@pytest.mark.parametrize(
    ("case_id", "producer"),
    [
        ("quick/binary-3-disjoint", HighdicomProducer),
        ("quick/segments-interleaved", ReferenceProducer),
        ("quick/cine-mr-binary", ReferenceProducer),
        ("quick/projection-dx-binary", ReferenceProducer),
        ("quick/multiframe-enhanced-ct", HighdicomProducer),
    ],
)
def test_scan_matches_pydicom(truth_of, tmp_path: Path, case_id: str, producer) -> None:
    lc = loaded(case_id)
    out = tmp_path / "seg.dcm"
    producer().write(WriteRequest(lc.id, lc.case, truth_of(case_id), out))
    ds = pydicom.dcmread(out)
    raw = ds.get_item(0x52009230)
    fast = scan_per_frame(raw.value)
    assert fast is not None and len(fast) == int(ds.NumberOfFrames)
    slow = _pydicom_refs(ds)
    assert fast == slow
    assert all(s is not None for s in fast.sop_uid)


def test_scan_steps_aside_on_what_it_does_not_parse() -> None:
    assert scan_per_frame(b"\x08\x00\x16\x00UI\x04\x00abcd") is None  # an element outside any item
    assert scan_per_frame(b"\xfe\xff\x00\xe0\xff\xff\xff\xff") is None  # an item never closed
    assert scan_per_frame(b"\xfe\xff\x00\xe0\x10\x00\x00\x00\x62\x00\x0b\x00US") is None  # truncated
