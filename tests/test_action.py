"""The GitHub Action for a tool's own CI (action.yml, scripts/action-run, docs/github-action.md) and its gate.

The gate (``dicom4qi gate``) is tested on synthetic results documents: a regression, a fix, a known failure that
still fails, a lost verdict, an unavailable column, a baseline without the column, a file that cannot be read. The
action is tested as GitHub would run it: its copy-paste workflow passes actionlint, action.yml declares every input
it uses and gives every step a shell, and its one script is run with the environment the action's step gives it (its
``env`` taken from action.yml, GITHUB_* and RUNNER_* as the runner sets them) on a checkout made from the installed
highdicom: against a nightly served by git from a local "GitHub", no regression (exit 0); against a baseline where
that cell passed, a checkout whose reads are mirrored fails the job (exit 1) and the summary names the cell.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dicom4qi.cli.main import main
from dicom4qi.judge.known import KnownIssue
from dicom4qi.model.results import Record, ResultsDocument, Status, ToolInfo
from dicom4qi.run.gate import GateError, baseline_column_for, gate, gate_markdown, load_baseline, resolve_column

from .conftest import ROOT
from .test_combine import _run
from .test_releases import _checkout_of_installed
from .test_workflows import need_actionlint

ACTION = ROOT / "action.yml"
SCRIPT = ROOT / "scripts" / "action-run"
EXAMPLE = ROOT / "docs" / "examples" / "tool-ci.yml"
DOC = ROOT / "docs" / "github-action.md"
CASE = "quick/binary-3-disjoint"
CHECKOUT = "highdicom@path:/home/runner/work/highdicom/highdicom"


# --------------------------------------------------------------------------- the gate, on synthetic documents


def _rec(
    status: Status,
    *,
    consumer: str | None = CHECKOUT,
    producer: str = "reference",
    case: str = CASE,
    message: str = "",
    step: str = "read",
) -> Record:
    return Record(case=case, producer=producer, consumer=consumer, step=step, status=status, message=message)


def _doc(
    records: list[Record], run_id: str = "20261127T010000Z-123456", tools: list[ToolInfo] | None = None
) -> ResultsDocument:
    consumers = sorted({r.consumer for r in records if r.consumer})
    return ResultsDocument(run=_run(run_id, consumers=consumers), tools=tools or [], records=records)


def _nightly(*records: Record) -> ResultsDocument:
    renamed = [
        r.model_copy(update={"consumer": "highdicom" if r.consumer == CHECKOUT else r.consumer}) for r in records
    ]
    return _doc(renamed, run_id="20261126T010000Z-abcdef")


def _tool(name: str = CHECKOUT, available: bool = True, reason: str = "", tool: str = "highdicom") -> ToolInfo:
    return ToolInfo(name=name, role="consumer", tool=tool, version="0.28.2+local", available=available, reason=reason)


def _kinds(report) -> dict[str, str]:
    return {c.case: c.kind for c in report.cells}


def test_a_cell_that_passed_and_now_fails_is_a_regression_and_only_that_blocks() -> None:
    cases = ["quick/a", "quick/b", "quick/c", "quick/d", "quick/e", "quick/f"]
    old = _nightly(
        _rec(Status.PASS, case=cases[0]),
        _rec(Status.FAIL, case=cases[1], message="voxels: 3 missing"),
        _rec(Status.FAIL, case=cases[2], message="voxels: 3 missing"),
        _rec(Status.PASS, case=cases[3]),
        _rec(Status.PASS, case=cases[4]),
        # a cell of another column only: never compared
        _rec(Status.PASS, case=cases[0], consumer="dcmqi"),
    )
    new = _doc(
        [
            _rec(Status.CRASH, case=cases[0], message="killed by signal 11"),
            _rec(Status.PASS, case=cases[1]),
            _rec(Status.ERROR, case=cases[2], message="it raised"),
            _rec(Status.PASS, case=cases[3]),
            _rec(Status.UNSUPPORTED, case=cases[4], message="declared unsupported"),
            _rec(Status.FAIL, case=cases[5], message="a case the nightly did not have"),
            _rec(Status.PASS, case=cases[0], producer="reference", consumer="reference"),
        ],
        tools=[_tool()],
    )
    report = gate(old, new, CHECKOUT)
    assert report.baseline_column == "highdicom"
    assert _kinds(report) == {
        cases[0]: "regression",
        cases[1]: "fixed",
        cases[2]: "still failing",
        cases[3]: "unchanged",
        cases[4]: "changed",
        cases[5]: "new",
    }
    assert report.exit_code == 1 and [c.case for c in report.regressions] == [cases[0]]
    assert report.counts == {"CRASH": 1, "ERROR": 1, "FAIL": 1, "PASS": 2, "UNSUPPORTED": 1}
    # the same without the crash: the known failures, the lost verdict and the new failure do not block
    new.records[0] = _rec(Status.PASS, case=cases[0])
    assert gate(old, new, CHECKOUT).exit_code == 0


def test_a_known_failure_that_still_fails_is_named_and_does_not_block() -> None:
    issue = KnownIssue.model_validate(
        {
            "id": "highdicom-mirrored",
            "title": "Columns mirrored",
            "tool": "highdicom",
            "upstream": "none",
            "match": [{"step": "read", "consumers": ["highdicom"], "message": "mirrored"}],
        }
    )
    old = _nightly(_rec(Status.FAIL, message="voxels: mirrored"))
    new = _doc([_rec(Status.FAIL, message="voxels: mirrored")], tools=[_tool()])
    report = gate(old, new, CHECKOUT, known=[issue])
    (cell,) = report.cells
    assert cell.kind == "still failing" and cell.known == ("highdicom-mirrored",) and report.exit_code == 0
    assert "known issue `highdicom-mirrored`" in gate_markdown(report)


def test_a_column_that_is_not_available_now_regresses_every_cell_it_passed() -> None:
    old = _nightly(_rec(Status.PASS), _rec(Status.UNSUPPORTED, case="quick/x"))
    why = "highdicom (it does not import: ImportError: a change under test)"
    new = _doc(
        [_rec(Status.SKIPPED, message="not available"), _rec(Status.SKIPPED, case="quick/x")],
        tools=[_tool(available=False, reason=why)],
    )
    report = gate(old, new, CHECKOUT)
    assert _kinds(report) == {CASE: "regression", "quick/x": "new"}
    assert "the column is not available: " + why in report.regressions[0].why
    # a SKIPPED read of an object that was not written (the column available) is no regression
    new = _doc([_rec(Status.SKIPPED, message="no object to read")], tools=[_tool()])
    assert _kinds(gate(old, new, CHECKOUT)) == {CASE: "changed"}


def test_a_producer_column_is_compared_on_its_writes_and_on_the_reads_of_its_objects() -> None:
    column = "highdicom@path:/src/highdicom"
    old = _doc(
        [
            _rec(Status.PASS, producer="highdicom", consumer=None, step="write"),
            _rec(Status.PASS, producer="highdicom", consumer="reference"),
            _rec(Status.PASS, producer="highdicom", consumer="dciodvfy", step="validate"),
        ],
        run_id="20261126T010000Z-abcdef",
    )
    new = _doc(
        [
            _rec(Status.PASS, producer=column, consumer=None, step="write"),
            _rec(Status.FAIL, producer=column, consumer="reference", message="voxels: 1 extra"),
            _rec(Status.PASS, producer=column, consumer="dciodvfy", step="validate"),
        ]
    )
    report = gate(old, new, resolve_column(new, "highdicom"))
    assert [(c.step, c.consumer, c.kind) for c in report.cells] == [
        ("read", "reference", "regression"),
        ("validate", "dciodvfy", "unchanged"),
        ("write", None, "unchanged"),
    ]
    assert report.regressions[0].label == f"{CASE} · highdicom → reference [read]"


def test_a_baseline_without_the_column_is_all_new_with_a_warning(tmp_path: Path, capsys) -> None:
    old = _doc([_rec(Status.PASS, consumer="dcmqi")], run_id="20261126T010000Z-abcdef")
    new = _doc([_rec(Status.FAIL, message="wrong")], tools=[_tool()])
    report = gate(old, new, CHECKOUT)
    assert _kinds(report) == {CASE: "new"} and report.exit_code == 0
    assert "has no column 'highdicom'" in report.warnings[0]
    # the command says so too, in its text and in the job summary
    (tmp_path / "old.json").write_text(old.model_dump_json())
    (tmp_path / "new.json").write_text(new.model_dump_json())
    summary = tmp_path / "summary.md"
    rc = main(
        [
            "gate",
            str(tmp_path / "old.json"),
            str(tmp_path / "new.json"),
            "--tool",
            "highdicom",
            "--summary",
            str(summary),
        ]
    )
    assert rc == 0
    assert "warning: the baseline (run 20261126T010000Z-abcdef) has no column 'highdicom'" in capsys.readouterr().out
    assert "[!WARNING]" in summary.read_text() and "No regressions" in summary.read_text()


def test_bad_input_is_exit_2_with_the_file_named(tmp_path: Path, capsys) -> None:
    new = _doc([_rec(Status.PASS)], tools=[_tool()])
    (tmp_path / "new.json").write_text(new.model_dump_json())
    (tmp_path / "broken.json").write_text('{"format": "dicom4qi-results/1", "run": ')
    for baseline, said in [
        (tmp_path / "broken.json", "broken.json: not a valid results document"),
        (tmp_path / "absent.json", "no baseline"),
    ]:
        assert main(["gate", str(baseline), str(tmp_path / "new.json"), "--tool", "highdicom"]) == 2
        assert said in "".join(capsys.readouterr())
    # a column the run does not have, and a run that is not there
    assert main(["gate", str(tmp_path / "new.json"), str(tmp_path / "new.json"), "--tool", "dcmqi"]) == 2
    assert "the run has no column 'dcmqi'" in "".join(capsys.readouterr())
    assert main(["gate", str(tmp_path / "new.json"), str(tmp_path / "nope.json"), "--tool", "dcmqi"]) == 2
    assert "no results file" in "".join(capsys.readouterr())


def test_a_baseline_folder_gives_the_newest_run_with_the_column_for_the_cases(tmp_path: Path) -> None:
    older = _nightly(_rec(Status.PASS))
    newer_other_tier = _nightly(_rec(Status.PASS, case="full/ct-512"))
    (tmp_path / "20261120T000000Z-aaaaaa.json").write_text(older.model_dump_json())
    (tmp_path / "20261126T000000Z-bbbbbb.json").write_text(newer_other_tier.model_dump_json())
    (tmp_path / "20261127T000000Z-cccccc.json").write_text("not json")
    doc, path, warnings = load_baseline(tmp_path, "highdicom", {CASE})
    assert path.name == "20261120T000000Z-aaaaaa.json" and doc.records[0].case == CASE
    assert "20261127T000000Z-cccccc.json" in warnings[0]
    # none with those cases: the newest readable one (the gate then warns that every cell is new)
    _, path, _ = load_baseline(tmp_path, "highdicom", {"quick/none"})
    assert path.name == "20261126T000000Z-bbbbbb.json"
    (tmp_path / "empty").mkdir()
    with pytest.raises(GateError, match="no usable results document"):
        load_baseline(tmp_path / "empty", "highdicom", {CASE})


def test_which_column_and_under_which_name_the_baseline_has_it() -> None:
    exec_column = "exec:/home/runner/work/dcmjs-adapter"
    new = _doc(
        [_rec(Status.PASS), _rec(Status.PASS, consumer=exec_column), _rec(Status.PASS, consumer="cornerstone@5.6.8")],
        tools=[_tool(), _tool(exec_column, tool="dcmjs")],
    )
    assert resolve_column(new, "highdicom") == CHECKOUT and resolve_column(new, CHECKOUT) == CHECKOUT
    assert baseline_column_for(new, CHECKOUT) == "highdicom"
    assert baseline_column_for(new, exec_column) == "dcmjs"
    assert baseline_column_for(new, "cornerstone@5.6.8") == "cornerstone@5.6.8"
    two = _doc([_rec(Status.PASS), _rec(Status.PASS, consumer="highdicom@path:/other")])
    with pytest.raises(GateError, match="several columns"):
        resolve_column(two, "highdicom")


def test_the_summary_is_one_table_row_per_cell_whatever_the_message() -> None:
    old = _nightly(_rec(Status.PASS))
    new = _doc([_rec(Status.FAIL, message="a | b\nc <script>")], tools=[_tool()])
    text = gate_markdown(gate(old, new, CHECKOUT))
    (row,) = [line for line in text.splitlines() if line.startswith(f"| `{CASE}")]
    assert row.count(" | ") == 3 and "a \\| b c &lt;script>" in row
    assert "## dicom4qi: highdicom" in text and "**1 regression**" in text


# --------------------------------------------------------------------------- the action's files


def _action() -> dict[str, Any]:
    data = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _script_step(action: dict[str, Any]) -> dict[str, Any]:
    (step,) = [s for s in action["runs"]["steps"] if "scripts/action-run" in s.get("run", "")]
    return step


def test_actionlint_passes_on_the_copy_paste_workflow() -> None:
    command = need_actionlint()
    out = subprocess.run(
        [*command, str(EXAMPLE.relative_to(ROOT))], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, f"actionlint ({command[0]}) on {EXAMPLE.name}:\n{out.stdout}{out.stderr}"


def test_the_action_is_composite_and_declares_what_it_uses() -> None:
    text = ACTION.read_text(encoding="utf-8")
    action = _action()
    assert action["runs"]["using"] == "composite"
    declared = set(action["inputs"])
    used = set(re.findall(r"\binputs\.([A-Za-z0-9_-]+)", text))
    assert used <= declared, f"inputs used but not declared: {used - declared}"
    assert declared <= used, f"inputs declared but never used: {declared - used}"
    assert [name for name, spec in action["inputs"].items() if spec.get("required")] == ["tool"]
    for step in action["runs"]["steps"]:
        assert ("run" in step) != ("uses" in step), step
        if "run" in step:
            assert step.get("shell") == "bash", f"a composite step needs its shell: {step.get('name')}"
    # pinned like the workflows: a commit, the version in the comment, the same pin as .github/workflows
    workflows = "".join(p.read_text(encoding="utf-8") for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    for m in re.finditer(r"uses:\s*(\S+)(.*)", text):
        action_ref, comment = m.group(1), m.group(2).strip()
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", action_ref), action_ref
        assert re.fullmatch(r"# v\d+\.\d+\.\d+", comment), f"{action_ref} lacks its version"
        assert f"{action_ref} {comment}" in workflows, f"{action_ref} is pinned otherwise in .github/workflows"
    # every input reaches the script as INPUT_<NAME> (GitHub's spelling), and the script reads no other
    step = _script_step(action)
    env = step["env"]
    for name, value in env.items():
        input_name = name.removeprefix("INPUT_").lower().replace("_", "-")
        assert value == f"${{{{ inputs.{input_name} }}}}", name
    read = set(re.findall(r"\bINPUT_[A-Z_]+", SCRIPT.read_text(encoding="utf-8")))
    assert read == set(env), f"the script reads {sorted(read - set(env))}, the action passes {sorted(set(env) - read)}"
    # every output is one the script writes to GITHUB_OUTPUT
    script = SCRIPT.read_text(encoding="utf-8")
    for name, spec in action["outputs"].items():
        assert spec["value"] == f"${{{{ steps.{step['id']}.outputs.{name} }}}}"
        assert re.search(rf'echo "{name}=', script), f"the script never sets the output {name}"
    upload = next(s for s in action["runs"]["steps"] if "upload-artifact" in s.get("uses", ""))
    assert upload["if"] == "always()" and "/site/" in upload["with"]["path"] and "/junit.xml" in upload["with"]["path"]


def test_the_copy_paste_workflow_runs_the_action_on_pull_requests_and_pushes() -> None:
    workflow = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    events = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert "pull_request" in events and "push" in events
    (job,) = workflow["jobs"].values()
    assert job["timeout-minutes"] and job["runs-on"] == "ubuntu-24.04"
    (step,) = [s for s in job["steps"] if "/dicom4qi@" in s.get("uses", "")]
    declared = _action()["inputs"]
    assert set(step["with"]) <= set(declared) and "tool" in step["with"]
    commented = re.findall(r"#\s+([a-z-]+):", EXAMPLE.read_text(encoding="utf-8"))
    assert set(commented) <= set(declared), "the commented inputs are the action's"
    doc = DOC.read_text(encoding="utf-8")
    assert EXAMPLE.read_text(encoding="utf-8") in doc, "docs/github-action.md shows the example file as it is"
    for name in declared:
        assert f"`{name}`" in doc, f"docs/github-action.md does not describe the input {name}"


# --------------------------------------------------------------------------- the script, run as the action runs it


def _stable_checkout(dest: Path, *, broken: bool) -> Path:
    """A checkout of the installed highdicom in the build folder, made again only when it is not as wanted: its
    environment (named by its path, rebuilt when its files change) is then kept between test runs."""
    from importlib import metadata

    stamp = f"highdicom {metadata.version('highdicom')} broken={broken}\n"
    marker = dest / "DICOM4QI-TEST"
    if marker.is_file() and marker.read_text() == stamp:
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    _checkout_of_installed("highdicom", dest)
    if broken:  # a change under test: every frame's columns mirrored, as a real bug would have it
        init = dest / "src" / "highdicom" / "seg" / "__init__.py"
        init.write_text(
            init.read_text()
            + "\n\ndef _mirrored(method):\n    import functools\n\n    @functools.wraps(method)\n"
            + "    def read(self, *args, **kwargs):\n        return method(self, *args, **kwargs)[..., ::-1]\n\n"
            + "    return read\n\n\n"
            + "Segmentation.get_pixels_by_source_instance = _mirrored(Segmentation.get_pixels_by_source_instance)\n"
            + "Segmentation.get_pixels_by_source_frame = _mirrored(Segmentation.get_pixels_by_source_frame)\n"
        )
    marker.write_text(stamp)
    return dest


def _run_action(
    tmp: Path, workspace: Path, inputs: dict[str, str], action_path: Path = ROOT, runner: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """The action's script step as the runner runs it: its ``env`` from action.yml with the inputs (the defaults
    for those not given), its ``run`` in ``bash --noprofile --norc -eo pipefail``, in the workspace."""
    action = _action()
    step = _script_step(action)
    values = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()} | inputs
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_", "RUNNER_"))}
    for name, expr in step["env"].items():
        m = re.fullmatch(r"\$\{\{ inputs\.([a-z-]+) \}\}", expr)
        assert m, expr
        env[name] = values[m.group(1)]
    summary, output = tmp / "step-summary.md", tmp / "github-output.txt"
    summary.write_text("")
    output.write_text("")
    (tmp / "runner-temp").mkdir(exist_ok=True)
    env |= {
        "GITHUB_ACTIONS": "true",
        "GITHUB_ACTION_PATH": str(action_path),
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(output),
        "GITHUB_REPOSITORY": "imagingdatacommons/highdicom",
        "GITHUB_RUN_ID": "1234",
        "RUNNER_TEMP": str(tmp / "runner-temp"),
        # what setup-python and `pip install -e $GITHUB_ACTION_PATH` give: this checkout's suite on PATH
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
    } | (runner or {})
    script = tmp / "step.sh"
    script.write_text(step["run"])
    out = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    return out.returncode, summary.read_text(), out.stdout + out.stderr + "\n" + output.read_text()


def _outputs(log: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in log.splitlines() if re.match(r"^[a-z]+=", line))


def _nightly_server(root: Path, repo: str, baseline: Path) -> str:
    """A local stand-in for GitHub (its URL, for GITHUB_SERVER_URL): ``repo``'s results branch with the baseline as
    runs/<run id>.json, beside an older run."""
    bare = root / f"{repo}.git"
    bare.parent.mkdir(parents=True)
    src = root / "src"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "config", "uploadpack.allowFilter", "true"], check=True)
    subprocess.run(["git", "init", "-q", "-b", "results", str(src)], check=True)
    (src / "runs").mkdir()
    run_id = json.loads(baseline.read_text())["run"]["run_id"]
    shutil.copy(baseline, src / "runs" / f"{run_id}.json")
    (src / "runs" / "20200101T000000Z-000000.json").write_text("an older run, never read")
    subprocess.run([*git, "-C", str(src), "add", "runs"], check=True)
    subprocess.run([*git, "-C", str(src), "commit", "-q", "-m", "Nightly results"], check=True)
    subprocess.run(["git", "-C", str(src), "push", "-q", str(bare), "results"], check=True)
    return f"file://{root}"


@pytest.mark.slow
def test_the_action_script_gates_a_checkout_against_the_nightly(tmp_path: Path) -> None:
    # The nightly: the released highdicom (the suite's own) read the case, as the nightly's column `highdicom`.
    nightly_out = tmp_path / "nightly"
    rc = main(
        ["run", "--case", CASE, "--producer", "reference", "--consumer", "highdicom", "--no-validate",
         "--build", str(nightly_out / "build"), "--out", str(nightly_out / "results")]
    )  # fmt: skip
    assert rc == 0
    nightly = nightly_out / "results" / "latest.json"
    cell = next(r for r in ResultsDocument.load(nightly).records if r.consumer == "highdicom")
    assert cell.status is Status.PASS, cell.message

    # A tool's repository, its checkout in the workspace; the action fetched as GitHub keeps it (_actions/OWNER/NAME/REF).
    checkouts = ROOT / "build" / "test-action"
    workspace = tmp_path / "work" / "highdicom"
    workspace.parent.mkdir()
    workspace.symlink_to(_stable_checkout(checkouts / "highdicom", broken=False), target_is_directory=True)
    action_path = tmp_path / "_actions" / "someone" / "dicom4qi" / "v1"
    action_path.parent.mkdir(parents=True)
    action_path.symlink_to(ROOT, target_is_directory=True)
    server = _nightly_server(tmp_path / "github", "someone/dicom4qi", nightly)

    # 1. The checkout as it is against the nightly (the default baseline, fetched with git): no regression.
    rc, summary, log = _run_action(
        tmp_path,
        workspace,
        {"tool": "highdicom", "selection": CASE, "jobs": "2"},
        action_path=action_path,
        runner={"GITHUB_SERVER_URL": server},
    )
    assert rc == 0, log[-4000:]
    assert "No regressions against the baseline" in summary and "| unchanged | 1 |" in summary, summary
    assert "the nightly of someone/dicom4qi" in summary and "[this run](" in summary
    outputs = _outputs(log)
    assert outputs["regressions"] == "0" and outputs["column"].startswith("highdicom@path:")
    work = Path(outputs["work"])
    assert work == tmp_path / "runner-temp" / "dicom4qi"
    assert (work / "site" / "index.html").is_file() and Path(outputs["junit"]).is_file()
    assert "<testsuites" in Path(outputs["junit"]).read_text()

    # 2. A change that mirrors every read, against a baseline file where the cell passed: the job fails, and the
    #    summary names the cell.
    broken = tmp_path / "work-broken" / "highdicom"
    broken.parent.mkdir()
    broken.symlink_to(_stable_checkout(checkouts / "highdicom-broken", broken=True), target_is_directory=True)
    shutil.copy(nightly, tmp_path / "nightly.json")
    rc, summary, log = _run_action(
        tmp_path,
        broken,
        {"tool": "highdicom", "selection": CASE, "baseline": str(tmp_path / "nightly.json"), "jobs": "2"},
    )
    assert rc == 1, log[-4000:]
    assert "**1 regression** against the baseline" in summary, summary
    assert f"| `{CASE} · reference → highdicom [read]` | PASS | FAIL | voxels:" in summary
    assert "::error title=dicom4qi::1 regression(s) against the baseline" in log
    assert _outputs(log)["regressions"] == "1"


def test_the_action_script_refuses_a_baseline_it_cannot_have(tmp_path: Path) -> None:
    workspace = tmp_path / "checkout"
    workspace.mkdir()
    rc, summary, log = _run_action(tmp_path, workspace, {"tool": "highdicom", "baseline": "no-such-file.json"})
    assert rc == 2 and "no baseline" in summary and "::error title=dicom4qi::" in log
    rc, summary, log = _run_action(tmp_path, workspace, {"tool": "highdicom", "role": "reader"})
    assert rc == 2 and "role must be consumer, producer or both" in log


def test_what_installing_a_checkout_leaves_in_it_does_not_rebuild_its_environment(tmp_path: Path) -> None:
    from dicom4qi.adapters.envs import _source_digest

    (tmp_path / "src" / "tool").mkdir(parents=True)
    (tmp_path / "src" / "tool" / "__init__.py").write_text("x = 1\n")
    before = _source_digest(tmp_path)
    # what pip's in-tree build leaves behind
    (tmp_path / "build" / "lib").mkdir(parents=True)
    (tmp_path / "build" / "lib" / "tool.py").write_text("x = 1\n")
    (tmp_path / "src" / "tool.egg-info").mkdir()
    (tmp_path / "src" / "tool.egg-info" / "PKG-INFO").write_text("Name: tool\n")
    (tmp_path / "src" / "tool" / "__pycache__").mkdir()
    (tmp_path / "src" / "tool" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert _source_digest(tmp_path) == before
    (tmp_path / "src" / "tool" / "__init__.py").write_text("x = 2  # a change\n")
    assert _source_digest(tmp_path) != before


def test_a_checkout_is_refused_where_the_adapter_could_not_install_it() -> None:
    from dicom4qi.adapters.contract import unknown_spec

    # highdicom's reader declares its PyPI distribution (a checkout is installed into its own environment); its
    # writer does not, and would write with the suite's own highdicom under the checkout's name
    assert unknown_spec("consumer", "highdicom@path:/src/highdicom") is None
    why = unknown_spec("producer", "highdicom@path:/src/highdicom")
    assert why is not None and "takes no checkout" in why
    assert "takes no checkout" in (unknown_spec("consumer", "cornerstone@path:/src/cornerstone") or "")
