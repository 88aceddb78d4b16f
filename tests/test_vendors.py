"""Vendors: the bundle, the adapter protocol (dcmjs in Node, and misbehaving adapters), submissions verified and refused."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from dicom4qi.cli.main import main
from dicom4qi.formats.exchange import read_exchange
from dicom4qi.model.results import ResultsDocument, Status
from dicom4qi.run.runner import NO_CONSUMER, RunConfig, run
from dicom4qi.run.steps import sha256_of
from dicom4qi.site.report import render_site
from dicom4qi.site.view import SiteOptions
from dicom4qi.vendors.bundle import export_bundle
from dicom4qi.vendors.ingest import (
    SubmissionError,
    ingest_submission,
    receive,
    save_submission_results,
    verify_submission,
)
from dicom4qi.vendors.kit import make_submission
from dicom4qi.vendors.untrusted import Bounds

from .conftest import CASES, FEATURES, ROOT, need_node

CASE_IDS = ["quick/binary-overlap", "quick/labelmap-8bit", "quick/uneven-spacing-gap"]
DCMJS = ROOT / "dicom4qi" / "tools" / "dcmjs"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small run (two producers, three cases, no readers) and its bundle."""
    root = tmp_path_factory.mktemp("vendors")
    build = root / "build"
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=build,
        results=root / "results",
        tiers=[],
        cases=CASE_IDS,
        producers=["highdicom", "reference"],
        consumers=[NO_CONSUMER],
        validate=False,
        workers=2,
    )
    summary = run(cfg)
    folder, manifest = export_bundle(
        summary.path, root / "out", corpus=CASES, features=FEATURES, build=build, make_zip=True
    )
    return {"root": root, "build": build, "bundle": folder, "manifest": manifest}


def _receive(env: dict[str, Any], src: Path, **kw: Any):
    return receive(src, build=env["build"], corpus=CASES, features=FEATURES, **kw)


def _perfect_submission(env: dict[str, Any], dest: Path, vendor: str = "acme") -> Path:
    """A consumer submission whose decodings are the bundle's own truth folders."""
    manifest = env["manifest"]
    entries = []
    for oid, obj in manifest["objects"].items():
        truth = env["bundle"] / manifest["cases"][obj["case"]]["truth"]
        shutil.copytree(truth, dest / "decoded" / oid)
        entries.append({"object": oid, "decoded": f"decoded/{oid}"})
    _write_doc(
        dest,
        {
            "vendor": vendor,
            "tool": {"name": "Perfect Reader", "version": "1.0"},
            "role": "consumer",
            "bundle": manifest["id"],
            "entries": entries,
        },
    )
    return dest


def _write_doc(dest: Path, doc: dict[str, Any]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "submission.json").write_text(json.dumps({"format": "dicom4qi-submission/1", **doc}), encoding="utf-8")


