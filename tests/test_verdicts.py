"""Verdicts that put the blame where it belongs: checked writes, faithful reads, consensus, known issues."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from dicom4qi.judge.consensus import consensus
from dicom4qi.judge.known import KnownIssue, load_known_issues, matches
from dicom4qi.model.decoded import Decoded, DecodedWriter
from dicom4qi.model.masks import Crop
from dicom4qi.model.results import Record, ResultsDocument, Status
from dicom4qi.model.segment import Segment
from dicom4qi.model.truth import Truth
from dicom4qi.run.runner import NO_CONSUMER, RunConfig, run
from dicom4qi.site.report import render_site
from dicom4qi.vendors.bundle import export_bundle
from dicom4qi.vendors.ingest import ingest_submission, receive

from .conftest import CASES, FEATURES, ROOT

#: One BINARY case per way of writing an object wrong, and one written right.
MUTATIONS: dict[str, str] = {
    "missing-voxel": "quick/binary-3-disjoint",
    "extra-voxel": "quick/empty-frames-middle",
    "slice-shift": "quick/segment-metadata",
    "swapped-segments": "quick/metadata-breadth",
    "mirrored": "quick/uneven-spacing-gap",
    "transposed": "quick/non-ascii-labels",
    "wrong-label": "quick/binary-implicit-vr",
    "wrong-type-code": "quick/empty-segment",
    "renumbered-segment": "quick/multiframe-enhanced-ct",
    "emptied-segment": "quick/oblique",
    "correct": "quick/binary-overlap",
}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """highdicom writes every case above (not checked here: these are the raw material), and a bundle of them."""
    root = tmp_path_factory.mktemp("verdicts")
    build = root / "build"
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=build,
        results=root / "results",
        tiers=[],
        cases=sorted(set(MUTATIONS.values())),
        producers=["highdicom"],
        consumers=[NO_CONSUMER],
        validate=False,
        verify_writes=False,
        workers=2,
    )
    summary = run(cfg)
    doc = ResultsDocument.load(summary.path)
    run_dir = Path(doc.run.run_dir or "")
    objects = {r.case: run_dir / r.seg.path for r in doc.records if r.step == "write" and r.seg is not None}
    assert set(objects) == set(MUTATIONS.values())
    folder, manifest = export_bundle(summary.path, root / "bundle", corpus=CASES, features=FEATURES, build=build)
    truths = {
        c: Truth.load(
            next(p for p in (build / "corpus").iterdir() if (p / "truth.json").is_file() and Truth.load(p).case_id == c)
        )
        for c in MUTATIONS.values()
    }
    return {"root": root, "build": build, "objects": objects, "manifest": manifest, "truths": truths}


# --------------------------------------------------------------------------- breaking an object in one way
def _frames(ds: pydicom.Dataset) -> np.ndarray:
    n, rows, cols = int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns)
    bits = np.unpackbits(np.frombuffer(ds.PixelData, dtype=np.uint8), bitorder="little")[: n * rows * cols]
    return bits.reshape(n, rows, cols).copy()


def _set_frames(ds: pydicom.Dataset, frames: np.ndarray) -> None:
    packed = np.packbits(frames.astype(np.uint8).ravel(), bitorder="little").tobytes()
    ds.PixelData = packed + (b"\x00" if len(packed) % 2 else b"")
    ds.NumberOfFrames = len(frames)


def _segment_of(item: Any) -> int:
    return int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)


def _missing_voxel(ds: pydicom.Dataset, truth: Truth) -> None:
    f = _frames(ds)
    i = int(np.flatnonzero(f.reshape(len(f), -1).any(axis=1))[0])
    y, x = np.argwhere(f[i])[0]
    f[i, y, x] = 0
    _set_frames(ds, f)


def _extra_voxel(ds: pydicom.Dataset, truth: Truth) -> None:
    f = _frames(ds)
    y, x = np.argwhere(f[0] == 0)[0]
    f[0, y, x] = 1
    _set_frames(ds, f)


def _slice_shift(ds: pydicom.Dataset, truth: Truth) -> None:
    """Every frame refers to (and is placed on) the next source slice; frames on the last slice are dropped."""
    assert truth.geometry.positions is not None
    index = {k: i for i, k in enumerate(truth.frame_keys)}
    f = _frames(ds)
    keep = []
    for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        ref = item.DerivationImageSequence[0].SourceImageSequence[0]
        k = index[str(ref.ReferencedSOPInstanceUID)] + 1
        if k >= len(truth.frame_keys):
            continue
        ref.ReferencedSOPInstanceUID = truth.frame_keys[k]
        item.PlanePositionSequence[0].ImagePositionPatient = [f"{v:.6f}" for v in truth.geometry.positions[k]]
        keep.append(i)
    ds.PerFrameFunctionalGroupsSequence = [ds.PerFrameFunctionalGroupsSequence[i] for i in keep]
    _set_frames(ds, f[keep])


def _swapped_segments(ds: pydicom.Dataset, truth: Truth) -> None:
    for item in ds.PerFrameFunctionalGroupsSequence:
        n = _segment_of(item)
        if n in (1, 2):
            item.SegmentIdentificationSequence[0].ReferencedSegmentNumber = 3 - n


def _mirrored(ds: pydicom.Dataset, truth: Truth) -> None:
    _set_frames(ds, _frames(ds)[:, :, ::-1])


def _transposed(ds: pydicom.Dataset, truth: Truth) -> None:
    f = _frames(ds)
    assert f.shape[1] == f.shape[2]
    _set_frames(ds, f.transpose(0, 2, 1))


def _wrong_label(ds: pydicom.Dataset, truth: Truth) -> None:
    ds.SegmentSequence[0].SegmentLabel = "Not what the case says"


def _wrong_type_code(ds: pydicom.Dataset, truth: Truth) -> None:
    code = ds.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0]
    code.CodeValue, code.CodeMeaning = "39607008", "Lung"


def _renumbered_segment(ds: pydicom.Dataset, truth: Truth) -> None:
    last = max(int(s.SegmentNumber) for s in ds.SegmentSequence)
    for s in ds.SegmentSequence:
        if int(s.SegmentNumber) == last:
            s.SegmentNumber = last + 2
    for item in ds.PerFrameFunctionalGroupsSequence:
        if _segment_of(item) == last:
            item.SegmentIdentificationSequence[0].ReferencedSegmentNumber = last + 2


def _emptied_segment(ds: pydicom.Dataset, truth: Truth) -> None:
    f = _frames(ds)
    for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        if _segment_of(item) == 2:
            f[i] = 0
    _set_frames(ds, f)


BREAK: dict[str, Callable[[pydicom.Dataset, Truth], None]] = {
    "missing-voxel": _missing_voxel,
    "extra-voxel": _extra_voxel,
    "slice-shift": _slice_shift,
    "swapped-segments": _swapped_segments,
    "mirrored": _mirrored,
    "transposed": _transposed,
    "wrong-label": _wrong_label,
    "wrong-type-code": _wrong_type_code,
    "renumbered-segment": _renumbered_segment,
    "emptied-segment": _emptied_segment,
    "correct": lambda ds, truth: None,
}

#: What the write's message must say for each (the check that found it).
FOUND_BY = {
    "missing-voxel": "voxels: ",
    "extra-voxel": "voxels: ",
    "slice-shift": "voxels: ",
    "swapped-segments": "voxels: ",
    "mirrored": "voxels: ",
    "transposed": "voxels: ",
    "wrong-label": "numbers-labels: ",
    "wrong-type-code": "coded-concepts: ",
    "renumbered-segment": "segment-count: ",
    "emptied-segment": "voxels: ",
}


def test_a_producer_submission_is_checked_for_content(written: dict[str, Any], tmp_path: Path) -> None:
    """Objects wrong in one way each get a write FAIL saying what the object holds; the correct one PASSes everywhere;
    the check decoders' reads of the wrong objects are faithful: PASS, judged against what the object holds."""
    sub = tmp_path / "sub"
    (sub / "objects").mkdir(parents=True)
    entries = []
    for how, case in MUTATIONS.items():
        ds = pydicom.dcmread(written["objects"][case])
        BREAK[how](ds, written["truths"][case])
        ds.save_as(sub / "objects" / f"{how}.dcm", enforce_file_format=True)
        entries.append({"case": case, "seg": f"objects/{how}.dcm"})
    (sub / "submission.json").write_text(
        json.dumps(
            {
                "vendor": "acme",
                "tool": {"name": "Wrong Writer", "version": "1.0"},
                "role": "producer",
                "bundle": written["manifest"]["id"],
                "entries": entries,
            }
        )
    )
    rec = receive(sub, build=written["build"], corpus=CASES, features=FEATURES)
    doc = ingest_submission(
        rec,
        consumers=["reference", "highdicom"],
        build=written["build"],
        corpus=CASES,
        features=FEATURES,
        validate=False,
        workers=2,
    )
    writes = {r.case: r for r in doc.records if r.step == "write"}
    reads = {(r.case, r.consumer): r for r in doc.records if r.step == "read"}
    for how, case in MUTATIONS.items():
        w = writes[case]
        if how == "correct":
            assert w.status is Status.PASS, w.message
            assert w.content is not None and w.content.verdict == "matches"
            assert all(
                reads[(case, c)].status is Status.PASS and reads[(case, c)].basis == "truth"
                for c in ("reference", "highdicom")
            )
            continue
        assert w.status is Status.FAIL, f"{how}: {w.status.value} {w.message}"
        assert w.content is not None and w.content.verdict == "differs", how
        assert "the object differs from the truth" in w.message and FOUND_BY[how] in w.message, f"{how}: {w.message}"
        for consumer in ("reference", "highdicom"):
            r = reads[(case, consumer)]
            if r.status is Status.ERROR:  # a refusal of a wrong object: recorded, charged to nobody
                assert r.basis == "object" and "object wrong" in r.message and not r.charged, (how, consumer, r.message)
            else:
                assert r.status is Status.PASS and r.basis == "object", (how, consumer, r.status, r.message)
    voxel = writes[MUTATIONS["missing-voxel"]]
    assert "1 voxel(s) differ" in voxel.message and "1 missing, 0 extra" in voxel.message
    assert "difference" in voxel.artifacts


