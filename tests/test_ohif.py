"""The real OHIF stack (npm build, Orthanc, chromium) as a consumer: one PASS and the known failures."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from consumers.ohif import OhifConsumer
from conformance.results import ResultsDocument, Status
from conformance.runner import RunConfig, run

from .conftest import CASES, FEATURES

AVAILABLE, WHY = OhifConsumer().available()
if not AVAILABLE and os.environ.get("CI"):
    raise RuntimeError(f"CI must run the OHIF tests, but: {WHY}")  # never a silent skip in CI
pytestmark = pytest.mark.skipif(not AVAILABLE, reason=WHY)

CASE_IDS = ["quick/binary-3-disjoint", "quick/fractional", "quick/binary-overlap"]


@pytest.fixture(scope="module")
def ohif_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ResultsDocument]:
    tmp = tmp_path_factory.mktemp("ohif")
    cfg = RunConfig(
        corpus=CASES, features=FEATURES, build=tmp / "build", results=tmp / "results",
        cases=CASE_IDS, producers=["highdicom"], consumers=["ohif"], workers=2, timeout_s=120,
    )
    summary = run(cfg)
    doc = ResultsDocument.load(summary.path)
    return Path(doc.run.run_dir or ""), doc


def _read(doc: ResultsDocument, case: str):  # type: ignore[no-untyped-def]
    (rec,) = [r for r in doc.records if r.case == case and r.consumer == "ohif"]
    return rec


def test_disjoint_binary_passes_with_a_screenshot(ohif_run) -> None:  # type: ignore[no-untyped-def]
    run_dir, doc = ohif_run
    rec = _read(doc, "quick/binary-3-disjoint")
    assert rec.status is Status.PASS, rec.message
    shot = run_dir / rec.artifacts["screenshot"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert any(n.startswith("loaded by double-click") for n in rec.notes)
    tool = next(t for t in doc.tools if t.name == "ohif")
    assert tool.version == "3.13.2" and tool.service


def test_known_faults_are_recorded_exactly(ohif_run) -> None:  # type: ignore[no-untyped-def]
    _, doc = ohif_run
    frac = _read(doc, "quick/fractional")
    assert frac.status is Status.ERROR
    assert "Fractional segmentations are not yet supported" in frac.message
    overlap = _read(doc, "quick/binary-overlap")
    assert overlap.status is Status.FAIL
    assert "voxels:" in overlap.message and "missing" in overlap.message


def test_the_stack_is_stopped_after_the_run(ohif_run) -> None:  # type: ignore[no-untyped-def]
    run_dir, _ = ohif_run
    pids = [int(p) for f in (run_dir / "services").glob("*/pids") for p in f.read_text().split()]
    assert len(pids) >= 3  # Orthanc, the viewer server, chromium (per worker)
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []


def test_the_report_links_the_screenshot(ohif_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from conformance.report import render_site

    _, doc = ohif_run
    page = render_site([doc], tmp_path / "site").read_text()
    rec = _read(doc, "quick/binary-3-disjoint")
    href = f"artifacts/{doc.run.run_id}/{rec.artifacts['screenshot']}"
    assert f'href="{href}"' in page
    assert (tmp_path / "site" / href).is_file()
