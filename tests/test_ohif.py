"""The real OHIF stack (npm build, Orthanc, chromium) as a consumer: one PASS and the known failures."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from dicom4qi.model.results import ResultsDocument, Status
from dicom4qi.run.runner import RunConfig, run
from dicom4qi.tools.ohif.consumer import OhifConsumer

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
        corpus=CASES,
        features=FEATURES,
        build=tmp / "build",
        results=tmp / "results",
        cases=CASE_IDS,
        producers=["highdicom"],
        consumers=["ohif"],
        workers=2,
        timeout_s=120,
    )
    summary = run(cfg)
    doc = ResultsDocument.load(summary.path)
    return Path(doc.run.run_dir or ""), doc


def _read(doc: ResultsDocument, case: str):
    (rec,) = [r for r in doc.records if r.case == case and r.consumer == "ohif"]
    return rec


@pytest.mark.slow
def test_disjoint_binary_passes_with_a_screenshot(ohif_run) -> None:
    run_dir, doc = ohif_run
    rec = _read(doc, "quick/binary-3-disjoint")
    assert rec.status is Status.PASS, rec.message
    shot = run_dir / rec.artifacts["screenshot"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert any(n.startswith("loaded by double-click") for n in rec.notes)
    tool = next(t for t in doc.tools if t.name == "ohif")
    assert tool.version == "3.13.2" and tool.service


def test_known_faults_are_recorded_exactly(ohif_run) -> None:
    _, doc = ohif_run
    frac = _read(doc, "quick/fractional")
    assert frac.status is Status.ERROR
    assert "Fractional segmentations are not yet supported" in frac.message
    overlap = _read(doc, "quick/binary-overlap")
    assert overlap.status is Status.FAIL
    assert "voxels:" in overlap.message and "missing" in overlap.message


def test_the_stack_is_stopped_after_the_run(ohif_run) -> None:
    run_dir, _ = ohif_run
    pids = [int(p) for f in (run_dir / "services").glob("*/pids") for p in f.read_text().split()]
    assert len(pids) >= 3  # Orthanc, the viewer server, chromium (per worker)
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []


def test_the_report_links_the_screenshot(ohif_run, tmp_path: Path) -> None:
    from dicom4qi.site.report import render_site

    _, doc = ohif_run
    page = render_site([doc], tmp_path / "site").read_text()
    rec = _read(doc, "quick/binary-3-disjoint")
    href = f"artifacts/{doc.run.run_id}/{rec.artifacts['screenshot']}"
    assert f'href="{href}"' in page
    assert (tmp_path / "site" / href).is_file()


def _listening_ports() -> set[int]:
    """TCP ports listening in this (the host's) network namespace, from /proc/net/tcp and tcp6."""
    ports = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_the_stack_is_reachable_by_the_suite_only(tmp_path: Path) -> None:
    """Orthanc (which listens on every interface) and chromium's DevTools port live in a network namespace of their
    own: nothing listens in the host's, a second local process cannot connect, nor can a non-loopback client."""
    import socket

    from dicom4qi.model.results import ToolInfo
    from dicom4qi.process.lifetime import harness_id
    from dicom4qi.process.services import ServicePool

    if os.geteuid() != 0:
        pytest.skip("a network namespace of its own needs root")
    tool = ToolInfo(name="ohif", role="consumer", tool="@ohif/app", available=True, service=True)
    pool = ServicePool(tool, tmp_path / "services", tmp_path / "cache", size=1)
    before = _listening_ports()
    try:
        with pool.lease() as endpoints:
            assert endpoints["netns"].startswith("/proc/")
            assert os.readlink(endpoints["netns"]) != os.readlink("/proc/self/ns/net")
            ports = [int(endpoints[k].rsplit(":", 1)[1]) for k in ("viewer", "orthanc", "cdp")]
            new = _listening_ports() - before
            assert not (set(ports) & new), f"the stack listens in the host's namespace: {set(ports) & new}"
            for port in ports:  # a second local process, and the host's own non-loopback address
                for host in {"127.0.0.1", socket.gethostbyname(socket.gethostname())}:
                    with socket.socket() as s, pytest.raises(OSError):
                        s.settimeout(2)
                        s.connect((host, port))
            assert harness_id()  # the stack's watchdog watches this process
    finally:
        pool.stop()


@pytest.mark.slow
def test_sigkill_of_an_ohif_run_then_resume_gives_the_same_statuses(ohif_run, tmp_path: Path) -> None:
    """SIGKILL mid-run: no process of the killed run is left (its watchdog stops the stack, the next start kills
    what remains), and --resume ends with the statuses of an uninterrupted run."""
    import signal
    import subprocess
    import sys
    import time

    from .conftest import ROOT

    _, whole = ohif_run
    args = [
        sys.executable,
        "-m",
        "dicom4qi.cli.main",
        "run",
        "--corpus",
        str(CASES),
        "--features",
        str(FEATURES),
        "--build",
        str(tmp_path / "build"),
        "--out",
        str(tmp_path / "results"),
        "--producer",
        "highdicom",
        "--consumer",
        "ohif",
        "-j",
        "2",
        "--timeout",
        "120",
        *[a for c in CASE_IDS for a in ("--case", c)],
    ]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    pidfiles: list[Path] = []
    while time.monotonic() < deadline and not pidfiles:
        pidfiles = [p for p in (tmp_path / "build").glob("runs/*/services/*/pids") if len(p.read_text().split()) >= 4]
        time.sleep(0.5)
    assert pidfiles, "the OHIF stack never started"
    time.sleep(3)
    pids = [int(p) for f in pidfiles for p in f.read_text().split()]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    def alive() -> list[int]:
        return [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]

    deadline = time.monotonic() + 15
    while alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert alive() == [], "the stack of the SIGKILLed run is still running"
    done = subprocess.run([*args, "--resume", "latest"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = ResultsDocument.load(tmp_path / "results" / "latest.json")
    got = {(r.case, r.step, r.consumer): r.status for r in resumed.records if r.step in ("write", "read")}
    want = {(r.case, r.step, r.consumer): r.status for r in whole.records if r.step in ("write", "read")}
    assert got == want