def test_a_wrong_object_is_the_producers_fault_on_the_dashboard(written: dict[str, Any], tmp_path: Path) -> None:
    """A faithful read of a wrong object is the reader's PASS, marked 'object wrong'; a reader that reads it
    differently again (the liar) is FAIL for its own fault, with a difference picture against what the object holds."""
    run_dir_objects = written["objects"]
    sub = tmp_path / "sub"
    (sub / "objects").mkdir(parents=True)
    case = MUTATIONS["missing-voxel"]
    ds = pydicom.dcmread(run_dir_objects[case])
    _missing_voxel(ds, written["truths"][case])
    ds.save_as(sub / "objects" / "x.dcm", enforce_file_format=True)
    (sub / "submission.json").write_text(
        json.dumps(
            {
                "vendor": "acme",
                "tool": {"name": "One Voxel Short", "version": "1.0"},
                "role": "producer",
                "bundle": written["manifest"]["id"],
                "entries": [{"case": case, "seg": "objects/x.dcm"}],
            }
        )
    )
    rec = receive(sub, build=written["build"], corpus=CASES, features=FEATURES)
    doc = ingest_submission(
        rec,
        consumers=["reference", "tests.fakes:LyingConsumer"],
        build=written["build"],
        corpus=CASES,
        features=FEATURES,
        validate=False,
    )
    reads = {r.consumer: r for r in doc.records if r.step == "read"}
    faithful, liar = reads["reference"], reads["tests.fakes:LyingConsumer"]
    assert (
        faithful.status is Status.PASS
        and faithful.basis == "object"
        and any("object wrong" in n for n in faithful.notes)
    )
    assert (
        liar.status is Status.FAIL and liar.basis == "object" and "differs from what the object holds" in liar.message
    )
    assert "difference" in liar.artifacts
    # The same document as a run on the dashboard: the marks and the pictures.
    doc.run.kind = "run"
    path = tmp_path / "doc.json"
    path.write_text(doc.model_dump_json())
    site = tmp_path / "site"
    render_site([ResultsDocument.load(path)], site)
    pages = [p.read_text() for p in (site / "cell").glob("*.html")]
    faithful_page = next(t for t in pages if "→ reference reads</h1>" in t)
    assert "object wrong" in faithful_page and "judged against <em>what the object holds</em>" in faithful_page
    liar_page = next(t for t in pages if "→ tests.fakes:LyingConsumer reads</h1>" in t)
    assert "difference.png" in liar_page and "missing (or, fractional, too low)" in liar_page
    assert re.search(
        r"dicom4qi run --tier quick --case quick/binary-3-disjoint --producer \S+ --consumer tests.fakes:LyingConsumer",
        liar_page,
    )
    write_page = next(t for t in pages if " writes</h1>" in t)
    assert "What the object holds" in write_page and "the object differs from the truth" in write_page