# --------------------------------------------------------------------------- the bundle
def test_bundle_holds_objects_sources_truth_with_sums(env: dict[str, Any]) -> None:
    bundle, manifest = env["bundle"], env["manifest"]
    assert manifest["format"] == "dicom4qi-bundle/1" and bundle.name == f"dicom4qi-bundle-{manifest['id']}"
    assert {o["case"] for o in manifest["objects"].values()} == set(CASE_IDS)
    run_doc = ResultsDocument.load(sorted((env["root"] / "results").glob("2*.json"))[0])
    passed = [r for r in run_doc.records if r.step == "write" and r.status is Status.PASS]
    assert len(manifest["objects"]) == len(passed) >= 4
    for rel, digest in manifest["files"].items():
        assert sha256_of(bundle / rel) == digest, rel
    sums = (bundle / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == len(manifest["files"])
    check = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=bundle, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    for obj in manifest["objects"].values():
        assert sha256_of(bundle / obj["path"]) == obj["sha256"]
    case = manifest["cases"]["quick/binary-overlap"]
    assert "overlap" in case["features"] and (bundle / case["file"]).is_file()
    assert sorted(p.name for p in (bundle / case["truth"]).iterdir())[-1] == "segments.json"
    assert any(p.name.startswith("segment-") for p in (bundle / case["truth"]).iterdir())  # overlapping: one file each
    assert (bundle / manifest["cases"]["quick/labelmap-8bit"]["truth"] / "labelmap.nii.gz").is_file()
    assert (
        manifest["id"] in (bundle / "README.md").read_text() and "submission.json" in (bundle / "README.md").read_text()
    )
    assert (env["build"] / "bundles" / f"{manifest['id']}.json").is_file()
    with zipfile.ZipFile(bundle.parent / f"{bundle.name}.zip") as zf:
        names = {n.split("/", 1)[1] for n in zf.namelist()}
    assert set(manifest["files"]) <= names


def test_bundle_truth_is_exact(env: dict[str, Any], truth_of) -> None:
    """The bundle's NIfTI truth, read back as a consumer's output would be, passes every check."""
    from dicom4qi.judge.compare import compare, verdict
    from dicom4qi.model.decoded import Decoded

    bundle, manifest = env["bundle"], env["manifest"]
    for case_id in CASE_IDS:
        info = manifest["cases"][case_id]
        writer = read_exchange(bundle / info["truth"], [bundle / s for s in info["sources"]])
        path = env["root"] / f"{case_id.replace('/', '_')}.npz"
        writer.write(path)
        decoded = Decoded(path)
        ok, msg = verdict(compare(truth_of(case_id), decoded, labelmap=False))
        decoded.close()
        assert ok, f"{case_id}: {msg}"


def test_export_without_a_run_is_a_clear_error(tmp_path: Path) -> None:
    assert main(["corpus", "export", "--out", str(tmp_path / "o"), "--results", str(tmp_path / "none.json")]) == 2


# --------------------------------------------------------------------------- the protocol: dcmjs in Node
def test_round_trip_dcmjs_through_the_protocol_to_the_dashboard(env: dict[str, Any], tmp_path: Path) -> None:
    """Export, run the dcmjs adapter over the bundle, verify its outputs, see them on the dashboard."""
    need_node("dcmjs")
    sub = tmp_path / "dcmjs-submission"
    make_submission(DCMJS, env["bundle"], sub, vendor="dcmjs-org")
    doc_json = json.loads((sub / "submission.json").read_text())
    assert (
        doc_json["tool"]["name"] == "dcmjs"
        and doc_json["tool"]["version"]
        == json.loads((DCMJS / "node_modules" / "dcmjs" / "package.json").read_text())["version"]
    )
    rec = _receive(env, sub)
    doc = verify_submission(rec, build=env["build"])
    by = {(r.case, r.producer): r for r in doc.records}
    overlap = by[("quick/binary-overlap", "highdicom")]
    assert overlap.status is Status.PASS and overlap.provenance == "verified", overlap.message
    assert (
        by[("quick/uneven-spacing-gap", "highdicom")].status is Status.PASS
    )  # placed by the frames list, positions checked
    geometry = next(c for c in by[("quick/uneven-spacing-gap", "highdicom")].checks if c.name == "geometry")
    assert geometry.status.value == "PASS"
    labelmap = by[("quick/labelmap-8bit", "highdicom")]
    assert labelmap.provenance == "self-reported" and labelmap.status is Status.UNSUPPORTED  # dcmjs declares it
    assert doc.run.kind == "submission" and doc.run.submission is not None and doc.run.submission.verified >= 3
    saved = save_submission_results(doc, rec, tmp_path / "submissions")
    submission = ResultsDocument.load(saved).run.submission
    assert saved.parent.name == "dcmjs-org" and submission is not None and submission.sha256 == rec.digest

    run_doc = ResultsDocument.load(sorted((env["root"] / "results").glob("2*.json"))[0])
    site = tmp_path / "site"
    render_site([run_doc], site, options=SiteOptions(pictures=False), submissions=[ResultsDocument.load(saved)])
    listing = (site / "submissions.html").read_text()
    assert "verified from vendor output" in listing and "dcmjs-org" in listing and "self-reported" in listing
    page = next((site / "submission").glob("dcmjs-org*.html")).read_text()
    assert "quick/binary-overlap" in page and "UNSUPPORTED (self-reported)" in page
    assert 'href="submissions.html"' in (site / "index.html").read_text()


def test_dcmjs_runs_in_the_harness_as_a_consumer(env: dict[str, Any]) -> None:
    need_node("dcmjs")
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=env["build"],
        results=env["root"] / "results-dcmjs",
        tiers=[],
        cases=["quick/binary-overlap", "quick/labelmap-8bit"],
        producers=["highdicom"],
        consumers=["dcmjs"],
        validate=False,
    )
    doc = ResultsDocument.load(run(cfg).path)
    tool = next(t for t in doc.tools if t.name == "dcmjs")
    assert tool.available and tool.tool == "dcmjs" and tool.version and "labelmap" not in tool.features
    reads = {r.case: r for r in doc.records if r.step == "read"}
    assert reads["quick/binary-overlap"].status is Status.PASS, reads["quick/binary-overlap"].message
    assert any("generateToolState" in n for n in reads["quick/binary-overlap"].notes)
    assert reads["quick/labelmap-8bit"].status is Status.UNSUPPORTED


