"""Truth synthesis: deterministic, and exactly what the case asks for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from dicom4qi.corpus.synth import build_case, synthesize_masks
from dicom4qi.model.masks import labelmap_from_crops

from .conftest import loaded


def _crops(case_id: str) -> dict:
    return synthesize_masks(loaded(case_id).case)


def test_truth_and_uids_are_deterministic(tmp_path: Path) -> None:
    a = build_case(loaded("quick/binary-3-disjoint"), tmp_path / "a")
    b = build_case(loaded("quick/binary-3-disjoint"), tmp_path / "b")
    assert a.frame_keys == b.frame_keys and a.study_uid == b.study_uid
    with a.masks() as ma, b.masks() as mb:
        assert ma.numbers == mb.numbers == [1, 2, 3]
        for n in ma.numbers:
            ca, cb = ma.get(n), mb.get(n)
            assert ca is not None and cb is not None
            assert ca.offset == cb.offset and np.array_equal(ca.data, cb.data)
    # the source pixels too, byte for byte
    for pa, pb in zip(a.source_paths, b.source_paths):
        assert pa.read_bytes() == pb.read_bytes()


def test_build_is_cached(tmp_path: Path) -> None:
    first = build_case(loaded("quick/binary-3-disjoint"), tmp_path)
    stamp = (first.directory / "truth.npz").stat().st_mtime_ns
    again = build_case(loaded("quick/binary-3-disjoint"), tmp_path)
    assert (again.directory / "truth.npz").stat().st_mtime_ns == stamp


def test_other_seed_other_truth() -> None:
    case = loaded("quick/binary-3-disjoint").case
    other = case.model_copy(update={"segments": case.segments.model_copy(update={"seed": 2})})
    a, b = synthesize_masks(case), synthesize_masks(other)
    assert any(a[n].offset != b[n].offset or a[n].data.shape != b[n].data.shape for n in a)


def test_blobs_are_disjoint_and_every_segment_has_voxels() -> None:
    crops = _crops("quick/labelmap-16bit-300")
    assert sorted(crops) == list(range(1, 301))
    case = loaded("quick/labelmap-16bit-300").case
    shape = (case.source.frames, case.source.rows, case.source.columns)
    total = sum(c.voxels for c in crops.values())
    assert np.count_nonzero(labelmap_from_crops(crops, shape)) == total  # no voxel painted twice


def test_overlap_case_overlaps_and_fractional_values_are_steps() -> None:
    crops = _crops("quick/binary-overlap")
    case = loaded("quick/binary-overlap").case
    shape = (case.source.frames, case.source.rows, case.source.columns)
    count = np.zeros(shape, dtype=np.uint8)
    for c in crops.values():
        (z0, y0, x0), (z1, y1, x1) = c.offset, c.stop
        count[z0:z1, y0:y1, x0:x1] += c.data
    assert count.max() >= 2
    frac = _crops("quick/fractional")
    values = np.unique(np.concatenate([c.data.ravel() for c in frac.values()]))
    assert values.dtype == np.uint8 and values.max() == 255 and len(values) > 10


def test_empty_segment_and_gap() -> None:
    crops = _crops("quick/empty-segment")
    assert 3 not in crops and sorted(crops) == [1, 2, 4]
    gap = _crops("quick/empty-frames-middle")[2]
    per_frame = gap.data.any(axis=(1, 2))
    inner = np.flatnonzero(~per_frame)
    assert per_frame[0] and per_frame[-1] and len(inner) == 1


def test_source_series_geometry(truth_of) -> None:
    truth = truth_of("quick/oblique")
    first, second = (pydicom.dcmread(p) for p in truth.source_paths[:2])
    iop = np.array(first.ImageOrientationPatient, dtype=float)
    step = np.array(second.ImagePositionPatient, dtype=float) - np.array(first.ImagePositionPatient, dtype=float)
    assert np.allclose(step, np.cross(iop[:3], iop[3:]) * 3.3, atol=1e-4)
    assert first.Modality == "MR" and first.FrameOfReferenceUID == truth.frame_of_reference_uid
    assert first.pixel_array.shape == (48, 64)


def test_enhanced_multiframe_source(truth_of) -> None:
    truth = truth_of("quick/multiframe-enhanced-mr-labelmap")
    (path,) = truth.source_paths
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4.1" and int(ds.NumberOfFrames) == 18
    assert truth.frame_keys == [f"{ds.SOPInstanceUID}#{n}" for n in range(1, 19)]
    positions = [
        [float(v) for v in fg.PlanePositionSequence[0].ImagePositionPatient]
        for fg in ds.PerFrameFunctionalGroupsSequence
    ]
    assert np.allclose(positions, truth.geometry.positions, atol=1e-4)
    assert ds.pixel_array.shape == (18, 48, 56)
    shared = ds.SharedFunctionalGroupsSequence[0]
    assert shared.MRImageFrameTypeSequence[0].FrameType[0] == "ORIGINAL"
    assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == [1.1, 0.9]


def test_projection_source_has_no_frame_of_reference_or_position(truth_of) -> None:
    truth = truth_of("quick/projection-dx-binary")
    assert truth.geometry.positions is None and truth.geometry.orientation is None
    (path,) = truth.source_paths
    ds = pydicom.dcmread(path)
    assert ds.Modality == "DX" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"
    assert "FrameOfReferenceUID" not in ds and "ImagePositionPatient" not in ds
    assert truth.frame_keys == [ds.SOPInstanceUID] and ds.pixel_array.shape == (ds.Rows, ds.Columns)


def test_cine_source_is_one_plane_over_time(truth_of) -> None:
    truth = truth_of("quick/cine-mr-binary")
    (path,) = truth.source_paths
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.DimensionIndexSequence[0].DimensionIndexPointer == 0x00209128  # Temporal Position Index
    frames = ds.PerFrameFunctionalGroupsSequence
    assert [int(f.FrameContentSequence[0].TemporalPositionIndex) for f in frames] == list(range(1, 17))
    positions = {tuple(f.PlanePositionSequence[0].ImagePositionPatient) for f in frames}
    assert len(positions) == 1  # the same plane at every time point
    times = [str(f.FrameContentSequence[0].FrameReferenceDateTime) for f in frames]
    assert times == sorted(times) and len(set(times)) == 16
    assert truth.frame_keys == [f"{ds.SOPInstanceUID}#{k}" for k in range(1, 17)]


def test_uneven_series_keeps_its_positions_and_declares_no_spacing(truth_of) -> None:
    truth = truth_of("quick/uneven-spacing-gap")
    case = loaded("quick/uneven-spacing-gap").case
    z = [p[2] for p in truth.geometry.positions]
    assert z == case.source.slice_positions
    for path in truth.source_paths:
        assert "SpacingBetweenSlices" not in pydicom.dcmread(path, stop_before_pixels=True)


def test_non_ascii_labels_reach_the_truth(truth_of) -> None:
    labels = [s.label for s in truth_of("quick/non-ascii-labels").segments]
    assert labels == ["Läsion – 肝臓", "Почка левая", "Μάζα αριστερά", "Région 4"]


def test_a_decoy_series_shares_the_study_and_frame_of_reference_but_not_the_positions(truth_of) -> None:
    truth = truth_of("quick/binary-source-two-series")
    assert truth.decoy_files and len(truth.decoy_files) == len(truth.source_files)
    # Readers get the decoy first: a reader must choose by the SEG's references, not by order.
    assert truth.reader_source_paths[: len(truth.decoy_files)] == [truth.directory / f for f in truth.decoy_files]
    assert truth.reader_source_paths[len(truth.decoy_files) :] == truth.source_paths
    source = [pydicom.dcmread(p, stop_before_pixels=True) for p in truth.source_paths]
    decoy = [pydicom.dcmread(p, stop_before_pixels=True) for p in truth.reader_source_paths[: len(truth.decoy_files)]]
    assert {d.StudyInstanceUID for d in decoy} == {truth.study_uid}
    assert {d.FrameOfReferenceUID for d in decoy} == {truth.frame_of_reference_uid}
    assert len({d.SeriesInstanceUID for d in decoy}) == 1 and decoy[0].SeriesInstanceUID != truth.series_uid
    assert {int(d.SeriesNumber) for d in decoy} == {2} and {int(s.SeriesNumber) for s in source} == {1}
    assert not {d.SOPInstanceUID for d in decoy} & {s.SOPInstanceUID for s in source}
    depth = [float(d.ImagePositionPatient[2]) for d in decoy]
    real = [float(s.ImagePositionPatient[2]) for s in source]
    assert np.allclose(np.array(depth) - np.array(real), 2.5 / 2)  # half a slice along the normal (axial)
    # Producers are given the referenced series only.
    assert not any("decoy" in str(p) for p in truth.source_paths)
