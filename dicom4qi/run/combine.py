"""``dicom4qi combine``: merge results documents (the shards of one run, and earlier runs) into one.

Rules, checked on every input before anything is written; every problem found is reported at once:

- **One corpus.** Every input has the same ``run.corpus_fingerprint`` (the same case files and case
  selection, the same synthesis version), and the same ``run.kind``.
- **One description per tool.** A tool (role and name) listed by several inputs is described the same by
  each: above all the same version, but also the same availability and claims, since they decide cells.
- **A cell comes from one input.** A cell (case, producer, consumer) may appear in several inputs only as
  the *same record*: equal in every field once parsed (formatting and key order of the files do not
  matter). That is how every shard carries the produce step's write and validate records. Two different
  records of one cell (another status, another timing, another message) are refused: which one is right
  is a question for a person, not for a merge. (``dicom4qi report`` does pick the later run's cell, for
  display; a combined document has to be one run's account.)

The combined run:

- ``run_id``: the inputs' run id when they share one (the shards of one run do), else
  ``<earliest start>-combined-<hash of the run ids>`` (or ``--run-id``);
- ``started`` the earliest, ``finished`` the latest (none when an input did not finish);
- ``filters`` united, ``workers`` summed, harness CPU summed and peak memory the largest, the time and
  memory limits per call the largest; ``command`` the combine command; ``combined_from`` lists each input
  (file, sha256, run id, times, consumers, records, workers, platform, suite commit);
- ``run_dir`` the inputs' run folder when they share one; otherwise their common parent folder, each
  record's object and artifact paths prefixed with its own run folder's place below it, so the report
  still finds every file;
- fields that differ between inputs and cannot be united (platform, Python, suite version) are joined,
  ``, ``-separated; CPU count and memory are kept only when equal.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, cast

from pydantic import ValidationError

from dicom4qi.adapters.contract import DEFAULTS, split_spec
from dicom4qi.model.results import Record, ResultsDocument, RunInfo, ToolInfo

__all__ = ["CombineError", "Input", "combine", "load_inputs", "write_combined"]

#: Conflicting cells named in the message; the rest are counted.
SHOWN = 10
_ROLES = ("producer", "consumer", "validator")


class CombineError(ValueError):
    """The inputs cannot be combined; the message names the files and the differing values."""


@dataclass(frozen=True)
class Input:
    """A results document given to combine, with the file it came from."""

    path: Path
    doc: ResultsDocument
    sha256: str

    @property
    def label(self) -> str:
        return str(self.path)


def load_inputs(paths: Iterable[Path]) -> list[Input]:
    """Read and validate each document; a missing, unreadable or invalid file, or one given twice, is refused."""
    out: list[Input] = []
    problems: list[str] = []
    seen: dict[str, Path] = {}
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            problems.append(f"{path}: cannot be read: {exc.strerror or exc}")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            problems.append(f"{path}: the same document as {seen[digest]} (sha256 {digest[:12]}); give each file once")
            continue
        seen[digest] = path
        try:
            doc = ResultsDocument.model_validate_json(data)
        except (ValidationError, ValueError) as exc:
            problems.append(f"{path}: not a valid results document: {str(exc)[:400]}")
            continue
        out.append(Input(path, doc, digest))
    if problems:
        raise CombineError("\n".join(problems))
    if not out:
        raise CombineError("no results documents given")
    return out


# --------------------------------------------------------------------------- checks


def _grouped(inputs: list[Input], value: Any) -> str:
    """'a in A.json, B.json; b in C.json' for a per-input value."""
    groups: dict[str, list[str]] = {}
    for i in inputs:
        groups.setdefault(str(value(i)), []).append(i.label)
    return "; ".join(f"{v} in {', '.join(files)}" for v, files in groups.items())


def _check_same_run_kind(inputs: list[Input]) -> list[str]:
    problems = []
    if len({i.doc.run.corpus_fingerprint for i in inputs}) > 1:
        problems.append(
            "different corpus versions: corpus fingerprint "
            + _grouped(inputs, lambda i: i.doc.run.corpus_fingerprint)
            + ". The fingerprint covers the case files and the case selection: only runs of the same "
            "case files and selection combine (re-run the odd ones on the same corpus and filters)."
        )
    if len({i.doc.run.kind for i in inputs}) > 1:
        problems.append("different kinds of runs: " + _grouped(inputs, lambda i: i.doc.run.kind))
    return problems


def _tool_fields(t: ToolInfo) -> dict[str, Any]:
    return t.model_dump(mode="json")


def _merge_tools(inputs: list[Input]) -> tuple[list[ToolInfo], list[str]]:
    """One description per (role, name); differing ones are problems."""
    first: dict[tuple[str, str], tuple[ToolInfo, Input]] = {}
    order: list[tuple[str, str]] = []
    problems: list[str] = []
    for i in inputs:
        for t in i.doc.tools:
            key = (t.role, t.name)
            if key not in first:
                first[key] = (t, i)
                order.append(key)
                continue
            known, where = first[key]
            if known == t:
                continue
            a, b = _tool_fields(known), _tool_fields(t)
            if a["version"] != b["version"]:
                problems.append(
                    f"{t.role} {t.name}: version {a['version'] or 'none'} in {where.label}, "
                    f"{b['version'] or 'none'} in {i.label}"
                )
            else:
                fields = [k for k in a if a[k] != b[k]]
                shown = ", ".join(f"{k} {a[k]!r} in {where.label}, {b[k]!r} in {i.label}" for k in fields[:3])
                problems.append(
                    f"{t.role} {t.name} (version {a['version'] or 'none'}) is described differently: {shown}"
                )
    tools = [first[k][0] for k in order]
    return sorted(tools, key=lambda t: _tool_rank(t.role, t.name, order.index((t.role, t.name)))), problems


def _tool_rank(role: str, name: str, appearance: int) -> tuple[int, float, int]:
    """Columns in the order a single run with the default tools has them, others after, as they came."""
    rank = _ROLES.index(role) if role in _ROLES else len(_ROLES)
    # any role may be looked up (the validator has no defaults); the stubs' dict.get takes only the key type
    defaults = list(cast("Mapping[str, list[str]]", DEFAULTS).get(role, []))
    if name in defaults:
        return rank, float(defaults.index(name)), appearance
    base = split_spec(name)[0]
    if base in defaults:
        return rank, defaults.index(base) + 0.5, appearance
    return rank, float(len(defaults)), appearance


def _describe(rec: Record) -> str:
    cell = f"case {rec.case}, producer {rec.producer}"
    return cell + (
        f", {'validator' if rec.step == 'validate' else 'consumer'} {rec.consumer}" if rec.consumer else ", write step"
    )


def _merge_records(inputs: list[Input]) -> tuple[list[tuple[Record, Input]], list[str]]:
    """Every cell once; a cell in several inputs must be the same record everywhere."""
    cells: dict[tuple[str, str, str | None], tuple[Record, Input, str]] = {}
    conflicts: list[str] = []
    for i in inputs:
        for rec in i.doc.records:
            text = rec.model_dump_json()
            known = cells.get(rec.key)
            if known is None:
                cells[rec.key] = (rec, i, text)
                continue
            other, where, other_text = known
            if other_text == text:
                continue
            a, b = other.model_dump(mode="json"), rec.model_dump(mode="json")
            fields = [k for k in a if a[k] != b[k]]
            conflicts.append(
                f"{_describe(rec)}: {other.status.value} in {where.label}, {rec.status.value} in {i.label}"
                f" (they differ in {', '.join(fields)})"
            )
    problems = []
    if conflicts:
        more = f"\n  ... and {len(conflicts) - SHOWN} more" if len(conflicts) > SHOWN else ""
        problems.append(
            f"{len(conflicts)} duplicated cell(s), each in two inputs with different records "
            "(a cell may come from one input only, or be the same record in every input, like the produce "
            "step's write and validate records that every shard carries):\n  " + "\n  ".join(conflicts[:SHOWN]) + more
        )
    return [(rec, i) for rec, i, _ in cells.values()], problems


# --------------------------------------------------------------------------- the combined run


def _joined(values: Iterable[str | None]) -> str | None:
    distinct = list(dict.fromkeys(v for v in values if v))
    return ", ".join(distinct) if distinct else None


def _equal_or_none(values: list[Any]) -> Any:
    return values[0] if len(set(map(repr, values))) == 1 else None


def _run_root(inputs: list[Input]) -> Path | None:
    dirs = [Path(i.doc.run.run_dir) for i in inputs if i.doc.run.run_dir]
    if not dirs:
        return None
    if len(set(dirs)) == 1:
        return dirs[0]
    try:
        return Path(os.path.commonpath([str(d) for d in dirs]))
    except ValueError:  # relative and absolute mixed: no common folder
        return None


def _prefixed(rec: Record, prefix: str) -> Record:
    """The record with its run-relative paths made relative to the combined run folder."""
    if not prefix:
        return rec
    rec = rec.model_copy(deep=True)
    if rec.seg is not None:
        rec.seg.path = (PurePosixPath(prefix) / rec.seg.path).as_posix()
        for part in rec.seg.instances:
            part.path = (PurePosixPath(prefix) / part.path).as_posix()
    rec.artifacts = {k: (PurePosixPath(prefix) / v).as_posix() for k, v in rec.artifacts.items()}
    if rec.content is not None:  # what the object holds, which its readers are judged against
        rec.content.content = {k: (PurePosixPath(prefix) / v).as_posix() for k, v in rec.content.content.items()}
    return rec


def _when(iso: str) -> datetime:
    """An ISO time for ordering (a time without zone is taken as UTC; an unreadable one sorts first)."""
    try:
        t = datetime.fromisoformat(iso)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _compact(iso: str) -> str:
    return "".join(ch for ch in iso[:19] if ch.isalnum()) + "Z"


def _part(i: Input) -> dict[str, str | int | None]:
    run = i.doc.run
    part: dict[str, str | int | None] = {
        "file": i.label,
        "sha256": i.sha256,
        "run_id": run.run_id,
        "started": run.started,
        "finished": run.finished,
        "consumers": ", ".join(run.filters.get("consumer", [])),
        "records": len(i.doc.records),
        "workers": run.workers,
        "platform": run.platform,
        "suite_commit": run.suite_commit,
    }
    if run.combined_from:
        part["combined_parts"] = len(run.combined_from)
    return part


def combine(inputs: list[Input], *, command: list[str] | None = None, run_id: str | None = None) -> ResultsDocument:
    """Merge ``inputs`` into one results document; :class:`CombineError` names every reason they do not merge."""
    if not inputs:
        raise CombineError("no results documents given")
    problems = _check_same_run_kind(inputs)
    tools, tool_problems = _merge_tools(inputs)
    if tool_problems:
        problems.append("tools described differently (one version per tool in a run):\n  " + "\n  ".join(tool_problems))
    merged, record_problems = _merge_records(inputs)
    problems += record_problems
    if problems:
        raise CombineError("cannot combine " + ", ".join(i.label for i in inputs) + ":\n- " + "\n- ".join(problems))

    runs = [i.doc.run for i in inputs]
    ids = list(dict.fromkeys(r.run_id for r in runs))
    started = min((r.started for r in runs), key=_when)
    if run_id is None:
        run_id = (
            ids[0]
            if len(ids) == 1
            else (f"{_compact(started)}-combined-{hashlib.sha256(' '.join(sorted(ids)).encode()).hexdigest()[:6]}")
        )
    ends = [r.finished for r in runs if r.finished]
    finished = max(ends, key=_when) if len(ends) == len(runs) else None
    root = _run_root(inputs)
    records: list[Record] = []
    for rec, i in merged:
        prefix = ""
        if root is not None and i.doc.run.run_dir and Path(i.doc.run.run_dir) != root:
            prefix = Path(i.doc.run.run_dir).relative_to(root).as_posix()
        records.append(_prefixed(rec, prefix))
    records.sort(key=lambda r: (r.case, r.producer, r.step != "write", r.consumer or ""))

    filters: dict[str, list[str]] = {}
    for r in runs:
        for k, values in r.filters.items():
            filters.setdefault(k, [])
            filters[k] += [v for v in values if v not in filters[k]]
    for role in ("producer", "consumer"):
        if role in filters:
            names = filters[role]
            filters[role] = sorted(names, key=lambda n: _tool_rank(role, n, names.index(n)))
    cpu = [r.harness_cpu_s for r in runs if r.harness_cpu_s is not None]
    rss = [r.harness_peak_rss_mb for r in runs if r.harness_peak_rss_mb is not None]
    info = RunInfo(
        run_id=run_id,
        started=started,
        finished=finished,
        suite_version=_joined(r.suite_version for r in runs) or "",
        suite_commit=_joined(r.suite_commit for r in runs),
        platform=_joined(r.platform for r in runs) or "",
        python=_joined(r.python for r in runs) or "",
        cpu_count=_equal_or_none([r.cpu_count for r in runs]),
        memory_total_mb=_equal_or_none([r.memory_total_mb for r in runs]),
        command=list(command or []),
        corpus_fingerprint=runs[0].corpus_fingerprint,
        filters=filters,
        timeout_s=max(r.timeout_s for r in runs),
        memory_limit_mb=max(r.memory_limit_mb for r in runs),
        workers=sum(r.workers for r in runs),
        run_dir=str(root) if root is not None else None,
        harness_peak_rss_mb=max(rss) if rss else None,
        harness_cpu_s=round(sum(cpu), 2) if cpu else None,
        kind=runs[0].kind,
        machine=_equal_or_none([r.machine for r in runs]) or {},
        harness_overhead=_equal_or_none([r.harness_overhead for r in runs]) or {},
        combined_from=[_part(i) for i in inputs],
    )
    return ResultsDocument(run=info, tools=tools, records=records)


def write_combined(doc: ResultsDocument, out: Path) -> None:
    """Write the combined document (atomically: a reader never sees half of it)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    tmp.write_text(doc.model_dump_json(indent=1), encoding="utf-8")
    tmp.replace(out)
