"""Vendor submissions: checked, then verified against the truth, never taken on trust.

A **consumer submission** holds what a vendor's tool decoded from each object of
a bundle (an exchange folder, or a SEG the tool re-exported). ``dicom4qi
verify-submission`` compares each with the truth the suite rebuilds from its own
case files, exactly as for the suite's own consumers, and writes a results
document whose records are marked ``verified``. A status the vendor only states
(no output) is kept as ``self-reported`` and shown apart.

A **producer submission** holds a SEG the vendor's tool wrote for each case;
``dicom4qi ingest`` runs every consumer and the validator on them, like for any
producer (:func:`prepare_ingest` and ``dicom4qi.vendors.replay``).

Both start with :func:`receive`: the folder or zip is checked and copied
(:mod:`dicom4qi.vendors.untrusted`), ``submission.json`` is validated against its
schema, and the bundle it names must be known here.
"""

from __future__ import annotations

import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dicom4qi import __version__
from dicom4qi.corpus.synth import build_case
from dicom4qi.formats.exchange import ExchangeError, load_json_bounded
from dicom4qi.judge.compare import compare, verdict
from dicom4qi.model.case import LoadedCase, load_cases
from dicom4qi.model.decoded import Decoded
from dicom4qi.model.protocol import SubmissionDoc, SubmissionEntry
from dicom4qi.model.results import (
    Record,
    ResultsDocument,
    RunInfo,
    SegObject,
    Status,
    SubmissionInfo,
    ToolInfo,
)
from dicom4qi.model.uids import LABEL_MAP_SEGMENTATION_STORAGE
from dicom4qi.model.wire import Call, ExchangeCall, ReadCall
from dicom4qi.paths import CASES_DIR, FEATURES_FILE
from dicom4qi.process.sandbox import run_child
from dicom4qi.run.steps import git_commit, now_iso, outcome_record
from dicom4qi.vendors.untrusted import Bounds, SubmissionError, open_submission

__all__ = ["Received", "SubmissionError", "receive", "verify_submission", "tool_column", "save_submission_results"]

SUBMISSION_JSON = "submission.json"
VERIFY_TIMEOUT_S = 300.0
VERIFY_MEMORY_MB = 8192.0


@dataclass
class Received:
    """A submission as checked and copied into the suite's own folder."""

    folder: Path
    doc: SubmissionDoc
    digest: str
    manifest: dict[str, Any]
    cases: dict[str, LoadedCase]


def _path_safe(text: str, limit: int) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:limit]


def tool_column(doc: SubmissionDoc) -> str:
    """The grid name of a submitted tool: ``<vendor>/<tool>``, path-safe."""
    return f"{doc.vendor}/{_path_safe(doc.tool.name, 40) or 'tool'}"


def receive(
    src: Path,
    *,
    build: Path,
    bundle: str | Path | None = None,
    corpus: Path = CASES_DIR,
    features: Path = FEATURES_FILE,
    bounds: Bounds | None = None,
) -> Received:
    """Check, copy and validate a submission; raise :class:`SubmissionError` with the reason when refused."""
    call = uuid.uuid4().hex[:8]
    work = build / "submissions" / f"incoming-{call}"
    try:
        folder, digest = open_submission(src, work, bounds)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)  # a refused submission leaves nothing behind
        raise
    # A folder of this call's own: two verifications of one submission at once share nothing.
    final = build / "submissions" / f"{digest[:16]}-{call}"
    try:
        folder.rename(final)
        return _checked(final, digest, build=build, bundle=bundle, corpus=corpus, features=features)
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        raise


