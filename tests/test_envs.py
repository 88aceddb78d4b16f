"""The environment manager: creation, reuse, rebuild on a change of pins, and a broken environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom4qi.adapters.envs import ENVS_ENV, EnvError, EnvSpec, ensure_env, env_state
from dicom4qi.model.results import ResultsDocument, Status
from dicom4qi.run.runner import RunConfig, run

from .conftest import CASES, FEATURES


@pytest.fixture(autouse=True)
def _own_environments(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests build environments in their own folders, not in the shared one (conftest.py)."""
    monkeypatch.delenv(ENVS_ENV, raising=False)


@pytest.mark.slow
def test_create_reuse_and_rebuild(tmp_path: Path) -> None:
    reqs = tmp_path / "tool.requirements.txt"
    reqs.write_text("# nothing to install\n")
    spec = EnvSpec("tool", reqs)
    build = tmp_path / "build"
    assert env_state(spec, build)[0] == "missing"
    python = ensure_env(spec, build)
    assert python.is_file() and env_state(spec, build) == ("ready", "")
    marker = spec.directory(build) / ".dicom4qi-env.json"
    stamp = marker.stat().st_mtime_ns
    assert ensure_env(spec, build) == python and marker.stat().st_mtime_ns == stamp  # reused, not rebuilt
    reqs.write_text("# nothing to install, but pinned differently\n")
    assert env_state(spec, build)[0] == "stale"
    ensure_env(spec, build)
    assert env_state(spec, build)[0] == "ready" and marker.stat().st_mtime_ns != stamp


def test_broken_environment_says_why(tmp_path: Path) -> None:
    reqs = tmp_path / "broken.requirements.txt"
    reqs.write_text(f"-e {tmp_path / 'no-such-project'}\n")
    spec = EnvSpec("broken", reqs)
    with pytest.raises(EnvError, match="environment broken could not be built"):
        ensure_env(spec, tmp_path / "build")
    state, why = env_state(spec, tmp_path / "build")
    assert state == "broken" and "build-failed.log" in why


def test_a_broken_environment_makes_its_cells_errors(tmp_path: Path) -> None:
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=tmp_path / "build",
        results=tmp_path / "results",
        cases=["quick/binary-3-disjoint"],
        producers=["tests.fakes:BrokenEnvProducer"],
        consumers=["highdicom"],
    )
    doc = ResultsDocument.load(run(cfg).path)
    write = next(r for r in doc.records if r.step == "write")
    assert write.status is Status.ERROR and "could not be built" in write.message
    tool = next(t for t in doc.tools if t.role == "producer")
    assert tool.environment == "broken-env" and tool.error
