"""The OHIF consumer's conversion of what it reads back from the viewer (labelmap storages, slice by slice) into the
canonical form, without a browser: every voxel where OHIF put it, a segment split over two labelmaps or two slices
united, and memory that follows the labelled voxels, not the number of segments."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dicom4qi.model.decoded import Decoded, frame_key
from dicom4qi.tools.ohif.consumer import OhifConsumer

ROWS, COLUMNS = 6, 5


def _slice(uid: str, values: np.ndarray, dtype: str = "Uint8Array") -> dict[str, Any]:
    np_type = {"Uint8Array": "<u1", "Uint16Array": "<u2", "Float32Array": "<f4"}[dtype]
    return {
        "ref": f"wadors:http://x/studies/1/series/2/instances/{uid}/frames/1",
        "rows": values.shape[0],
        "columns": values.shape[1],
        "dtype": dtype,
        "data": base64.b64encode(values.astype(np_type).tobytes()).decode(),
    }


def _decode(back: dict[str, Any], uids: list[str], tmp_path: Path) -> dict[int, np.ndarray]:
    writer = OhifConsumer._decoded(back, [frame_key(u) for u in uids], set(), ROWS, COLUMNS)
    writer.write(tmp_path / "decoded.npz")
    decoded = Decoded(tmp_path / "decoded.npz")
    out = {}
    for number, crop in decoded:
        dense = np.zeros((len(uids), ROWS, COLUMNS), dtype=bool)
        (z0, y0, x0), (z1, y1, x1) = crop.offset, crop.stop
        dense[z0:z1, y0:y1, x0:x1] = crop.data
        out[number] = dense
    decoded.close()
    return out


def test_voxels_are_placed_and_a_segment_in_two_labelmaps_is_their_union(tmp_path: Path) -> None:
    uids = ["1.1", "1.2", "1.3"]
    a = np.zeros((ROWS, COLUMNS), dtype=np.uint8)
    a[1:3, 1:4] = 1
    a[4, 0] = 2
    b = np.zeros((ROWS, COLUMNS), dtype=np.uint8)
    b[0, 0] = 1  # label 1 of the second labelmap is segment 2 (its labelToSegmentIndex)
    c = np.zeros((ROWS, COLUMNS), dtype=np.float32)
    c[5, 4] = 3.0  # a float labelmap (OHIF's Float32Array)
    back = {
        "segments": [{"index": n, "label": f"S{n}"} for n in (1, 2, 3)],
        "storages": [
            {"id": "lm-1", "count": 3, "slices": [_slice("1.1", a), _slice("1.3", c, "Float32Array")]},
            {"id": "lm-2", "count": 3, "labelToSegmentIndex": {"1": 2}, "slices": [_slice("1.2", b)]},
        ],
    }
    got = _decode(back, uids, tmp_path)
    expected = {n: np.zeros((3, ROWS, COLUMNS), dtype=bool) for n in (1, 2, 3)}
    expected[1][0, 1:3, 1:4] = True
    expected[2][0, 4, 0] = True
    expected[2][1, 0, 0] = True  # the same segment from the other labelmap: united
    expected[3][2, 5, 4] = True
    assert sorted(got) == [1, 2, 3]
    for n in expected:
        assert np.array_equal(got[n], expected[n]), n


def test_a_slice_on_a_frame_that_is_no_source_is_refused(tmp_path: Path) -> None:
    values = np.ones((ROWS, COLUMNS), dtype=np.uint8)
    back = {"segments": [], "storages": [{"id": "lm", "count": 1, "slices": [_slice("9.9", values)]}]}
    with pytest.raises(RuntimeError, match="not a source frame"):
        _decode(back, ["1.1"], tmp_path)


def test_a_thousand_segments_stay_small() -> None:
    """1000 segments scattered over 40 frames of 128 x 128: one crop each, and memory that follows the labelled
    voxels (the old conversion held a dense plane per segment and frame it touched: about 600 MB here, and over
    8 GiB on the 1000-segment body CT)."""
    import tracemalloc

    size = 128
    uids = [f"2.{i}" for i in range(40)]
    rng = np.random.default_rng(0)
    slices = []
    for uid in uids:
        values = np.zeros((size, size), dtype=np.uint16)
        values.flat[rng.choice(size * size, 1500, replace=False)] = rng.integers(1, 1001, 1500)
        slices.append(_slice(uid, values, "Uint16Array"))
    back = {"segments": [], "storages": [{"id": "lm", "count": len(uids), "slices": slices}]}
    tracemalloc.start()
    writer = OhifConsumer._decoded(back, [frame_key(u) for u in uids], set(), size, size)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    labelled = sum(int(np.count_nonzero(np.frombuffer(base64.b64decode(s["data"]), "<u2"))) for s in slices)
    crops = writer._crops
    assert len(crops) == 1000 and sum(int(c.data.sum()) for c in crops.values()) == labelled
    # Each crop is its segment's bounding box (scattered voxels: up to the whole 40 x 128 x 128, 655 KB, each), so
    # the crops alone may reach several hundred MB here; what is bounded is the conversion on top of them.
    kept = sum(c.data.nbytes for c in crops.values())
    assert peak - kept < 64 * 2**20, (peak, kept)


def test_the_pages_delay_in_running_the_read_back_is_the_viewers_not_the_suites() -> None:
    from dicom4qi.tools.ohif.consumer import split_read_back

    # Asked at t=100; the page, busy with the segmentation it had just loaded, began 7 s later; 7.2 s in all.
    busy, own = split_read_back(100.0, 107.0, 7.2)
    assert busy == pytest.approx(7.0) and own == pytest.approx(0.2)
    # A page that began at once leaves it all to the suite; a clock that stepped cannot make the delay negative,
    # nor more than the whole call.
    assert split_read_back(100.0, 100.0, 0.3) == (0.0, 0.3)
    assert split_read_back(100.0, 99.0, 0.3) == (0.0, 0.3)
    busy, own = split_read_back(100.0, 150.0, 0.3)
    assert busy == pytest.approx(0.3) and own == pytest.approx(0.0)