# --------------------------------------------------------------------------- the protocol: misbehaving adapters
ADAPTER = r"""
import json, sys, shutil
from pathlib import Path
FILES = len(sys.argv) == 3  # transport "files": the request file, the response file
req = json.loads(Path(sys.argv[1]).read_text()) if FILES else json.load(sys.stdin)
def answer(obj):
    text = obj if isinstance(obj, str) else json.dumps(obj)
    Path(sys.argv[2]).write_text(text) if FILES else print(text)
MODE = {mode!r}
if req["op"] == "info":
    proto = 2 if MODE == "protocol-2" else 1
    answer({{"protocol": proto, "ok": True, "name": "fake", "tool": "fake-tool", "version": "9.9",
            "role": {role!r}, "features": {features!r}}})
    sys.exit(0)
if MODE == "garbage":
    answer("this is not json"); sys.exit(0)
if MODE == "crash":
    sys.exit(3)
if MODE == "error":
    answer({{"protocol": 1, "ok": False, "error": "cannot read this object"}}); sys.exit(0)
if req["op"] == "read":
    out = Path(req["output"])
    (out / "segments.json").write_text(json.dumps({{"format": "dicom4qi-exchange/1", "segments": [{{"number": 1}}]}}))
    import nibabel, numpy
    img = nibabel.Nifti1Image(numpy.full((4, 4, 1), 7, dtype=numpy.uint8), numpy.eye(4))
    nibabel.save(img, str(out / "labelmap.nii.gz"))
    answer({{"protocol": 1, "ok": True, "notes": ["fake read"]}})
if req["op"] == "write":
    truth = Path(req["truth"])
    doc = json.loads((truth / "segments.json").read_text())
    assert doc["format"] == "dicom4qi-exchange/1" and len(doc["frames"]) == len(req["sources"])
    assert req["case"]["id"] == "quick/binary-overlap" and req["case"]["encoding"]["type"] == "BINARY"
    shutil.copyfile({seg!r}, req["output"])
    answer({{"protocol": 1, "ok": True, "notes": ["copied a known object: tests the plumbing only"]}})
"""


def _adapter(
    folder: Path,
    mode: str,
    role: str = "consumer",
    features: list[str] | None = None,
    seg: str = "",
    transport: str = "stdio",
) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter.py").write_text(
        ADAPTER.format(
            mode=mode,
            role=role,
            features=features
            or ["binary", "overlap", "disjoint", "single-frame-source", "ts-explicit-le", "segment-metadata"],
            seg=seg,
        )
    )
    (folder / "dicom4qi-adapter.json").write_text(
        json.dumps({"protocol": 1, "command": [sys.executable, "adapter.py"], "transport": transport})
    )
    return folder


@pytest.mark.parametrize(
    ("mode", "status", "words"),
    [
        ("garbage", Status.ERROR, "standard output is not one JSON object"),
        ("crash", Status.ERROR, "exited with status 3"),
        ("error", Status.ERROR, "cannot read this object"),
        ("misplaced", Status.ERROR, "cannot place it on the source frames"),
        ("protocol-2", Status.ERROR, "speaks protocol 2"),
    ],
)
def test_misbehaving_adapters_are_outcomes(
    env: dict[str, Any], tmp_path: Path, mode: str, status: Status, words: str
) -> None:
    folder = _adapter(tmp_path / f"adapter-{mode}", mode)
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=env["build"],
        results=tmp_path / "results",
        tiers=[],
        cases=["quick/binary-overlap"],
        producers=["highdicom"],
        consumers=[f"exec:{folder}"],
        validate=False,
        timeout_s=60,
    )
    doc = ResultsDocument.load(run(cfg).path)
    read = next(r for r in doc.records if r.step == "read")
    assert read.status is status and words in read.message, read.message