# --------------------------------------------------------------------------- consensus without truth
def _decoding(path: Path, drop: bool = False, extra_segment: bool = False) -> Decoded:
    w = DecodedWriter(["a", "b", "c"], 4, 4)
    w.add_segment(Segment(number=1, label="Liver"))
    data = np.zeros((2, 2, 2), dtype=bool)
    data[0, 0, 0] = data[1, 1, 1] = True
    if drop:
        data[1, 1, 1] = False
    w.set_crop(1, Crop((0, 1, 1), data))
    if extra_segment:
        w.add_segment(Segment(number=2, label="Spleen"))
        w.set_crop(2, Crop((2, 0, 0), np.ones((1, 1, 1), dtype=bool)))
    w.write(path)
    return Decoded(path)


def test_one_dissenter_among_six_is_the_only_fail(tmp_path: Path) -> None:
    d = {f"r{i}": _decoding(tmp_path / f"r{i}.npz") for i in range(5)}
    d["odd"] = _decoding(tmp_path / "odd.npz", drop=True)
    j = consensus(d, {}, labelmap=False)
    assert {n for n, v in j.items() if v.status is Status.FAIL} == {"odd"}
    assert all(v.status is Status.PASS for n, v in j.items() if n != "odd")
    assert "5 of 6 independent votes" in j["odd"].message and "voxel(s) differ" in j["odd"].message
    assert "agrees with the majority" in j["r0"].message


