"""The shortcuts of the reference decoder's read give exactly what pydicom's own reading gives, or step aside.

- source headers scanned from their bytes (:mod:`dicom4qi.formats.headerscan`) against pydicom's datasets;
- long values left in the SEG's file and viewed through a memory map (:mod:`dicom4qi.formats.mapped`) against
  the same object read whole.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from dicom4qi.adapters.contract import ReadRequest, WriteRequest
from dicom4qi.formats import source_frames
from dicom4qi.formats.headerscan import scan_header
from dicom4qi.formats.source_frames import FrameHeader, SourceFrames, _single_frame_header
from dicom4qi.model.decoded import Decoded
from dicom4qi.tools.highdicom.producer import HighdicomProducer
from dicom4qi.tools.reference import consumer as reference
from dicom4qi.tools.reference.producer import ReferenceProducer

from .conftest import loaded

#: Cases whose sources differ in kind: a CT series, a decoy series beside it, an empty character set, cine MR
#: (one multi-frame file), an enhanced CT, projection radiographs (no patient geometry), a whole slide image.
SOURCE_CASES = [
    "quick/binary-3-disjoint",
    "quick/binary-source-two-series",
    "quick/labelmap-source-empty-charset",
    "quick/cine-mr-binary",
    "quick/multiframe-enhanced-ct",
    "quick/projection-dx-binary",
    "quick/slide-tiled-full-binary",
    "quick/oblique",
]


def _pydicom_header(path: Path) -> FrameHeader | None:
    """What the pydicom path takes from a single-frame image (None for what the scan must leave to it)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1 or "PerFrameFunctionalGroupsSequence" in ds:
        return None
    if "SharedFunctionalGroupsSequence" in ds or "TotalPixelMatrixRows" in ds:
        return None

    def floats(keyword: str) -> list[float] | None:
        return [float(v) for v in ds[keyword].value] if keyword in ds else None

    return FrameHeader(
        str(ds.SOPInstanceUID),
        int(ds.Rows),
        int(ds.Columns),
        floats("ImagePositionPatient"),
        floats("ImageOrientationPatient"),
        floats("PixelSpacing"),
    )


def _same_sources(a: SourceFrames, b: SourceFrames) -> None:
    assert a.keys == b.keys and (a.rows, a.columns) == (b.rows, b.columns) and a.slide == b.slide
    assert a.has_geometry == b.has_geometry and a.pixel_spacing == b.pixel_spacing
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.row_dir, b.row_dir)
    np.testing.assert_array_equal(a.col_dir, b.col_dir)
    assert a.slide_info == b.slide_info


@pytest.mark.parametrize("case_id", SOURCE_CASES)
def test_the_scanned_source_headers_are_pydicoms(truth_of, monkeypatch, case_id: str) -> None:
    paths = truth_of(case_id).reader_source_paths
    scanned = [_single_frame_header(p) for p in paths]
    assert scanned == [_pydicom_header(p) for p in paths]
    fast = SourceFrames(paths)
    monkeypatch.setattr(source_frames, "_single_frame_header", lambda path: None)
    _same_sources(fast, SourceFrames(paths))


def test_a_plain_ct_series_is_scanned_not_parsed(truth_of) -> None:
    """The shortcut is taken where it matters (a series of single-frame files), not only stepped aside from."""
    paths = truth_of("quick/binary-3-disjoint").reader_source_paths
    assert all(_single_frame_header(p) is not None for p in paths)


def _image(**extra: object) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", generate_uid()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, generate_uid()
    ds.ImagePositionPatient = [1.5, -2, 30]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.Rows, ds.Columns, ds.PixelSpacing = 4, 6, [0.5, 0.75]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.SamplesPerPixel, ds.PixelRepresentation = 8, 8, 7, 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(24)
    for k, v in extra.items():
        setattr(ds, k, v)
    return ds


def _save(ds: pydicom.Dataset, path: Path, syntax=None) -> Path:
    if syntax is not None:
        ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=True)
    return path


def test_the_scan_reads_a_plain_image_and_walks_over_sequences(tmp_path: Path) -> None:
    ds = _image()
    item = pydicom.Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "1", "DCM", "x"
    inner = pydicom.Dataset()
    inner.ReferencedSOPInstanceUID = generate_uid()
    item.ReferencedImageSequence = Sequence([inner])  # a nested sequence inside a sequence before the wanted tags
    ds.AnatomicRegionSequence = Sequence([item])
    path = _save(ds, tmp_path / "plain.dcm")
    want = FrameHeader(str(ds.SOPInstanceUID), 4, 6, [1.5, -2.0, 30.0], [1, 0, 0, 0, 1, 0], [0.5, 0.75])
    assert _single_frame_header(path) == want
    scan = scan_header(path, [0x00082218, 0x00280010])
    assert scan is not None and scan.sequences == {0x00082218} and scan.values[0x00280010] == b"\x04\x00"
    # the same sequences and items written with undefined lengths are walked to their delimiters
    ds["AnatomicRegionSequence"].is_undefined_length = True
    item.ReferencedImageSequence[0].is_undefined_length_sequence_item = True
    item["ReferencedImageSequence"].is_undefined_length = True
    item.is_undefined_length_sequence_item = True
    undefined = _save(ds, tmp_path / "undefined.dcm")
    assert undefined.read_bytes().count(b"\xfe\xff\xdd\xe0") == 2  # two sequence delimiters
    assert _single_frame_header(undefined) == want