def test_an_adapter_whose_program_is_missing_is_skipped(env: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "needs-a-program"
    folder.mkdir()
    (folder / "dicom4qi-adapter.json").write_text(
        json.dumps({"protocol": 1, "command": ["no-such-program-here"], "requires": ["no-such-program-here"]})
    )
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=env["build"],
        results=tmp_path / "results",
        tiers=[],
        cases=["quick/binary-overlap"],
        producers=["highdicom"],
        consumers=[f"exec:{folder}"],
        validate=False,
    )
    doc = ResultsDocument.load(run(cfg).path)
    read = next(r for r in doc.records if r.step == "read")
    assert read.status is Status.SKIPPED and "no-such-program-here not installed" in read.message


@pytest.mark.parametrize("transport", ["stdio", "files"])
def test_an_executable_producer_gets_the_truth_as_an_exchange_folder(
    env: dict[str, Any], tmp_path: Path, transport: str
) -> None:
    known = env["bundle"] / env["manifest"]["objects"]["quick__binary-overlap/highdicom"]["path"]
    folder = _adapter(tmp_path / "producer", "ok", role="producer", seg=str(known), transport=transport)
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=env["build"],
        results=tmp_path / "results",
        tiers=[],
        cases=["quick/binary-overlap"],
        producers=[f"exec:{folder}"],
        consumers=["reference"],
        validate=False,
        timeout_s=120,
    )
    doc = ResultsDocument.load(run(cfg).path)
    write = next(r for r in doc.records if r.step == "write")
    read = next(r for r in doc.records if r.step == "read")
    assert write.status is Status.PASS and "copied a known object" in " ".join(write.notes), write.message
    assert read.status is Status.PASS, read.message


# --------------------------------------------------------------------------- verification
def test_perfect_submission_verifies_and_a_wrong_voxel_fails(env: dict[str, Any], tmp_path: Path) -> None:
    import nibabel as nib

    sub = _perfect_submission(env, tmp_path / "perfect")
    doc = verify_submission(_receive(env, sub), build=env["build"])
    assert {r.status for r in doc.records} == {Status.PASS}
    assert all(r.provenance == "verified" for r in doc.records)

    # One voxel moved in one decoded label map: that object fails, naming the segment.
    oid = "quick__labelmap-8bit/highdicom"
    path = sub / "decoded" / oid / "labelmap.nii.gz"
    img = cast(nib.Nifti1Image, nib.load(str(path)))  # nibabel types load() as returning the base image class
    data = np.asarray(img.dataobj).copy()
    i = np.argwhere(data > 0)[0]
    data[tuple(i)] = 0
    nib.save(nib.Nifti1Image(data, img.affine, img.header), str(path))
    doc = verify_submission(_receive(env, sub), build=env["build"])
    bad = next(r for r in doc.records if r.case == "quick/labelmap-8bit" and r.producer == "highdicom")
    assert bad.status is Status.FAIL and "voxels" in bad.message


def test_self_reported_results_are_marked_and_missing_outputs_are_not_passes(
    env: dict[str, Any], tmp_path: Path
) -> None:
    oids = sorted(env["manifest"]["objects"])
    _write_doc(
        tmp_path / "s",
        {
            "vendor": "acme",
            "tool": {"name": "Viewer", "version": "2"},
            "role": "consumer",
            "bundle": env["manifest"]["id"],
            "entries": [{"object": oids[0], "self_reported": {"status": "PASS", "message": "looks right to us"}}],
        },
    )
    doc = verify_submission(_receive(env, tmp_path / "s"), build=env["build"])
    first = next(r for r in doc.records if f"{r.case.replace('/', '__')}/{r.producer}" == oids[0])
    assert first.provenance == "self-reported" and "not verified" in first.message
    others = [r for r in doc.records if r is not first]
    assert others and all(r.status is Status.SKIPPED and r.provenance is None for r in others)
    assert doc.run.submission is not None and doc.run.submission.verified == 0 and doc.run.submission.self_reported == 1


