"""Hardening: bad limits, unknown names and damaged files are refused clearly, before anything runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dicom4qi.cli.main import main
from dicom4qi.model.results import ResultsDocument, ResultsFileError
from dicom4qi.run.runner import RunConfig

from .conftest import CASES, FEATURES


@pytest.mark.parametrize(
    "args",
    [
        ["--timeout", "-1"],
        ["--timeout", "0"],
        ["--timeout", "nan"],
        ["--timeout", "inf"],
        ["-j", "0"],
        ["-j", "-3"],
        ["--memory-mb", "0"],
        ["--memory-mb", "-5"],
        ["--memory-mb", "1"],
        ["--memory-mb", "nan"],
        ["--validate-timeout", "nan"],
    ],
)
def test_limits_must_be_finite_positive_and_sane(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "run",
                "--case",
                "quick/binary-3-disjoint",
                "--build",
                str(tmp_path / "b"),
                "--out",
                str(tmp_path / "r"),
                *args,
            ]
        )
    assert exit_info.value.code == 2
    assert "is not a" in capsys.readouterr().err
    assert not (tmp_path / "b").exists() and not (tmp_path / "r").exists()  # nothing ran


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--consumer", "bogus"], "unknown consumer 'bogus'"),
        (["--producer", "highdicom+zip"], "unknown transcoding 'zip'"),
        (["--producer", "nope"], "unknown producer 'nope'"),
        (["--consumer", "exec:/no/such/folder"], "no such adapter folder"),
    ],
)
def test_unknown_adapters_are_usage_errors(
    args: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run",
            "--case",
            "quick/binary-3-disjoint",
            "--build",
            str(tmp_path / "b"),
            "--out",
            str(tmp_path / "r"),
            *args,
        ]
    )
    assert code == 2
    assert words in capsys.readouterr().err.replace("\n", " ")
    assert not (tmp_path / "b").exists()


def test_the_run_config_refuses_limits_that_are_no_limits() -> None:
    for bad in (
        {"timeout_s": float("nan")},
        {"timeout_s": 0},
        {"memory_mb": -1},
        {"memory_mb": float("inf")},
        {"workers": 0},
    ):
        with pytest.raises(ValueError, match="must be a"):
            RunConfig(corpus=CASES, features=FEATURES, **bad)


def test_a_truncated_latest_names_the_file_and_the_intact_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = {
        "format": "dicom4qi-results/1",
        "run": {
            "run_id": "20261201T000000Z-abcdef",
            "started": "2026-12-01T00:00:00+00:00",
            "suite_version": "0",
            "platform": "p",
            "python": "3",
            "corpus_fingerprint": "f",
            "timeout_s": 1,
            "memory_limit_mb": 1,
            "workers": 1,
        },
        "tools": [],
        "records": [],
    }
    text = json.dumps(doc, indent=1)
    (tmp_path / "20261201T000000Z-abcdef.json").write_text(text)
    (tmp_path / "latest.json").write_text(text[: len(text) // 2])
    with pytest.raises(ResultsFileError) as info:
        ResultsDocument.load(tmp_path / "latest.json")
    message = str(info.value)
    assert str(tmp_path / "latest.json") in message and "20261201T000000Z-abcdef.json may be intact" in message
    assert main(["report", str(tmp_path / "latest.json"), "--out", str(tmp_path / "site")]) == 2
    assert "may be intact" in capsys.readouterr().err.replace("\n", " ")
    shutil.rmtree(tmp_path / "site", ignore_errors=True)


# --------------------------------------------------------------------------- readers that misbehave towards the harness
def _run(tmp_path: Path, consumers: list[str], **kw):
    from dicom4qi.run.runner import run

    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=tmp_path / "build",
        results=tmp_path / "results",
        cases=["quick/binary-3-disjoint"],
        producers=["highdicom"],
        consumers=consumers,
        validate=False,
        **kw,
    )
    return ResultsDocument.load(run(cfg).path)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_reader_that_damages_its_input_harms_no_other(tmp_path: Path) -> None:
    doc = _run(tmp_path, ["tests.fakes:TamperingConsumer", "reference"], workers=1)
    reads = {r.consumer: r for r in doc.records if r.step == "read"}
    assert reads["reference"].status.value == "PASS"
    tamper = reads["tests.fakes:TamperingConsumer"]
    assert tamper.status.value == "ERROR" and "changed its copy of the object" in tamper.message
    write = next(r for r in doc.records if r.step == "write")
    from dicom4qi.run.steps import sha256_of

    assert write.seg is not None and sha256_of(Path(doc.run.run_dir or "") / write.seg.path) == write.seg.sha256


@pytest.mark.slow
def test_escaped_processes_and_temporary_folders_do_not_outlive_their_call(tmp_path: Path) -> None:
    doc = _run(tmp_path, ["tests.fakes:EscapingConsumer", "tests.fakes:TempLeavingConsumer"], workers=2, timeout_s=8)
    run_dir = Path(doc.run.run_dir or "")
    pid = int(next(run_dir.rglob("escaped.pid")).read_text())
    assert not _alive(pid), "the process that left its group with setsid() is still running"
    folder = Path(next(run_dir.rglob("temp-folder.txt")).read_text())
    assert not folder.exists(), f"{folder} was left behind by a call killed at its time limit"
    leaver = next(r for r in doc.records if r.consumer == "tests.fakes:TempLeavingConsumer")
    assert leaver.status.value == "TIMEOUT"


def test_the_memory_limit_cannot_be_lifted_by_the_tool(tmp_path: Path) -> None:
    doc = _run(tmp_path, ["tests.fakes:LimitRaisingConsumer"], memory_mb=2048)
    rec = next(r for r in doc.records if r.step == "read")
    assert rec.status.value == "ERROR" and rec.limit == "memory", rec.message
    assert "used 3221225472 bytes" not in rec.message


def test_a_service_that_cannot_start_is_a_harness_fault(tmp_path: Path) -> None:
    from dicom4qi.run.runner import Runner

    doc = _run(tmp_path, ["tests.fakes:FailingServiceConsumer"])
    rec = next(r for r in doc.records if r.step == "read")
    assert rec.status.value == "ERROR" and rec.harness and "leftover" in rec.harness
    assert not rec.charged and not rec.final
    kept = Runner(RunConfig(corpus=CASES, features=FEATURES))._resumable(doc, Path(doc.run.run_dir or ""))
    assert rec.key not in kept and any(k[2] is None for k in kept)  # the write is kept, the harness fault runs again


def _wait_for(predicate, seconds: float) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_a_sigkilled_harness_leaves_nothing_running_after_the_next_start(tmp_path: Path) -> None:
    """SIGKILL of the harness: its hanging call dies with it (parent-death signal); what escaped its process group
    is found by its marks and stopped when the next run of the same build folder starts."""
    import os
    import signal
    import subprocess
    import sys

    from .conftest import ROOT

    build = tmp_path / "build"
    base = [
        sys.executable,
        "-m",
        "dicom4qi.cli.main",
        "run",
        "--corpus",
        str(CASES),
        "--features",
        str(FEATURES),
        "--build",
        str(build),
        "--case",
        "quick/binary-3-disjoint",
        "--producer",
        "highdicom",
        "--no-validate",
    ]
    env = {**os.environ, "DICOM4QI_TEST_HANG": "1"}
    proc = subprocess.Popen(
        [*base, "--out", str(tmp_path / "r1"), "--consumer", "tests.fakes:EscapingConsumer"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert _wait_for(lambda: any(build.rglob("escaped.pid")), 150), "the escaping consumer never started"
    escaped = int(next(build.rglob("escaped.pid")).read_text())
    children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert _wait_for(lambda: not any(_alive(c) for c in children), 10), "a call outlived the SIGKILLed harness"
    assert _alive(escaped)  # it left the process group and its parent died: only its marks tell whose it is
    done = subprocess.run(
        [*base, "--out", str(tmp_path / "r2"), "--consumer", "reference"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert _wait_for(lambda: not _alive(escaped), 10), "the leftover of the killed run is still running"


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 48 MiB file system of its own (tmpfs; needs root, which CI has)."""
    import os
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a small tmpfs for the full-disk test: {done.stderr.strip()}")
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_ends_the_run_in_one_line_and_resume_finishes_it(small_disk: Path, tmp_path: Path) -> None:
    """Disk full is the machine's fault: one clear line, exit 1, no record charged to a tool; --resume reruns."""
    import os
    import subprocess
    import sys

    from .conftest import ROOT

    marker = tmp_path / "fill"
    marker.write_text("")
    base = [
        sys.executable,
        "-m",
        "dicom4qi.cli.main",
        "run",
        "--corpus",
        str(CASES),
        "--features",
        str(FEATURES),
        "--build",
        str(small_disk / "build"),
        "--out",
        str(small_disk / "results"),
        "--case",
        "quick/binary-3-disjoint",
        "--producer",
        "highdicom",
        "--producer",
        "tests.fakes:DiskFillingProducer",
        "--consumer",
        "reference",
        "--no-validate",
        "-j",
        "1",
    ]
    env = {**os.environ, "DICOM4QI_TEST_FILL": str(marker)}
    full = subprocess.run(base, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert full.returncode == 1, full.stderr[-3000:]
    assert "Traceback" not in full.stderr
    lines = [ln for ln in full.stderr.splitlines() if "disk full" in ln]
    assert len(lines) == 1 and "--resume" in full.stderr.replace("\n", " "), full.stderr[-2000:]
    doc = json.loads((small_disk / "results" / "latest.json").read_text())
    assert not any(
        r["producer"] == "tests.fakes:DiskFillingProducer" and r["status"] != "SKIPPED" and not r.get("harness")
        for r in doc["records"]
    ), "a record of the full disk was charged to the producer"
    marker.unlink()
    for filler in (small_disk / "build").rglob("filler.bin"):
        filler.unlink()
    resumed = subprocess.run(
        [*base, "--resume", "latest"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    doc = json.loads((small_disk / "results" / "latest.json").read_text())
    writes = {r["producer"]: r["status"] for r in doc["records"] if r["step"] == "write"}
    assert writes == {"highdicom": "PASS", "tests.fakes:DiskFillingProducer": "PASS"}


ESCAPING_ADAPTER = r"""
import json, socket, sys
req = json.load(sys.stdin)
if req["op"] == "info":
    print(json.dumps({"protocol": 1, "ok": True, "name": "x", "tool": "escaper", "version": "1", "role": "consumer",
                      "features": ["binary", "disjoint", "single-frame-source", "ts-explicit-le"]}))
    sys.exit(0)
tried = []
try:
    open(sys.argv[1], "w").write("written from the adapter")
    tried.append("write: allowed")
except OSError as exc:
    tried.append(f"write: refused ({exc.strerror})")
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=3).close()
    tried.append("connect: allowed")
except OSError as exc:
    tried.append(f"connect: refused ({exc.strerror or exc})")
print(json.dumps({"protocol": 1, "ok": False, "error": "; ".join(tried)}))
"""


def test_executable_adapters_run_in_a_sandbox(tmp_path: Path) -> None:
    """An adapter from outside writes nowhere but its output folder and reaches no network (bubblewrap)."""
    import os
    import socket
    import sys

    if shutil.which("bwrap") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("bubblewrap is missing (scripts/system-deps installs it)")
        pytest.skip("bubblewrap is not installed")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    outside = tmp_path / "outside.txt"
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter.py").write_text(ESCAPING_ADAPTER)
    (folder / "dicom4qi-adapter.json").write_text(
        json.dumps({"protocol": 1, "command": [sys.executable, "adapter.py", str(outside), str(port)]})
    )
    try:
        doc = _run(tmp_path, [f"exec:{folder}"])
    finally:
        server.close()
    rec = next(r for r in doc.records if r.step == "read")
    assert "write: refused" in rec.message and "connect: refused" in rec.message, rec.message
    assert not outside.exists()


# --------------------------------------------------------------------------- decompression bombs
def _deflate_bomb(seg: Path, out: Path, inflated_bytes: int = 2**29) -> None:
    """A valid SEG's header, Deflated, followed by a Pixel Data element of ``inflated_bytes`` zeros (about 1 MB a GB)."""
    import io
    import zlib

    import pydicom
    from pydicom.filewriter import write_dataset, write_file_meta_info

    ds = pydicom.dcmread(seg)
    del ds.PixelData
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    body = io.BytesIO()
    fp = pydicom.filebase.DicomFileLike(body)
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    meta = pydicom.filebase.DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    with open(out, "wb") as fh:
        fh.write(b"\0" * 128 + b"DICM" + meta.getvalue())
        fh.write(deflater.compress(body.getvalue()))
        fh.write(deflater.compress(b"\xe0\x7f\x10\x00OB\0\0" + inflated_bytes.to_bytes(4, "little")))
        zeros = b"\0" * (16 * 2**20)
        for _ in range(inflated_bytes // len(zeros)):
            fh.write(deflater.compress(zeros))
        fh.write(deflater.flush())


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bomb")
    from dicom4qi.run.runner import run

    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=root / "build",
        results=root / "results",
        cases=["quick/binary-3-disjoint"],
        producers=["highdicom"],
        consumers=["none"],
        validate=False,
        verify_writes=False,
    )
    doc = ResultsDocument.load(run(cfg).path)
    write = next(r for r in doc.records if r.step == "write")
    assert write.seg is not None
    out = root / "bomb.dcm"
    _deflate_bomb(Path(doc.run.run_dir or "") / write.seg.path, out)
    assert out.stat().st_size < 2**20  # half a megabyte that inflates to half a gigabyte
    return {"root": root, "bomb": out, "results": root / "results"}


HARNESS_BOUND_MB = 300


@pytest.mark.slow
def test_a_decompression_bomb_from_the_wild_leaves_the_harness_bounded(bomb: dict[str, Path], tmp_path: Path) -> None:
    import subprocess
    import sys

    from .conftest import ROOT

    wild = tmp_path / "wild"
    wild.mkdir()
    shutil.copyfile(bomb["bomb"], wild / "bomb.dcm")
    build = bomb["root"] / "build"
    truth = next(p for p in (build / "corpus").iterdir() if (p / "source").is_dir())
    for src in (truth / "source").iterdir():
        shutil.copyfile(src, wild / src.name)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dicom4qi.cli.main",
            "run",
            "--external",
            str(wild),
            "--build",
            str(tmp_path / "build"),
            "--out",
            str(tmp_path / "results"),
            "--consumer",
            "reference",
            "--consumer",
            "highdicom",
            "--memory-mb",
            "2048",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    doc = ResultsDocument.load(tmp_path / "results" / "latest.json")
    assert doc.records and all(r.status.value != "PASS" for r in doc.records)  # read by every reader, bounded, refused
    assert doc.run.harness_peak_rss_mb is not None and doc.run.harness_peak_rss_mb < HARNESS_BOUND_MB, (
        doc.run.harness_peak_rss_mb
    )


@pytest.mark.slow
def test_a_decompression_bomb_in_a_producer_submission_leaves_the_harness_bounded(
    bomb: dict[str, Path], tmp_path: Path
) -> None:
    import subprocess
    import sys

    from dicom4qi.vendors.bundle import export_bundle

    from .conftest import ROOT

    folder, manifest = export_bundle(
        next(bomb["results"].glob("2*.json")),
        tmp_path / "bundle",
        corpus=CASES,
        features=FEATURES,
        build=bomb["root"] / "build",
    )
    sub = tmp_path / "sub"
    (sub / "objects").mkdir(parents=True)
    shutil.copyfile(bomb["bomb"], sub / "objects" / "bomb.dcm")
    (sub / "submission.json").write_text(
        json.dumps(
            {
                "vendor": "mallory",
                "tool": {"name": "Bomb", "version": "1"},
                "role": "producer",
                "bundle": manifest["id"],
                "entries": [{"case": "quick/binary-3-disjoint", "seg": "objects/bomb.dcm"}],
            }
        )
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dicom4qi.cli.main",
            "ingest",
            str(sub),
            "--build",
            str(bomb["root"] / "build"),
            "--out",
            str(tmp_path / "kept"),
            "--consumer",
            "reference",
            "--memory-mb",
            "2048",
            "--validate-timeout",
            "60",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    saved = next((tmp_path / "kept" / "mallory").glob("*.results.json"))
    doc = ResultsDocument.load(saved)
    write = next(r for r in doc.records if r.step == "write")
    assert write.status.value != "PASS", write.message
    assert doc.run.harness_peak_rss_mb is not None and doc.run.harness_peak_rss_mb < HARNESS_BOUND_MB, (
        doc.run.harness_peak_rss_mb
    )


def test_the_harness_peak_memory_is_its_own_not_that_of_whatever_started_it() -> None:
    import subprocess
    import sys

    ballast = bytearray(320 * 2**20)  # a large parent (a long test session, a CI runner's Python)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touched: resident, not just reserved
    probe = (
        "import resource; from dicom4qi.process.usage import own_peak_rss_mb; "
        "print(own_peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    own, inherited = float(out[0]), float(out[1])
    assert inherited > 300  # Linux hands the parent's high-water mark to the child at exec: not the child's
    assert own < 100, own  # what the harness reports: its own address space since exec
    del ballast


VARIANT_ADAPTER = r"""
import json, sys
req = json.load(sys.stdin)
print(json.dumps({"protocol": 1, "ok": True, "name": "v", "tool": "variant-echo", "version": req.get("variant", "default"),
                  "role": "consumer", "features": ["binary"]}))
"""


def test_executable_adapters_get_the_variant_they_were_named_with(tmp_path: Path) -> None:
    """``exec:FOLDER@5.6.8`` sends ``"variant": "5.6.8"`` in every request; without ``@`` the field is absent."""
    import sys

    from dicom4qi.adapters.contract import resolve

    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter.py").write_text(VARIANT_ADAPTER)
    (folder / "dicom4qi-adapter.json").write_text(
        json.dumps({"protocol": 1, "command": [sys.executable, "adapter.py"]})
    )
    cls = resolve("consumer", f"exec:{folder}@5.6.8")
    assert cls(variant="5.6.8").version() == "5.6.8"
    assert cls().version() == "default"
