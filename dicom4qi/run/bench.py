"""``dicom4qi bench``: time every write and read of a tier, against .nii.gz and the reference decoder.

For each case, one after another (timings are not taken in parallel):

1. **baselines** (disjoint label maps only): the truth written as ``.nii.gz``
   (nibabel) and ``.seg.nrrd``, read back by nibabel and SimpleITK;
2. **writes**: each producer writes the case; the first call is the warm-up and
   is checked like any conformance write, then ``repeats`` timed calls;
3. **reads**: each consumer reads one object per case (that of the first
   producer whose write passed); the first call is the warm-up
   and is compared with the truth voxel by voxel (its status is the cell's
   status: a fast wrong decode shows as FAIL), then ``repeats`` timed calls
   that only decode (the suite's conversion to its canonical form is not
   timed; see :mod:`dicom4qi.adapters.child`).

A cell whose warm-up takes more than ``slow_cell_s`` (30 s) is timed once more,
not ``repeats`` times. Every call is a whole process (``python -m dicom4qi.adapters.child``): wall, CPU and
peak RSS by ``wait4``, and the tool's own seconds measured inside. A cell's
figures are the medians of the timed calls with their range; ratios are taken
against nibabel's ``.nii.gz`` (same case, same operation) and against the
reference decoder's read of the same object. The results are a results
document (``run.kind = "bench"``) whose records carry :class:`BenchStats`.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from dicom4qi import __version__
from dicom4qi.adapters.contract import Role, split_spec
from dicom4qi.formats.baselines import BASELINES
from dicom4qi.model.case import LoadedCase, load_cases
from dicom4qi.model.results import BenchStats, Record, ResultsDocument, ResultsWriter, RunInfo, Status, Timing, ToolInfo
from dicom4qi.model.truth import Truth
from dicom4qi.model.wire import BaselineCall, BaselineReply, Call, ReadCall
from dicom4qi.paths import reports as reports_path
from dicom4qi.process.sandbox import ChildOutcome, run_child
from dicom4qi.process.services import ServicePool
from dicom4qi.run.runner import ProgressSink, RunConfig, Runner, corpus_fingerprint, prepare_tool, select_cases
from dicom4qi.run.steps import ChildLimits, git_commit, now_iso, outcome_record, slug, write_call

__all__ = ["BENCH_CONSUMERS", "BENCH_PRODUCERS", "BENCH_VIEWERS", "BenchConfig", "bench", "machine_description"]

#: What a benchmark runs by default: the tools whose speed the mission asks about, and the viewers.
BENCH_PRODUCERS = ["highdicom", "dcmqi", "pydicom-seg", "reference"]
#: The viewers: OHIF in a browser, and the cornerstone adapters it decodes with, in Node. Timed only on the cases
#: that ask for it (``bench_viewers = true``: a read there takes seconds to minutes), or that are named (``--case``).
BENCH_VIEWERS = ["ohif", "cornerstone"]
BENCH_CONSUMERS = ["reference", "highdicom", "dcmqi", "pydicom-seg", "dcmjs", *BENCH_VIEWERS]

#: The operation each baseline record stands for.
NIFTI, NIBABEL = "nifti", "nibabel"
#: The consumer name of the format's floor on an object (:func:`dicom4qi.formats.baselines.floor_read`).
FLOOR = "floor"


@dataclass
class BenchConfig:
    run: RunConfig = field(
        default_factory=lambda: RunConfig(
            tiers=["full"], producers=list(BENCH_PRODUCERS), consumers=list(BENCH_CONSUMERS), verify_writes=False
        )
    )
    repeats: int = 3
    #: A cell whose warm-up takes longer than this is timed once more only (a minute-long call varies little
    #: next to what it shows, and three more would not fit a nightly budget).
    slow_cell_s: float = 30.0
    #: Where the published benchmark JSON goes (rewritten by every bench of that tier).
    publish: Path | None = reports_path("bench")
    #: A quick run's results, from which the harness overhead is taken (if it exists).
    quick_results: Path | None = reports_path("results", "latest.json")


def machine_description() -> dict[str, str]:
    """CPU model, cores and memory, so that published figures say where they were measured."""
    out = {"machine": platform.machine(), "system": platform.system(), "release": platform.release()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                out["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        out["cpu"] = "unknown (no /proc/cpuinfo)"
    out["cores"] = str(os.cpu_count())
    try:
        out["memory_gib"] = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f}"
    except (ValueError, OSError):
        out["memory_gib"] = "unknown"
    return out


def _timing(out: ChildOutcome, key: str) -> Timing:
    tool = getattr(out.reply, key, None) if key else None
    return Timing(
        wall_s=out.wall_s,
        cpu_s=out.cpu_s,
        peak_rss_mb=out.peak_rss_mb,
        tool_s=round(float(tool), 4) if tool is not None else None,
    )


def is_viewer(tool: ToolInfo) -> bool:
    """A viewer (a browser's service, or one of :data:`BENCH_VIEWERS` at any release): timed on fewer cases."""
    return tool.service or split_spec(tool.name)[0] in BENCH_VIEWERS


def _stats(runs: list[Timing], warmup: Timing | None, size: int | None) -> BenchStats:
    tools = [r.tool_s for r in runs if r.tool_s is not None]
    return BenchStats(
        runs=runs,
        warmup=warmup,
        median_wall_s=round(statistics.median(r.wall_s for r in runs), 4),
        median_cpu_s=round(statistics.median(r.cpu_s for r in runs), 4),
        median_peak_rss_mb=round(statistics.median(r.peak_rss_mb for r in runs), 1),
        min_wall_s=min(r.wall_s for r in runs),
        max_wall_s=max(r.wall_s for r in runs),
        median_tool_s=round(statistics.median(tools), 4) if tools else None,
        size=size,
    )


class BenchRunner(Runner):
    """Reuses the conformance steps for the warm-up calls, then repeats the timed ones."""

    def __init__(self, config: BenchConfig, progress: ProgressSink | None = None) -> None:
        super().__init__(config.run, progress)
        self.bcfg = config

    # ------------------------------------------------------------------ timed repeats
    def _repeat(
        self,
        request: Call,
        workdir: Path,
        python: str | None,
        key: str,
        warmup_s: float = 0.0,
        pool: ServicePool | None = None,
    ) -> list[Timing] | str:
        runs = []
        repeats = 1 if warmup_s > self.bcfg.slow_cell_s else self.bcfg.repeats
        for i in range(repeats):
            limits: ChildLimits = {"timeout_s": self.cfg.timeout_s, "memory_mb": self.cfg.memory_mb, "python": python}
            if pool is None:
                out = run_child(request, workdir / f"run{i + 1}", **limits)
            else:  # a viewer: each timed read leases the service (its server and browser) as the warm-up did
                with pool.lease() as endpoints:
                    if isinstance(request, ReadCall):
                        request.service = endpoints
                    out = run_child(request, workdir / f"run{i + 1}", **limits)
            if out.kind != "ok":
                return f"timed run {i + 1}: {out.kind}: {out.message}"
            runs.append(_timing(out, key))
        return runs

    def _baselines(self, loaded: LoadedCase, truth: Truth, run_dir: Path) -> list[Record]:
        if truth.overlap or truth.fractional or truth.geometry.positions is None:
            return []
        records = []
        expected = 0
        with truth.masks() as masks:
            for _, crop in masks:
                expected += crop.voxels
        folder = run_dir / "baselines" / slug(loaded.id)
        folder.mkdir(parents=True, exist_ok=True)
        for fmt in BASELINES:
            path = folder / f"truth{fmt.suffix}"
            base = {**self._base(loaded, fmt.name, None), "notes": [f"written by {fmt.writer}"]}
            req = BaselineCall(
                action="write", format=fmt.name, truth_dir=str(truth.directory.resolve()), path=str(path.resolve())
            )
            warm = run_child(
                req, folder / f"{fmt.name}-write", timeout_s=self.cfg.timeout_s, memory_mb=self.cfg.memory_mb
            )
            if warm.kind != "ok":
                records.append(outcome_record(base, warm, "write"))
                continue
            runs = self._repeat(req, folder / f"{fmt.name}-write", None, "seconds")
            if isinstance(runs, str):
                records.append(Record(**base, status=Status.ERROR, message=runs))
                continue
            size = path.stat().st_size
            records.append(Record(**base, status=Status.PASS, bench=_stats(runs, _timing(warm, "seconds"), size)))
            for reader in fmt.readers:
                rbase = {
                    **self._base(loaded, fmt.name, reader),
                    "notes": [f"{reader} reads {fmt.suffix} into a numpy array"],
                }
                rreq = replace(req, action="read", reader=reader)
                work = folder / f"{fmt.name}-read-{slug(reader)}"
                warm = run_child(rreq, work, timeout_s=self.cfg.timeout_s, memory_mb=self.cfg.memory_mb)
                if warm.kind != "ok":
                    records.append(outcome_record(rbase, warm, "read"))
                    continue
                found = warm.expect(BaselineReply)
                got = found.voxels if found.voxels is not None else -1
                shape = tuple(found.shape or ())
                status, message = Status.PASS, ""
                if got != expected or sorted(shape) != sorted(truth.shape):
                    status, message = (
                        Status.FAIL,
                        f"read {got} labelled voxels in shape {shape}, the truth has {expected} in {truth.shape}",
                    )
                runs = self._repeat(replace(rreq, bench=True), work, None, "seconds")
                if isinstance(runs, str):
                    records.append(Record(**rbase, status=Status.ERROR, message=runs))
                    continue
                records.append(
                    Record(**rbase, status=status, message=message, bench=_stats(runs, _timing(warm, "seconds"), size))
                )
        return records

    def _write_cell(self, loaded: LoadedCase, truth: Truth, tool: ToolInfo, run_dir: Path) -> Record:
        rec = self.write_step(loaded, truth, tool, run_dir)
        if rec.seg is None or rec.status not in (Status.PASS, Status.FAIL):
            return rec
        scratch = run_dir / "bench-writes" / slug(loaded.id) / slug(tool.name)
        scratch.mkdir(parents=True, exist_ok=True)
        req = write_call(tool.name, loaded, self.cfg.corpus, truth, scratch / "seg.dcm")
        warm = Timing(wall_s=rec.wall_s or 0.0, cpu_s=rec.cpu_s or 0.0, peak_rss_mb=rec.peak_rss_mb or 0.0)
        runs = self._repeat(req, scratch, self.pythons.get(tool.name), "", warm.wall_s)
        shutil.rmtree(scratch, ignore_errors=True)
        if isinstance(runs, str):
            rec.status, rec.message = Status.ERROR, runs
            return rec
        rec.bench = _stats(runs, warm, rec.seg.size)
        return rec

    def _floor_cell(self, loaded: LoadedCase, write: Record, run_dir: Path) -> Record:
        """The format's floor on an object: what any reader must do, placing nothing (``floor_read``), timed as a
        whole process like every reader; its own seconds are the reading and unpacking, the rest the start-up."""
        base = {**self._base(loaded, write.producer, FLOOR), "step": "read"}
        base["notes"] = [
            "the least a reader must do: Python with numpy and pydicom started, the file read, its header parsed, "
            "every pixel byte looked at once (native) or every frame decoded (compressed); nothing placed"
        ]
        assert write.seg is not None
        seg_path = run_dir / write.seg.path
        work = seg_path.parent / "bench-floor"
        req = BaselineCall(action="floor", format="dicom-seg", truth_dir="", path=str(seg_path.resolve()))
        warm = run_child(req, work / "warm", timeout_s=self.cfg.timeout_s, memory_mb=self.cfg.memory_mb)
        if warm.kind != "ok":
            return outcome_record(base, warm, "read")
        runs = self._repeat(req, work, None, "seconds", warm.wall_s)
        if isinstance(runs, str):
            return Record(**base, status=Status.ERROR, message=runs)
        return Record(**base, status=Status.PASS, bench=_stats(runs, _timing(warm, "seconds"), write.seg.size))

    def _read_cell(
        self,
        loaded: LoadedCase,
        truth: Truth,
        write: Record,
        tool: ToolInfo,
        run_dir: Path,
        pool: ServicePool | None = None,
    ) -> Record:
        rec = self.read_step(loaded, truth, write, tool, run_dir, pool)
        if write.seg is None or rec.status not in (Status.PASS, Status.FAIL):
            return rec
        seg_path = run_dir / write.seg.path
        work = seg_path.parent / f"bench-read-{slug(tool.name)}"
        req = ReadCall(
            adapter=tool.name,
            bench=True,
            seg=str(seg_path.resolve()),
            sources=[str(p.resolve()) for p in truth.reader_source_paths],
            output=str((work / "decoded.npz").resolve()),
        )
        warm = Timing(wall_s=rec.wall_s or 0.0, cpu_s=rec.cpu_s or 0.0, peak_rss_mb=rec.peak_rss_mb or 0.0)
        runs = self._repeat(req, work, self.pythons.get(tool.name), "read_s", warm.wall_s, pool)
        if isinstance(runs, str):
            rec.status, rec.message = Status.ERROR, runs
            return rec
        rec.bench = _stats(runs, warm, write.seg.size)
        return rec

    # ------------------------------------------------------------------ the benchmark
    def run_bench(self) -> Path:
        cfg = self.cfg
        all_cases, errors = load_cases(cfg.corpus, cfg.features)
        cases = select_cases(all_cases, cfg.tiers, cfg.cases)
        if not cases:
            raise ValueError(f"no valid case matches tier {cfg.tiers} and case {cfg.cases or 'any'}")
        run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-bench-" + uuid.uuid4().hex[:6]
        run_dir = cfg.build / "runs" / run_id
        run_dir.mkdir(parents=True, exist_ok=True)

        specs: list[tuple[Role, str]] = [("producer", p) for p in cfg.producers] + [
            ("consumer", c) for c in cfg.consumers
        ]
        self.progress.start("handshake", len(specs))
        tools: list[ToolInfo] = []
        for role, spec in specs:
            info, python = prepare_tool(
                role,
                spec,
                cfg.build,
                run_dir / "handshake" / f"{role}-{slug(spec)}",
                cfg.memory_mb,
                log=self.progress.note,
            )
            tools.append(info)
            self.pythons[info.name] = python
            self.progress.advance(f"{role} {spec}")
        self.progress.stop()

        doc = ResultsDocument(
            run=RunInfo(
                run_id=run_id,
                started=now_iso(),
                suite_version=__version__,
                suite_commit=git_commit(),
                platform=platform.platform(),
                python=platform.python_version(),
                cpu_count=os.cpu_count(),
                memory_total_mb=round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20, 0),
                command=sys.argv,
                corpus_fingerprint=corpus_fingerprint(cases),
                filters={
                    "tier": cfg.tiers,
                    "case": cfg.cases,
                    "producer": cfg.producers,
                    "consumer": cfg.consumers,
                    "repeats": [str(self.bcfg.repeats)],
                },
                timeout_s=cfg.timeout_s,
                memory_limit_mb=cfg.memory_mb,
                workers=1,
                run_dir=str(run_dir.resolve()),
                kind="bench",
                machine=machine_description(),
            ),
            tools=tools,
        )
        doc.run.harness_overhead = self._overhead()
        paths = [cfg.results / f"{run_id}.json"]
        writer = ResultsWriter(doc, paths)
        truths = self.build_corpus(cases, [str(e) for e in errors])
        producers = [t for t in tools if t.role == "producer"]
        consumers = [t for t in tools if t.role == "consumer"]
        # A viewer's service (server, browser) is started once, as in a run, and is in no timed call.
        pools = {
            k.name: ServicePool(k, run_dir / "services", cfg.build / "cache", size=1, python=self.pythons.get(k.name))
            for k in consumers
            if k.service and k.available
        }
        try:
            self.progress.start("bench", len(cases))
            for loaded in cases:
                truth = truths.get(loaded.id)
                if truth is None:
                    continue
                for rec in self._baselines(loaded, truth, run_dir):
                    writer.add(rec)
                # Every producer's write is timed; the reads are timed on one object per case, the first
                # producer's that wrote it right (the conformance run reads every object; speed is the tool's).
                read_done = False
                for p in producers:
                    self.progress.note(f"{loaded.id}: {p.name} writes")
                    w = self._write_cell(loaded, truth, p, run_dir)
                    writer.add(w)
                    if not read_done and w.status is Status.PASS:
                        read_done = True
                        self.progress.note(f"{loaded.id}: the format's floor on {p.name}'s object")
                        writer.add(self._floor_cell(loaded, w, run_dir))
                        for c in consumers:
                            if is_viewer(c) and not loaded.case.bench_viewers and not cfg.cases:
                                continue
                            self.progress.note(f"{loaded.id}: {c.name} reads {p.name}'s object")
                            writer.add(self._read_cell(loaded, truth, w, c, run_dir, pools.get(c.name)))
                    self._drop_object(run_dir, w)
                self.progress.advance(loaded.id)
            self.progress.stop()
        finally:
            for pool in pools.values():
                pool.stop()
            add_ratios(doc)
            doc.run.finished = now_iso()
            writer.flush()
        if self.bcfg.publish is not None:
            self.bcfg.publish.mkdir(parents=True, exist_ok=True)
            target = self.bcfg.publish / f"bench-{'-'.join(cfg.tiers)}.json"
            published = doc.model_copy(deep=True)
            published.run.run_dir = None  # the objects are not published
            target.write_text(published.model_dump_json(indent=1) + "\n", encoding="utf-8")
        return paths[0]

    def _drop_object(self, run_dir: Path, write: Record) -> None:
        """Objects of the benchmark run to gigabytes: once read by every consumer, delete them (sizes stay recorded)."""
        if write.seg is not None:
            (run_dir / write.seg.path).unlink(missing_ok=True)

    def _overhead(self) -> dict[str, float]:
        from dicom4qi.run.summary import harness_overhead

        path = self.bcfg.quick_results
        if path is None or not path.is_file():
            return {}
        try:
            doc = ResultsDocument.load(path)
        except ValueError:
            return {}
        if doc.run.kind != "run" or doc.run.filters.get("tier") != ["quick"] or doc.run.filters.get("case"):
            return {}
        out = harness_overhead(doc)
        return out | {"records": float(len(doc.records))} if out else {}


