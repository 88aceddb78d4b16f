"""dicom4qi combine: shards merge into one valid document; mixed corpora and conflicting cells are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TypedDict, Unpack

import jsonschema
import pytest

from dicom4qi.cli.main import main
from dicom4qi.model.results import (
    Record,
    ResultsDocument,
    RunInfo,
    SegObject,
    Status,
    ToolInfo,
)
from dicom4qi.run.combine import CombineError, combine, load_inputs

from .conftest import CASES, FEATURES, ROOT

SCHEMA = json.loads((ROOT / "reports" / "schema" / "results.schema.json").read_text(encoding="utf-8"))
CASE = "quick/binary-3-disjoint"


def _run(
    run_id: str = "20261126T010000Z-abcdef",
    *,
    consumers: list[str],
    started: str = "2026-11-26T01:00:00+00:00",
    finished: str | None = "2026-11-26T01:10:00+00:00",
    fingerprint: str = "f00dfeedf00dfeed",
    run_dir: str | None = "/ci/build/runs/20261126T010000Z-abcdef",
    workers: int = 2,
) -> RunInfo:
    return RunInfo(
        run_id=run_id,
        started=started,
        finished=finished,
        suite_version="0.1.0",
        suite_commit="c0ffee",
        platform="Linux",
        python="3.11.9",
        cpu_count=4,
        memory_total_mb=16000.0,
        command=["dicom4qi", "run"],
        corpus_fingerprint=fingerprint,
        filters={"tier": ["quick"], "case": [], "producer": ["highdicom", "reference"], "consumer": consumers},
        timeout_s=600.0,
        memory_limit_mb=8192.0,
        workers=workers,
        run_dir=run_dir,
        harness_peak_rss_mb=90.0,
        harness_cpu_s=1.5,
    )


def _tool(role: str, name: str, version: str = "1.0") -> ToolInfo:
    return ToolInfo(name=name, role=role, tool=name, version=version, available=True, features=["binary"])


def _seg(producer: str) -> SegObject:
    return SegObject(path=f"objects/quick__binary-3-disjoint/{producer}/seg.dcm", size=1234, sha256="ab" * 32, frames=7)


def _write(producer: str) -> Record:
    return Record(
        case=CASE,
        producer=producer,
        step="write",
        status=Status.PASS,
        wall_s=1.25,
        seg=_seg(producer),
        features=["binary"],
        tier="quick",
        segments=3,
    )


def _validate(producer: str) -> Record:
    return Record(
        case=CASE,
        producer=producer,
        consumer="dciodvfy",
        step="validate",
        status=Status.PASS,
        seg=_seg(producer),
        wall_s=0.2,
        tier="quick",
    )


def _read(producer: str, consumer: str, status: Status = Status.PASS, wall_s: float = 2.0) -> Record:
    return Record(
        case=CASE,
        producer=producer,
        consumer=consumer,
        step="read",
        status=status,
        wall_s=wall_s,
        seg=_seg(producer),
        tier="quick",
        features=["binary"],
        artifacts={"screenshot": f"objects/quick__binary-3-disjoint/{producer}/read-{consumer}/screenshot.png"},
    )


class _RunFields(TypedDict, total=False):
    """What a shard's run may say differently (the keywords of :func:`_run`)."""

    run_id: str
    started: str
    finished: str | None
    fingerprint: str
    run_dir: str | None
    workers: int


def _shard(consumer: str, **run: Unpack[_RunFields]) -> ResultsDocument:
    """A shard as a resumed run writes it: the produce step's writes and validations, and its own reads."""
    producers = ["highdicom", "reference"]
    tools = [_tool("producer", p) for p in producers] + [_tool("consumer", consumer), _tool("validator", "dciodvfy")]
    records = [r for p in producers for r in (_write(p), _validate(p), _read(p, consumer))]
    return ResultsDocument(run=_run(consumers=[consumer], **run), tools=tools, records=records)


def _save(tmp: Path, name: str, doc: ResultsDocument) -> Path:
    path = tmp / name
    path.write_text(doc.model_dump_json(indent=1), encoding="utf-8")
    return path


