"""The negative corpus: mutants are made as declared, and every reaction is graded, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom4qi.corpus.mutate import MUTATIONS, load_mutants
from dicom4qi.model.results import ResultsDocument, Status
from dicom4qi.run.runner import RunConfig, run

from .conftest import CASES, FEATURES, ROOT

NEGATIVE = ROOT / "corpus" / "negative.toml"
CHOSEN = [
    "truncated-pixel-data-half",
    "frames-lie-more",
    "duplicate-segment-number",
    "decompression-bomb-rows-columns",
    "rle-too-many-segments",
    "unknown-transfer-syntax",
    "missing-per-frame-groups",
    "swapped-positions",
]


def test_the_negative_corpus_is_large_and_well_formed() -> None:
    mutants = load_mutants(NEGATIVE)
    assert len(mutants) >= 25
    assert {m.mutation for m in mutants} <= set(MUTATIONS)
    assert len({m.mutation for m in mutants}) >= 10


def test_a_bad_mutant_entry_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "negative.toml"
    bad.write_text('[[mutant]]\nname = "x"\nbase = "quick/a"\nmutation = "no-such"\ndescription = "d"\n')
    with pytest.raises(ValueError, match="unknown mutation 'no-such'"):
        load_mutants(bad)


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> ResultsDocument:
    tmp = tmp_path_factory.mktemp("negative")
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=tmp / "build",
        results=tmp / "results",
        tiers=["negative"],
        cases=CHOSEN,
        consumers=["reference", "highdicom", "tests.fakes:LyingConsumer"],
        workers=2,
        negative_timeout_s=60,
    )
    return ResultsDocument.load(run(cfg).path)


def _rec(doc: ResultsDocument, name: str, consumer: str):
    (rec,) = [r for r in doc.records if r.case == f"negative/{name}" and r.consumer == consumer]
    return rec


@pytest.mark.slow
def test_every_mutant_is_graded_for_every_consumer(doc) -> None:
    cases = {r.case for r in doc.records}
    assert cases == {f"negative/{n}" for n in CHOSEN}
    for r in doc.records:
        assert r.tier == "negative" and r.producer == "mutant"
        if r.step == "read":
            assert r.reaction is not None


def test_the_reference_decoder_rejects_each_cleanly(doc) -> None:
    for name in CHOSEN:
        rec = _rec(doc, name, "reference")
        assert rec.reaction == "clean-reject" and rec.status is Status.PASS, (name, rec.message)
    assert "Segment Numbers repeat" in _rec(doc, "duplicate-segment-number", "reference").message
    assert "the RLE header declares 15 segment(s)" in _rec(doc, "rle-too-many-segments", "reference").message


def test_a_silent_accept_is_a_failure(doc) -> None:
    # the liar decodes through highdicom and then reports empty segments: whatever it meets, it returns data
    liar = _rec(doc, "swapped-positions", "tests.fakes:LyingConsumer")
    assert liar.reaction == "silent-accept" and liar.status is Status.FAIL


def test_the_validator_flags_mutants(doc) -> None:
    flagged = [r for r in doc.records if r.consumer == "dciodvfy" and r.status is Status.PASS]
    assert len(flagged) >= 5
    rec = _rec(doc, "frames-lie-more", "dciodvfy")
    assert rec.status is Status.PASS and rec.message.startswith("flagged:")
