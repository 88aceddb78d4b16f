"""cornerstone3D's SEG reader (npm @cornerstonejs/adapters, the library under OHIF), three releases side by side in
one executable adapter (dicom4qi/tools/cornerstone), run for real: through the harness, and by hand against the
truth."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dicom4qi.corpus.synth import build_case
from dicom4qi.model.results import CheckStatus, Record, ResultsDocument, Status
from dicom4qi.model.truth import Truth
from dicom4qi.run.runner import RunConfig, run

from .conftest import CASES, FEATURES, ROOT, loaded, need_node

CORNERSTONE = ROOT / "dicom4qi" / "tools" / "cornerstone"
DEFAULT = f"exec:{CORNERSTONE}"
OLDER = f"exec:{CORNERSTONE}@5.6.8"
OLDEST = f"exec:{CORNERSTONE}@4.19.0"
BINARY = "quick/binary-3-disjoint"
LABELMAP = "quick/labelmap-8bit"
CASE_IDS = [BINARY, LABELMAP]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run: the suite's reference writer, read by every release (the harness runs npm ci first)."""
    need_node("cornerstone")
    root = tmp_path_factory.mktemp("cornerstone")
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=root / "build",
        results=root / "results",
        tiers=[],
        cases=CASE_IDS,
        producers=["reference"],
        consumers=[DEFAULT, OLDER, OLDEST],
        validate=False,
    )
    summary = run(cfg)
    return {"root": root, "build": root / "build", "doc": ResultsDocument.load(summary.path)}


def _read(doc: ResultsDocument, consumer: str, case: str) -> Record:
    (rec,) = [r for r in doc.records if r.step == "read" and r.consumer == consumer and r.case == case]
    return rec


