"""Objects from the wild: sources found in pydicom's test data, readers judged by the majority of independent readers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dicom4qi.corpus.wild import find_external
from dicom4qi.model.results import ResultsDocument, Status
from dicom4qi.run.runner import RunConfig, run

from .conftest import CASES, FEATURES, ROOT

WILD = ROOT.parent / "shared" / "wild" / "highdicom"
pytestmark = pytest.mark.skipif(not WILD.is_dir(), reason=f"{WILD} is not here")
FILES = ["seg_image_ct_binary_overlap.dcm", "seg_image_ct_true_fractional.dcm", "seg_image_cr_binary.dcm"]


@pytest.fixture(scope="module")
def wild(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wild")
    for name in FILES:
        shutil.copyfile(WILD / name, folder / name)
    return folder


def test_sources_are_found_in_pydicom_test_data(wild: Path) -> None:
    objects = {o.id: o for o in find_external(wild)}
    assert set(objects) == {f"external/{Path(f).stem}" for f in FILES}
    ct = objects["external/seg_image_ct_binary_overlap"]
    assert ct.missing == [] and len(ct.sources) >= 2 and all("pydicom" in str(p) for p in ct.sources)
    assert "fractional" in objects["external/seg_image_ct_true_fractional"].features


def test_agreement_among_readers_and_a_liar(wild: Path, tmp_path: Path) -> None:
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=tmp_path / "build",
        results=tmp_path / "results",
        external=wild,
        consumers=["highdicom", "reference", "tests.fakes:LyingConsumer"],
        workers=2,
    )
    doc = ResultsDocument.load(run(cfg).path)
    recs = {(r.case, r.consumer): r for r in doc.records}
    assert all(r.producer == "external" and r.tier == "external" for r in doc.records)
    overlap = recs[("external/seg_image_ct_binary_overlap", "reference")]
    # The liar (empty segments) is outvoted: the one dissenter is the only FAIL, never every reader.
    assert overlap.status is Status.PASS and "agrees with the majority: 2 of 3 independent votes" in overlap.message
    assert {c.name: c.status.value for c in overlap.checks}["agrees-with-tests.fakes:LyingConsumer"] == "FAIL"
    liar = recs[("external/seg_image_ct_binary_overlap", "tests.fakes:LyingConsumer")]
    assert (
        liar.status is Status.FAIL
        and "disagrees with the majority" in liar.message
        and "voxel(s) differ" in liar.message
    )
    frac = recs[("external/seg_image_ct_true_fractional", "highdicom")]
    assert {c.name: c.status.value for c in frac.checks}["agrees-with-reference"] == "PASS"
    cr = recs[("external/seg_image_cr_binary", "reference")]
    assert {c.name: c.status.value for c in cr.checks}["agrees-with-highdicom"] == "PASS"


def test_external_refuses_a_folder_without_seg(tmp_path: Path) -> None:
    from dicom4qi.cli.main import main

    (tmp_path / "empty").mkdir()
    assert (
        main(
            ["run", "--external", str(tmp_path / "empty"), "--build", str(tmp_path / "b"), "--out", str(tmp_path / "r")]
        )
        == 2
    )
