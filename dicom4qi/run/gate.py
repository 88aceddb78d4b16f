"""``dicom4qi gate BASELINE NEW --tool COLUMN``: a tool's column in a run, compared with the last nightly's.

A tool's own CI (the GitHub Action, ``action.yml``) runs the quick tier with the tool's checkout as a column. Most
tools fail some cells today, and a contributor's pull request must not be blocked by failures the tool already had:
so the job fails on **regressions** only, cells that passed in the published nightly for the tool's release and do
not pass now. Everything else is reported, nothing else blocks.

The column under test has another name than the nightly's (``highdicom@path:/home/runner/work/highdicom`` against
``highdicom``): its cells are matched to the baseline's by case, step and the other side of the cell (producer or
consumer), with the column's name replaced by the baseline column's (:func:`baseline_column_for`: the name before
``@path:``, or the tool an exec adapter names in its handshake; ``--baseline-column`` says otherwise). Each cell of
the column is one of:

- **regression**: PASS in the baseline; now FAIL, ERROR, CRASH or TIMEOUT (charged to the tool), or SKIPPED because
  the column itself is not available (a checkout that no longer imports is no pass). The only kind that blocks.
- **fixed**: failing in the baseline, PASS now.
- **still failing**: failing in both (a known failure: not blocking); a known issue that explains it is named.
- **changed**: a verdict in the baseline, none now: UNSUPPORTED (the tool declares it), SKIPPED (no object to read),
  DISPUTED, a harness fault, or a refusal of an object its producer wrote wrong. Reported, not blocking.
- **new**: no verdict in the baseline to compare with (no such cell: a new case, a tier the nightly did not run, or
  the baseline has no such column at all; or the baseline cell had no verdict). Reported, not blocking.
- **unchanged**: anything else (PASS and PASS, or no verdict in either).

A failing cell that a known issue (``corpus/known-issues``) explains is marked so; a regression stays a regression
even then (the baseline passed it). A baseline without the column is no error: every cell is new and the gate says
so in a warning (exit 0); a baseline that cannot be read is (exit 2). BASELINE may be a folder of results documents
(the nightly's ``runs/``): the newest that has the column for any of the run's cases is taken.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dicom4qi.adapters.contract import split_spec
from dicom4qi.judge.known import FAILING, KnownIssue, cell_release, matches
from dicom4qi.model.results import Record, ResultsDocument, ResultsFileError, Status, ToolInfo

__all__ = [
    "KINDS",
    "GateCell",
    "GateError",
    "GateReport",
    "baseline_column_for",
    "gate",
    "gate_json",
    "gate_markdown",
    "gate_text",
    "load_baseline",
    "load_run",
    "resolve_column",
]

Kind = Literal["regression", "fixed", "still failing", "changed", "new", "unchanged"]
#: The kinds in the order they are reported.
KINDS: tuple[Kind, ...] = ("regression", "fixed", "still failing", "changed", "new", "unchanged")
#: Rows of one table at most in the job summary (GitHub caps a summary at 1 MiB).
MAX_ROWS = 100


class GateError(Exception):
    """Bad input: a baseline or a run that cannot be read, a column that is not in the run (exit 2)."""


@dataclass(frozen=True)
class GateCell:
    """One cell of the column under test, beside its baseline."""

    case: str
    step: str
    producer: str  # as the baseline names the column (the column under test renamed)
    consumer: str | None
    old: Status | None  # the baseline's status; None: no such cell in the baseline
    new: Status
    kind: Kind
    message: str = ""
    why: str = ""  # what the kind rests on, where the statuses alone do not say it
    known: tuple[str, ...] = ()  # known issues that explain the new failure (their ids)

    @property
    def label(self) -> str:
        side = f"{self.producer} → {self.consumer}" if self.consumer else self.producer
        return f"{self.case} · {side} [{self.step}]"


@dataclass
class GateReport:
    """The column's cells compared with the baseline's, and what the comparison rests on."""

    column: str
    baseline_column: str
    new_run: str
    baseline_run: str | None
    baseline_file: str | None
    cells: list[GateCell]
    version: str | None = None
    baseline_version: str | None = None
    baseline_commit: str | None = None
    counts: dict[str, int] = field(default_factory=dict)  # the column's statuses in the new run
    warnings: list[str] = field(default_factory=list)

    def of(self, kind: Kind) -> list[GateCell]:
        return [c for c in self.cells if c.kind == kind]

    @property
    def regressions(self) -> list[GateCell]:
        return self.of("regression")

    @property
    def exit_code(self) -> int:
        """0: no regression; 1: regressions (bad input raises :class:`GateError` instead: exit 2)."""
        return 1 if self.regressions else 0


# --------------------------------------------------------------------------- which columns


def _columns(doc: ResultsDocument) -> set[str]:
    names = {t.name for t in doc.tools if t.role != "validator"}
    for r in doc.records:
        names.add(r.producer)
        if r.step == "read" and r.consumer:
            names.add(r.consumer)
    return names


def resolve_column(doc: ResultsDocument, tool: str) -> str:
    """The column ``tool`` names in the run: itself, or the one local checkout of it (``tool@path:...``)."""
    columns = _columns(doc)
    if tool in columns:
        return tool
    found = sorted(c for c in columns if c.startswith(f"{tool}@path:"))
    if len(found) == 1:
        return found[0]
    if found:
        raise GateError(f"{tool!r} names several columns of the run: {', '.join(found)}; give one with --tool")
    raise GateError(f"the run has no column {tool!r} (its columns: {', '.join(sorted(columns)) or 'none'})")


def _tool_infos(doc: ResultsDocument, column: str) -> list[ToolInfo]:
    return [t for t in doc.tools if t.name == column]


def baseline_column_for(doc: ResultsDocument, column: str) -> str:
    """The nightly's name of the column under test: the name before ``@path:`` for a checkout of a PyPI tool
    (``highdicom@path:.`` → ``highdicom``); the tool an exec or ``module:Class`` adapter names in its handshake
    (``exec:/work/adapter`` → ``dcmjs``); else the column itself (a release or a mode: ``cornerstone@5.6.8``)."""
    name, param = split_spec(column)
    if param is not None and param.startswith("path:"):
        return name
    if ":" in column:
        tools = {t.tool for t in _tool_infos(doc, column) if t.tool and ":" not in t.tool}
        if len(tools) == 1:
            return tools.pop()
    return column


# --------------------------------------------------------------------------- the baseline


def _has_cells(doc: ResultsDocument, column: str, cases: set[str]) -> bool:
    return any((r.producer == column or r.consumer == column) and r.case in cases for r in doc.records)


def load_baseline(path: Path, column: str, cases: Iterable[str]) -> tuple[ResultsDocument, Path, list[str]]:
    """The baseline document, the file it came from, and warnings.

    ``path`` is a results document, or a folder of them: then the newest (by file name, which starts with the run
    id's time) that has cells of ``column`` for any of ``cases``; when none has, the newest that can be read.
    """
    wanted = set(cases)
    if path.is_file():
        return load_run(path), path, []
    if not path.is_dir():
        raise GateError(f"no baseline {path}: give a results document (or a folder of them), e.g. the nightly's")
    files = sorted(path.glob("*.json"), key=lambda p: (p.name != "latest.json", p.name), reverse=True)
    warnings: list[str] = []
    first: tuple[ResultsDocument, Path] | None = None
    for p in files:
        try:
            doc = load_run(p)
        except GateError as exc:
            warnings.append(f"left out of the baseline candidates: {exc}")
            continue
        if doc.run.kind != "run":
            continue
        if first is None:
            first = (doc, p)
        if _has_cells(doc, column, wanted):
            return doc, p, warnings
    if first is None:
        raise GateError(f"no usable results document in the baseline folder {path}")
    return first[0], first[1], warnings


def load_run(path: Path) -> ResultsDocument:
    """A results document; one that is missing or cannot be read raises :class:`GateError` naming the file."""
    if not path.is_file():
        raise GateError(f"no results file {path}")
    try:
        return ResultsDocument.load(path)
    except ResultsFileError as exc:
        raise GateError(str(exc)) from None
    except OSError as exc:
        raise GateError(f"{path}: cannot be read ({exc.strerror or exc})") from None


# --------------------------------------------------------------------------- the comparison


def _verdict(rec: Record) -> bool:
    """Whether a cell carries a verdict on the tool: PASS, or a failure charged to it."""
    return rec.harness is None and (rec.status is Status.PASS or (rec.status in FAILING and rec.charged))


def _unavailable(doc: ResultsDocument, rec: Record, column: str) -> str | None:
    """Why the column under test did not run this cell, if it is not available in the role the cell needs."""
    role = "consumer" if rec.step == "read" and rec.consumer == column else "producer"
    for t in _tool_infos(doc, column):
        if t.role == role and not t.available:
            return t.error or t.reason or "not available"
    return None


def _classify(old: Record | None, new: Record, unavailable: str | None) -> tuple[Kind, str]:
    failing = (new.status in FAILING and new.charged and new.harness is None) or (
        unavailable is not None and new.status is Status.SKIPPED
    )
    why = f"the column is not available: {unavailable}" if unavailable and new.status is Status.SKIPPED else ""
    if old is None:
        return "new", "no such cell in the baseline"
    if not _verdict(old):
        if new.status is old.status:
            return "unchanged", why
        return "new", why or f"no verdict in the baseline ({old.status.value})"
    if old.status is Status.PASS:
        if new.status is Status.PASS:
            return "unchanged", ""
        if failing:
            return "regression", why
        return "changed", why or _no_verdict(new)
    # failing in the baseline
    if new.status is Status.PASS:
        return "fixed", ""
    if failing:
        return "still failing", why
    return "changed", why or _no_verdict(new)


def _no_verdict(rec: Record) -> str:
    if rec.harness is not None:
        return f"a fault of the harness: {rec.harness}"
    if not rec.charged:
        return "no verdict on this tool (DISPUTED, or the producer's fault)"
    return {
        Status.UNSUPPORTED: "the tool declares it unsupported",
        Status.SKIPPED: "not run (no object to read)",
    }.get(rec.status, "")


def _versions(doc: ResultsDocument) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for t in doc.tools:
        versions.setdefault(t.name, t.version)
    return versions


def _renamed(rec: Record, column: str, as_name: str) -> Record:
    return rec.model_copy(
        update={
            "producer": as_name if rec.producer == column else rec.producer,
            "consumer": as_name if rec.consumer == column else rec.consumer,
        }
    )


def _known(rec: Record, renamed: Record, issues: list[KnownIssue], versions: Mapping[str, str | None]) -> list[str]:
    """Known issues that explain a failing cell, under the column's own name or the baseline's."""
    if rec.status not in FAILING:
        return []
    return [i.id for i in issues if any(matches(i, r, cell_release(i, r, versions)) for r in (rec, renamed))]


def gate(
    baseline: ResultsDocument | None,
    new: ResultsDocument,
    column: str,
    baseline_column: str | None = None,
    known: Iterable[KnownIssue] = (),
    baseline_file: str | None = None,
) -> GateReport:
    """Every cell of ``column`` in ``new`` compared with ``baseline``'s cell of ``baseline_column``."""
    if column not in _columns(new):
        raise GateError(f"the run has no column {column!r}")
    as_name = baseline_column or baseline_column_for(new, column)
    mine = [r for r in new.records if r.producer == column or r.consumer == column]
    if not mine:
        raise GateError(f"the run has no cells of the column {column!r}")
    issues = list(known)
    versions = _versions(new)
    versions.setdefault(as_name, versions.get(column))
    old_cells: dict[tuple[str, str, str | None, str], Record] = {}
    warnings: list[str] = []
    if baseline is not None:
        old_cells = {(r.case, r.producer, r.consumer, r.step): r for r in baseline.records}
        if as_name not in _columns(baseline):
            warnings.append(
                f"the baseline (run {baseline.run.run_id}) has no column {as_name!r}: nothing to compare with, every "
                f"cell is new (give --baseline-column if the nightly names the tool otherwise)"
            )
        elif not _has_cells(baseline, as_name, {r.case for r in mine}):
            warnings.append(
                f"the baseline (run {baseline.run.run_id}) has none of this run's cases for {as_name!r}: every cell is "
                f"new (is it another tier?)"
            )
    if new.run.finished is None:
        warnings.append(f"the run {new.run.run_id} did not finish: its missing cells are not compared")
    cells: list[GateCell] = []
    for rec in sorted(mine, key=lambda r: (r.case, r.step, r.producer, r.consumer or "")):
        renamed = _renamed(rec, column, as_name)
        old = old_cells.get((renamed.case, renamed.producer, renamed.consumer, renamed.step))
        kind, why = _classify(old, rec, _unavailable(new, rec, column))
        cells.append(
            GateCell(
                case=rec.case,
                step=rec.step,
                producer=renamed.producer,
                consumer=renamed.consumer,
                old=old.status if old else None,
                new=rec.status,
                kind=kind,
                message=rec.message,
                why=why,
                known=tuple(_known(rec, renamed, issues, versions)),
            )
        )

    def version(doc: ResultsDocument | None, name: str) -> str | None:
        return next((t.version for t in doc.tools if t.name == name and t.version), None) if doc else None

    return GateReport(
        column=column,
        baseline_column=as_name,
        new_run=new.run.run_id,
        baseline_run=baseline.run.run_id if baseline else None,
        baseline_file=baseline_file,
        cells=cells,
        version=version(new, column),
        baseline_version=version(baseline, as_name),
        baseline_commit=baseline.run.suite_commit if baseline else None,
        counts=dict(sorted(Counter(r.status.value for r in mine).items())),
        warnings=warnings,
    )


# --------------------------------------------------------------------------- what it says


_TITLES: dict[Kind, str] = {
    "regression": "Regressions (passed in the baseline, not now: these fail the job)",
    "fixed": "Fixed (failing in the baseline, passing now)",
    "still failing": "Still failing (failing in the baseline too: not blocking)",
    "changed": "Changed, not blocking (a verdict in the baseline, none now)",
    "new": "New (no verdict in the baseline to compare with: not blocking)",
}


def _md(text: str, limit: int = 240) -> str:
    """Text for a Markdown table cell: one line, pipes escaped, bounded."""
    one = " ".join(text.split())
    if len(one) > limit:
        one = one[: limit - 1] + "…"
    return one.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")


def _status(s: Status | None) -> str:
    return s.value if s is not None else "(absent)"


def _headline(report: GateReport) -> str:
    n = len(report.regressions)
    if n:
        return f"**{n} regression{'s' if n != 1 else ''}** against the baseline"
    return "No regressions against the baseline"


def _against(report: GateReport) -> str:
    if report.baseline_run is None:
        return "no baseline"
    version = f" ({report.baseline_version})" if report.baseline_version else ""
    commit = f", suite commit {report.baseline_commit[:12]}" if report.baseline_commit else ""
    return f"column `{report.baseline_column}`{version} of run `{report.baseline_run}`{commit}"


def gate_markdown(report: GateReport, title: str = "dicom4qi") -> str:
    """The comparison as Markdown, for a CI job summary (``$GITHUB_STEP_SUMMARY``)."""
    mark = ":x:" if report.regressions else ":white_check_mark:"
    version = f" ({report.version})" if report.version else ""
    lines = [
        f"## {title}: {report.baseline_column}",
        "",
        f"{mark} {_headline(report)}.",
        "",
        f"Column `{report.column}`{version} of run `{report.new_run}`, compared with {_against(report)}. "
        f"Cells are named as the baseline names the column (`{report.baseline_column}`).",
        "",
    ]
    lines += [f"> [!WARNING]\n> {_md(w, 600)}\n" for w in report.warnings]
    kinds = Counter(c.kind for c in report.cells)
    lines += ["| against the baseline | cells |", "| --- | ---: |"]
    lines += [f"| {k} | {kinds.get(k, 0)} |" for k in KINDS]
    lines += ["", "| status now | cells |", "| --- | ---: |"]
    lines += [f"| {s} | {n} |" for s, n in report.counts.items()]
    lines.append("")
    for kind in KINDS[:-1]:
        cells = report.of(kind)
        if not cells:
            continue
        table = ["| cell | baseline | now | message |", "| --- | --- | --- | --- |"]
        for c in cells[:MAX_ROWS]:
            note = "; ".join(p for p in (c.why, *(f"known issue `{k}`" for k in c.known)) if p)
            message = _md(c.message) + (f" ({_md(note, 300)})" if note else "")
            table.append(f"| `{_md(c.label, 300)}` | {_status(c.old)} | {c.new.value} | {message} |")
        if len(cells) > MAX_ROWS:
            table.append(f"| … and {len(cells) - MAX_ROWS} more | | | |")
        heading = f"{_TITLES[kind]}: {len(cells)}"
        if kind in ("regression", "fixed"):
            lines += [f"### {heading}", "", *table, ""]
        else:  # the long lists of what does not block, folded
            lines += [f"<details><summary>{heading}</summary>", "", *table, "", "</details>", ""]
    return "\n".join(lines) + "\n"


def gate_text(report: GateReport) -> str:
    """The comparison as plain text, for a terminal or a CI log."""
    lines = [f"warning: {w}" for w in report.warnings]
    for kind in KINDS[:-1]:
        for c in report.of(kind):
            known = f" [known: {', '.join(c.known)}]" if c.known else ""
            why = f" ({c.why})" if c.why else ""
            message = " ".join(c.message.split())[:300]
            lines.append(f"{kind.upper()}: {c.label}: {_status(c.old)} -> {c.new.value}{why}{known}: {message}")
    kinds = Counter(c.kind for c in report.cells)
    counts = ", ".join(f"{kinds.get(k, 0)} {k}" for k in KINDS)
    lines.append(f"{report.column} against {_against(report).replace('`', '')}: {counts}")
    lines.append(_headline(report).replace("**", ""))
    return "\n".join(lines) + "\n"


def gate_json(report: GateReport) -> str:
    """The comparison as JSON: what it compared, the counts, and every cell that is not unchanged."""
    kinds = Counter(c.kind for c in report.cells)
    data = {
        "column": report.column,
        "version": report.version,
        "run": report.new_run,
        "baseline": {
            "column": report.baseline_column,
            "version": report.baseline_version,
            "run": report.baseline_run,
            "file": report.baseline_file,
            "suite_commit": report.baseline_commit,
        },
        "exit_code": report.exit_code,
        "regressions": len(report.regressions),
        "kinds": {k: kinds.get(k, 0) for k in KINDS},
        "statuses": report.counts,
        "warnings": report.warnings,
        "cells": [
            {
                "case": c.case,
                "step": c.step,
                "producer": c.producer,
                "consumer": c.consumer,
                "baseline": c.old.value if c.old else None,
                "now": c.new.value,
                "kind": c.kind,
                "why": c.why,
                "known": list(c.known),
                "message": c.message[:1000],
            }
            for c in report.cells
            if c.kind != "unchanged"
        ],
    }
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"
