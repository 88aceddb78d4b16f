"""The flow of ``run --external``: every consumer reads every object from the wild, and dciodvfy validates each.

A read of an object that ships its truth (a label file beside it, see :mod:`dicom4qi.corpus.wild`) is graded
against that truth, voxel by voxel (basis "truth"); the reads of every other object are judged by the consensus
of independent readers (basis "consensus"). The shipped truth is turned into the canonical decoded form in a
bounded child (an exchange folder, :mod:`dicom4qi.formats.exchange`); where it cannot be, the object falls back
to consensus, and every read of it says why.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from dicom4qi.adapters.contract import family_of, missing_features
from dicom4qi.corpus.wild import ExternalObject
from dicom4qi.judge.compare import agreement
from dicom4qi.judge.consensus import consensus
from dicom4qi.judge.pixelmed import NAME as PIXELMED
from dicom4qi.judge.pixelmed import PixelmedServer
from dicom4qi.model.decoded import Decoded
from dicom4qi.model.protocol import EXCHANGE_FORMAT
from dicom4qi.model.results import (
    GRADED_NOTE,
    Check,
    CheckStatus,
    Record,
    ResultsWriter,
    SegObject,
    Status,
    ToolInfo,
)
from dicom4qi.model.wire import ExchangeCall, ReadCall
from dicom4qi.process.sandbox import run_child
from dicom4qi.process.services import ServiceError, ServicePool
from dicom4qi.run.steps import (
    EXTERNAL,
    VALIDATOR,
    FlowHost,
    artifacts_of,
    outcome_record,
    private_copy,
    sha256_of,
    slug,
)

__all__ = ["ExternalFlow", "external_fingerprint", "judge_against_truth", "judge_agreement"]

#: The check a read graded against an object's shipped truth carries.
SHIPPED_TRUTH = "shipped-truth"


def external_fingerprint(objects: list[ExternalObject]) -> str:
    h = hashlib.sha256(b"external")
    for o in sorted(objects, key=lambda o: o.id):
        h.update(o.id.encode())
        h.update(sha256_of(o.path).encode())
        if o.truth is not None:  # a truth added or changed is another corpus: nothing earlier is resumed
            h.update(sha256_of(o.truth).encode())
            h.update(repr(o.truth_segments).encode())
    return h.hexdigest()[:16]


def judge_agreement(reads: dict[str, tuple[Record, Path | None]], labelmap: bool, families: dict[str, str]) -> None:
    """Set each successful read's status by the consensus of independent readers (:mod:`dicom4qi.judge.consensus`)."""
    decoded: dict[str, Decoded] = {}
    for name, (rec, path) in reads.items():
        if path is None or rec.status is not Status.PASS:
            continue
        try:
            decoded[name] = Decoded(path)
        except (OSError, ValueError) as exc:
            rec.status, rec.message = Status.ERROR, f"the consumer's decoded output is unusable: {exc}"
    try:
        for name, j in consensus(decoded, families, labelmap=labelmap).items():
            rec = reads[name][0]
            rec.status, rec.message, rec.checks, rec.basis = j.status, j.message, j.checks, "consensus"
    finally:
        for d in decoded.values():
            d.close()


def judge_against_truth(
    reads: dict[str, tuple[Record, Path | None]], truth: Decoded, truth_name: str, labelmap: bool
) -> None:
    """Set each successful read's status by how its decoding agrees with the object's shipped truth.

    Segment numbers, geometry and every voxel are compared (:func:`dicom4qi.judge.compare.agreement`); the
    truth file gives no segment attributes, so labels and codes are not graded (they are in the cell's notes).
    """
    for _name, (rec, path) in reads.items():
        if path is None or rec.status is not Status.PASS:
            continue
        try:
            decoded = Decoded(path)
        except (OSError, ValueError) as exc:
            rec.status, rec.message = Status.ERROR, f"the consumer's decoded output is unusable: {exc}"
            continue
        try:
            problems = agreement(truth, decoded, labelmap=labelmap)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            rec.status = Status.ERROR
            rec.message = f"the consumer's decoded output cannot be compared: {type(exc).__name__}: {exc}"
            continue
        finally:
            decoded.close()
        rec.basis = "truth"
        rec.notes.append(f"{GRADED_NOTE}{truth_name}")
        if problems:
            shown = "; ".join(problems[:4]) + (f" (and {len(problems) - 4} more)" if len(problems) > 4 else "")
            rec.status = Status.FAIL
            rec.message = f"differs from the truth shipped beside the object ({truth_name}): {shown}"
            rec.checks = [Check(name=SHIPPED_TRUTH, status=CheckStatus.FAIL, message=shown[:500])]
        else:
            rec.status, rec.message = Status.PASS, ""
            rec.checks = [Check(name=SHIPPED_TRUTH, status=CheckStatus.PASS, message=f"as {truth_name}")]


