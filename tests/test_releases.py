"""Any release of a PyPI tool as a column (``highdicom@0.26.0``): its own environment with that release pinned,
the real version in the handshake, the pins kept; a release the adapter cannot drive is not available (SKIPPED with
what it lacks), never forced. Adapters that install their own releases (OHIF, cornerstone: npm) take the
parameter themselves, as before."""

from __future__ import annotations

import pytest

from dicom4qi.adapters.contract import is_release, missing_calls
from dicom4qi.adapters.envs import ENVS_ENV, EnvSpec
from dicom4qi.model.results import ResultsDocument, Status
from dicom4qi.run.runner import RunConfig, run

from .conftest import CASES, FEATURES


def test_a_release_is_told_from_a_mode() -> None:
    assert is_release("0.26.0") and is_release("3.14.0b6") and is_release("1.0.0rc1")
    assert not is_release("strict") and not is_release("mergeSegments") and not is_release(None)


def test_missing_calls_name_what_a_release_lacks() -> None:
    assert missing_calls(("json:dumps(indent, sort_keys)",)) == []
    assert missing_calls(("json:dumps(no_such_keyword)", "json:nope")) == ["json:dumps(no_such_keyword=)", "json:nope"]
    (why,) = missing_calls(("no_such_module_d4qi:thing",))
    assert why.startswith("no_such_module_d4qi (it does not import: ModuleNotFoundError")


@pytest.mark.slow
def test_releases_of_highdicom_as_columns(tmp_path) -> None:
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=tmp_path / "build",
        results=tmp_path / "results",
        cases=["quick/binary-3-disjoint"],
        producers=["reference"],
        consumers=["highdicom@0.26.0", "highdicom@0.18.0", "highdicom@0.0.99"],
        workers=2,
        validate=False,
    )
    doc = ResultsDocument.load(run(cfg).path)
    tools = {t.name: t for t in doc.tools if t.role == "consumer"}
    reads = {r.consumer: r for r in doc.records if r.step == "read"}

    new = tools["highdicom@0.26.0"]
    assert new.available and new.version == "0.26.0" and new.environment == "highdicom@0.26.0"
    assert reads["highdicom@0.26.0"].status is Status.PASS, reads["highdicom@0.26.0"].message
    freeze = EnvSpec("highdicom@0.26.0", tmp_path).directory(tmp_path / "build") / "pip-freeze.txt"
    assert "highdicom==0.26.0" in freeze.read_text()

    # 0.18.0 does not import with pydicom 3, and its metadata does not say so: the adapter's release_pins put
    # pydicom 2 beside it, and the release reads.
    old = tools["highdicom@0.18.0"]
    assert old.available and old.version == "0.18.0", old.reason
    freeze = EnvSpec("highdicom@0.18.0", tmp_path).directory(tmp_path / "build") / "pip-freeze.txt"
    assert "pydicom==2." in freeze.read_text()
    assert reads["highdicom@0.18.0"].status is Status.PASS, reads["highdicom@0.18.0"].message
    # A release the registry does not serve: its environment cannot be built, said with pip's words in every cell
    # (ERROR, as for any environment that does not build), never a pass.
    none = tools["highdicom@0.0.99"]
    assert not none.available and "could not be built" in (none.error or "")
    gone = reads["highdicom@0.0.99"]
    assert gone.status is Status.ERROR and "could not be built" in gone.message


def test_a_release_gets_the_pins_its_adapter_declares_for_it(tmp_path) -> None:
    from dicom4qi.adapters.envs import release_env, release_pins
    from dicom4qi.tools.highdicom.consumer import HighdicomConsumer

    assert release_pins(HighdicomConsumer, "0.22.0") == ["pydicom<3"]
    assert release_pins(HighdicomConsumer, "0.23.0") == []
    assert release_pins(HighdicomConsumer, "not-a-version") == []
    text = release_env(HighdicomConsumer, "0.19.0", tmp_path).requirements.read_text()
    assert "highdicom==0.19.0\npydicom<3\n" in text
    # An optional call (marked "?") is the adapter's to check where it uses it: its absence does not refuse a release.
    assert missing_calls(("json:no_such_thing?", "json:dumps")) == []


def _checkout_of_installed(name: str, dest) -> str:
    """A checkout made from an installed distribution's own files: its package and a pyproject naming its
    requirements, with a local version (what a maintainer's unreleased change looks like to the suite)."""
    import shutil
    from importlib import metadata
    from pathlib import Path

    dist = metadata.distribution(name)
    package = Path(str(dist.locate_file(name)))
    shutil.copytree(package, dest / "src" / name, ignore=shutil.ignore_patterns("__pycache__"))
    requires = [r for r in (dist.requires or []) if "extra ==" not in r]
    version = f"{dist.version}+local"
    (dest / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\ndependencies = {requires!r}\n'
        '[tool.setuptools.packages.find]\nwhere = ["src"]\n'
        f'[tool.setuptools.package-data]\n{name} = ["**/*"]\n'.replace("'", '"')
    )
    return version


@pytest.mark.slow
def test_a_local_checkout_as_a_column_and_its_change_rebuilds(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A checkout's environment is this test's own (its path is new at every run: no leftovers in build/envs).
    monkeypatch.setenv(ENVS_ENV, str(tmp_path / "envs"))
    checkout = tmp_path / "highdicom-checkout"
    version = _checkout_of_installed("highdicom", checkout)
    spec = f"highdicom@path:{checkout}"

    def read() -> ResultsDocument:
        cfg = RunConfig(
            corpus=CASES,
            features=FEATURES,
            build=tmp_path / "build",
            results=tmp_path / "results",
            cases=["quick/binary-3-disjoint"],
            producers=["reference"],
            consumers=[spec],
            workers=1,
            validate=False,
        )
        return ResultsDocument.load(run(cfg).path)

    doc = read()
    (tool,) = [t for t in doc.tools if t.role == "consumer"]
    assert tool.available and tool.version == version and (tool.environment or "").startswith("highdicom@path-")
    (rec,) = [r for r in doc.records if r.step == "read"]
    assert rec.status is Status.PASS, rec.message
    # A change in the checkout: the next run installs it again (here, a change that breaks the reader).
    init = checkout / "src" / "highdicom" / "seg" / "__init__.py"
    init.write_text(init.read_text() + "\nraise ImportError('a change under test')\n")
    doc = read()
    (tool,) = [t for t in doc.tools if t.role == "consumer"]
    assert not tool.available and "a change under test" in tool.reason


@pytest.mark.slow
def test_a_release_of_dcmqi_writes_and_reads_as_its_own_row_and_column(tmp_path) -> None:
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=tmp_path / "build",
        results=tmp_path / "results",
        cases=["quick/binary-3-disjoint"],
        producers=["dcmqi@1.5.6"],
        consumers=["dcmqi@1.5.6", "reference"],
        workers=2,
        validate=False,
    )
    doc = ResultsDocument.load(run(cfg).path)
    tools = {(t.role, t.name): t for t in doc.tools}
    for role in ("producer", "consumer"):
        info = tools[(role, "dcmqi@1.5.6")]
        assert info.available and info.version == "1.5.6" and info.environment == "dcmqi@1.5.6", info.error
    (write,) = [r for r in doc.records if r.step == "write"]
    assert write.status is Status.PASS, write.message
    reads = {r.consumer: r for r in doc.records if r.step == "read"}
    assert reads["dcmqi@1.5.6"].status is Status.PASS and reads["reference"].status is Status.PASS
