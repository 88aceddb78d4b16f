"""The vendor bundle: every produced object of a run, its source images and its truth, with checksums.

``dicom4qi corpus export --out DIR`` writes::

    dicom4qi-bundle-<id>/
      README.md                 what to do with it (docs/vendors.md)
      manifest.json             cases, objects, every file's sha256; the bundle id
      SHA256SUMS                the same sums, for ``sha256sum -c``
      cases/<tier>/<name>.toml  the case files
      sources/<fingerprint>/    the source images of a case (shared by cases that differ in encoding only)
      truth/<case>/             the truth as an exchange folder: segments.json + NIfTI (docs/protocol.md)
      objects/<case>/<producer>/seg.dcm
      schema/                   the JSON Schemas of the protocol, the exchange folder and submissions

The bundle id is a hash of every file's path and sum, so it names one exact
content. A copy of the manifest stays in ``build/bundles/<id>.json``: the
verifier reads it to know which object is which case (and never trusts a
submission's idea of that), and it rebuilds the truth from the case files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

from dicom4qi import __version__
from dicom4qi.corpus.synth import build_case
from dicom4qi.model.case import SYNTHESIS_VERSION, implied_features, load_cases
from dicom4qi.model.protocol import BUNDLE_FORMAT, schema_texts
from dicom4qi.model.results import ResultsDocument, Status
from dicom4qi.paths import BUILD_DIR, CASES_DIR, FEATURES_FILE, PROJECT, SUITE_ROOT
from dicom4qi.run.steps import git_commit, now_iso, sha256_of, slug

__all__ = ["BundleError", "export_bundle", "load_manifest", "object_id", "DOCS"]

DOCS = (PROJECT or SUITE_ROOT) / "docs"


class BundleError(ValueError):
    """A bundle that cannot be made or used; the message says why."""


def object_id(case_id: str, producer: str) -> str:
    """The id of a produced object inside a bundle: ``<case slug>/<producer>`` (path-safe)."""
    return f"{slug(case_id)}/{producer.replace(':', '_').replace('/', '_')}"


def export_bundle(
    results: Path,
    out: Path,
    *,
    corpus: Path = CASES_DIR,
    features: Path = FEATURES_FILE,
    build: Path = BUILD_DIR,
    make_zip: bool = False,
    progress: Any = None,
) -> tuple[Path, dict[str, Any]]:
    """Write the bundle of a run's produced objects into ``out``; return its folder and manifest."""
    if not results.is_file():
        raise BundleError(f"no results at {results}: run `dicom4qi run` first (or give --results)")
    doc = ResultsDocument.load(results)
    if not doc.run.run_dir:
        raise BundleError(f"{results}: the run does not say where its objects are")
    run_dir = Path(doc.run.run_dir)
    if not run_dir.is_dir() and (build / "runs" / doc.run.run_id).is_dir():
        run_dir = build / "runs" / doc.run.run_id  # the run was made elsewhere (a CI job) and its folder brought here
    writes = [r for r in doc.records if r.step == "write" and r.status is Status.PASS and r.seg is not None]
    if not writes:
        raise BundleError(f"{results}: the run has no object that was written correctly")
    loaded, errors = load_cases(corpus, features)
    by_id = {c.id: c for c in loaded}
    versions = {t.name: t.version for t in doc.tools}
    out.mkdir(parents=True, exist_ok=True)
    staging = out / ".bundle.part"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    cases: dict[str, Any] = {}
    objects: dict[str, Any] = {}
    skipped: list[str] = []
    total = len({r.case for r in writes}) + len(writes)
    if progress:
        progress.start("export", total)
    try:
        for case_id in sorted({r.case for r in writes}):
            lc = by_id.get(case_id)
            if lc is None:
                skipped.append(f"{case_id}: no such case file now")
                continue
            truth = build_case(lc, build)
            fp = lc.case.fingerprint()
            case_file = Path("cases") / Path(case_id).with_suffix(".toml")
            (staging / case_file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(lc.path, staging / case_file)
            src_dir = Path("sources") / fp
            if not (staging / src_dir).exists():
                for p in truth.reader_source_paths:  # the decoy series too, where the case has one
                    target = staging / src_dir / p.relative_to(truth.directory)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(p, target)
            truth_dir = Path("truth") / slug(case_id)
            from dicom4qi.formats.exchange import write_truth

            write_truth(truth, staging / truth_dir)
            e = lc.case.encoding
            cases[case_id] = {
                "description": lc.case.description,
                "file": case_file.as_posix(),
                "fingerprint": fp,
                "features": sorted(set(lc.case.features) | implied_features(lc.case)),
                "segments": lc.case.segments.count,
                "encoding": e.model_dump(mode="json"),
                "sources": [(src_dir / p.relative_to(truth.directory)).as_posix() for p in truth.source_paths],
                # What a reader is given: the sources and a series the SEG does not reference (source-two-series).
                "reader_sources": [
                    (src_dir / p.relative_to(truth.directory)).as_posix() for p in truth.reader_source_paths
                ],
                "truth": truth_dir.as_posix(),
                "labelmap": e.type.value == "LABELMAP",
            }
            if progress:
                progress.advance(case_id)
        for rec in sorted(writes, key=lambda r: (r.case, r.producer)):
            if rec.case not in cases:
                continue
            assert rec.seg is not None
            if rec.seg.instances:
                skipped.append(
                    f"{rec.case} by {rec.producer}: a segmentation in {len(rec.seg.instances) + 1} instances "
                    "(vendor bundles carry one object per case)"
                )
                continue
            path = run_dir / rec.seg.path
            if not path.is_file() or sha256_of(path) != rec.seg.sha256:
                skipped.append(f"{rec.case} by {rec.producer}: the object is no longer on disk as written")
                continue
            oid = object_id(rec.case, rec.producer)
            rel = Path("objects") / oid / "seg.dcm"
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, staging / rel)
            objects[oid] = {
                "case": rec.case,
                "producer": rec.producer,
                "producer_version": versions.get(rec.producer),
                "path": rel.as_posix(),
                "sha256": rec.seg.sha256,
                "size": rec.seg.size,
                "sop_class_uid": rec.seg.sop_class_uid,
                "transfer_syntax_uid": rec.seg.transfer_syntax_uid,
                "frames": rec.seg.frames,
            }
            if progress:
                progress.advance(oid)
        (staging / "schema").mkdir()
        for name, text in schema_texts().items():
            (staging / "schema" / name).write_text(text, encoding="utf-8")
        files = {p.relative_to(staging).as_posix(): sha256_of(p) for p in sorted(staging.rglob("*")) if p.is_file()}
        bundle_id = hashlib.sha256("".join(f"{s}  {n}\n" for n, s in sorted(files.items())).encode()).hexdigest()[:16]
        readme = _readme(bundle_id, len(cases), len(objects))
        (staging / "README.md").write_text(readme, encoding="utf-8")
        files["README.md"] = sha256_of(staging / "README.md")
        manifest = {
            "format": BUNDLE_FORMAT,
            "id": bundle_id,
            "created": now_iso(),
            "suite_version": __version__,
            "suite_commit": git_commit(),
            "synthesis_version": SYNTHESIS_VERSION,
            "run_id": doc.run.run_id,
            "cases": cases,
            "objects": objects,
            "skipped": skipped,
            "files": dict(sorted(files.items())),
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
        (staging / "SHA256SUMS").write_text("".join(f"{s}  {n}\n" for n, s in sorted(files.items())), encoding="utf-8")
        final = out / f"dicom4qi-bundle-{bundle_id}"
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if progress:
            progress.stop()
    keep = build / "bundles" / f"{bundle_id}.json"
    keep.parent.mkdir(parents=True, exist_ok=True)
    keep.write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    if make_zip:
        archive = out / f"dicom4qi-bundle-{bundle_id}.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for p in sorted(final.rglob("*")):
                if p.is_file():
                    zf.write(p, (Path(final.name) / p.relative_to(final)).as_posix())
    return final, manifest


def _readme(bundle_id: str, n_cases: int, n_objects: int) -> str:
    guide = (DOCS / "vendors.md").read_text(encoding="utf-8") if (DOCS / "vendors.md").is_file() else ""
    head = (
        f"# dicom4qi bundle {bundle_id}\n\n"
        f"{n_objects} DICOM SEG objects written by the tools the suite runs, over {n_cases} cases, with each case's\n"
        "source images and exact truth. `sha256sum -c SHA256SUMS` checks the copy. Give this id in your\n"
        f'submission: `"bundle": "{bundle_id}"`.\n\n'
    )
    return head + guide


def load_manifest(path_or_id: str | Path, build: Path = BUILD_DIR) -> dict[str, Any]:
    """A bundle's manifest: from a bundle folder, a manifest file, or an id kept in ``build/bundles``."""
    p = Path(path_or_id)
    candidates = [p / "manifest.json", p] if p.exists() else [build / "bundles" / f"{path_or_id}.json"]
    for c in candidates:
        if c.is_file():
            try:
                manifest = json.loads(c.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise BundleError(f"{c}: unreadable manifest ({exc})") from None
            if manifest.get("format") != BUNDLE_FORMAT:
                raise BundleError(f"{c}: not a {BUNDLE_FORMAT} manifest")
            return manifest
    raise BundleError(
        f"bundle {path_or_id} is unknown here: give --bundle with its folder or manifest.json "
        "(bundles exported on this machine are kept in build/bundles/)"
    )