def test_ingest_reads_a_vendor_producer_submission_with_every_consumer(env: dict[str, Any], tmp_path: Path) -> None:
    known = env["bundle"] / env["manifest"]["objects"]["quick__binary-overlap/highdicom"]["path"]
    sub = tmp_path / "producer-sub"
    (sub / "objects").mkdir(parents=True)
    shutil.copyfile(known, sub / "objects" / "overlap.dcm")
    _write_doc(
        sub,
        {
            "vendor": "acme",
            "tool": {"name": "ACME AI", "version": "2.0"},
            "role": "producer",
            "bundle": env["manifest"]["id"],
            "entries": [
                {"case": "quick/binary-overlap", "seg": "objects/overlap.dcm"},
                {"case": "quick/not-a-case", "seg": "objects/overlap.dcm"},
            ],
        },
    )
    rec = _receive(env, sub)
    doc = ingest_submission(
        rec, consumers=["reference", "highdicom"], build=env["build"], corpus=CASES, features=FEATURES, validate=False
    )
    assert doc.run.kind == "ingest" and doc.run.submission is not None
    assert any("not-a-case" in p for p in doc.run.submission.problems)
    write = next(r for r in doc.records if r.step == "write")
    assert write.producer == "acme/ACME-AI" and write.provenance == "submitted" and write.wall_s is None
    reads = [r for r in doc.records if r.step == "read"]
    assert {r.consumer for r in reads} == {"reference", "highdicom"} and all(r.status is Status.PASS for r in reads)


# --------------------------------------------------------------------------- hostile submissions
def test_bad_schema_is_refused_with_the_field(env: dict[str, Any], tmp_path: Path) -> None:
    _write_doc(
        tmp_path / "s",
        {"vendor": "acme", "tool": {"name": "V"}, "role": "consumer", "bundle": env["manifest"]["id"], "extra": 1},
    )
    with pytest.raises(SubmissionError, match=r"tool/version.*|extra"):
        _receive(env, tmp_path / "s")
    _write_doc(
        tmp_path / "t",
        {
            "vendor": "../../etc",
            "tool": {"name": "V", "version": "1"},
            "role": "consumer",
            "bundle": env["manifest"]["id"],
        },
    )
    with pytest.raises(SubmissionError, match="vendor"):
        _receive(env, tmp_path / "t")
    _write_doc(
        tmp_path / "v",
        {
            "vendor": "acme",
            "tool": {"name": "V", "version": "1", "homepage": "javascript:alert(1)"},
            "role": "consumer",
            "bundle": env["manifest"]["id"],
        },
    )
    with pytest.raises(SubmissionError, match="homepage"):
        _receive(env, tmp_path / "v")
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "submission.json").write_text("{not json")
    with pytest.raises(SubmissionError, match="JSON"):
        _receive(env, tmp_path / "u")
    _write_doc(
        tmp_path / "w",
        {"vendor": "acme", "tool": {"name": "V", "version": "1"}, "role": "consumer", "bundle": "0" * 16},
    )
    with pytest.raises(SubmissionError, match="unknown here"):
        _receive(env, tmp_path / "w")
    assert main(["verify-submission", str(tmp_path / "w"), "--build", str(env["build"])]) == 2


def test_path_traversal_is_refused(env: dict[str, Any], tmp_path: Path) -> None:
    oid = sorted(env["manifest"]["objects"])[0]
    _write_doc(
        tmp_path / "s",
        {
            "vendor": "acme",
            "tool": {"name": "V", "version": "1"},
            "role": "consumer",
            "bundle": env["manifest"]["id"],
            "entries": [{"object": oid, "decoded": "../../../etc"}],
        },
    )
    with pytest.raises(SubmissionError, match="decoded"):
        _receive(env, tmp_path / "s")
    for name in ("../evil.txt", "/etc/evil.txt", "a/../../evil.txt"):
        archive = tmp_path / "evil.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("submission.json", "{}")
            zf.writestr(zipfile.ZipInfo(name), "x")
        with pytest.raises(SubmissionError, match="traversal|absolute"):
            _receive(env, archive)
        assert not (tmp_path / "evil.txt").exists()


def test_links_are_refused(env: dict[str, Any], tmp_path: Path) -> None:
    sub = _perfect_submission(env, tmp_path / "sym")
    target = next((sub / "decoded").rglob("segments.json"))
    target.unlink()
    target.symlink_to("/etc/passwd")
    with pytest.raises(SubmissionError, match="symbolic link"):
        _receive(env, sub)
    sub2 = _perfect_submission(env, tmp_path / "hard")
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    os.link(secret, sub2 / "decoded" / "secret.txt")
    with pytest.raises(SubmissionError, match="hard link"):
        _receive(env, sub2)
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("submission.json")
        info.external_attr = 0o120777 << 16  # a symbolic link entry
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(SubmissionError, match="symbolic link"):
        _receive(env, archive)