def test_readers_sharing_code_are_one_vote(tmp_path: Path) -> None:
    d = {
        "a": _decoding(tmp_path / "a.npz"),
        "b": _decoding(tmp_path / "b.npz"),
        "x": _decoding(tmp_path / "x.npz", drop=True),
        "x@merge": _decoding(tmp_path / "x2.npz", drop=True),
    }
    # Counted apart, two against two: no majority, every read DISPUTED.
    assert all(v.status is Status.DISPUTED for v in consensus(d, {}, labelmap=False).values())
    # One family: two votes against one, the family's readers FAIL.
    j = consensus(d, {"x": "x", "x@merge": "x"}, labelmap=False)
    assert (j["a"].status, j["b"].status, j["x"].status, j["x@merge"].status) == (
        Status.PASS,
        Status.PASS,
        Status.FAIL,
        Status.FAIL,
    )
    assert "2 of 3 independent votes" in j["x"].message


def test_a_split_family_abstains_and_no_majority_is_disputed(tmp_path: Path) -> None:
    d = {
        "a": _decoding(tmp_path / "a.npz"),
        "b": _decoding(tmp_path / "b.npz", drop=True),
        "c": _decoding(tmp_path / "c.npz", extra_segment=True),
    }
    j = consensus(d, {}, labelmap=False)
    assert all(v.status is Status.DISPUTED for v in j.values()) and "no group holds a strict majority" in j["a"].message
    two = consensus({"a": d["a"], "a2": _decoding(tmp_path / "a2.npz")}, {}, labelmap=False)
    assert all(v.status is Status.DISPUTED for v in two.values()) and "at least 3" in two["a"].message
    split = consensus(
        {**d, "c2": _decoding(tmp_path / "c2.npz"), "c3": _decoding(tmp_path / "c3.npz")},
        {"c": "c", "c2": "c"},
        labelmap=False,
    )
    # family c holds two groups and abstains; a, c3 (and c2) agree: 2 of the 3 votes (a, b, c3)
    assert split["a"].status is Status.PASS and split["c2"].status is Status.PASS and split["c"].status is Status.FAIL
    assert "families split among themselves" not in split["a"].message