class ExternalFlow(FlowHost):
    """Mixed into the runner: the external objects' reads and their agreement."""

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
        pools = {
            k.name: ServicePool(
                k, run_dir / "services", cfg.build / "cache", size=cfg.workers, python=self.pythons.get(k.name)
            )
            for k in consumers
            if k.service and k.available
        }
        self._pools = pools
        try:
            self._parallel("read", todo, read, lambda rec: None)
        finally:
            for pool in pools.values():
                pool.stop()
        families = {k.name: family_of(k.name, k.family) for k in consumers}
        for obj_id, obj in by_id.items():
            decoded = {name: (rec, path) for (oid, name), (rec, path) in reads.items() if oid == obj_id}
            truth, why = self.shipped_truth(obj, run_dir) if obj.truth is not None and decoded else (None, "")
            if truth is not None:
                assert obj.truth is not None
                try:
                    judge_against_truth(decoded, truth, obj.truth.name, obj.labelmap)
                finally:
                    truth.close()
            else:
                judge_agreement(decoded, obj.labelmap, families)
                if why:
                    for rec, _ in decoded.values():
                        rec.notes.append(f"its shipped truth is not used ({why}): judged by agreement instead")
            for rec, path in decoded.values():
                writer.add(rec)
                if path is not None and not cfg.keep_decoded:
                    path.unlink(missing_ok=True)
        if cfg.validate:
            todo_v = [(o,) for o in objects if (o.id, EXTERNAL, VALIDATOR) not in kept]
            self._parallel("validate", todo_v, lambda o: self.validate_external(o, run_dir), writer.add)
            todo_p = [(o,) for o in objects if (o.id, EXTERNAL, PIXELMED) not in kept]
            self._pixelmed_phase(
                todo_p,
                lambda o, server, why: self.validate_external(o, run_dir, server, why, pixelmed=True),
                writer.add,
            )

    def validate_external(
        self,
        obj: ExternalObject,
        run_dir: Path,
        server: PixelmedServer | None = None,
        why: str = "",
        *,
        pixelmed: bool = False,
    ) -> Record:
        """dciodvfy (or PixelMed, the second validator) on an object from the wild: its findings, as for a
        producer's object."""
        base: dict[str, Any] = {
            "case": obj.id,
            "producer": EXTERNAL,
            "consumer": PIXELMED if pixelmed else VALIDATOR,
            "step": "validate",
            "features": sorted(obj.features),
            "tier": "external",
            "notes": [f"written by {obj.written_by}"] if obj.written_by else [],
        }
        seg = SegObject(path=str(obj.path), size=obj.path.stat().st_size, sha256=sha256_of(obj.path))
        work = run_dir / "external" / slug(obj.id) / "validate"
        if pixelmed:
            return self.pixelmed_object(base, seg, [obj.path], work, run_dir, server, why)
        return self.validate_object(base, seg, [obj.path], work, run_dir)

    def shipped_truth(self, obj: ExternalObject, run_dir: Path) -> tuple[Decoded | None, str]:
        """The object's shipped truth in the canonical decoded form, converted in a bounded child; or None and why."""
        assert obj.truth is not None
        if not obj.sources or obj.missing:
            return None, "its source images are missing"
        work = run_dir / "external" / slug(obj.id) / "truth"
        folder = work / "exchange"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        suffix = ".nii.gz" if obj.truth.name.endswith(".nii.gz") else obj.truth.suffix
        if suffix not in (".nrrd", ".nii", ".nii.gz"):
            return None, f"{obj.truth.name}: not NRRD or NIfTI"
        shutil.copyfile(obj.truth, folder / f"labelmap{suffix}")
        doc = {
            "format": EXCHANGE_FORMAT,
            "segments": [{"number": n} for n in obj.truth_segments],
            "notes": [f"the truth shipped beside the object: {obj.truth.name}"],
        }
        (folder / "segments.json").write_text(json.dumps(doc), encoding="utf-8")
        output = work / "truth.npz"
        out = run_child(
            ExchangeCall(
                folder=str(folder.resolve()), sources=[str(p) for p in obj.sources], output=str(output.resolve())
            ),
            work,
            timeout_s=min(self.cfg.timeout_s, 300.0),
            memory_mb=self.cfg.memory_mb,
        )
        if out.kind != "ok":
            return None, f"{obj.truth.name} cannot be placed on the source images: {out.message[:300]}"
        try:
            return Decoded(output), ""
        except (OSError, ValueError) as exc:
            return None, f"{obj.truth.name}: {exc}"

    def read_external(self, obj: ExternalObject, tool: ToolInfo, run_dir: Path) -> tuple[Record, Path | None]:
        """One consumer's read of an external object (the decoded file is kept for the agreement)."""
        base: dict[str, Any] = {
            "case": obj.id,
            "producer": EXTERNAL,
            "consumer": tool.name,
            "step": "read",
            "features": sorted(obj.features),
            "tier": "external",
            "notes": [f"written by {obj.written_by}"] if obj.written_by else [],
        }
        size = obj.path.stat().st_size
        seg = SegObject(path=str(obj.path), size=size, sha256=sha256_of(obj.path))
        if tool.error:
            return Record(**base, status=Status.ERROR, message=tool.error, seg=seg), None
        if not tool.available:
            return Record(**base, status=Status.SKIPPED, message=f"not run: {tool.reason}", seg=seg), None
        if obj.missing or not obj.sources:
            return Record(
                **base,
                status=Status.SKIPPED,
                seg=seg,
                message=f"source images not found: {len(obj.missing)} referenced instance(s) missing (first {obj.missing[:1]})",
            ), None
        reasons = missing_features(set(base["features"]), set(tool.features), tool.unsupported_combinations)
        if reasons:
            return Record(**base, status=Status.UNSUPPORTED, message="; ".join(reasons), seg=seg), None
        work = run_dir / "external" / slug(obj.id) / f"read-{slug(tool.name.replace(':', '_'))}"
        decoded_path = work / "decoded.npz"
        copy = private_copy(obj.path, work)  # the reader's own copy: the folder given is never written to
        req = ReadCall(
            adapter=tool.name,
            seg=str(copy.resolve()),
            sources=[str(p.resolve()) for p in obj.sources],
            output=str(decoded_path.resolve()),
        )
        pool = getattr(self, "_pools", {}).get(tool.name)
        try:
            if pool is not None:
                with pool.lease() as endpoints:
                    req.service = endpoints
                    out = run_child(
                        req,
                        work,
                        timeout_s=self.cfg.timeout_s,
                        memory_mb=self.cfg.memory_mb,
                        python=self.pythons.get(tool.name),
                    )
            else:
                out = run_child(
                    req,
                    work,
                    timeout_s=self.cfg.timeout_s,
                    memory_mb=self.cfg.memory_mb,
                    python=self.pythons.get(tool.name),
                )
        except ServiceError as exc:
            return Record(**base, status=Status.ERROR, message=str(exc), seg=seg, harness=f"service: {exc}"), None
        finally:
            copy.unlink(missing_ok=True)
        artifacts = artifacts_of(work, run_dir)
        if out.kind != "ok":
            rec = outcome_record(base, out, "read")
            rec.seg, rec.artifacts = seg, artifacts
            return rec, None
        base["notes"] = base["notes"] + out.notes
        rec = Record(
            **base,
            status=Status.PASS,
            seg=seg,
            wall_s=out.wall_s,
            cpu_s=out.cpu_s,
            peak_rss_mb=out.peak_rss_mb,
            artifacts=artifacts,
        )
        return rec, decoded_path