def _checked(
    folder: Path, digest: str, *, build: Path, bundle: str | Path | None, corpus: Path, features: Path
) -> Received:
    """The copied submission's submission.json validated, and the bundle it names found."""
    from dicom4qi.vendors.bundle import BundleError, load_manifest

    if not (folder / SUBMISSION_JSON).is_file():
        raise SubmissionError(f"no {SUBMISSION_JSON} at the top of the submission")
    try:
        raw = load_json_bounded(folder / SUBMISSION_JSON, 4 * 2**20)
        doc = SubmissionDoc.model_validate(raw)
    except ExchangeError as exc:
        raise SubmissionError(str(exc)) from None
    except ValidationError as exc:
        lines = [f"{'/'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()[:5]]
        raise SubmissionError(f"{SUBMISSION_JSON} does not match the schema: " + "; ".join(lines)) from None
    try:
        manifest = load_manifest(bundle if bundle is not None else doc.bundle, build)
    except BundleError as exc:
        raise SubmissionError(str(exc)) from None
    if manifest.get("id") != doc.bundle:
        raise SubmissionError(f"the submission is for bundle {doc.bundle}, the bundle given is {manifest.get('id')}")
    loaded, _ = load_cases(corpus, features)
    by_id = {c.id: c for c in loaded}
    cases: dict[str, LoadedCase] = {}
    for case_id, info in manifest["cases"].items():
        lc = by_id.get(case_id)
        if lc is not None and lc.case.fingerprint() == info.get("fingerprint"):
            cases[case_id] = lc
    return Received(folder=folder, doc=doc, digest=digest, manifest=manifest, cases=cases)


def _entries(rec: Received) -> tuple[dict[str, SubmissionEntry], list[str]]:
    """The consumer entries by bundle object id (listed, or found as decoded/<object id>/), and problems."""
    problems: list[str] = []
    objects = rec.manifest["objects"]
    out: dict[str, SubmissionEntry] = {}
    if rec.doc.entries is not None:
        for e in rec.doc.entries:
            assert e.object is not None
            if e.object not in objects:
                problems.append(f"{e.object}: not an object of bundle {rec.doc.bundle}; ignored")
            elif e.object in out:
                problems.append(f"{e.object}: listed twice; the first entry counts")
            else:
                out[e.object] = e
    else:
        for oid in objects:
            d = rec.folder / "decoded" / oid
            if (d / "segments.json").is_file():
                out[oid] = SubmissionEntry(object=oid, decoded=f"decoded/{oid}")
            elif (d / "seg.dcm").is_file():
                out[oid] = SubmissionEntry(object=oid, seg=f"decoded/{oid}/seg.dcm")
    for oid, e in list(out.items()):
        target = e.decoded or e.seg
        if target is not None and not (rec.folder / target).exists():
            problems.append(f"{oid}: {target} is not in the submission")
            if e.self_reported is None:
                out.pop(oid)
            else:
                out[oid] = SubmissionEntry(object=oid, self_reported=e.self_reported, notes=e.notes)
    return out, problems


def _info(rec: Received, entries: int, verified: int, self_reported: int, problems: list[str]) -> SubmissionInfo:
    commit = git_commit()
    return SubmissionInfo(
        vendor=rec.doc.vendor,
        tool=rec.doc.tool.name,
        tool_version=rec.doc.tool.version,
        homepage=rec.doc.tool.homepage,
        role=rec.doc.role,
        bundle=rec.doc.bundle,
        sha256=rec.digest,
        received=now_iso(),
        verified_by=f"dicom4qi {__version__}" + (f" ({commit[:12]})" if commit else ""),
        contact=rec.doc.contact,
        notes=rec.doc.notes,
        entries=entries,
        verified=verified,
        self_reported=self_reported,
        problems=problems[:200],
    )


def verify_submission(
    rec: Received,
    *,
    build: Path,
    progress: Any = None,
    timeout_s: float = VERIFY_TIMEOUT_S,
    memory_mb: float = VERIFY_MEMORY_MB,
) -> ResultsDocument:
    """Compare a consumer submission's outputs with the truth; one record per bundle object."""
    if rec.doc.role != "consumer":
        raise SubmissionError("this is a producer submission: read it with `dicom4qi ingest`")
    entries, problems = _entries(rec)
    column = tool_column(rec.doc)
    work_root = rec.folder.parent / f"{rec.folder.name}-verify"
    shutil.rmtree(work_root, ignore_errors=True)
    records: list[Record] = []
    objects = rec.manifest["objects"]
    if progress:
        progress.start("verify", len(objects))
    truths: dict[str, Any] = {}
    try:
        for n, (oid, obj) in enumerate(sorted(objects.items())):
            case_id = obj["case"]
            info = rec.manifest["cases"][case_id]
            base = {
                "case": case_id,
                "producer": obj["producer"],
                "consumer": column,
                "step": "read",
                "features": info.get("features", []),
                "tier": case_id.split("/")[0],
                "segments": info.get("segments"),
                "seg": SegObject(
                    path=obj["path"],
                    size=obj["size"],
                    sha256=obj["sha256"],
                    sop_class_uid=obj.get("sop_class_uid"),
                    transfer_syntax_uid=obj.get("transfer_syntax_uid"),
                    frames=obj.get("frames"),
                ),
            }
            entry = entries.get(oid)
            records.append(
                _verify_one(rec, oid, entry, base, truths, work_root / f"{n:05d}", build, timeout_s, memory_mb)
            )
            if progress:
                progress.advance(f"{oid}: {records[-1].status.value}")
    finally:
        if progress:
            progress.stop()
    verified = sum(1 for r in records if r.provenance == "verified")
    selfrep = sum(1 for r in records if r.provenance == "self-reported")
    commit = git_commit()
    doc = ResultsDocument(
        run=RunInfo(
            run_id=f"submission-{rec.doc.vendor}-{rec.digest[:12]}",
            started=now_iso(),
            finished=now_iso(),
            suite_version=__version__,
            suite_commit=commit,
            platform="vendor",
            python="",
            command=["dicom4qi", "verify-submission"],
            corpus_fingerprint=rec.doc.bundle,
            timeout_s=timeout_s,
            memory_limit_mb=memory_mb,
            workers=1,
            kind="submission",
            submission=_info(rec, len(entries), verified, selfrep, problems),
        ),
        tools=[
            ToolInfo(
                name=column,
                role="consumer",
                tool=rec.doc.tool.name,
                version=rec.doc.tool.version,
                available=True,
                homepage=rec.doc.tool.homepage,
            )
        ],
        records=records,
    )
    return doc


def _verify_one(
    rec: Received,
    oid: str,
    entry: SubmissionEntry | None,
    base: dict[str, Any],
    truths: dict[str, Any],
    work: Path,
    build: Path,
    timeout_s: float,
    memory_mb: float,
) -> Record:
    if entry is None:
        return Record(**base, status=Status.SKIPPED, message="no output submitted for this object")
    notes = list(entry.notes)
    if entry.decoded is None and entry.seg is None:
        assert entry.self_reported is not None
        sr = entry.self_reported
        return Record(
            **base,
            status=Status(sr.status),
            provenance="self-reported",
            notes=notes,
            message=f"self-reported by the vendor, not verified{': ' + sr.message if sr.message else ''}",
        )
    case_id = base["case"]
    lc = rec.cases.get(case_id)
    if lc is None:
        return Record(
            **base,
            status=Status.ERROR,
            message="this suite's case file differs from the bundle's: re-export the bundle",
        )
    if case_id not in truths:
        truths[case_id] = build_case(lc, build)
    truth = truths[case_id]
    work.mkdir(parents=True, exist_ok=True)
    decoded_path = work / "decoded.npz"
    sources = [str(p.resolve()) for p in truth.source_paths]
    if entry.decoded is not None:
        req: Call = ExchangeCall(
            folder=str((rec.folder / entry.decoded).resolve()), sources=sources, output=str(decoded_path.resolve())
        )
        how = "the vendor's decoded output (exchange folder)"
    else:
        assert entry.seg is not None
        req = ReadCall(
            adapter="reference",
            seg=str((rec.folder / entry.seg).resolve()),
            sources=sources,
            output=str(decoded_path.resolve()),
        )
        how = "a SEG the vendor's tool re-exported, decoded by the reference decoder"
    out = run_child(req, work, timeout_s=timeout_s, memory_mb=memory_mb)
    if out.kind != "ok":
        r = outcome_record(base, out, "read")
        r.message = f"the submitted output is unusable: {r.message}"
        r.provenance = "verified"
        r.wall_s = r.cpu_s = r.peak_rss_mb = None
        return r
    notes = [f"verified from vendor output: {how}", *notes, *out.notes[:20]]
    if entry.self_reported is not None:
        notes.append(f"the vendor also reported {entry.self_reported.status}")
    try:
        decoded = Decoded(decoded_path)
    except (OSError, ValueError) as exc:
        return Record(
            **base,
            status=Status.ERROR,
            provenance="verified",
            notes=notes,
            message=f"the submitted output is unusable: {exc}",
        )
    try:
        checks = compare(truth, decoded, labelmap=base["seg"].sop_class_uid == LABEL_MAP_SEGMENTATION_STORAGE)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return Record(
            **base,
            status=Status.ERROR,
            provenance="verified",
            notes=notes,
            message=f"the submitted output cannot be compared: {type(exc).__name__}: {exc}",
        )
    finally:
        decoded.close()
        decoded_path.unlink(missing_ok=True)
    ok, msg = verdict(checks)
    return Record(
        **base,
        status=Status.PASS if ok else Status.FAIL,
        message=msg,
        checks=checks,
        notes=notes,
        provenance="verified",
    )


def _skeleton(vendor: str) -> str:
    """What a vendor id looks like to a reader: punctuation dropped, lookalike digits read as letters."""
    return re.sub(r"[._-]", "", vendor.lower()).translate(str.maketrans("015", "ols"))


def save_submission_results(doc: ResultsDocument, rec: Received, out_root: Path) -> Path:
    """Keep a verified submission under ``<out_root>/<vendor>/``: its results and its submission.json."""
    assert doc.run.submission is not None
    for other in sorted(p.name for p in out_root.iterdir() if p.is_dir()) if out_root.is_dir() else []:
        if other != rec.doc.vendor and _skeleton(other) == _skeleton(rec.doc.vendor):
            raise SubmissionError(
                f"vendor {rec.doc.vendor!r} looks like the vendor {other!r} already here: "
                "use that id, or one that cannot be mistaken for it"
            )
    folder = out_root / rec.doc.vendor
    folder.mkdir(parents=True, exist_ok=True)
    tool = _path_safe(f"{rec.doc.tool.name}-{rec.doc.tool.version}", 80)
    stem = f"{doc.run.kind}-{tool}-{rec.digest[:12]}"
    path = folder / f"{stem}.results.json"
    path.write_text(doc.model_dump_json(indent=1), encoding="utf-8")
    shutil.copyfile(rec.folder / SUBMISSION_JSON, folder / f"{stem}.submission.json")
    return path


def load_submissions(root: Path) -> list[ResultsDocument]:
    """Every submission's results under ``root`` (reports/submissions), unreadable ones skipped with a warning."""
    import warnings

    out = []
    for path in sorted(root.glob("*/*.results.json")):
        try:
            out.append(ResultsDocument.load(path))
        except (OSError, ValueError) as exc:
            warnings.warn(f"{path}: not a results document ({exc})", stacklevel=2)
    return out


def ingest_submission(
    rec: Received,
    *,
    consumers: list[str],
    build: Path,
    corpus: Path = CASES_DIR,
    features: Path = FEATURES_FILE,
    workers: int = 1,
    timeout_s: float = 600.0,
    memory_mb: float = 8192.0,
    validate: bool = True,
    progress: Any = None,
    validate_timeout_s: float = 300.0,
) -> ResultsDocument:
    """Run every consumer and the validator on a producer submission's objects, as for any producer."""
    from dicom4qi.run.runner import RunConfig, run

    if rec.doc.role != "producer":
        raise SubmissionError("this is a consumer submission: check it with `dicom4qi verify-submission`")
    problems: list[str] = []
    case_ids: list[str] = []
    for e in rec.doc.entries or []:
        assert e.case is not None and e.seg is not None
        if e.case not in rec.manifest["cases"]:
            problems.append(f"{e.case}: not a case of bundle {rec.doc.bundle}; ignored")
        elif e.case not in rec.cases:
            problems.append(f"{e.case}: this suite's case file differs from the bundle's; ignored")
        elif not (rec.folder / e.seg).is_file():
            problems.append(f"{e.case}: {e.seg} is not in the submission; ignored")
        elif e.case in case_ids:
            problems.append(f"{e.case}: listed twice; the first entry counts")
        else:
            case_ids.append(e.case)
    if not case_ids:
        raise SubmissionError("no usable entry: " + "; ".join(problems[:5]))
    spec = f"submission:{rec.folder.resolve()}"
    cfg = RunConfig(
        corpus=corpus,
        features=features,
        build=build,
        results=rec.folder.parent / f"{rec.folder.name}-ingest",
        tiers=[],
        cases=case_ids,
        producers=[spec],
        consumers=consumers,
        workers=workers,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        validate=validate,
        validate_timeout_s=validate_timeout_s,
    )
    summary = run(cfg, progress)
    doc = ResultsDocument.load(summary.path)
    column = tool_column(rec.doc)
    for r in doc.records:
        if r.producer == spec:
            r.producer = column
            if r.step == "write":
                # A file copy, not the vendor's write: no time is reported for it.
                r.provenance, r.wall_s, r.cpu_s, r.peak_rss_mb = "submitted", None, None, None
    for t in doc.tools:
        if t.name == spec:
            t.name, t.version = column, rec.doc.tool.version
    doc.run.kind = "ingest"
    doc.run.filters["producer"] = [column]
    doc.run.submission = _info(rec, len(rec.doc.entries or []), len(case_ids), 0, problems)
    doc.run.command = ["dicom4qi", "ingest"]
    return doc