def test_oversize_and_zip_bombs_are_refused(env: dict[str, Any], tmp_path: Path) -> None:
    sub = _perfect_submission(env, tmp_path / "big")
    with pytest.raises(SubmissionError, match="per file"):
        _receive(env, sub, bounds=Bounds(max_file_bytes=1000))
    with pytest.raises(SubmissionError, match="more than 3 files"):
        _receive(env, sub, bounds=Bounds(max_files=3))
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("submission.json", "{}")
        zf.writestr("decoded/zeros.bin", b"\0" * (64 * 2**20))  # 64 MiB of zeros: about 64 KiB compressed
    with pytest.raises(SubmissionError, match="zip bomb"):
        _receive(env, bomb)
    assert not any((env["build"] / "submissions").glob("incoming-*")), "a refused submission leaves nothing behind"


def test_oversized_and_bombed_images_are_errors_not_crashes(env: dict[str, Any], tmp_path: Path) -> None:
    import nibabel as nib

    sub = _perfect_submission(env, tmp_path / "img")
    # A NIfTI header that claims 5000 x 5000 x 5000 voxels (the file itself is small).
    oid_a = "quick__binary-overlap/highdicom"
    folder = sub / "decoded" / oid_a
    for p in folder.glob("segment-*"):
        p.unlink()
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((5000, 5000, 5000))
    hdr.set_data_dtype(np.uint8)
    with gzip.open(folder / "segment-1.nii.gz", "wb") as fh:
        fh.write(hdr.binaryblock + b"\0" * 4)
    # A gzip NRRD whose payload inflates far past what its header declares.
    oid_b = "quick__labelmap-8bit/highdicom"
    folder_b = sub / "decoded" / oid_b
    (folder_b / "labelmap.nii.gz").unlink()
    frames = len(json.loads((folder_b / "segments.json").read_text())["frames"])
    header = f"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 64 64 {frames}\nencoding: gzip\n\n".encode()
    (folder_b / "labelmap.nrrd").write_bytes(header + gzip.compress(b"\1" * (200 * 2**20), 9))
    doc = verify_submission(_receive(env, sub), build=env["build"], memory_mb=2048)
    by = {f"{r.case.replace('/', '__')}/{r.producer}": r for r in doc.records}
    assert by[oid_a].status is Status.ERROR and "exceeds the source grid" in by[oid_a].message
    assert by[oid_b].status is Status.ERROR and "more voxel data than the header declares" in by[oid_b].message
    others = [r for k, r in by.items() if k not in (oid_a, oid_b)]
    assert all(r.status is Status.PASS for r in others)


def test_script_in_a_label_is_escaped_on_the_dashboard(env: dict[str, Any], tmp_path: Path) -> None:
    sub = _perfect_submission(env, tmp_path / "xss", vendor="evil")
    doc_path = sub / "submission.json"
    doc = json.loads(doc_path.read_text())
    doc["tool"]["name"] = '<img src=x onerror="alert(1)">'
    doc["notes"] = "<script>alert('notes')</script>"
    doc_path.write_text(json.dumps(doc))
    seg_json = next((sub / "decoded").rglob("segments.json"))
    ex = json.loads(seg_json.read_text())
    ex["segments"][0]["label"] = "</td><script>alert('label')</script>"
    seg_json.write_text(json.dumps(ex))
    rec = _receive(env, sub)
    result = verify_submission(rec, build=env["build"])
    saved = save_submission_results(result, rec, tmp_path / "submissions")
    assert saved.parent.name == "evil" and ".." not in saved.name and "<" not in saved.name
    run_doc = ResultsDocument.load(sorted((env["root"] / "results").glob("2*.json"))[0])
    site = tmp_path / "site"
    render_site([run_doc], site, options=SiteOptions(pictures=False), submissions=[ResultsDocument.load(saved)])
    pages = [site / "submissions.html", *(site / "submission").glob("*.html")]
    text = "".join(p.read_text() for p in pages)
    assert "<script>alert" not in text and "<img src=x" not in text
    assert "&lt;img src=x onerror=" in text and "&lt;script&gt;alert(&#39;notes&#39;)" in text
    # The label failed the numbers-labels check, and its message is escaped too.
    assert "&lt;/td&gt;&lt;script&gt;" in text


