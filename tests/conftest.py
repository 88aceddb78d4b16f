"""Shared fixtures: small cases built once per session into a temporary build folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dicom4qi.adapters.envs import ENVS_ENV
from dicom4qi.corpus.synth import build_case
from dicom4qi.model.case import LoadedCase, load_case, load_features
from dicom4qi.model.results import RunInfo
from dicom4qi.model.truth import Truth

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "corpus" / "cases"
FEATURES = ROOT / "corpus" / "features.txt"

# The tools' own Python environments are built once, in the checkout's build/envs (which `make run` uses too), not
# again in every test's build folder; test_envs.py, which tests building them, takes its own folders.
os.environ.setdefault(ENVS_ENV, str(ROOT / "build" / "envs"))


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("build")


def loaded(case_id: str) -> LoadedCase:
    return load_case(CASES / f"{case_id}.toml", CASES, load_features(FEATURES))


@pytest.fixture(scope="session")
def truth_of(build_dir: Path):
    cache: dict[str, Truth] = {}

    def get(case_id: str) -> Truth:
        if case_id not in cache:
            cache[case_id] = build_case(loaded(case_id), build_dir)
        return cache[case_id]

    return get


def need_node(adapter: str) -> None:
    """Skip a test of a Node adapter where node or npm is missing, but fail it in CI, which installs them."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        message = f"node and npm are needed for the {adapter} adapter"
        if os.environ.get("CI") == "true" or os.environ.get("GITHUB_ACTIONS") == "true":
            pytest.fail(message + "; CI installs them")
        pytest.skip(message)


def run_info(**fields: object) -> RunInfo:
    """A results document's run description for documents a test makes (the required fields, overridable)."""
    base: dict[str, object] = {
        "run_id": "r",
        "started": "t",
        "suite_version": "0",
        "platform": "p",
        "python": "3",
        "corpus_fingerprint": "f",
        "timeout_s": 1,
        "memory_limit_mb": 1,
        "workers": 1,
    }
    return RunInfo.model_validate(base | fields)