def test_run_external_blames_only_the_dissenter(written: dict[str, Any], tmp_path: Path) -> None:
    """An object written elsewhere (here: by highdicom, copied with its sources): six readers, five families; the
    dropper and its variant (one family) lose a voxel: only they FAIL, and the cells say who formed the majority."""
    wild = tmp_path / "wild"
    wild.mkdir()
    case = MUTATIONS["correct"]
    shutil.copyfile(written["objects"][case], wild / "seg.dcm")
    for p in written["truths"][case].source_paths:
        shutil.copyfile(p, wild / p.name)
    readers = [
        "reference",
        "highdicom",
        "tests.fakes:CloneA",
        "tests.fakes:CloneB",
        "tests.fakes:Dropper",
        "tests.fakes:DropperVariant",
    ]
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=tmp_path / "build",
        results=tmp_path / "results",
        external=wild,
        consumers=readers,
        workers=2,
    )
    doc = ResultsDocument.load(run(cfg).path)
    by = {r.consumer: r for r in doc.records if r.step == "read"}  # the validators' cells judge the object itself
    assert {c for c, r in by.items() if r.status is Status.FAIL} == {
        "tests.fakes:Dropper",
        "tests.fakes:DropperVariant",
    }
    assert all(by[c].status is Status.PASS and by[c].basis == "consensus" for c in readers[:4])
    assert "4 of 5 independent votes" in by["tests.fakes:Dropper"].message
    assert "reference" in by["reference"].message and "tests.fakes:CloneA" in by["reference"].message


# --------------------------------------------------------------------------- known issues
def test_the_known_issues_are_valid_and_linked(tmp_path: Path) -> None:
    from dicom4qi.adapters.contract import DEFAULTS
    from dicom4qi.model.case import load_cases, load_features

    cases, _ = load_cases(CASES, FEATURES)
    issues, errors = load_known_issues(
        ROOT / "corpus" / "known-issues",
        features=load_features(FEATURES),
        case_ids=[c.id for c in cases],
        tool_names=[*DEFAULTS["producer"], *DEFAULTS["consumer"], "dciodvfy", "pixelmed"],  # every tool the grid runs
    )
    assert not errors, errors
    assert len(issues) >= 10
    for k in issues:  # a link is a real thread's address, or the words "no upstream issue yet"
        assert k.link is None or re.match(r"^https://github\.com/[^/]+/[^/]+/(issues|pull)/\d+$", k.link), k.link
    linked = {k.id: k.upstream_text for k in issues if k.link}
    assert linked["ohif-fractional-rejected"] == "OHIF/Viewers#1346"
    assert linked["dcmjs-nested-character-set"] == "dcmjs-org/dcmjs#503"


def test_a_bad_known_issue_file_is_named_with_the_field(tmp_path: Path) -> None:
    (tmp_path / "bad-regex.toml").write_text(
        'title = "x y z"\ntool = "ohif"\nupstream = "none"\n[[match]]\nstep = "read"\nmessage = "("\n'
    )
    (tmp_path / "bad-feature.toml").write_text(
        'title = "x y z"\ntool = "ohif"\nupstream = "http://example.com/1"\n'
        '[[match]]\nstep = "read"\nfeatures = ["nope"]\nmessage = "a"\n'
    )
    (tmp_path / "guess.toml").write_text('title = "x y z"\ntool = "ohif"\n[[match]]\nstep = "read"\nmessage = "a"\n')
    _, errors = load_known_issues(tmp_path, features={"binary": ""})
    text = "\n".join(str(e) for e in errors)
    assert "bad-regex.toml: match.0.message" in text and "not a regular expression" in text
    assert "bad-feature.toml: upstream" in text and "https" in text
    assert "guess.toml: upstream" in text  # the link (or "none") must be given, never left to a guess


def _issue(**kw: Any) -> KnownIssue:
    base = {
        "id": "x",
        "title": "OHIF rejects fractional",
        "tool": "ohif",
        "upstream": "https://github.com/OHIF/Viewers/issues/1346",
        "match": [
            {"step": "read", "consumers": ["ohif*"], "features": ["fractional"], "message": "Fractional segmentations"}
        ],
    }
    return KnownIssue.model_validate({**base, **kw})