def _call(request: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        ["node", "index.mjs"], cwd=CORNERSTONE, input=json.dumps(request), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


def _installed_version(release: str) -> str:
    folder = CORNERSTONE / "releases" / release / "node_modules" / "@cornerstonejs" / "adapters"
    if not folder.is_dir():  # npm hoists one release's packages to the adapter's own node_modules
        folder = CORNERSTONE / "node_modules" / "@cornerstonejs" / "adapters"
    version: str = json.loads((folder / "package.json").read_text())["version"]
    return version


def test_the_handshake_gives_each_release_its_real_version(env: dict[str, Any]) -> None:
    tools = {t.name: t for t in env["doc"].tools if t.role == "consumer"}
    new, old, oldest = tools[DEFAULT], tools[OLDER], tools[OLDEST]
    assert new.available and old.available and oldest.available, (new.reason, old.reason, oldest.reason)
    assert new.tool == old.tool == oldest.tool == "@cornerstonejs/adapters"
    assert new.version == "5.14.0" == _installed_version("5.14.0")
    assert old.version == "5.6.8" == _installed_version("5.6.8")
    # 4.x "exports" only "import" for its entry points: found by the adapter's own node_modules lookup.
    assert oldest.version == "4.19.0" == _installed_version("4.19.0")
    assert new.family == old.family == oldest.family == "cornerstone"  # one decoder family: one vote
    for tool in (new, old, oldest):
        assert {"binary", "labelmap", "labelmap-16bit", "ts-rle"} <= set(tool.features)
        # Not in the library's reading path: FRACTIONAL throws, no JPEG 2000 / JPEG-LS codec, no slides.
        assert not {"fractional", "ts-jpeg2000", "ts-jpegls", "slide-source"} & set(tool.features)


def test_an_unknown_release_fails_the_handshake() -> None:
    need_node("cornerstone")
    answer = _call({"protocol": 1, "op": "info", "supported_protocols": [1], "variant": "9.9.9"})
    assert answer["ok"] is False and "9.9.9" in answer["error"] and "5.6.8" in answer["error"]


@pytest.mark.parametrize("consumer", [DEFAULT, OLDER, OLDEST])
@pytest.mark.parametrize("case", CASE_IDS)
def test_every_release_decodes_binary_and_labelmap_exactly(env: dict[str, Any], consumer: str, case: str) -> None:
    rec = _read(env["doc"], consumer, case)
    assert rec.status is Status.PASS, rec.message
    voxels = next(c for c in rec.checks if c.name == "voxels")
    assert voxels.status is CheckStatus.PASS and "exact" in voxels.message, voxels.message
    assert any("createFromDICOMSegBuffer" in n for n in rec.notes), rec.notes


def _nrrd(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    end = raw.index(b"\n\n")
    header = dict(line.split(": ", 1) for line in raw[:end].decode("ascii").splitlines()[1:])
    assert header["encoding"] == "gzip" and header["endian"] == "little"
    columns, rows, slices = (int(v) for v in header["sizes"].split())
    dtype = {"uint8": np.uint8, "uint16": np.uint16}[header["type"]]
    return np.frombuffer(gzip.decompress(raw[end + 2 :]), dtype=dtype).reshape(slices, rows, columns)


@pytest.mark.parametrize("release", ["5.14.0", "5.6.8", "4.19.0"])
@pytest.mark.parametrize("case", CASE_IDS)
def test_the_decoded_label_map_is_the_truth_voxel_for_voxel(
    env: dict[str, Any], tmp_path: Path, release: str, case: str
) -> None:
    """By hand, outside the harness: the adapter's labelmap.nrrd, put on the truth's frames, is the truth."""
    truth: Truth = build_case(loaded(case), env["build"])  # the run built it: this finds it
    rec = _read(env["doc"], DEFAULT, case)
    run_dir = env["doc"].run.run_dir
    assert rec.seg is not None and run_dir is not None
    seg = Path(run_dir) / rec.seg.path
    out = tmp_path / "out"
    out.mkdir()
    sources = [str(p) for p in truth.reader_source_paths]
    request = {"protocol": 1, "op": "read", "variant": release, "seg": str(seg), "sources": sources, "output": str(out)}
    answer = _call(request)
    assert answer["ok"], answer.get("error")
    doc = json.loads((out / "segments.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["labelmap.nrrd", "segments.json"]  # disjoint: one label map
    decoded = _nrrd(out / "labelmap.nrrd")

    expected = np.zeros(truth.shape, dtype=np.uint16)
    with truth.masks() as masks:
        for number, crop in masks:
            f, r, c = crop.offset
            n, h, w = crop.data.shape
            expected[f : f + n, r : r + h, c : c + w][crop.data.astype(bool)] = number
    by_key = {key: k for k, key in enumerate(doc["frames"])}
    assert set(by_key) == set(truth.frame_keys)
    placed = np.stack([decoded[by_key[key]] for key in truth.frame_keys])
    assert placed.any()
    assert np.array_equal(placed, expected)
    assert {s["number"] for s in doc["segments"]} == {s.number for s in truth.segments}


def _launch(request: dict[str, Any], *, snapshot: bool) -> tuple[dict[str, Any], str]:
    """The adapter's own command (launch.sh), from the release's startup snapshot or not."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "DICOM4QI_NO_SNAPSHOT"} | (
        {} if snapshot else {"DICOM4QI_NO_SNAPSHOT": "1"}
    )
    proc = subprocess.run(
        ["sh", "launch.sh"],
        cwd=CORNERSTONE,
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"one request, one response: {proc.stdout[:400]!r}"
    return json.loads(lines[0]), proc.stderr


def _without_timings(value: Any) -> Any:
    """A response or segments.json without what may differ between two runs of one read: the milliseconds a call
    took, and the note that says the snapshot was used."""
    import re

    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_timings(v) for v in value if not (isinstance(v, str) and v.startswith("node started from"))]
    return re.sub(r" in \d+ ms", "", value) if isinstance(value, str) else value


@pytest.mark.parametrize("release", ["5.14.0", "5.6.8", "4.19.0"])
def test_a_read_from_the_startup_snapshot_is_the_read_without_it(
    env: dict[str, Any], tmp_path: Path, release: str
) -> None:
    """The setup step's V8 startup snapshot of each release (bundle.mjs) only spares the libraries' evaluation: the
    response and the files written are those of index.mjs run as a module, byte for byte but the call's timings."""
    blob = CORNERSTONE / "node_modules" / f".dicom4qi-snapshot-{release}.blob"
    assert blob.is_file(), "the setup step built no startup snapshot"
    for case in CASE_IDS:
        truth: Truth = build_case(loaded(case), env["build"])
        rec = _read(env["doc"], DEFAULT, case)
        assert rec.seg is not None and env["doc"].run.run_dir is not None
        seg = Path(env["doc"].run.run_dir) / rec.seg.path
        outputs = {}
        for snapshot in (True, False):
            out = tmp_path / f"{case.replace('/', '_')}-{snapshot}"
            out.mkdir()
            request = {
                "protocol": 1,
                "op": "read",
                "variant": release,
                "seg": str(seg),
                "sources": [str(p) for p in truth.reader_source_paths],
                "output": str(out),
            }
            answer, _ = _launch(request, snapshot=snapshot)
            assert answer["ok"], answer.get("error")
            said = any(n.startswith("node started from") for n in answer["notes"])
            assert said is snapshot, "the response says whether the snapshot was used"
            files = {
                p.name: _without_timings(json.loads(p.read_text())) if p.suffix == ".json" else p.read_bytes()
                for p in out.iterdir()
            }
            outputs[snapshot] = (_without_timings(answer), files)
        assert outputs[True] == outputs[False]


def test_a_snapshot_whose_key_is_stale_is_not_used(tmp_path: Path) -> None:
    """A snapshot holds index.mjs as it was when built: once index.mjs (or the folder) is not what its key says,
    launch.sh runs index.mjs itself. Which one ran shows in the stack of the error logged on standard error."""
    need_node("cornerstone")
    key = CORNERSTONE / "node_modules" / ".dicom4qi-snapshot-5.6.8.key"
    assert key.is_file()
    kept = key.read_text()
    request = {
        "protocol": 1,
        "op": "read",
        "variant": "5.6.8",
        "seg": str(tmp_path / "missing.dcm"),
        "sources": [],
        "output": str(tmp_path),
    }
    fresh, fresh_log = _launch(request, snapshot=True)
    try:
        key.write_text(kept.replace(kept.split()[-1], "0" * 64))
        stale, stale_log = _launch(request, snapshot=True)
    finally:
        key.write_text(kept)
    assert fresh["ok"] is False and stale["ok"] is False and stale["error"] == fresh["error"]
    assert ".dicom4qi-snapshot-5.6.8" in fresh_log and "index.mjs" not in fresh_log
    assert "index.mjs" in stale_log and ".dicom4qi-snapshot-" not in stale_log