def _combine_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    code = main(["combine", *map(str, args)])
    return code, " ".join(capsys.readouterr().err.split())


def test_shards_merge_into_one_valid_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _save(tmp_path, "shard-highdicom.json", _shard("highdicom", finished="2026-11-26T01:20:00+00:00"))
    b = _save(tmp_path, "shard-reference.json", _shard("reference", started="2026-11-26T01:00:00+00:00", workers=4))
    out = tmp_path / "out" / "combined.json"
    code, err = _combine_cli(capsys, a, b, "--out", out)
    assert code == 0, err
    assert "combined 2 document(s): 8 records" in err
    data = json.loads(out.read_text(encoding="utf-8"))
    jsonschema.validate(data, SCHEMA)
    doc = ResultsDocument.load(out)
    run = doc.run
    assert run.run_id == "20261126T010000Z-abcdef", "shards of one run keep its id"
    assert run.started == "2026-11-26T01:00:00+00:00" and run.finished == "2026-11-26T01:20:00+00:00"
    assert run.workers == 6 and run.harness_cpu_s == 3.0
    assert run.filters["consumer"] == ["highdicom", "reference"] and run.filters["producer"] == [
        "highdicom",
        "reference",
    ]
    assert run.run_dir == "/ci/build/runs/20261126T010000Z-abcdef"
    assert run.command[:2] == ["dicom4qi", "combine"] and str(a) in run.command
    assert [p["file"] for p in run.combined_from] == [str(a), str(b)]
    assert [p["consumers"] for p in run.combined_from] == ["highdicom", "reference"]
    assert all(len(str(p["sha256"])) == 64 for p in run.combined_from)
    # every cell once: 2 writes, 2 validations (the same record in both shards), 4 reads
    keys = [r.key for r in doc.records]
    assert len(keys) == len(set(keys)) == 8
    assert [(t.role, t.name) for t in doc.tools] == [
        ("producer", "highdicom"),
        ("producer", "reference"),
        ("consumer", "highdicom"),
        ("consumer", "reference"),
        ("validator", "dciodvfy"),
    ]


def test_mixed_corpus_fingerprints_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _save(tmp_path, "a.json", _shard("highdicom"))
    b = _save(tmp_path, "b.json", _shard("reference", fingerprint="0123456789abcdef"))
    out = tmp_path / "combined.json"
    code, err = _combine_cli(capsys, a, b, "--out", out)
    assert code == 2
    assert "different corpus versions" in err
    assert f"f00dfeedf00dfeed in {a}" in err and f"0123456789abcdef in {b}" in err
    assert not out.exists()


def test_conflicting_cells_are_refused_with_both_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _shard("highdicom")
    again = _shard("highdicom")  # the same consumer in two inputs: its reads come twice
    again.records = [
        r if r.step != "read" or r.producer != "reference" else _read("reference", "highdicom", Status.FAIL)
        for r in again.records
    ]
    a, b = _save(tmp_path, "a.json", first), _save(tmp_path, "b.json", again)
    code, err = _combine_cli(capsys, a, b, "--out", tmp_path / "c.json")
    assert code == 2
    assert "1 duplicated cell(s)" in err
    assert (
        f"case {CASE}, producer reference, consumer highdicom: PASS in {a}, FAIL in {b} (they differ in status)" in err
    )
    assert not (tmp_path / "c.json").exists()


def test_a_cell_differing_in_timing_only_is_still_a_conflict(tmp_path: Path) -> None:
    again = _shard("highdicom")
    again.records = [_read(r.producer, "highdicom", wall_s=9.0) if r.step == "read" else r for r in again.records]
    inputs = load_inputs([_save(tmp_path, "a.json", _shard("highdicom")), _save(tmp_path, "b.json", again)])
    with pytest.raises(
        CombineError,
        match=r"2 duplicated cell\(s\)[\s\S]*PASS in .*a\.json, PASS in .*b\.json \(they differ in wall_s\)",
    ):
        combine(inputs)