def add_ratios(doc: ResultsDocument) -> None:
    """Fill each bench record's ratios: against nibabel's .nii.gz (same case and operation) and the reference read.

    A viewer's ratios are of its own seconds (from opening the viewer to the segmentation shown): its call's wall
    time also holds the upload into its archive, the DevTools connection and the suite's read back of what it shows,
    which are not the viewer's. OHIF's wait to answer again once it holds the segmentation is its own (on 1000
    segments most of a 262 s call); records measured before that was counted are marked in the format study.
    """
    viewers = {t.name for t in doc.tools if is_viewer(t)}
    nifti: dict[tuple[str, str], float] = {}
    reference: dict[tuple[str, str], float] = {}
    for r in doc.records:
        if r.bench is None:
            continue
        if r.producer == NIFTI and r.consumer in (None, NIBABEL):
            nifti[(r.case, r.step)] = r.bench.median_wall_s
        if r.step == "read" and r.consumer == "reference":
            reference[(r.case, r.producer)] = r.bench.median_wall_s
    for r in doc.records:
        if r.bench is None:
            continue
        own = r.bench.median_tool_s if r.consumer in viewers else None
        seconds = own if own is not None else r.bench.median_wall_s
        base = nifti.get((r.case, r.step))
        r.bench.ratio_nifti = round(seconds / base, 2) if base else None
        ref = reference.get((r.case, r.producer)) if r.step == "read" else None
        r.bench.ratio_reference = round(seconds / ref, 2) if ref else None


def bench(
    config: BenchConfig, progress: ProgressSink | None = None, after: Callable[[Path], None] | None = None
) -> Path:
    """Run the benchmark; return the path of its results document."""
    path = BenchRunner(config, progress).run_bench()
    if after is not None:
        after(path)
    return path
