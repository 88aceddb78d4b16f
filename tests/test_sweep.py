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
from dicom4qi.model.results import Record, ResultsDocument, Status, ToolInfo
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

from .conftest import CASES, FEATURES, ROOT, run_info


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
    out = cli("highdicom", "--since", "not-a-version", "--no-bench")
    assert out.returncode == 2 and "not a version" in out.stderr
    out = cli("highdicom", "--last", "0", "--no-bench")
    assert out.returncode == 2 and "at least 1" in out.stderr
    with pytest.raises(SweepError, match="no releases"):
        sweep(SweepConfig(tool="highdicom", versions=[]))
    # A release the registry does not serve (a typo, a "v" prefix) is refused before anything runs: it would be
    # a column of the installed release under that name.
    with pytest.raises(SweepError, match="v0.22.0"):
        sweep(SweepConfig(tool="highdicom", versions=["v0.22.0"]))
    # highdicom's writer drives the installed release only: a writer sweep would show it under every release's name.
    with pytest.raises(SweepError, match="drives the installed release only"):
        sweep(SweepConfig(tool="highdicom", versions=["0.22.0"], roles=["producer"]))
    with pytest.raises(SweepError, match="no releases to sweep"):
        sweep(SweepConfig(tool="pydicom-seg", versions=["0.4.1"]))
    with pytest.raises(SweepError, match="installs none of"):
        sweep(SweepConfig(tool="cornerstone", versions=["4.19.0"], roles=["producer"], check_versions=False))


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
    if len(tools) > 2:
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
    return ResultsDocument(run=run_info(run_id="sweep-test"), tools=tools, records=records)


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
    assert broke.kind == "regressed" and broke.previous == "3.11.1" and broke.broke == ["quick/b-labelmap"]
    assert [k.id for k in broke.known] == ["ohif-voxels"]  # ohif@3.12.10's cell, matched as the tool's
    fixed = lm.changes[3]
    assert fixed.kind == "fixed" and fixed.mended == ["quick/b-labelmap", "quick/c-labelmap"]
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
    assert row.changes[1].kind == "regressed" and row.changes[1].broke == ["quick/a"] and row.changes[1].known == []
    assert row.since is None


def test_untried_cells_are_neither_regressions_nor_fixes_and_both_marks_show() -> None:
    P, F, U, S = Status.PASS, Status.FAIL, Status.UNSUPPORTED, Status.SKIPPED
    versions = ["3.11.1", "3.12.0", "3.12.10", "3.13.2"]
    doc = _doc(
        {
            "quick/a": [U, P, F, F],  # UNSUPPORTED, then tried: broke only from a pass
            "quick/b": [F, P, S, P],  # a release that did not try it is neither a fix nor a break
            "quick/c": [P, P, F, P],
            "quick/d": [P, P, P, F],
        },
        versions,
    )
    doc.tools[2].available = True  # every release ran here
    side = releases_of(doc, "ohif", "consumer", [], ["binary"])
    (row,) = side.rows
    assert 0 not in row.changes  # nothing before the first
    assert row.changes[1].mended == ["quick/b"] and row.changes[1].broke == []  # U -> P is not a fix
    assert row.changes[2].broke == ["quick/a", "quick/c"] and row.changes[2].mended == []  # b: P -> S is nothing
    third = row.changes[3]
    assert third.broke == ["quick/d"] and third.mended == ["quick/c"] and third.kind == "regressed"
    assert [(c.release, c.broke, c.mended) for c in side.changes] == [
        ("3.12.0", [], ["quick/b"]),
        ("3.12.10", ["quick/a", "quick/c"], []),
        ("3.13.2", ["quick/d"], ["quick/c"]),
    ]


def test_a_column_that_ran_another_release_is_not_shown_as_that_release() -> None:
    doc = _doc({"quick/a": [Status.PASS, Status.PASS]}, ["0.22.0", "0.24.0"])
    doc.tools[1].version = "0.28.2"  # the adapter ignored its parameter and ran the installed release
    doc.tools[2].version = "0.24.0"
    side = releases_of(doc, "ohif", "consumer", [], ["binary"])
    first, second = side.releases
    assert not first.available and "ran 0.28.2, not 0.22.0" in first.reason
    assert second.available and (second.passed, second.tried) == (1, 1)
    assert side.rows[0].cells[0].tried == 1  # counted, but shown as n/a: the page greys an unavailable column


def test_the_page_draws_two_columns_of_one_version(tmp_path: Path) -> None:
    """A release and a checkout that reports the same version: their timings are kept apart (by column)."""
    from dicom4qi.model.results import BenchStats, Timing

    def stats(wall: float) -> BenchStats:
        t = Timing(wall_s=wall, cpu_s=wall, peak_rss_mb=100)
        return BenchStats(
            runs=[t], median_wall_s=wall, median_cpu_s=wall, median_peak_rss_mb=100, min_wall_s=wall, max_wall_s=wall
        )

    run = _doc({}, []).run
    tools = [
        ToolInfo(name="highdicom@0.28.2", role="consumer", tool="highdicom", version="0.28.2", available=True),
        ToolInfo(name="highdicom@path-1", role="consumer", tool="highdicom", version="0.28.2", available=True),
    ]
    reads = [
        Record(
            case="quick/a",
            tier="quick",
            features=["binary"],
            step="read",
            producer="reference",
            consumer=c.name,
            status=Status.PASS,
        )
        for c in tools
    ]
    timed = [
        Record(
            case="full/body-104-binary",
            step="read",
            producer="reference",
            consumer=c.name,
            status=Status.PASS,
            bench=stats(w),
        )
        for c, w in zip(tools, (2.0, 3.0))
    ]
    for side, records in (("consumer", reads), ("bench", timed)):
        folder = tmp_path / "sweeps" / "highdicom" / side
        folder.mkdir(parents=True)
        doc = ResultsDocument(run=run, tools=tools, records=records)
        (folder / "latest.json").write_text(doc.model_dump_json())
    page = render_releases(tmp_path / "sweeps", tmp_path / "site").read_text()
    assert "2.00 s" in page and "3.00 s" in page
    assert (tmp_path / "site" / "releases" / "highdicom-consumer.svg").is_file()
