"""Merging results documents into what the site shows: one document per run, the current grid (where two runs
hold a cell, the later wins) with each cell's earlier statuses and change, the grid's rows and columns, the
graded records and pass counts, the known issues matched with the failing cells, and each case's description.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from dicom4qi.judge.known import (
    Explained,
    cell_release,
    error_texts,
    explained_errors,
    in_scope,
    load_known_issues,
    matches,
)
from dicom4qi.model.results import GRADED_NOTE, Record, ResultsDocument, RunInfo, Status, ToolInfo
from dicom4qi.site.files import _run_root, _slug
from dicom4qi.site.view import GROUPS, PROBLEM, TRIED, WRITE, CaseInfo, Cell, Row, SiteOptions

UNGRADED_TIERS = ("negative", "external")  # not graded against truth: kept out of pass rates and badges


def _dedupe(docs: list[ResultsDocument]) -> list[ResultsDocument]:
    """One document per run id (the most complete), in the order the runs started."""
    by_id: dict[str, ResultsDocument] = {}
    for d in docs:
        old = by_id.get(d.run.run_id)
        if old is None or len(d.records) >= len(old.records):
            by_id[d.run.run_id] = d
    return sorted(by_id.values(), key=lambda d: (d.run.started, d.run.run_id))


def _change(prev: Status | None, cur: Status) -> str | None:
    if prev is None or prev is cur:
        return None
    if prev is Status.PASS and cur in PROBLEM:
        return "regressed"
    if prev in PROBLEM and cur is Status.PASS:
        return "fixed"
    return "changed"


def rerun_command(rec: Record, run: RunInfo) -> str:
    """The one command that runs this cell again (for an object without truth: with the readers it is judged among)."""
    import shlex

    q = shlex.quote
    if rec.tier == "external":
        folder = (run.filters.get("external") or ["DIR"])[0]
        readers = " ".join(f"--consumer {q(c)}" for c in run.filters.get("consumer", []))
        return f"dicom4qi run --external {q(folder)} --case {q(rec.case)}" + (f" {readers}" if readers else "")
    if rec.tier == "negative":
        return f"dicom4qi run --tier negative --case {q(rec.case)} --consumer {q(rec.consumer or 'none')}"
    consumer = rec.consumer if rec.step == "read" else "none"
    tier = f"--tier {q(rec.tier)} " if rec.tier else ""
    return f"dicom4qi run {tier}--case {q(rec.case)} --producer {q(rec.producer)} --consumer {q(consumer or 'none')}"


def _group_of(tier: str, features: list[str]) -> str:
    if tier in ("negative", "external"):
        return tier
    for g in ("binary", "fractional", "labelmap"):
        if g in features:
            return g
    return "other"


def _graded(records: list[Record]) -> list[Record]:
    return [
        r for r in records if r.tier not in UNGRADED_TIERS and r.producer not in ("external", "(external)", "mutant")
    ]


class _Site:
    """Everything the pages show, gathered once from the documents."""

    def __init__(
        self,
        documents: list[ResultsDocument],
        history: list[ResultsDocument],
        out_dir: Path,
        opts: SiteOptions,
        links: dict[str, str],
    ) -> None:
        self.out_dir = out_dir
        self.opts = opts
        self.extra_links = links
        current_docs = _dedupe([d for d in documents if d.run.kind == "run"])
        if not current_docs:
            raise ValueError("no results to report (benchmark documents go to the format study)")
        self.current_docs = current_docs
        self.runs = _dedupe([d for d in history if d.run.kind == "run" and d.records] + current_docs)
        self.run_index = {d.run.run_id: i for i, d in enumerate(self.runs)}
        self.latest = current_docs[-1].run
        # The current grid: every given document merged, the later run winning a cell.
        current: dict[tuple[str, str, str | None], tuple[Record, RunInfo]] = {}
        tools: dict[tuple[str, str], ToolInfo] = {}
        for d in current_docs:
            for r in d.records:
                current[r.key] = (r, d.run)
            for t in d.tools:
                tools[(t.role, t.name)] = t
        self.tools = list(tools.values())
        # Each cell's earlier statuses, run by run.
        self.series: dict[tuple[str, str, str | None], list[tuple[int, Record]]] = defaultdict(list)
        for i, d in enumerate(self.runs):
            for r in d.records:
                self.series[r.key].append((i, r))
        self.cells: dict[tuple[str, str, str | None], Cell] = {}
        for key, (rec, run) in current.items():
            col = WRITE if rec.step == "write" else (rec.consumer or WRITE)
            cell = Cell(rec=rec, run=run, col=col, href=f"cell/{_slug(rec.case, rec.producer, rec.consumer)}.html")
            here = self.run_index[run.run_id]
            earlier = [(i, r) for i, r in self.series[key] if i < here]
            if earlier:
                i, prev = earlier[-1]
                cell.prev, cell.prev_run = prev, self.runs[i].run
                cell.change = _change(prev.status, rec.status)
            self.cells[key] = cell
        consumers = [t.name for t in self.tools if t.role == "consumer"]
        validators = [t.name for t in self.tools if t.role == "validator"]
        seen = set(consumers) | set(validators)
        for rec, _ in current.values():
            if rec.consumer and rec.consumer not in seen:
                seen.add(rec.consumer)
                (validators if rec.step == "validate" else consumers).append(rec.consumer)
        self.columns = consumers + validators  # the consumer columns, validators last
        self.validators = set(validators)
        #: What a column is, where its name could mislead (ToolInfo.summary), by name.
        self.summaries = {t.name: t.summary for t in self.tools if t.summary}
        producers = [t.name for t in self.tools if t.role == "producer"]
        for rec, _ in current.values():
            if rec.producer not in producers:
                producers.append(rec.producer)
        self.producers = producers
        self.tool_names = {t.name for t in self.tools}
        self._rows()
        self.records = [c.rec for c in self.cells.values()]
        self.graded = _graded(self.records)
        self.known_issues, errors = load_known_issues(opts.known_issues)
        self.known_errors = [str(e) for e in errors]
        self.explained = self._match_known()
        for cell in self.cells.values():
            cell.rerun = rerun_command(cell.rec, cell.run)

    def _match_known(self) -> list[Explained]:
        """Each known issue with the failing cells it explains, and how many tried cells lie in its scope."""
        version_of: dict[str, str | None] = {}
        for t in self.tools:
            version_of.setdefault(t.name, t.version)
        out = []
        for issue in self.known_issues:
            explained: list[Record] = []
            scope = 0
            for cell in self.cells.values():
                rec = cell.rec
                version = cell_release(issue, rec, version_of)
                if matches(issue, rec, version):
                    cell.known.append(issue)
                    explained.append(rec)
                    if error_texts(rec):
                        cell.explained_errors |= explained_errors(issue, rec, version)
                if rec.status in TRIED and any(in_scope(m, rec) for m in issue.match):
                    scope += 1
            out.append(Explained(issue, explained, scope))
        for cell in self.cells.values():
            texts = error_texts(cell.rec)
            cell.unexplained = [t for i, t in enumerate(texts) if i not in cell.explained_errors]
        return out

    # ---- rows of the grid

    def _rows(self) -> None:
        by_pair: dict[tuple[str, str], dict[str | None, Cell]] = defaultdict(dict)
        for (case, producer, consumer), cell in self.cells.items():
            by_pair[(case, producer)][consumer] = cell
        order = {p: i for i, p in enumerate(self.producers)}
        groups = list(GROUPS)
        rows = []
        for (case, producer), cells in by_pair.items():
            anyc = next(iter(cells.values())).rec
            feats = list(anyc.features)
            tier = anyc.tier or ""
            rows.append(
                Row(
                    case,
                    tier,
                    feats,
                    producer,
                    _group_of(tier, feats),
                    cells.get(None),
                    [cells.get(c) for c in self.columns],
                )
            )
        rows.sort(key=lambda r: (groups.index(r.group), r.case, order.get(r.producer, 999), r.producer))
        self.all_rows = rows
        self.rows = [r for r in rows if not (r.write and r.write.rec.status is Status.UNSUPPORTED)]
        self.unsupported = [r for r in rows if r.write and r.write.rec.status is Status.UNSUPPORTED]

    # ---- counts

    def pass_counts(self, role: str, name: str) -> tuple[int, int, Counter[str]]:
        """(passed, tried, every status) of a tool's graded cells in one role."""
        step = {"producer": "write", "consumer": "read", "validator": "validate"}[role]
        recs = [r for r in self.graded if r.step == step and (r.producer if role == "producer" else r.consumer) == name]
        counts = Counter(r.status.value for r in recs)
        tried = sum(1 for r in recs if r.status in TRIED and r.charged)
        return counts[Status.PASS.value], tried, counts

    def graded_doc(self) -> ResultsDocument:
        return ResultsDocument.model_construct(run=self.latest, tools=self.tools, records=self.graded)


