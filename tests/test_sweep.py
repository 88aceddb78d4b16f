"""``dicom4qi sweep``: releases of one tool side by side, and the Releases page drawn from them.

The end-to-end test sweeps two real highdicom releases, one before its Label Map support (0.22.0) and one after
(0.24.0), with the benchmark on a small case, and reads the page: the release columns, the counts, "since 0.24.0" on
the label map features, the timing plot. The marks (regressed, fixed, known issues) are checked on documents made
for the purpose, where every transition is known."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dicom4qi.judge.known import KnownIssue, Match
from dicom4qi.model.results import Record, ResultsDocument, RunInfo, Status, ToolInfo
from dicom4qi.run.plan import sweep_tools
from dicom4qi.run.runner import RunConfig
from dicom4qi.run.sweep import (
    SweepConfig,
    SweepError,
    registry_releases,
    role_versions,
    select_releases,
    sort_versions,
    sweep,
)
from dicom4qi.site.releases import releases_of, render_releases

from .conftest import CASES, FEATURES, ROOT


def test_releases_are_ordered_and_chosen_as_asked() -> None:
    npm = ["3.12.10", "3.11.1", "3.14.0-beta.6", "3.13.2", "3.12.0"]
    assert sort_versions(npm) == ["3.11.1", "3.12.0", "3.12.10", "3.13.2", "3.14.0-beta.6"]
    assert select_releases(npm, last=3) == ["3.12.0", "3.12.10", "3.13.2"]  # final releases only
    assert select_releases(npm, last=2, prereleases=True) == ["3.13.2", "3.14.0-beta.6"]
    assert select_releases(npm, since="3.12.10", prereleases=True) == ["3.12.10", "3.13.2", "3.14.0-beta.6"]
    assert select_releases(npm, last=None) == ["3.11.1", "3.12.0", "3.12.10", "3.13.2"]


def test_the_registry_names_the_releases() -> None:
    versions = registry_releases("highdicom")
    assert {"0.18.4", "0.22.0", "0.28.2"} <= set(versions)
    assert versions.index("0.18.4") < versions.index("0.22.0") < versions.index("0.28.2")
    # An executable adapter lists the releases it installs; its reader and its writer may install different ones.
    assert registry_releases("cornerstone") == ["4.19.0", "5.6.8", "5.14.0"]
    assert role_versions("cornerstone", "producer", ["4.19.0", "5.6.8", "5.14.0"]) == ["5.6.8", "5.14.0"]
    assert role_versions("highdicom", "consumer", ["0.1.0", "0.28.2"]) == ["0.1.0", "0.28.2"]
    assert {"highdicom", "ohif", "dcmqi", "cornerstone"} <= set(sweep_tools())
    assert "reference" not in sweep_tools() and "pydicom-seg" not in sweep_tools()
    with pytest.raises(SweepError, match="drives one release only"):
        registry_releases("reference")
    with pytest.raises(SweepError, match="not a builtin adapter"):
        registry_releases("no-such-tool")


def test_the_command_refuses_what_it_cannot_do() -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dicom4qi.cli.main", "sweep", *args], capture_output=True, text=True, cwd=ROOT
        )

    out = cli("no-such-tool", "1.0")
    assert out.returncode == 2 and "not a builtin adapter" in out.stderr
    out = cli("highdicom", "0.24.0", "--no-bench", "--bench-only")
    assert out.returncode == 2 and "nothing to do" in out.stderr
    assert sweep is not None
    with pytest.raises(SweepError, match="no releases"):
        sweep(SweepConfig(tool="highdicom", versions=[]))


@pytest.mark.slow
def test_a_sweep_of_two_highdicom_releases_and_its_page(tmp_path: Path) -> None:
    cfg = SweepConfig(
        tool="highdicom",
        versions=["0.24.0", "0.22.0"],  # in any order: swept oldest first
        run=RunConfig(
            corpus=CASES,
            features=FEATURES,
            build=tmp_path / "build",
            cases=["quick/binary-3-disjoint", "quick/labelmap-8bit"],
            workers=2,
            validate=False,
        ),
        roles=["consumer"],
        bench_cases=["quick/binary-3-disjoint"],
        repeats=1,
        out=tmp_path / "sweeps",
    )
    result = sweep(cfg)
    assert result.versions == ["0.22.0", "0.24.0"]
    doc = ResultsDocument.load(result.runs["consumer"])
    reads = {(r.case, r.consumer): r for r in doc.records if r.step == "read"}
    assert reads[("quick/binary-3-disjoint", "highdicom@0.22.0")].status is Status.PASS
    assert reads[("quick/binary-3-disjoint", "highdicom@0.24.0")].status is Status.PASS
    # 0.22.0 predates the Label Map SOP class: its own refusal, the cell's ERROR (it is tried, and fails).
    old = reads[("quick/labelmap-8bit", "highdicom@0.22.0")]
    assert old.status is Status.ERROR and "not a Segmentation" in old.message
    assert reads[("quick/labelmap-8bit", "highdicom@0.24.0")].status is Status.PASS
    assert {r.producer for r in doc.records if r.step == "read"} == {"reference"}
    assert (tmp_path / "sweeps" / "highdicom" / "consumer" / "latest.json").is_file()

    assert result.bench is not None
    bench = ResultsDocument.load(result.bench)
    timed = {r.consumer: r for r in bench.records if r.step == "read" and r.bench is not None}
    assert set(timed) >= {"highdicom@0.22.0", "highdicom@0.24.0"}
    assert all(r.bench is not None and r.bench.median_wall_s > 0 for r in timed.values())

    page = render_releases(tmp_path / "sweeps", tmp_path / "site").read_text()
    assert "highdicom: reading, 2 releases" in page
    assert page.index(">0.22.0</th>") < page.index(">0.24.0</th>")
    assert "since 0.24.0" in page  # the label map features pass from 0.24.0 on
    assert (tmp_path / "site" / "releases" / "highdicom-consumer.svg").is_file()
    assert "quick/binary-3-disjoint" in page  # the timing table's column


def _doc(statuses: dict[str, list[Status]], versions: list[str]) -> ResultsDocument:
    """A sweep's consumer document: case -> the status of each release's read, in order."""
    tools = [ToolInfo(name="reference", role="producer", tool="reference", version="1", available=True)] + [
        ToolInfo(name=f"ohif@{v}", role="consumer", tool="@ohif/app", version=v, available=v != "3.12.0")
        for v in versions
    ]
    tools[2].error = "npm pack failed"
    records = []
    for case, row in statuses.items():
        for v, status in zip(versions, row):
            records.append(
                Record(
                    case=case,
                    tier="quick",
                    features=["binary", "labelmap-8bit"] if "labelmap" in case else ["binary"],
                    step="read",
                    producer="reference",
                    consumer=f"ohif@{v}",
                    status=status,
                    message="segment 2: 10 voxels differ" if status is Status.FAIL else "",
                )
            )
    run = RunInfo(
        run_id="sweep-test",
        started="t",
        suite_version="0",
        platform="p",
        python="3",
        corpus_fingerprint="f",
        timeout_s=1,
        memory_limit_mb=1,
        workers=1,
    )
    return ResultsDocument(run=run, tools=tools, records=records)


def test_regressed_fixed_since_and_known_issues_are_marked() -> None:
    P, F, S = Status.PASS, Status.FAIL, Status.SKIPPED
    versions = ["3.11.1", "3.12.0", "3.12.10", "3.13.2"]
    doc = _doc(
        {
            "quick/a": [P, S, P, P],
            "quick/b-labelmap": [P, S, F, P],  # broken in 3.12.10, mended in 3.13.2
            "quick/c-labelmap": [F, S, F, P],  # passes since 3.13.2
        },
        versions,
    )
    issue = KnownIssue(
        id="ohif-voxels",
        title="voxels lost",
        tool="ohif",
        upstream="https://github.com/OHIF/Viewers/issues/4875",
        affected="<3.13",
        match=[Match(step="read", consumers=["ohif"], message="voxels differ")],
    )
    side = releases_of(doc, "ohif", "consumer", [issue], ["binary", "labelmap-8bit"])
    assert [r.version for r in side.releases] == versions
    assert not side.releases[1].available and side.releases[1].reason == "npm pack failed"
    assert [(r.passed, r.tried) for r in side.releases] == [(2, 3), (0, 0), (1, 3), (3, 3)]
    rows = {row.feature: row for row in side.rows}
    lm = rows["labelmap-8bit"]
    assert [c.state for c in lm.cells] == ["partial", "none", "fail", "pass"]
    assert lm.since == "3.13.2"
    # 3.12.0 was not available: 3.12.10 is compared with 3.11.1, the release before it that ran.
    broke = lm.changes[2]
    assert broke.kind == "regressed" and broke.previous == "3.11.1" and broke.cases == ["quick/b-labelmap"]
    assert [k.id for k in broke.known] == ["ohif-voxels"]  # ohif@3.12.10's cell, matched as the tool's
    fixed = lm.changes[3]
    assert fixed.kind == "fixed" and fixed.cases == ["quick/b-labelmap", "quick/c-labelmap"]
    assert rows["binary"].since == "3.13.2"
    assert 1 not in lm.changes  # an unavailable release has no mark
    # Release by release, over every case: what broke and what was mended, with what explains it.
    first, second = side.changes
    assert (first.release, first.previous, first.broke, first.mended) == ("3.12.10", "3.11.1", ["quick/b-labelmap"], [])
    assert [k.id for k in first.broke_known] == ["ohif-voxels"] and first.broke_features == ["binary", "labelmap-8bit"]
    assert (second.release, second.broke, second.mended) == ("3.13.2", [], ["quick/b-labelmap", "quick/c-labelmap"])
    assert [k.id for k in second.mended_known] == ["ohif-voxels"]  # what 3.12.10 failed on


def test_a_release_outside_a_known_issues_range_is_not_explained_by_it() -> None:
    P, F = Status.PASS, Status.FAIL
    doc = _doc({"quick/a": [P, F]}, ["3.11.1", "3.13.2"])
    issue = KnownIssue(
        id="old-only",
        title="only before 3.12",
        tool="ohif",
        upstream="none",
        affected="<3.12",
        match=[Match(step="read", message="voxels differ")],
    )
    side = releases_of(doc, "ohif", "consumer", [issue], ["binary"])
    (row,) = side.rows
    assert row.changes[1].kind == "regressed" and row.changes[1].known == []
    assert row.since is None