def test_known_issue_matching_by_scope_status_message_and_release() -> None:
    rec = Record(
        case="quick/fractional",
        producer="highdicom",
        consumer="ohif",
        step="read",
        status=Status.ERROR,
        message="read: OHIF did not load the SEG: Fractional segmentations are not yet supported",
        features=["fractional", "ts-explicit-le"],
    )
    assert matches(_issue(), rec, "3.13.2")
    assert not matches(_issue(affected="<3.13"), rec, "3.13.2") and matches(_issue(affected="<3.13"), rec, "3.11.1")
    assert not matches(_issue(), rec.model_copy(update={"status": Status.PASS}), "3.13.2")
    assert not matches(_issue(), rec.model_copy(update={"features": ["binary"]}), "3.13.2")
    assert not matches(_issue(), rec.model_copy(update={"consumer": "dcmjs"}), "3.13.2")


def test_known_new_possibly_fixed_and_regressions_on_the_dashboard(tmp_path: Path) -> None:
    """A failing cell is 'known' (linked) or 'new'; a known issue with cells in its scope but no failure is 'possibly
    fixed'; a cell that passed in the previous run and fails now is a regression, known or not."""
    from dicom4qi.model.results import RunInfo, ToolInfo
    from dicom4qi.site.view import SiteOptions

    known = tmp_path / "known"
    known.mkdir()
    (known / "ohif-frac.toml").write_text(
        'title = "OHIF rejects fractional"\ntool = "ohif"\nupstream = "https://github.com/OHIF/Viewers/issues/1346"\n'
        '[[match]]\nstep = "read"\nconsumers = ["ohif"]\nfeatures = ["fractional"]\nmessage = "Fractional segmentations"\n'
    )
    (known / "ohif-gone.toml").write_text(
        'title = "An old OHIF bug"\ntool = "ohif"\nupstream = "none"\n'
        '[[match]]\nstep = "read"\nconsumers = ["ohif"]\nfeatures = ["binary"]\nmessage = "it used to fail so"\n'
    )

    def doc(run_id: str, started: str, binary: Status) -> ResultsDocument:
        run_info = RunInfo(
            run_id=run_id,
            started=started,
            suite_version="0",
            platform="p",
            python="3",
            corpus_fingerprint="f",
            timeout_s=1,
            memory_limit_mb=1,
            workers=1,
        )
        tools = [
            ToolInfo(name="ohif", role="consumer", tool="ohif", version="3.13.2", available=True),
            ToolInfo(name="p", role="producer", tool="p", version="1", available=True),
        ]
        recs = [
            Record(
                case="quick/fractional",
                producer="p",
                consumer="ohif",
                step="read",
                status=Status.ERROR,
                tier="quick",
                features=["fractional"],
                message="read: Fractional segmentations are not yet supported",
            ),
            Record(
                case="quick/binary",
                producer="p",
                consumer="ohif",
                step="read",
                status=binary,
                tier="quick",
                features=["binary"],
                message="voxels: segment 1: 3 voxel(s) differ" if binary is Status.FAIL else "",
            ),
        ]
        return ResultsDocument(run=run_info, tools=tools, records=recs)

    site = tmp_path / "site"
    render_site(
        [doc("r2", "2026-12-02", Status.FAIL)],
        site,
        history=[doc("r1", "2026-12-01", Status.PASS)],
        options=SiteOptions(known_issues=known, pictures=False),
    )
    grid = (site / "index.html").read_text()
    assert 'class="kn known" href="https://github.com/OHIF/Viewers/issues/1346"' in grid
    assert 'class="kn new"' in grid and "regressed" in grid
    overview = (site / "overview.html").read_text()
    assert "OHIF/Viewers#1346" in overview and "possibly fixed" in overview and "no upstream issue yet" in overview
    tool = next((site / "tool").glob("ohif*.html")).read_text()
    assert "Known issues of ohif" in tool and "OHIF rejects fractional" in tool
    history = (site / "history.html").read_text()
    assert "regressed" in history and "quick/binary" in history