def _case_infos(site: _Site) -> dict[str, CaseInfo]:
    from dicom4qi.model.case import load_cases

    opts = site.opts
    loaded = {c.id: c for c in load_cases(opts.corpus)[0]} if opts.corpus.is_dir() else {}
    mutants: dict[str, Any] = {}
    if opts.negative.is_file():
        from dicom4qi.corpus.mutate import load_mutants

        try:
            mutants = {m.id: m for m in load_mutants(opts.negative)}
        except (ValueError, OSError):
            mutants = {}
    build_roots: dict[str, list[Path]] = defaultdict(list)
    for cell in site.cells.values():
        run_root = _run_root(cell.run)
        if run_root is not None:
            root = run_root.parent.parent
            if root not in build_roots[cell.rec.case]:
                build_roots[cell.rec.case].append(root)
    out: dict[str, CaseInfo] = {}
    first: dict[str, Record] = {}
    for cell in site.cells.values():
        first.setdefault(cell.rec.case, cell.rec)
    for case_id, rec in sorted(first.items()):
        info = CaseInfo(
            id=case_id, href=f"case/{_slug(case_id)}.html", tier=rec.tier or "", features=list(rec.features)
        )
        lc = loaded.get(case_id)
        if lc is not None:
            c = lc.case
            info.description, info.standard, info.features = c.description, c.standard, list(c.features)
            s, e, g = c.source, c.encoding, c.segments
            info.params = [
                ("source", f"{s.modality} {s.layout}, {s.rows}×{s.columns}, {s.frames} frame(s)"),
                (
                    "spacing",
                    f"pixel {s.pixel_spacing[0]} × {s.pixel_spacing[1]} mm"
                    + (
                        f", slices at {', '.join(map(str, s.slice_positions))} mm"
                        if s.slice_positions
                        else f", slice {s.slice_spacing} mm"
                        if s.has_patient_geometry and s.layout != "cine"
                        else ""
                    ),
                ),
                (
                    "orientation",
                    ", ".join(f"{v:g}" for v in s.orientation) if s.has_patient_geometry else "none (no patient space)",
                ),
                (
                    "segments",
                    f"{g.count} ({g.generator}, seed {g.seed}, fill {g.fill})"
                    + (f", numbered {', '.join(map(str, g.numbers))}" if g.numbers is not None else "")
                    + (f", empty: {', '.join(map(str, g.empty))}" if g.empty else "")
                    + (f", empty frames in: {', '.join(map(str, g.gaps))}" if g.gaps else ""),
                ),
                (
                    "encoding",
                    f"{e.type.value}, {e.bits} bit(s), {e.transfer_syntax}"
                    + (f", frames {e.frame_order}" if e.frame_order != "segment-major" else "")
                    + (f", {e.fractional_type} of {e.max_fractional_value}" if e.type.value == "FRACTIONAL" else "")
                    + (f", {e.photometric}" if e.photometric != "MONOCHROME2" else "")
                    + (", frames placed by position only" if e.source_references == "position-only" else "")
                    + (", references the segmented slices only" if e.referenced_instances == "segmented" else ""),
                ),
                *(
                    [
                        (
                            "instances",
                            "; ".join(
                                f"instance {k}: segments {', '.join(map(str, inst))}"
                                for k, inst in enumerate(e.instances, 1)
                            ),
                        )
                    ]
                    if e.instances
                    else []
                ),
                *([("reading", c.reading)] if c.reading else []),
                ("case file", f"corpus/cases/{case_id}.toml"),
            ]
            info.fingerprint = c.fingerprint()
            candidates = build_roots.get(case_id, []) + ([opts.build] if opts.build else [])
            for root in candidates:
                d = root / "corpus" / info.fingerprint
                if (d / "truth.json").is_file():
                    info.truth_dir = d
                    break
        elif case_id in mutants:
            m = mutants[case_id]
            info.description = m.description
            info.base = m.base
            info.params = [
                ("mutation", m.mutation),
                ("parameters", json.dumps(m.params, ensure_ascii=False) if m.params else "none"),
                ("base object", f"{m.base}, written by highdicom"),
            ]
            info.standard = "PS3.3 C.8.20 (Segmentation IOD); the object is broken on purpose"
        else:
            info.notes = sorted({n for c in site.cells.values() if c.rec.case == case_id for n in c.rec.notes[:1]})
            if info.tier == "external":
                who = next((n for n in info.notes if n.startswith("written by ")), "written elsewhere")
                graded = sorted(
                    {
                        n.removeprefix(GRADED_NOTE)
                        for cell in site.cells.values()
                        if cell.rec.case == case_id and cell.rec.basis == "truth"
                        for n in cell.rec.notes
                        if n.startswith(GRADED_NOTE)
                    }
                )
                info.graded = ", ".join(graded)
                info.description = (
                    f"An object from the wild, {who}; graded against the truth shipped beside it ({info.graded})."
                    if graded
                    else f"An object from the wild, {who}; no truth: its readers are compared with each other."
                )
                info.notes = [n for n in info.notes if n != who]
        out[case_id] = info
    return out