@pytest.mark.parametrize(
    ("what", "make"),
    [
        ("implicit VR", lambda ds, p: _save(ds, p, ImplicitVRLittleEndian)),
        ("big endian", lambda ds, p: _save(ds, p, ExplicitVRBigEndian)),
        ("no preamble", lambda ds, p: p.write_bytes(_save(ds, p).read_bytes()[132:]) and p),
        ("truncated", lambda ds, p: p.write_bytes(_save(ds, p).read_bytes()[:200]) and p),
        ("empty file", lambda ds, p: p.write_bytes(b"") or p),
        ("multi-frame", lambda ds, p: _save(_image(NumberOfFrames=2, PixelData=bytes(48)), p)),
        ("empty position", lambda ds, p: _save(_image(ImagePositionPatient=None), p)),
        ("two numbers for a position", lambda ds, p: _save(_image(ImagePositionPatient=[1, 2]), p)),
        ("no SOP Instance UID", lambda ds, p: _save(_image(SOPInstanceUID=""), p)),
        ("shared functional groups", lambda ds, p: _save(_image(SharedFunctionalGroupsSequence=Sequence([])), p)),
    ],
)
def test_the_scan_steps_aside_for_pydicom(tmp_path: Path, what: str, make) -> None:
    path = make(_image(), tmp_path / "x.dcm")
    assert _single_frame_header(path) is None, what


def test_an_unusual_source_still_reads_through_pydicom(tmp_path: Path) -> None:
    plain = _save(_image(), tmp_path / "a.dcm")
    implicit = _save(_image(), tmp_path / "b.dcm", ImplicitVRLittleEndian)
    src = SourceFrames([plain, implicit])
    assert len(src.keys) == 2 and src.has_geometry and src.pixel_spacing == [0.5, 0.75]


#: Objects the reference decoder reads through the map and whole: BINARY native (packed rows and not), label
#: maps native and compressed, FRACTIONAL, a slide.
DEFER_CASES = [
    ("quick/binary-3-disjoint", HighdicomProducer),
    ("quick/binary-unaligned-23x38", ReferenceProducer),
    ("quick/labelmap-8bit", HighdicomProducer),
    ("quick/labelmap-16bit-jpegls", HighdicomProducer),
    ("quick/labelmap-8bit-rle", HighdicomProducer),
    ("quick/fractional", HighdicomProducer),
    ("quick/slide-tiled-full-binary", HighdicomProducer),
    ("quick/binary-deflate", ReferenceProducer),  # value offsets are the inflated stream's, not the file's
    ("quick/labelmap-8bit-deflate", ReferenceProducer),
    ("quick/binary-explicit-be", ReferenceProducer),
    ("quick/labelmap-16bit-explicit-be", ReferenceProducer),
    ("quick/binary-implicit-vr", ReferenceProducer),
]


@pytest.mark.parametrize(("case_id", "producer"), DEFER_CASES)
def test_values_left_in_the_file_decode_as_values_read(
    truth_of, tmp_path: Path, monkeypatch, case_id, producer
) -> None:
    lc, truth = loaded(case_id), truth_of(case_id)
    seg = tmp_path / "seg.dcm"
    producer().write(WriteRequest(lc.id, lc.case, truth, seg))
    decoded: dict[int, Decoded] = {}
    viewed: dict[int, int] = {}
    real_value = reference.MappedFile.value

    def value(self, ds, tag):
        view = real_value(self, ds, tag)
        viewed[defer] = viewed.get(defer, 0) + (view is not None)
        return view

    monkeypatch.setattr(reference.MappedFile, "value", value)
    for defer in (16, 1 << 40):  # every long value in the file / none
        monkeypatch.setattr(reference, "DEFER_BYTES", defer)
        out = tmp_path / f"out-{defer}.npz"
        req = ReadRequest(seg=seg, sources=truth.reader_source_paths, workdir=tmp_path)
        reference.ReferenceConsumer().read(req).write(out)
        decoded[defer] = Decoded(out)
    if "deflate" in case_id:  # offsets into the inflated data set: never read from the file's map
        assert not any(viewed.values())
    else:
        assert viewed.get(16, 0) > 0 and viewed.get(1 << 40, 0) == 0  # the map was read from, then not at all
    a, b = decoded[16], decoded[1 << 40]
    assert a.segments == b.segments and a.numbers_with_pixels == b.numbers_with_pixels and a.numbers_with_pixels
    for number in a.numbers_with_pixels:
        ca, cb = a.pixels(number), b.pixels(number)
        assert ca is not None and cb is not None and ca.offset == cb.offset
        np.testing.assert_array_equal(ca.data, cb.data)


def test_a_deflated_data_set_is_never_read_through_the_map(tmp_path: Path) -> None:
    """Its value offsets are into the inflated stream; random pixels make the file as long as the stream, so only
    the transfer syntax can tell the map's bytes from the value's."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from dicom4qi.formats.mapped import PIXEL_DATA, MappedFile

    pixels = np.random.default_rng(1).integers(0, 256, 4 * 64 * 64, dtype=np.uint8).tobytes()
    ds = _image(Rows=64, Columns=64, NumberOfFrames=4, PixelData=pixels)
    plain, deflated = _save(ds, tmp_path / "plain.dcm"), _save(ds, tmp_path / "deflated.dcm")
    _save(pydicom.dcmread(plain), deflated, DeflatedExplicitVRLittleEndian)
    for path, mapped_ok in ((plain, True), (deflated, False)):
        read = pydicom.dcmread(path, defer_size=16)
        view = MappedFile(path).value(read, PIXEL_DATA)
        assert (view is not None) is mapped_ok
        assert bytes(view) == pixels if view is not None else read.PixelData == pixels