def test_identical_duplicates_are_kept_once_whatever_the_formatting(tmp_path: Path) -> None:
    doc = _shard("highdicom")
    a = _save(tmp_path, "a.json", doc)
    b = tmp_path / "b.json"  # the same records written another way: compact, other key order
    data = json.loads(a.read_text(encoding="utf-8"))
    data["records"] = [dict(reversed(list(r.items()))) for r in data["records"]]
    data["run"]["finished"] = "2026-11-26T01:11:00+00:00"
    b.write_text(json.dumps(data), encoding="utf-8")
    merged = combine(load_inputs([a, b]))
    assert len(merged.records) == len(doc.records)


def test_a_tool_in_two_versions_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = _shard("reference")
    other.tools = [_tool(t.role, t.name, "2.0") if t.name == "highdicom" else t for t in other.tools]
    a, b = _save(tmp_path, "a.json", _shard("highdicom")), _save(tmp_path, "b.json", other)
    code, err = _combine_cli(capsys, a, b, "--out", tmp_path / "c.json")
    assert code == 2
    assert f"producer highdicom: version 1.0 in {a}, 2.0 in {b}" in err


def test_other_refusals_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _save(tmp_path, "a.json", _shard("highdicom"))
    code, err = _combine_cli(capsys, a, a, "--out", tmp_path / "c.json")
    assert code == 2 and f"{a}: the same document as {a}" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "dicom4qi-results/1"}', encoding="utf-8")
    code, err = _combine_cli(capsys, a, bad, "--out", tmp_path / "c.json")
    assert code == 2 and f"{bad}: not a valid results document" in err
    code, err = _combine_cli(capsys, a, tmp_path / "missing.json", "--out", tmp_path / "c.json")
    assert code == 2 and "missing.json: cannot be read" in err
    code, err = _combine_cli(capsys, a, "--out", a)
    assert code == 2 and "is one of the inputs" in err


def test_earlier_runs_of_other_folders_keep_their_files(tmp_path: Path) -> None:
    """Runs with their own ids and folders: a new id, the common folder, paths prefixed to stay right."""
    one = _shard(
        "highdicom",
        run_id="20261125T010000Z-aaaaaa",
        run_dir="/ci/build/runs/20261125T010000Z-aaaaaa",
        started="2026-11-25T01:00:00+00:00",
        finished="2026-11-25T01:10:00+00:00",
    )
    two = _shard("reference", run_id="20261126T010000Z-bbbbbb", run_dir="/ci/build/runs/20261126T010000Z-bbbbbb")
    two.records = [r for r in two.records if r.step == "read"]  # the writes are the first run's
    merged = combine(load_inputs([_save(tmp_path, "one.json", one), _save(tmp_path, "two.json", two)]))
    assert merged.run.run_id.startswith("20261125T010000Z-combined-")
    assert merged.run.run_dir == "/ci/build/runs"
    read = next(r for r in merged.records if r.consumer == "reference" and r.producer == "highdicom")
    assert (
        read.seg is not None
        and read.seg.path == "20261126T010000Z-bbbbbb/objects/quick__binary-3-disjoint/highdicom/seg.dcm"
    )
    assert read.artifacts["screenshot"].startswith("20261126T010000Z-bbbbbb/objects/")
    write = next(r for r in merged.records if r.step == "write" and r.producer == "highdicom")
    assert write.seg is not None and write.seg.path.startswith("20261125T010000Z-aaaaaa/objects/")
    assert combine(load_inputs([tmp_path / "one.json", tmp_path / "two.json"]), run_id="mine").run.run_id == "mine"


def test_an_unfinished_shard_leaves_the_run_unfinished(tmp_path: Path) -> None:
    merged = combine(
        load_inputs(
            [
                _save(tmp_path, "a.json", _shard("highdicom")),
                _save(tmp_path, "b.json", _shard("reference", finished=None)),
            ]
        )
    )
    assert merged.run.finished is None


# --------------------------------------------------------------------------- the nightly's flow, for real


def _cells(doc: ResultsDocument) -> dict[tuple[str, str, str | None], str]:
    return {r.key: r.status.value for r in doc.records}