def test_a_reexported_seg_is_decoded_by_the_reference_and_verified(env: dict[str, Any], tmp_path: Path) -> None:
    manifest = env["manifest"]
    oid = "quick__binary-overlap/highdicom"
    sub = tmp_path / "reexport"
    (sub / "decoded" / oid).mkdir(parents=True)
    shutil.copyfile(env["bundle"] / manifest["objects"][oid]["path"], sub / "decoded" / oid / "seg.dcm")
    _write_doc(
        sub,
        {"vendor": "acme", "tool": {"name": "Viewer", "version": "1"}, "role": "consumer", "bundle": manifest["id"]},
    )
    out = tmp_path / "submissions"
    # The command line, with the bundle given as its folder.
    assert (
        main(
            [
                "verify-submission",
                str(sub),
                "--bundle",
                str(env["bundle"]),
                "--build",
                str(env["build"]),
                "--corpus",
                str(CASES),
                "--features",
                str(FEATURES),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    doc = ResultsDocument.load(next((out / "acme").glob("*.results.json")))
    rec = next(r for r in doc.records if r.case == "quick/binary-overlap" and r.producer == "highdicom")
    assert rec.status is Status.PASS and rec.provenance == "verified" and "re-exported" in rec.notes[0]
    assert (
        out / "acme" / next((out / "acme").glob("*.results.json")).name.replace(".results.json", ".submission.json")
    ).is_file()


def test_the_dashboard_offers_the_bundle(env: dict[str, Any], tmp_path: Path) -> None:
    run_doc = ResultsDocument.load(sorted((env["root"] / "results").glob("2*.json"))[0])
    archive = env["bundle"].parent / f"{env['bundle'].name}.zip"
    site = tmp_path / "site"
    render_site([run_doc], site, options=SiteOptions(pictures=False), bundle_zip=archive)
    page = (site / "submissions.html").read_text()
    assert f'href="bundle/{archive.name}"' in page and sha256_of(archive) in page
    assert sha256_of(site / "bundle" / archive.name) == sha256_of(archive)
    assert "No submission yet" in page


def test_an_image_without_a_frames_list_is_placed_by_its_geometry(
    env: dict[str, Any], tmp_path: Path, truth_of
) -> None:
    """A vendor's NIfTI as ITK tools write it: no frames list, slices in reverse order; placed by its affine."""
    import nibabel as nib

    from dicom4qi.judge.compare import compare, verdict
    from dicom4qi.model.decoded import Decoded

    info = env["manifest"]["cases"]["quick/labelmap-8bit"]
    folder = tmp_path / "itk-style"
    shutil.copytree(env["bundle"] / info["truth"], folder)
    doc = json.loads((folder / "segments.json").read_text())
    doc.pop("frames"), doc.pop("positions", None)
    (folder / "segments.json").write_text(json.dumps(doc))
    img = cast(
        nib.Nifti1Image, nib.load(str(folder / "labelmap.nii.gz"))
    )  # load() is typed as returning the base class
    data = np.asarray(img.dataobj)[:, :, ::-1]
    affine = img.affine.copy()
    affine[:, 3] = img.affine @ np.array([0, 0, data.shape[2] - 1, 1])
    affine[:, 2] = -img.affine[:, 2]
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), str(folder / "labelmap.nii.gz"))
    writer = read_exchange(folder, [env["bundle"] / s for s in info["sources"]])
    writer.write(tmp_path / "d.npz")
    decoded = Decoded(tmp_path / "d.npz")
    ok, msg = verdict(compare(truth_of("quick/labelmap-8bit"), decoded, labelmap=False))
    decoded.close()
    assert ok, msg
    # Shifted by half a slice, it lies on no source frame: a clear error, not a wrong answer.
    affine[:3, 3] += 0.5 * affine[:3, 2]
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), str(folder / "labelmap.nii.gz"))
    with pytest.raises(ValueError, match="cannot place it|no slice"):
        read_exchange(folder, [env["bundle"] / s for s in info["sources"]])


# --------------------------------------------------------------------------- hardening of the vendor path and the report
def _leftovers(env: dict[str, Any]) -> set[str]:
    return (
        {p.name for p in (env["build"] / "submissions").iterdir()} if (env["build"] / "submissions").is_dir() else set()
    )


