"""dcmqi, pydicom-seg (in its own environment) and the transcoded producers, for real, read back by highdicom."""

from __future__ import annotations

import pytest

from dicom4qi.model.results import Record, ResultsDocument, Status
from dicom4qi.run.runner import RunConfig, run

from .conftest import CASES, FEATURES

CASE_IDS = [
    "quick/binary-3-disjoint",
    "quick/binary-overlap",
    "quick/empty-segment",
    "quick/labelmap-16bit-rle",
    "quick/labelmap-8bit-jpegls",
    "quick/fractional-jpeg2000",
]
PRODUCERS = ["dcmqi", "pydicom-seg", "highdicom+jpegls", "dcmqi+jpegls", "highdicom+jpeg2000"]


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> ResultsDocument:
    tmp = tmp_path_factory.mktemp("producers")
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=tmp / "build",
        results=tmp / "results",
        cases=CASE_IDS,
        producers=PRODUCERS,
        consumers=["highdicom"],
        workers=2,
    )
    return ResultsDocument.load(run(cfg).path)


def _validation(doc: ResultsDocument, producer: str, case: str, validator: str) -> Record:
    (rec,) = [
        r
        for r in doc.records
        if r.producer == producer and r.case == case and r.step == "validate" and r.consumer == validator
    ]
    return rec


def _rec(doc: ResultsDocument, producer: str, case: str, step: str):
    (rec,) = [r for r in doc.records if r.producer == producer and r.case == case and r.step == step]
    return rec


@pytest.mark.slow
def test_tools_report_their_real_versions_and_environments(doc) -> None:
    tools = {t.name: t for t in doc.tools if t.role == "producer"}
    assert tools["dcmqi"].version == "1.5.7" and tools["dcmqi"].environment is None
    assert tools["pydicom-seg"].version == "0.4.1" and tools["pydicom-seg"].environment == "pydicom-seg"
    assert "dcmcjpls" in (tools["highdicom+jpegls"].version or "")


def test_dcmqi_writes_binary_overlap_and_rle_label_maps(doc) -> None:
    for case in ("quick/binary-3-disjoint", "quick/binary-overlap", "quick/labelmap-16bit-rle"):
        write, read = _rec(doc, "dcmqi", case, "write"), _rec(doc, "dcmqi", case, "read")
        assert write.status is Status.PASS, write.message
        assert read.status is Status.PASS, read.message
        assert any(n.startswith("$ itkimage2segimage") for n in write.notes)
    rle = _rec(doc, "dcmqi", "quick/labelmap-16bit-rle", "write")
    assert any(n.startswith("$ bin2labelsegimage") and "--compress rle" in n for n in rle.notes)
    assert rle.seg.transfer_syntax_uid == "1.2.840.10008.1.2.5"
    # dcmqi cannot write a segment without voxels when asked to keep label numbers: its own words
    empty = _rec(doc, "dcmqi", "quick/empty-segment", "write")
    assert empty.status is Status.ERROR and "monotonically increasing" in empty.message


def test_pydicom_seg_in_its_environment(doc) -> None:
    assert _rec(doc, "pydicom-seg", "quick/binary-3-disjoint", "read").status is Status.PASS
    overlap = _rec(doc, "pydicom-seg", "quick/binary-overlap", "write")
    assert overlap.status is Status.UNSUPPORTED and "overlap" in overlap.message
    # pydicom-seg drops the empty segment from the Segment Sequence: the write is FAIL, and so is the read
    empty = _rec(doc, "pydicom-seg", "quick/empty-segment", "write")
    assert empty.status is Status.FAIL and "missing segment numbers [3]" in empty.message
    # and dciodvfy, the validator column, says why the object is invalid
    check = _validation(doc, "pydicom-seg", "quick/empty-segment", "dciodvfy")
    assert check.status is Status.FAIL and "SegmentNumber not monotonically increasing" in check.message
    assert check.findings and check.artifacts["dciodvfy"].endswith("dciodvfy.txt")
    assert _validation(doc, "pydicom-seg", "quick/binary-3-disjoint", "dciodvfy").status is Status.PASS


def test_transcoded_objects_are_compressed_and_read_back(doc) -> None:
    for producer, case, ts in (
        ("highdicom+jpegls", "quick/labelmap-8bit-jpegls", "1.2.840.10008.1.2.4.80"),
        ("dcmqi+jpegls", "quick/labelmap-8bit-jpegls", "1.2.840.10008.1.2.4.80"),
        ("highdicom+jpeg2000", "quick/fractional-jpeg2000", "1.2.840.10008.1.2.4.90"),
    ):
        write = _rec(doc, producer, case, "write")
        assert write.status is Status.PASS, write.message
        assert write.seg.transfer_syntax_uid == ts
        assert _rec(doc, producer, case, "read").status is Status.PASS
    binary = _rec(doc, "highdicom+jpegls", "quick/binary-3-disjoint", "write")
    assert binary.status is Status.UNSUPPORTED  # the case is uncompressed: not this variant's
    assert any(
        n.startswith("$ dcmcjpls") for n in _rec(doc, "dcmqi+jpegls", "quick/labelmap-8bit-jpegls", "write").notes
    )


def test_dcmqi_metadata_validates_against_dcmqi_schema(doc) -> None:
    """The metadata JSON given to dcmqi, against dcmqi's own schema (vendored in pydicom-seg, in its environment)."""
    import json
    from pathlib import Path

    import jsonschema
    from referencing import Registry, Resource

    run_dir = Path(doc.run.run_dir)
    from dicom4qi.adapters.envs import EnvSpec

    env = EnvSpec("pydicom-seg", Path()).directory(run_dir.parent.parent)
    schemas = next(env.glob("lib/python*/site-packages/pydicom_seg/externals/dcmqi/doc/schemas"))
    seg_schema = json.loads((schemas / "seg-schema.json").read_text())
    common = json.loads((schemas / "common-schema.json").read_text())
    registry = Registry().with_resources(
        [
            (common["id"].rstrip("#"), Resource.from_contents(common)),
            (seg_schema["id"].rstrip("#"), Resource.from_contents(seg_schema)),
        ]
    )
    validator = jsonschema.Draft4Validator(seg_schema, registry=registry)
    metas = sorted(run_dir.glob("objects/*/dcmqi/dcmqi-input/meta.json"))
    assert len(metas) >= 3
    for meta in metas:
        errors = [e.message for e in validator.iter_errors(json.loads(meta.read_text()))]
        assert errors == [], (meta, errors)
    bad = json.loads(metas[0].read_text()) | {"SeriesNumber": 100}
    assert list(validator.iter_errors(bad))  # the schema is really applied
