"""Case files: the schema, the lint and its messages."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest

from dicom4qi.cli.main import main
from dicom4qi.model.case import (
    CaseError,
    implied_features,
    load_case,
    load_cases,
    load_features,
    schema_text,
    uncovered_features,
)
from dicom4qi.model.results import schema_text as results_schema_text

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
        (("count = 2", "count = 2\nempty = [5]"), "segments", "segment 5 is not one of the segment numbers"),
        (("count = 2", "count = 2\nnumbers = [1, 7]"), "(case)", "BINARY and FRACTIONAL segments are numbered 1 to"),
        (("count = 2", "count = 2\nnumbers = [7, 3]"), "segments", "numbers must increase strictly"),
        (("count = 2", "count = 2\nnumbers = [1]"), "segments", "1 numbers for 2 segments"),
        (
            ("bits = 1", 'bits = 1\nfractional_type = "OCCUPANCY"'),
            "(case)",
            "only a FRACTIONAL object has a fractional",
        ),
        (("bits = 1", "bits = 1\nmax_fractional_value = 100"), "(case)", "only a FRACTIONAL object has one"),
        (
            ("bits = 1", 'bits = 1\nsource_references = "position-only"\nreferenced_instances = "segmented"'),
            "(case)",
            "a position-only object references no instance",
        ),
        (
            ("frames = 4", 'frames = 4\nlayout = "enhanced-multiframe"\nslice_thickness = false'),
            "source",
            "only a series of single-frame images",
        ),
        (("count = 2", 'count = 2\ngenerator = "blobs"\noverlap = true'), "segments", "disjoint binary"),
    ],
)
def test_lint_names_file_field_and_reason(tmp_path: Path, change: tuple[str, str], field: str, reason: str) -> None:
    err = _lint(tmp_path, GOOD.replace(*change, 1))
    assert err.path.name == "x.toml"
    assert err.field == field
    assert reason in err.reason


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (("frames = 4", "frames = 4\norientation = [nan, 0, 0, 0, 1, 0]"), "source.orientation.0", "finite"),
        (("frames = 4", "frames = 4\norigin = [0, -inf, 0]"), "source.origin.1", "finite"),
        (("frames = 4", "frames = 4\npixel_spacing = [nan, 1]"), "source.pixel_spacing.0", "finite"),
        (("frames = 4", "frames = 4\nslice_spacing = inf"), "source.slice_spacing", "finite"),
        (("frames = 4", "frames = 4\nslice_positions = [0, 1, nan, 4]"), "source.slice_positions.2", "finite"),
        (("frames = 4", "frames = 4\norigin = [0, 1e9, 0]"), "source.origin.1", "less than or equal to 1000000"),
        (("frames = 4", "frames = 4\npixel_spacing = [0, 1]"), "source.pixel_spacing.0", "greater than 0"),
        (
            ("frames = 4", "frames = 4\norientation = [2, 0, 0, 0, 1, 0]"),
            "source.orientation.0",
            "less than or equal to 1",
        ),
        (("count = 2", "count = 2\nfill = nan"), "segments.fill", "finite"),
        (
            ("bits = 1", 'bits = 1\n[metadata]\nlabel_pattern = "{n:>999999999}"'),
            "metadata",
            "more than the 64 characters",
        ),
        (
            ("bits = 1", 'bits = 1\n[metadata]\nlabel_pattern = "' + "x" * 70 + '"'),
            "metadata",
            "a Segment Label (LO) holds 64",
        ),
        (
            ("bits = 1", 'bits = 1\n[metadata]\nlabel_pattern = "{0.__class__}"'),
            "metadata",
            "only {n} may be substituted",
        ),
        (
            ("count = 2", 'count = 10\n[metadata]\nlabel_pattern = "' + "x" * 63 + '{n}"'),
            "(case)",
            "segment 10's label is 65",
        ),
        (
            ("bits = 1", 'bits = 1\n[[metadata.segment]]\nnumber = 1\nlabel = "' + "y" * 65 + '"'),
            "metadata.segment.0.label",
            "at most 64",
        ),
    ],
)
def test_lint_refuses_non_finite_out_of_range_and_overlong(
    tmp_path: Path, change: tuple[str, str], field: str, reason: str
) -> None:
    """NaN, infinity and absurd magnitudes never reach synthesis; labels fit their VR and are never expanded unbounded."""
    err = _lint(tmp_path, GOOD.replace(*change, 1))
    assert err.path.name == "x.toml"
    assert err.field == field, (err.field, err.reason)
    assert reason in err.reason


def test_lint_rejects_broken_toml(tmp_path: Path) -> None:
    err = _lint(tmp_path, GOOD + "\n[source\n")
    assert err.field == "(file)" and "not valid TOML" in err.reason


def test_lint_8bit_labelmap_cannot_hold_300_segments(tmp_path: Path) -> None:
    text = GOOD.replace('type = "BINARY"\nbits = 1', 'type = "LABELMAP"\nbits = 8').replace("count = 2", "count = 300")
    err = _lint(tmp_path, text)
    assert "segment numbers up to 255" in err.reason


def _small_features(tmp_path: Path, *extra: str) -> Path:
    """The features GOOD exercises, plus ``extra`` ones, as a features file of its own."""
    path = tmp_path / "features.txt"
    names = ["binary", "disjoint", "single-frame-source", "ts-explicit-le", *extra]
    path.write_text("".join(f"{n} {n} for the test\n" for n in names))
    return path


def test_cli_lint_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    features = _small_features(tmp_path)
    corpus = tmp_path / "cases"
    _write(corpus, GOOD, "quick/good.toml")
    assert main(["corpus", "lint", "--corpus", str(corpus), "--features", str(features)]) == 0
    _write(corpus, GOOD.replace("count = 2", "count = -1"), "quick/bad.toml")
    assert main(["corpus", "lint", "--corpus", str(corpus), "--features", str(features)]) == 1
    out = capsys.readouterr().out
    assert "bad.toml: segments.count:" in out


def test_cli_lint_fails_on_a_feature_without_a_quick_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    features = _small_features(tmp_path, "overlap")
    corpus = tmp_path / "cases"
    _write(corpus, GOOD, "quick/good.toml")
    assert main(["corpus", "lint", "--corpus", str(corpus), "--features", str(features)]) == 1
    assert "overlap: no quick case exercises this feature" in capsys.readouterr().out
    # A full-tier case does not count: every run (the quick tier) must cover every feature.
    overlap = (
        GOOD.replace('"disjoint"', '"overlap"')
        .replace('tier = "quick"', 'tier = "full"')
        .replace("count = 2", 'count = 2\ngenerator = "ellipsoids"\noverlap = true\nseed = 3')
    )
    _write(corpus, overlap, "full/overlap.toml")
    assert main(["corpus", "lint", "--corpus", str(corpus), "--features", str(features)]) == 1
    _write(corpus, overlap.replace('tier = "full"', 'tier = "quick"'), "quick/overlap.toml")
    assert main(["corpus", "lint", "--corpus", str(corpus), "--features", str(features)]) == 0


@pytest.mark.parametrize(
    ("change", "feature"),
    [
        (("bits = 1", 'bits = 1\nframe_order = "position-major"'), "segments-interleaved"),
        (("frames = 4", "frames = 4\nslice_positions = [0.0, 2.0, 6.0, 8.0]"), "uneven-spacing"),
        (("frames = 4", 'frames = 4\n[metadata]\nlabel_pattern = "Läsion {n}"'), "non-ascii-text"),
        (("rows = 16\ncolumns = 16", "rows = 15\ncolumns = 15"), "binary-unaligned-frames"),
        (("bits = 1", 'bits = 1\nframe_order = "shuffled"'), "frames-shuffled"),
        (("bits = 1", 'bits = 1\nsource_references = "position-only"'), "frames-position-only"),
        (("bits = 1", 'bits = 1\nreferenced_instances = "segmented"'), "partial-references"),
        (("frames = 4", 'frames = 4\ncharacter_set = "empty"'), "source-default-charset"),
        (("frames = 4", "frames = 4\nslice_thickness = false"), "source-no-slice-thickness"),
        (("frames = 4", "frames = 4\ndecoy_series = true"), "source-two-series"),
    ],
)
def test_content_implies_the_new_features(tmp_path: Path, change: tuple[str, str], feature: str) -> None:
    text = GOOD.replace(*change, 1)
    if "[metadata]" in text:  # keep the tables in TOML order
        head, _, meta = text.partition("[metadata]")
        meta_block, _, rest = meta.partition("\n\n")
        text = head + rest + "\n[metadata]" + meta_block + "\n"
    assert feature in implied_features(_load(tmp_path, text))
    with pytest.raises(CaseError, match=f"does not declare: {feature}"):
        load_case(_write(tmp_path, text), tmp_path, load_features(FEATURES))


def _load(tmp_path: Path, text: str):
    return load_case(_write(tmp_path, text), tmp_path).case


def test_a_sparse_label_map_numbers_its_segments_as_declared(tmp_path: Path) -> None:
    text = (
        GOOD.replace('type = "BINARY"', 'type = "LABELMAP"')
        .replace("bits = 1", "bits = 16")
        .replace('"binary", ', '"labelmap", "labelmap-16bit", "labelmap-sparse-numbers", "empty-segment", ')
        .replace("count = 2", "count = 3\nnumbers = [1, 7, 300]\nempty = [7]")
    )
    case = load_case(_write(tmp_path, text), tmp_path, load_features(FEATURES)).case
    assert case.segments.segment_numbers == [1, 7, 300] and not case.segments.contiguous
    eight_bit = text.replace("bits = 16", "bits = 8").replace('"labelmap-16bit"', '"labelmap-8bit"')
    with pytest.raises(CaseError, match="segment numbers up to 255"):
        load_case(_write(tmp_path, eight_bit), tmp_path, load_features(FEATURES))


def test_layout_checks_modality_and_frames(tmp_path: Path) -> None:
    text = GOOD.replace("frames = 4", 'frames = 4\nlayout = "projection"\nmodality = "DX"')
    with pytest.raises(CaseError, match="frames must be 1"):
        _load(tmp_path, text)
    with pytest.raises(CaseError, match="holds modality DX or CR"):
        _load(tmp_path, GOOD.replace("frames = 4", 'frames = 1\nlayout = "projection"'))


def test_every_corpus_case_is_valid_and_every_feature_is_covered() -> None:
    cases, errors = load_cases(CASES, FEATURES)
    assert errors == []
    assert len(cases) >= 20
    assert uncovered_features(cases, load_features(FEATURES)) == []


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


def test_a_segmentation_in_several_instances_lists_each_segment_once(tmp_path: Path) -> None:
    text = (
        GOOD.replace('"disjoint", ', '"disjoint", "multi-instance", ')
        .replace("count = 2", "count = 3")
        .replace("bits = 1\n", "bits = 1\ninstances = [[1, 3], [2]]\n")
        .replace('tier = "quick"', 'tier = "quick"\nreading = "each instance on its own, graded on the union"')
    )
    case = load_case(_write(tmp_path, text), tmp_path, load_features(FEATURES)).case
    assert "multi-instance" in implied_features(case)
    # BINARY instances number their segments from 1 (PS3.3 C.8.20.2); the map leads back to the case's numbers
    assert case.encoding.instance_numbering() == [{1: 1, 2: 3}, {1: 2}]
    for bad, why in [
        ("instances = [[1, 3], [2, 3]]", "exactly one instance"),
        ("instances = [[1, 2]]", "at least two instances"),
        ("instances = [[1, 2], []]", "at least two instances"),
        ("instances = [[1], [2]]", "exactly one instance"),
    ]:
        with pytest.raises(CaseError, match=why):
            load_case(_write(tmp_path, text.replace("instances = [[1, 3], [2]]", bad)), tmp_path)
    with pytest.raises(CaseError, match="reading"):
        load_case(
            _write(tmp_path, text.replace('reading = "each instance on its own, graded on the union"', "")), tmp_path
        )


def test_overlapping_label_maps_need_several_instances(tmp_path: Path) -> None:
    text = (
        GOOD.replace('type = "BINARY"', 'type = "LABELMAP"')
        .replace("bits = 1", "bits = 8")
        .replace('"binary", "disjoint", ', '"labelmap", "labelmap-8bit", "overlap", ')
        .replace("count = 2", 'count = 2\ngenerator = "ellipsoids"\noverlap = true')
    )
    with pytest.raises(CaseError, match="give encoding.instances"):
        load_case(_write(tmp_path, text), tmp_path)
    split = text.replace("bits = 8", "bits = 8\ninstances = [[1], [2]]").replace(
        'tier = "quick"', 'tier = "quick"\nreading = "each instance on its own"'
    )
    case = load_case(_write(tmp_path, split), tmp_path).case
    assert case.encoding.instance_numbering() == [{1: 1}, {2: 2}]  # a label map keeps the case's numbers


def test_a_decoy_series_is_only_beside_a_single_frame_series_and_keeps_other_fingerprints(tmp_path: Path) -> None:
    plain = _load(tmp_path, GOOD)
    with_decoy = _load(tmp_path, GOOD.replace("frames = 4", "frames = 4\ndecoy_series = true", 1))
    assert with_decoy.fingerprint() != plain.fingerprint()
    # The field added later changes no existing case's fingerprint (nor its built cache).
    explicit = _load(tmp_path, GOOD.replace("frames = 4", "frames = 4\ndecoy_series = false", 1))
    assert explicit.fingerprint() == plain.fingerprint()
    multiframe = GOOD.replace("frames = 4", 'frames = 4\nlayout = "enhanced-multiframe"\ndecoy_series = true', 1)
    with pytest.raises(CaseError, match="decoy_series"):
        load_case(_write(tmp_path, multiframe), tmp_path)
