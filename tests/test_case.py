"""Case files: the schema, the lint and its messages."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest

from conformance.case import (
    CaseError,
    implied_features,
    load_case,
    load_cases,
    load_features,
    schema_text,
)
from conformance.cli import main
from conformance.results import schema_text as results_schema_text

from .conftest import CASES, FEATURES, ROOT

GOOD = """
description = "A valid little case for the lint tests"
features = ["binary", "disjoint", "single-frame-source", "ts-explicit-le"]
tier = "quick"

[source]
rows = 16
columns = 16
frames = 4

[segments]
count = 2

[encoding]
type = "BINARY"
bits = 1
"""


def _write(tmp_path: Path, text: str, name: str = "quick/x.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _lint(tmp_path: Path, text: str, name: str = "quick/x.toml") -> CaseError:
    path = _write(tmp_path, text, name)
    with pytest.raises(CaseError) as info:
        load_case(path, tmp_path, load_features(FEATURES))
    return info.value


def test_good_case_loads_with_id_from_path(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    loaded = load_case(path, tmp_path, load_features(FEATURES))
    assert loaded.id == "quick/x"
    assert loaded.case.segments.count == 2


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (("count = 2", "count = 0"), "segments.count", "greater than or equal to 1"),
        (("bits = 1", "bits = 8"), "(case)", "BINARY is 1 bit"),
        (("rows = 16", "rows = 16\nslices = 3"), "source.slices", "Extra inputs"),
        (('"binary", ', '"binary", "bogus", '), "features", "not in corpus/features.txt: bogus"),
        (('"disjoint", ', ""), "features", "does not declare: disjoint"),
        (('tier = "quick"', 'tier = "stress"'), "tier", "under quick/"),
        (("frames = 4", "frames = 4\norientation = [1, 0, 0, 1, 0, 0]"), "source", "orthonormal"),
        (('type = "BINARY"', 'type = "LABELMAP"'), "(case)", "LABELMAP is 8 or 16 bit"),
        (("count = 2", "count = 2\nempty = [5]"), "segments", "segment 5 is not in 1..2"),
        (("count = 2", 'count = 2\ngenerator = "blobs"\noverlap = true'), "segments", "disjoint binary"),
    ],
)
def test_lint_names_file_field_and_reason(tmp_path: Path, change: tuple[str, str], field: str, reason: str) -> None:
    err = _lint(tmp_path, GOOD.replace(*change, 1))
    assert err.path.name == "x.toml"
    assert err.field == field
    assert reason in err.reason


def test_lint_rejects_broken_toml(tmp_path: Path) -> None:
    err = _lint(tmp_path, GOOD + "\n[source\n")
    assert err.field == "(file)" and "not valid TOML" in err.reason


def test_lint_8bit_labelmap_cannot_hold_300_segments(tmp_path: Path) -> None:
    text = GOOD.replace('type = "BINARY"\nbits = 1', 'type = "LABELMAP"\nbits = 8').replace("count = 2", "count = 300")
    err = _lint(tmp_path, text)
    assert "at most 255 segments" in err.reason


def test_cli_lint_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, GOOD, "quick/good.toml")
    assert main(["corpus", "lint", "--corpus", str(tmp_path), "--features", str(FEATURES)]) == 0
    _write(tmp_path, GOOD.replace("count = 2", "count = -1"), "quick/bad.toml")
    assert main(["corpus", "lint", "--corpus", str(tmp_path), "--features", str(FEATURES)]) == 1
    out = capsys.readouterr().out
    assert "bad.toml: segments.count:" in out


def test_every_corpus_case_is_valid_and_every_feature_is_covered() -> None:
    cases, errors = load_cases(CASES, FEATURES)
    assert errors == []
    assert len(cases) >= 20
    covered = set().union(*(implied_features(c.case) | set(c.case.features) for c in cases))
    assert covered == set(load_features(FEATURES))


def test_committed_schemas_are_current() -> None:
    assert (ROOT / "corpus" / "case.schema.json").read_text() == schema_text()
    assert (ROOT / "reports" / "schema" / "results.schema.json").read_text() == results_schema_text()


def test_generated_schema_accepts_every_case_and_rejects_a_bad_one() -> None:
    schema = json.loads(schema_text())
    for path in CASES.rglob("*.toml"):
        jsonschema.validate(tomllib.loads(path.read_text()), schema)
    bad = tomllib.loads(GOOD.replace("count = 2", "count = 0"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_fingerprint_ignores_description_but_not_seed() -> None:
    case = load_case(CASES / "quick/binary-3-disjoint.toml", CASES).case
    other = case.model_copy(update={"description": "another description of the same case"})
    assert other.fingerprint() == case.fingerprint()
    reseeded = case.model_copy(update={"segments": case.segments.model_copy(update={"seed": 99})})
    assert reseeded.fingerprint() != case.fingerprint()
