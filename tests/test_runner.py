"""The harness end to end: real highdicom, fake tools that crash, hang, eat memory or lie."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from dicom4qi.model.results import ResultsDocument, Status
from dicom4qi.run.runner import RunConfig, run

from .conftest import CASES, FEATURES, ROOT

FAKE = "tests.fakes:"
CONSUMERS = ["highdicom"] + [
    FAKE + n
    for n in (
        "CrashingConsumer",
        "HangingConsumer",
        "GreedyConsumer",
        "RaisingConsumer",
        "GarbageConsumer",
        "LyingConsumer",
        "MissingConsumer",
    )
]
PRODUCERS = ["highdicom", FAKE + "GarbageProducer", FAKE + "ExitingProducer"]


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunConfig, ResultsDocument]:
    tmp = tmp_path_factory.mktemp("run")
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=tmp / "build",
        results=tmp / "results",
        cases=["quick/binary-3-disjoint"],
        producers=PRODUCERS,
        consumers=CONSUMERS,
        workers=4,
        timeout_s=15,
        memory_mb=2048,
    )
    summary = run(cfg)
    return cfg, ResultsDocument.load(summary.path)


def _rec(doc: ResultsDocument, producer: str, consumer: str | None):
    (rec,) = [r for r in doc.records if r.producer == producer and r.consumer == consumer]
    return rec


@pytest.mark.slow
def test_every_fault_is_an_outcome_and_the_run_goes_on(faulty_run) -> None:
    _, doc = faulty_run
    assert doc.run.finished is not None
    assert _rec(doc, "highdicom", None).status is Status.PASS
    expected = {
        "highdicom": Status.PASS,
        FAKE + "CrashingConsumer": Status.CRASH,
        FAKE + "HangingConsumer": Status.TIMEOUT,
        FAKE + "GreedyConsumer": Status.ERROR,
        FAKE + "RaisingConsumer": Status.ERROR,
        FAKE + "GarbageConsumer": Status.ERROR,
        FAKE + "LyingConsumer": Status.FAIL,
        FAKE + "MissingConsumer": Status.SKIPPED,
    }
    got = {c: _rec(doc, "highdicom", c).status for c in expected}
    assert got == expected


def test_fault_messages_say_what_happened(faulty_run) -> None:
    _, doc = faulty_run
    crash = _rec(doc, "highdicom", FAKE + "CrashingConsumer")
    assert "SIGABRT" in crash.message
    hang = _rec(doc, "highdicom", FAKE + "HangingConsumer")
    assert hang.limit == "time" and "killed after 15 s" in hang.message
    greedy = _rec(doc, "highdicom", FAKE + "GreedyConsumer")
    assert greedy.limit == "memory" and "memory limit of 2048 MiB exceeded" in greedy.message
    assert "not to my taste" in _rec(doc, "highdicom", FAKE + "RaisingConsumer").message
    assert "decoded output is unusable" in _rec(doc, "highdicom", FAKE + "GarbageConsumer").message
    liar = _rec(doc, "highdicom", FAKE + "LyingConsumer")
    assert "voxels:" in liar.message and "missing, 0 extra" in liar.message
    assert "not installed" in _rec(doc, "highdicom", FAKE + "MissingConsumer").message


def test_broken_producers_are_errors_and_leave_nothing_to_read(faulty_run) -> None:
    _, doc = faulty_run
    garbage = _rec(doc, FAKE + "GarbageProducer", None)
    assert garbage.status is Status.ERROR and "not a readable DICOM file" in garbage.message
    exiting = _rec(doc, FAKE + "ExitingProducer", None)
    assert exiting.status is Status.CRASH and "exited with status 3" in exiting.message
    for producer in (FAKE + "GarbageProducer", FAKE + "ExitingProducer"):
        reads = [r for r in doc.records if r.producer == producer and r.step == "read"]
        assert reads and all(
            r.status is Status.SKIPPED and "no object" in r.message for r in reads if "Missing" not in r.consumer
        )


def test_results_validate_against_the_committed_schema(faulty_run) -> None:
    cfg, doc = faulty_run
    schema = json.loads((ROOT / "reports" / "schema" / "results.schema.json").read_text())
    data = json.loads((cfg.results / "latest.json").read_text())
    jsonschema.validate(data, schema)
    write = _rec(doc, "highdicom", None)
    assert write.seg is not None and len(write.seg.sha256) == 64 and write.seg.size > 0
    assert write.wall_s and write.wall_s > 0 and write.peak_rss_mb and write.peak_rss_mb > 10
    versions = {t.name: t.version for t in doc.tools}
    assert versions["highdicom"] and versions["highdicom"][0].isdigit()


def test_resume_runs_only_what_is_missing(faulty_run) -> None:
    cfg, doc = faulty_run
    latest = cfg.results / "latest.json"
    data = json.loads(latest.read_text())
    dropped = [
        r
        for r in data["records"]
        if r["consumer"] in ("highdicom", FAKE + "LyingConsumer") and r["producer"] == "highdicom"
    ]
    assert len(dropped) == 2
    data["records"] = [r for r in data["records"] if r not in dropped]
    data["run"]["finished"] = None
    latest.write_text(json.dumps(data))
    kept_crash = _rec(doc, "highdicom", FAKE + "CrashingConsumer")
    resumed_cfg = RunConfig(
        **{
            **cfg.__dict__,
            "resume": "latest",
            "consumers": ["highdicom", FAKE + "LyingConsumer", FAKE + "CrashingConsumer"],
            "producers": ["highdicom"],
        }
    )
    summary = run(resumed_cfg)
    again = ResultsDocument.load(summary.path)
    assert again.run.run_id == doc.run.run_id
    assert _rec(again, "highdicom", "highdicom").status is Status.PASS
    assert _rec(again, "highdicom", FAKE + "LyingConsumer").status is Status.FAIL
    # the crash record was kept, not run again
    assert _rec(again, "highdicom", FAKE + "CrashingConsumer").wall_s == kept_crash.wall_s


def test_run_refuses_an_empty_selection(tmp_path: Path) -> None:
    from dicom4qi.cli.main import main

    args = [
        "run",
        "--corpus",
        str(CASES),
        "--build",
        str(tmp_path / "b"),
        "--out",
        str(tmp_path / "r"),
        "--case",
        "no/such-case",
    ]
    assert main(args) == 2
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_segmentation_in_two_instances_is_checked_whole_and_read_instance_by_instance(tmp_path: Path) -> None:
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=tmp_path / "build",
        results=tmp_path / "results",
        cases=["quick/binary-two-instances"],
        producers=["reference", "highdicom"],
        consumers=["reference", "highdicom"],
        workers=2,
        timeout_s=120,
        memory_mb=4096,
        ignore_claims=True,  # highdicom does not claim it: it writes one instance, which the write check catches
    )
    doc = ResultsDocument.load(run(cfg).path)
    write = _rec(doc, "reference", None)
    assert write.status is Status.PASS, write.message
    assert write.seg is not None and [Path(i.path).name for i in write.seg.instances] == ["seg.2.dcm"]
    names = {c.name for c in write.checks}
    assert {"instances", "instances-one-series", "instances-segments", "content"} <= names
    for consumer in ("reference", "highdicom"):
        read = _rec(doc, "reference", consumer)
        assert read.status is Status.PASS, read.message
        assert any("instance by instance" in n for n in read.notes)
    one = _rec(doc, "highdicom", None)
    assert one.status is Status.FAIL
    assert any(c.name == "instances" and c.status.value == "FAIL" for c in one.checks)
    assert "1 instance(s) written, the case asks for 2" in one.message


@pytest.mark.slow
def test_pixelmed_validates_every_object_beside_the_reads(faulty_run) -> None:
    from dicom4qi.judge.pixelmed import pixelmed_available

    _, doc = faulty_run
    objects = {(r.case, r.producer) for r in doc.records if r.step == "write" and r.seg is not None}
    validated = {(r.case, r.producer): r for r in doc.records if r.step == "validate" and r.consumer == "pixelmed"}
    assert objects and objects <= set(validated), "an object PixelMed never got to"
    if pixelmed_available()[0]:
        assert all(validated[o].status is not Status.SKIPPED for o in objects)