@pytest.mark.slow
def test_sharded_run_matches_a_single_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The plan's shards one after another (produce once, one resumed run per consumer), combined and reported,
    give the cells, statuses and site of one run of the same selection."""
    import shlex

    from dicom4qi.site.report import render_site
    from dicom4qi.site.view import SiteOptions

    build = tmp_path / "build"
    common = ["--corpus", str(CASES), "--features", str(FEATURES), "--build", str(build), "-j", "1", "--timeout", "120"]
    selection = ["--case", CASE, "--producer", "highdicom", "--producer", "reference"]
    consumers = ["highdicom", "reference"]

    assert main(["plan", "--produce", *selection]) == 0
    produce = shlex.split(capsys.readouterr().out)
    assert main(["run", *common, *produce, "--out", str(tmp_path / "produced")]) == 0
    produced = ResultsDocument.load(tmp_path / "produced" / "latest.json")
    run_id = produced.run.run_id
    assert produced.run.filters["consumer"] == [] and {r.step for r in produced.records} == {"write", "validate"}
    assert main(["plan", *selection, *[a for c in consumers for a in ("--consumer", c)]]) == 0
    shards = json.loads(capsys.readouterr().out)["include"]
    assert [s["consumer"] for s in shards] == consumers
    outputs = []
    for shard in shards:  # each shard gets its own copy of the produce step's results, as a CI job would
        folder = tmp_path / shard["name"]
        shutil.copytree(tmp_path / "produced", folder)
        assert main(["run", *common, "--resume", run_id, *shlex.split(shard["args"]), "--out", str(folder)]) == 0
        outputs.append(folder / f"{run_id}.json")
        shard_doc = ResultsDocument.load(outputs[-1])
        # the shard kept the produce step's records and its description of the producers and the validator
        assert [r for r in shard_doc.records if r.step != "read"] == produced.records
        assert [t for t in shard_doc.tools if t.role != "consumer"] == produced.tools
    combined = tmp_path / "combined.json"
    assert main(["combine", *map(str, outputs), "--out", str(combined)]) == 0
    capsys.readouterr()

    assert (
        main(
            [
                "run",
                *common,
                *selection,
                *[a for c in consumers for a in ("--consumer", c)],
                "--out",
                str(tmp_path / "single"),
            ]
        )
        == 0
    )
    merged, single = ResultsDocument.load(combined), ResultsDocument.load(tmp_path / "single" / "latest.json")
    jsonschema.validate(json.loads(combined.read_text(encoding="utf-8")), SCHEMA)
    assert _cells(merged) == _cells(single)
    validators = [t.name for t in single.tools if t.role == "validator"]  # dciodvfy, and PixelMed
    assert "dciodvfy" in validators
    # per producer: write, one validate per validator, a read per consumer
    assert len(_cells(merged)) == 2 * (1 + len(validators) + len(consumers))
    assert [(t.role, t.name, t.version) for t in merged.tools] == [(t.role, t.name, t.version) for t in single.tools]
    assert merged.run.corpus_fingerprint == single.run.corpus_fingerprint
    assert set(merged.run.filters["consumer"]) == set(consumers)

    sites = {}
    for name, doc in (("sharded", merged), ("single", single)):
        out = tmp_path / f"site-{name}"
        render_site([doc], out, history=[], options=SiteOptions(corpus=CASES, build=build, pictures=False))
        sites[name] = out
    pages = {n: sorted(p.relative_to(s).as_posix() for p in s.rglob("*.html")) for n, s in sites.items()}
    assert pages["sharded"] == pages["single"]
    badges = {
        n: {p.name: p.read_text(encoding="utf-8") for p in (s / "badges").glob("*.json")} for n, s in sites.items()
    }
    assert badges["sharded"] == badges["single"] and badges["single"]
    statuses = {}
    for n, s in sites.items():
        history = json.loads((s / "data" / "history.json").read_text(encoding="utf-8"))
        statuses[n] = {
            (c["case"], c["producer"], c["consumer"]): list(c["statuses"].values()) for c in history["cells"]
        }
    assert statuses["sharded"] == statuses["single"]