def test_a_refused_submission_leaves_nothing_behind(env: dict[str, Any], tmp_path: Path) -> None:
    before = _leftovers(env)
    _write_doc(
        tmp_path / "w",
        {"vendor": "acme", "tool": {"name": "V", "version": "1"}, "role": "consumer", "bundle": "0" * 16},
    )
    with pytest.raises(SubmissionError, match="unknown here"):
        _receive(env, tmp_path / "w")
    (tmp_path / "nojson").mkdir()
    (tmp_path / "nojson" / "x.txt").write_text("x")
    with pytest.raises(SubmissionError, match="no submission.json"):
        _receive(env, tmp_path / "nojson")
    assert _leftovers(env) == before


def test_nested_json_bombs_and_file_folder_clashes_are_refused_with_the_rule(
    env: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "submission.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SubmissionError, match="nested 100000 levels deep, more than the limit of 64"):
        _receive(env, tmp_path / "deep")
    clash = tmp_path / "clash.zip"
    with zipfile.ZipFile(clash, "w") as zf:
        zf.writestr("submission.json", "{}")
        zf.writestr("x", "a file")
        zf.writestr("x/y", "a file in a folder of the same name")
    with pytest.raises(SubmissionError, match="x is both a file and a folder"):
        _receive(env, clash)


def test_vendor_ids_are_normalized_and_lookalikes_refused(env: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "submissions"
    saved = []
    doc = None
    for i, vendor in enumerate(["ACME", "acme.", "acme-"]):
        sub = _perfect_submission(env, tmp_path / f"s{i}", vendor=vendor)
        rec = _receive(env, sub)
        assert rec.doc.vendor == "acme"
        doc = doc or verify_submission(rec, build=env["build"])
        saved.append(save_submission_results(doc, rec, out))
    assert {p.parent.name for p in saved} == {"acme"}
    rec = _receive(env, _perfect_submission(env, tmp_path / "look", vendor="ac-me"))
    assert doc is not None  # verified in the loop above
    with pytest.raises(SubmissionError, match="looks like the vendor 'acme'"):
        save_submission_results(doc, rec, out)
    _write_doc(
        tmp_path / "dots",
        {
            "vendor": "ac..me",
            "tool": {"name": "V", "version": "1"},
            "role": "consumer",
            "bundle": env["manifest"]["id"],
        },
    )
    with pytest.raises(SubmissionError, match="punctuation may not repeat"):
        _receive(env, tmp_path / "dots")


def test_two_verifications_of_one_submission_at_once_share_nothing(env: dict[str, Any], tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    sub = _perfect_submission(env, tmp_path / "twice")

    def verify() -> ResultsDocument:
        return verify_submission(_receive(env, sub), build=env["build"])

    with ThreadPoolExecutor(max_workers=2) as pool:
        docs = list(pool.map(lambda _: verify(), range(2)))
    for doc in docs:
        assert {r.status for r in doc.records} == {Status.PASS}, [
            r.message for r in doc.records if r.status is not Status.PASS
        ]


def test_bidi_and_control_characters_are_shown_not_obeyed(env: dict[str, Any], tmp_path: Path) -> None:
    run_doc = ResultsDocument.load(sorted((env["root"] / "results").glob("2*.json"))[0])
    spoof = "reference\u202egnp.evil\u0007"
    for r in run_doc.records:
        r.message = spoof
    site = tmp_path / "site"
    render_site([run_doc], site, options=SiteOptions(pictures=False))
    text = "".join(p.read_text() for p in (site / "cell").glob("*.html"))
    assert "\u202e" not in text and "\u0007" not in text and "[U+202E]" in text and "[U+0007]" in text


def test_the_report_copies_nothing_from_outside_the_suites_run_folders(env: dict[str, Any], tmp_path: Path) -> None:
    run_doc = ResultsDocument.load(sorted((env["root"] / "results").glob("2*.json"))[0])
    run_doc.run.run_dir = "/"
    for r in run_doc.records:
        r.artifacts = {"secret": "etc/passwd"}
        if r.seg is not None:
            r.seg.path = "etc/passwd"
    site = tmp_path / "site"
    render_site([run_doc], site, options=SiteOptions(pictures=False))
    copied = [p for p in site.rglob("*") if p.is_file() and p.name == "passwd"]
    assert not copied, copied
