"""Fast paths give exactly what the plain decoding gives; memory is measured where the tool really runs."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from dicom4qi.model.masks import crop_from_dense
from dicom4qi.process.usage import TreeSampler, tree_pss_mb
from dicom4qi.tools.reference.consumer import packed_crop


def _pack(frames: np.ndarray) -> np.ndarray:
    """(n, rows, cols) booleans as DICOM packs 1-bit frames: least significant bit first, rows on whole bytes."""
    n, rows, cols = frames.shape
    return np.packbits(frames.reshape(n, -1), axis=1, bitorder="little").reshape(n, rows, cols // 8)


def _plain(frames: np.ndarray, z: np.ndarray):
    """The decoding without the fast path: paint every frame in order, then crop."""
    z0, z1 = int(z.min()), int(z.max()) + 1
    dense = np.zeros((z1 - z0, *frames.shape[1:]), dtype=bool)
    for f, k in zip(frames, z):
        dense[k - z0] = f
    return crop_from_dense(dense, base=(z0, 0, 0))


@pytest.mark.parametrize("seed", range(12))
def test_the_packed_crop_is_the_plain_crop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, rows, cols = int(rng.integers(1, 9)), int(rng.integers(1, 40)), 8 * int(rng.integers(1, 9))
    frames = np.zeros((n, rows, cols), dtype=bool)
    for f in range(n):
        if rng.random() < 0.3:
            continue  # an empty frame, as a producer may write
        y0, x0 = int(rng.integers(0, rows)), int(rng.integers(0, cols))
        y1, x1 = int(rng.integers(y0 + 1, rows + 1)), int(rng.integers(x0 + 1, cols + 1))
        frames[f, y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.7
    # frames in order, shuffled, with gaps, and two frames on one source frame (the later one wins)
    orders = [np.arange(n), rng.permutation(n) + 3, np.sort(rng.choice(3 * n, size=n, replace=False))]
    if n > 1:
        orders.append(np.array([0, *range(n - 1)]))
    for z in orders:
        got, want = packed_crop(_pack(frames), z), _plain(frames, z)
        if want is None:
            assert got is None
            continue
        assert got is not None
        assert got.offset == want.offset, (z, got.offset, want.offset)
        assert got.data.dtype == bool and np.array_equal(got.data, want.data)


def test_a_segment_with_only_empty_frames_has_no_crop() -> None:
    assert packed_crop(np.zeros((3, 4, 2), dtype=np.uint8), np.arange(3)) is None


def test_the_tree_sampler_sees_a_childs_memory() -> None:
    code = (
        "import subprocess, sys; "
        "subprocess.run([sys.executable, '-c', 'import time; b = bytearray(300 * 2**20); time.sleep(1.5)'])"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        with TreeSampler(parent.pid, interval_s=0.05) as sampler:
            time.sleep(1.2)
        assert sampler.peak_mb is not None and sampler.peak_mb > 250, sampler.peak_mb
        assert sampler.samples >= 5
    finally:
        parent.wait(timeout=20)
    assert tree_pss_mb(parent.pid) is None  # gone: no figure, not zero


def test_a_sampler_without_a_process_measures_nothing() -> None:
    with TreeSampler(0) as sampler:
        pass
    assert sampler.peak_mb is None and sampler.samples == 0


def test_a_sandboxed_tools_memory_is_measured_inside_its_sandbox(tmp_path) -> None:
    """bubblewrap's own init reaps the tool, so its usage never reaches the caller: the measure runs beside it."""
    from dicom4qi.adapters.executable import _MEASURE, sandbox

    jail = sandbox([tmp_path])
    if not jail:
        pytest.skip("bubblewrap cannot run here")
    hog = [sys.executable, "-c", "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"]
    plain = subprocess.run([*jail, *hog], capture_output=True)
    assert plain.returncode == 0
    peak = tmp_path / "peak-kb"
    measured = subprocess.run([*jail, sys.executable, "-I", "-S", "-c", _MEASURE, str(peak), *hog])
    assert measured.returncode == 0 and int(peak.read_text()) > 250 * 1024
    # its end is the tool's: a status, a signal, a program that is not there
    assert subprocess.run([*jail, sys.executable, "-I", "-S", "-c", _MEASURE, str(peak), "false"]).returncode == 1
    killed = subprocess.run(
        [*jail, sys.executable, "-I", "-S", "-c", _MEASURE, str(peak), sys.executable, "-c", "import os; os.abort()"]
    )
    assert killed.returncode != 0
    missing = subprocess.run(
        [*jail, sys.executable, "-I", "-S", "-c", _MEASURE, str(peak), "/no/such/tool"], capture_output=True
    )
    assert missing.returncode == 1 and b"cannot run '/no/such/tool'" in missing.stderr


def test_a_peak_told_from_inside_a_sandbox_counts_among_the_childrens() -> None:
    code = (
        "from dicom4qi.process.usage import add_child_peak, own_peak_rss_mb\n"
        "before = own_peak_rss_mb(with_children=True)\n"
        "add_child_peak(900 * 1024)\n"
        "print(before, own_peak_rss_mb(with_children=True), own_peak_rss_mb())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    before, after, own = map(float, out)
    assert before < 900 and after == 900.0 and own < 900