def test_content_judgement_when_decoders_disagree_or_cannot_read(tmp_path: Path) -> None:
    from dicom4qi.judge.content import DecoderFinding, judge_content
    from dicom4qi.model.results import Check, CheckStatus

    ok = [Check(name="voxels", status=CheckStatus.PASS)]
    bad = [Check(name="voxels", status=CheckStatus.FAIL, message="segment 1: 1 voxel(s) differ")]
    path = tmp_path / "d.npz"
    _decoding(path).close()
    disputed = judge_content(
        [DecoderFinding("reference", path, ok), DecoderFinding("highdicom", path, bad)], labelmap=False
    )
    assert disputed.content.verdict == "disputed" and disputed.keep == ["highdicom"]
    alone = judge_content(
        [DecoderFinding("reference", path, bad), DecoderFinding("highdicom", None, error="refused")], labelmap=False
    )
    assert (
        alone.content.verdict == "differs"
        and "reference alone" in alone.message
        and "highdicom could not read it" in alone.message
    )
    none = judge_content(
        [DecoderFinding("reference", None, error="x"), DecoderFinding("highdicom", None, error="y")], labelmap=False
    )
    assert none.content.verdict == "unverified" and none.message.startswith("not verified")


def test_the_difference_picture_shows_missing_and_extra_in_their_colours(tmp_path: Path) -> None:
    from PIL import Image

    from dicom4qi.judge.diffpic import COLOURS, EXTRA, MISSING, difference_picture
    from dicom4qi.model.segment import Segment
    from dicom4qi.model.truth import Geometry

    class Expected:  # what the picture compares with: one segment, a 4x4 square on frame 1 of 3
        frame_keys = ["a", "b", "c"]
        geometry = Geometry(
            rows=16, columns=16, orientation=None, pixel_spacing=(1.0, 1.0), slice_spacing=1.0, positions=None
        )
        segments = [Segment(number=1, label="One")]
        fractional = False
        fractional_scale = fractional_step = 1.0

        def __init__(self) -> None:
            data = np.zeros((1, 4, 4), dtype=bool)
            data[:] = True
            self.crop = Crop((1, 4, 4), data)

        def masks(self) -> Expected:
            return self

        def get(self, number: int) -> Crop | None:
            return self.crop if number == 1 else None

        def __enter__(self) -> Expected:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    w = DecodedWriter(["a", "b", "c"], 16, 16)
    w.add_segment(Segment(number=1))
    have = np.ones((1, 4, 5), dtype=bool)  # the square and one extra column at x = 8
    have[0, 0, 0] = False  # one missing at (4, 4)
    w.set_crop(1, Crop((1, 4, 4), have))
    w.write(tmp_path / "d.npz")
    decoded = Decoded(tmp_path / "d.npz")
    caption = difference_picture(Expected(), decoded, tmp_path / "diff.png", labelmap=False, reader="x's read")
    decoded.close()
    assert caption is not None and "1 missing and 4 extra pixel(s)" in caption and "frame 1" in caption
    img = np.asarray(Image.open(tmp_path / "diff.png").convert("RGB"))
    colours = {tuple(int(v) for v in c) for c in img.reshape(-1, 3)}
    assert tuple(int(v) for v in COLOURS[MISSING]) in colours and tuple(int(v) for v in COLOURS[EXTRA]) in colours


def test_a_release_column_is_judged_by_its_own_release() -> None:
    """cornerstone@5.6.8's cells by 5.6.8 (an issue fixed in 5.14.0 explains them), a dcmjs issue through another
    column by dcmjs's release, and a column of its own by its version."""
    from dicom4qi.judge.known import release_in_cell, version_affected

    versions = {"cornerstone": "5.14.0", "cornerstone@5.6.8": "5.6.8", "dcmjs": "0.52.2"}
    assert release_in_cell("cornerstone", "cornerstone@5.6.8", versions) == "5.6.8"
    assert release_in_cell("cornerstone", "cornerstone", versions) == "5.14.0"
    assert release_in_cell("dcmjs", "cornerstone@5.6.8", versions) == "0.52.2"
    assert release_in_cell("ohif", "ohif@3.11.1", {"ohif@3.11.1": "3.11.1"}) == "3.11.1"
    fixed = _issue(tool="cornerstone", affected="<5.14.0")
    assert version_affected(fixed, release_in_cell("cornerstone", "cornerstone@5.6.8", versions))
    assert not version_affected(fixed, release_in_cell("cornerstone", "cornerstone", versions))
