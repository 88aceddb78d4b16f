"""Rendering the pages: the Jinja2 environment (autoescaped, every value made visible as it is) and the renderer
that writes the grid (pages of at most GRID_PAGE_BUDGET bytes of rows, with an index of every page's rows for the
filters), the overview, a page per cell, tool and case, the history, the vendors' submissions and the badges.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup

from dicom4qi.adapters.contract import split_spec
from dicom4qi.corpus.mutate import REACTIONS
from dicom4qi.model.results import ResultsDocument, Status
from dicom4qi.site.files import TEMPLATES, Copier, _slug, _write_text
from dicom4qi.site.merge import _Site
from dicom4qi.site.view import (
    GROUPS,
    LIST_LIMIT,
    MEANINGS,
    PROBLEM,
    SEVERITY,
    SYMBOLS,
    TRIED,
    WRITE,
    Badge,
    CaseInfo,
    Cell,
    Row,
    _badge_svg,
    _js_data,
    _mib,
    _neutral,
    _pct,
    _rate_class,
    _seconds,
)

STATUS_CODE = {
    Status.PASS: "P",
    Status.FAIL: "F",
    Status.ERROR: "E",
    Status.CRASH: "C",
    Status.TIMEOUT: "T",
    Status.DISPUTED: "D",
    Status.UNSUPPORTED: "U",
    Status.SKIPPED: "S",
}
CHANGE_CODE = {"regressed": "r", "fixed": "f", "changed": "c"}

GRID_PAGE_BUDGET = 1_200_000  # bytes of grid rows on one page (the page stays well under 2 MB)
GRID_MESSAGE_CHARS = 140
MESSAGE_CHARS = 20_000

#: Tiers in the order pages list them.
TIERS = ("quick", "full", "stress", "external", "negative")


def _tier_key(tier: str) -> tuple[int, str]:
    return (TIERS.index(tier) if tier in TIERS else len(TIERS), tier)


def _grid_href(**params: str) -> str:
    return "index.html" + ("#" + urlencode({k: v for k, v in params.items() if v}, quote_via=quote) if params else "")


def _issue_tracker(homepage: str | None) -> str | None:
    """A GitHub project's issue tracker, from its homepage."""
    if homepage and re.match(r"^https://github\.com/[^/]+/[^/]+/?$", homepage):
        return homepage.rstrip("/") + "/issues"
    return None


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader([TEMPLATES]), autoescape=True, trim_blocks=True, lstrip_blocks=True, finalize=_neutral
    )
    env.filters.update(mib=_mib, seconds=_seconds, slug=_slug)
    env.globals.update(
        symbols={s.value: v for s, v in SYMBOLS.items()},
        meanings={s.value: v for s, v in MEANINGS.items()},
        statuses=[s.value for s in Status],
        pct=_pct,
        rate_class=_rate_class,
        grid_href=_grid_href,
        reaction_names=list(REACTIONS),
        reactions_text=REACTIONS,
    )
    return env


class _Renderer:
    def __init__(self, site: _Site, cases: dict[str, CaseInfo], features: dict[str, str], copier: Copier) -> None:
        self.site = site
        self.cases = cases
        self.features = features
        self.copier = copier
        self.env = _env()
        self.macros: Any = self.env.get_template("macros.html.j2").module  # its attributes are the template's macros
        self.sizes: dict[str, int] = {}
        names: list[str] = []
        for t in site.tools:
            if t.name not in names:
                names.append(t.name)
        for c in site.columns:
            if c not in names:
                names.append(c)
        self.tool_names = names
        self.tool_hrefs = {n: f"tool/{_slug(n)}.html" for n in names}
        nav = [
            ("index.html", "Grid"),
            ("overview.html", "Overview"),
            ("overview.html#tools", "Tools"),
            ("cases.html", "Cases"),
            ("history.html", "History"),
        ]
        if (site.out_dir / "format-study.html").is_file() or "format-study.html" in site.extra_links:
            nav.append(("format-study.html", "Format study"))
        for href, text in site.extra_links.items():
            if href not in {h for h, _ in nav}:
                nav.append((href, text))
        self.nav = nav
        self.badges: dict[tuple[str, str], Badge] = {}
        for t in site.tools:
            if t.role in ("producer", "consumer"):
                passed, tried, _ = site.pass_counts(t.role, t.name)
                slug = _slug(t.role, t.name)
                self.badges[(t.role, t.name)] = Badge(
                    t.role, t.name, passed, tried, f"badges/{slug}.json", f"badges/{slug}.svg"
                )

    def feature_order(self, names: set[str] | list[str]) -> list[str]:
        known = [f for f in self.features if f in names]
        return known + sorted(set(names) - set(known))

    def page(self, template: str, target: str, **ctx: Any) -> None:
        depth = target.count("/")
        root = "../" * depth
        html_text = self.env.get_template(template).render(
            root=root,
            here=target,
            nav=self.nav,
            run=self.site.latest,
            site=self.site,
            tool_hrefs=self.tool_hrefs,
            cases=self.cases,
            features=self.features,
            macros=self.macros,
            **ctx,
        )
        _write_text(self.site.out_dir / target, html_text)
        self.sizes[target] = len(html_text.encode("utf-8"))

    # ---- vendor submissions

    def submissions(self, docs: list[ResultsDocument], download: dict[str, Any] | None = None) -> None:
        """``submissions.html`` and a page per submission, with where each result comes from."""
        subs = []
        for d in sorted(docs, key=lambda d: (d.run.submission.vendor if d.run.submission else "", d.run.run_id)):
            info = d.run.submission
            if info is None:
                continue
            reads = [r for r in d.records if r.step == "read"]
            verified = Counter(r.status.value for r in reads if r.provenance != "self-reported")
            writes = Counter(r.status.value for r in d.records if r.step == "write")
            selfrep = Counter(r.status.value for r in reads if r.provenance == "self-reported")
            order = [st.value for st in SYMBOLS]
            s: dict[str, Any] = {
                "info": info,
                "kind": d.run.kind,
                "records": sorted(
                    d.records,
                    key=lambda r: (
                        {"verified": 0, "submitted": 0, None: 1, "self-reported": 2}.get(r.provenance, 3),
                        r.status is Status.SKIPPED,
                        r.case,
                        r.producer,
                        r.step != "write",
                        r.consumer or "",
                    ),
                ),
                "href": f"submission/{_slug(info.vendor, info.tool, info.tool_version, info.sha256[:12])}.html",
                "verified": sorted(verified.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99),
                "writes": sorted(writes.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99),
                "self_reported": sorted(selfrep.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99),
            }
            subs.append(s)
            self.page("submission.html.j2", s["href"], s=s)
        self.page("submissions.html.j2", "submissions.html", subs=subs, download=download)

    # ---- the grid

    def grid(self) -> None:
        site = self.site
        row_html = []
        for row in site.rows:
            text = str(self.macros.grid_row(row, site.columns, self.cases, self.tool_hrefs, ""))
            row_html.append((row, text, len(text.encode("utf-8"))))
        pages: list[list[tuple[Row, str, int]]] = [[]]
        size = 0
        for item in row_html:
            if pages[-1] and size + item[2] > GRID_PAGE_BUDGET:
                pages.append([])
                size = 0
            pages[-1].append(item)
            size += item[2]
        hrefs = ["index.html"] + [f"grid-{i + 1}.html" for i in range(1, len(pages))]
        labels = []
        for p in pages:
            if not p:
                labels.append("empty")
                continue
            labels.append(f"{p[0][0].case} … {p[-1][0].case}")
        multi = len(pages) > 1
        if multi:
            cols = [WRITE] + site.columns
            index_rows = []
            for pi, p in enumerate(pages):
                for row, _, _ in p:
                    cells = [row.write] + row.cells
                    index_rows.append(
                        [
                            pi,
                            row.tier,
                            row.producer,
                            " ".join(row.features),
                            "".join(STATUS_CODE[c.rec.status] if c else "." for c in cells),
                            "".join(CHANGE_CODE.get(c.change or "", ".") if c else "." for c in cells),
                            "".join((c.novelty or ".")[0] if c else "." for c in cells),
                        ]
                    )
            for pi in range(len(pages)):
                _write_text(
                    site.out_dir / "data" / f"grid-index-{pi + 1}.js",
                    _js_data(
                        "D4Q_INDEX",
                        {
                            "current": pi,
                            "columns": cols,
                            "pages": [{"href": h, "label": lab} for h, lab in zip(hrefs, labels)],
                            "rows": index_rows,
                        },
                    ),
                )
        features = self.feature_order({f for r in site.rows for f in r.features})
        tiers = sorted({r.tier for r in site.rows if r.tier}, key=_tier_key)
        changes = Counter(c.change for c in site.cells.values() if c.change)
        producers = [p for p in site.producers if any(r.producer == p for r in site.rows)]
        reads = [c.rec for c in site.cells.values() if c.rec.step != "write"]
        totals = Counter(r.status.value for r in reads)
        for pi, (p, href) in enumerate(zip(pages, hrefs)):
            items: list[tuple[str, Any]] = []
            last_group = None
            for row, text, _ in p:
                if row.group != last_group:
                    n = sum(1 for r in site.rows if r.group == row.group)
                    items.append(
                        (
                            "group",
                            (
                                row.group,
                                GROUPS[row.group],
                                last_group is None
                                and pi > 0
                                and pages[pi - 1]
                                and pages[pi - 1][-1][0].group == row.group,
                                n,
                            ),
                        )
                    )
                    last_group = row.group
                items.append(("row", Markup(text)))
            self.page(
                "grid.html.j2",
                href,
                items=items,
                columns=site.columns,
                page_index=pi,
                pages=list(zip(hrefs, labels)),
                multi=multi,
                feature_names=features,
                tiers=tiers,
                producers=producers,
                changes=changes,
                totals=totals,
                unsupported=site.unsupported if pi == 0 else [],
                n_rows=len(site.rows),
                index_script=f"data/grid-index-{pi + 1}.js" if multi else None,
            )

    # ---- overview

    @staticmethod
    def validator_fault(cell: Cell) -> bool:
        """A validator's FAIL whose every error a known issue of the validator itself explains."""
        return (
            cell.rec.step == "validate"
            and cell.rec.status is Status.FAIL
            and bool(cell.known)
            and not cell.unexplained
            and all(k.tool == cell.rec.consumer for k in cell.known)
        )

    def validator_disagreements(self, validators: list[str]) -> dict[str, Any]:
        """Objects two validators judged differently (one PASS, one FAIL), per producer and listed, with whose fault
        the known issues say it is."""
        site = self.site
        if len(validators) < 2:
            return {}
        first, second = validators[0], validators[1]
        per_producer: dict[str, Counter[str]] = {}
        listed = []
        for (case, producer, consumer), a in site.cells.items():
            if consumer != first or a.rec.tier == "negative":
                continue
            b = site.cells.get((case, producer, second))
            if b is None or {a.rec.status, b.rec.status} - {Status.PASS, Status.FAIL}:
                continue
            counts = per_producer.setdefault(producer, Counter())
            key = "both" if a.rec.status is b.rec.status else (first if a.rec.status is Status.FAIL else second)
            counts[key if key != "both" else ("both pass" if a.rec.status is Status.PASS else "both fail")] += 1
            if key in validators:
                flagged = a if key == first else b
                if self.validator_fault(flagged):
                    counts[f"{key} own"] += 1
                listed.append(
                    {
                        "case": case,
                        "producer": producer,
                        "flagged_by": key,
                        "cells": (a, b),
                        "validator_fault": self.validator_fault(flagged),
                        "known": [k.id for k in flagged.known],
                    }
                )
        listed.sort(key=lambda d: (d["validator_fault"], d["producer"], d["case"]))
        return {"pair": (first, second), "per_producer": per_producer, "listed": listed}

    def overview(self) -> None:
        from dicom4qi.run.summary import by_feature, interop_score

        site = self.site
        doc = site.graded_doc()
        readers = by_feature(doc, "consumer")
        writers = by_feature(doc, "producer")
        consumers = [c for c in site.columns if c not in site.validators]
        tried_by = Counter(r.consumer for r in site.graded if r.step == "read" and r.status in TRIED)
        interop_tools = [c for c in consumers if tried_by.get(c)]
        interop = interop_score(doc, interop_tools) if interop_tools else {}
        producers = [p for p in site.producers if any(r.producer == p for r in site.graded)]
        validators = [v for v in site.columns if v in site.validators]
        valid: dict[str, dict[str, tuple[int, int]]] = {v: {} for v in validators}
        for v in validators:
            for p in producers:
                cells = [
                    c
                    for c in site.cells.values()
                    if c.rec.step == "validate"
                    and c.rec.consumer == v
                    and c.rec.producer == p
                    and c.rec.tier != "negative"
                    and c.rec.status in TRIED
                ]
                # a FAIL whose every error is the validator's own known fault says nothing against the object
                good = sum(c.rec.status is Status.PASS or self.validator_fault(c) for c in cells)
                valid[v][p] = (good, len(cells))
        disagreements = self.validator_disagreements(validators)
        tools = []
        for t in site.tools:
            passed, tried, counts = site.pass_counts(t.role, t.name)
            tools.append(
                {
                    "info": t,
                    "passed": passed,
                    "tried": tried,
                    "counts": counts,
                    "badge": self.badges.get((t.role, t.name)),
                }
            )
        negative_reads = [c.rec for c in site.cells.values() if c.rec.tier == "negative" and c.rec.step == "read"]
        reactions = {
            c: Counter(r.reaction for r in negative_reads if r.consumer == c and r.reaction) for c in site.columns
        }
        reactions = {c: v for c, v in reactions.items() if v}
        mutant_checks = [
            c.rec
            for c in site.cells.values()
            if c.rec.tier == "negative" and c.rec.step == "validate" and c.rec.status in (Status.PASS, Status.FAIL)
        ]
        sensitivity = (sum(r.status is Status.PASS for r in mutant_checks), len(mutant_checks))
        external = [c.rec for c in site.cells.values() if c.rec.tier == "external" and c.rec.step == "read"]
        ext_readers = {c: Counter(r.status.value for r in external if r.consumer == c) for c in site.columns}
        ext_readers = {c: v for c, v in ext_readers.items() if v}
        changes = Counter(c.change for c in site.cells.values() if c.change)
        self.page(
            "overview.html.j2",
            "overview.html",
            feature_rows=self.feature_order(set(readers) | set(writers)),
            readers=readers,
            writers=writers,
            consumers=consumers,
            producers=producers,
            interop=interop,
            interop_tools=interop_tools,
            valid=valid,
            validators=validators,
            disagreements=disagreements,
            tools=tools,
            reactions=reactions,
            sensitivity=sensitivity,
            ext_readers=ext_readers,
            ext_objects=len({r.case for r in external}),
            changes=changes,
            runs=site.current_docs,
            totals=Counter(r.status.value for r in site.graded if r.step == "read"),
            explained=sorted(site.explained, key=lambda e: (e.issue.tool, e.state != "seen", e.issue.id)),
            known_errors=site.known_errors,
            harness_faults=sorted((c for c in site.cells.values() if c.rec.harness), key=lambda c: c.rec.key),
            known_counts=Counter(c.novelty for c in site.cells.values() if c.novelty),
            writes=Counter(r.status.value for r in site.graded if r.step == "write"),
        )

    # ---- cells

    def cell_pages(self) -> None:
        site = self.site
        trackers = {t.name: _issue_tracker(t.homepage) for t in site.tools}
        for key, cell in site.cells.items():
            series = []
            for i, rec in site.series.get(key, []):
                series.append((site.runs[i].run, rec))
            rec = cell.rec
            write = site.cells.get((rec.case, rec.producer, None))
            caption = next(
                (n.removeprefix("difference picture: ") for n in rec.notes if n.startswith("difference picture: ")),
                None,
            )
            at_fault = rec.consumer if rec.step == "read" else rec.producer
            self.page(
                "cell.html.j2",
                cell.href,
                cell=cell,
                rec=rec,
                case=self.cases.get(rec.case),
                series=series[-LIST_LIMIT:],
                message_limit=MESSAGE_CHARS,
                list_limit=LIST_LIMIT,
                write_href=write.href if write else cell.href,
                difference_caption=caption,
                tool_issues=trackers.get(at_fault or ""),
            )

    # ---- tools

    def tool_pages(self) -> None:
        from dicom4qi.run.summary import by_feature

        site = self.site
        doc = site.graded_doc()
        per_role = {role: by_feature(doc, role) for role in ("producer", "consumer", "validator")}
        for name in self.tool_names:
            infos = [t for t in site.tools if t.name == name]
            roles = [t.role for t in infos] or (["validator"] if name in site.validators else ["consumer"])
            sections = []
            for role in roles:
                info = next((t for t in infos if t.role == role), None)
                passed, tried, counts = site.pass_counts(role, name)
                feats = []
                for f, per in per_role[role].items():
                    fc = per.get(name)
                    if fc is not None and (fc.tried or fc.untried):
                        feats.append((f, fc))
                feats.sort(
                    key=lambda item: (item[1].rate if item[1].rate is not None else 2.0, -item[1].tried, item[0])
                )
                step = {"producer": "write", "consumer": "read", "validator": "validate"}[role]
                mine = [
                    c
                    for c in site.cells.values()
                    if c.rec.step == step and (c.rec.producer if role == "producer" else c.rec.consumer) == name
                ]
                failing = sorted(
                    (c for c in mine if c.rec.status in PROBLEM),
                    key=lambda c: (SEVERITY.index(c.rec.status), c.rec.tier or "", c.rec.case, c.rec.producer),
                )
                reactions = Counter(c.rec.reaction for c in mine if c.rec.tier == "negative" and c.rec.reaction)
                claims = [(f, self.features.get(f, "")) for f in self.feature_order(info.features)] if info else []
                sections.append(
                    {
                        "role": role,
                        "info": info,
                        "passed": passed,
                        "tried": tried,
                        "counts": counts,
                        "features": feats,
                        "failing": failing[:LIST_LIMIT],
                        "failing_total": len(failing),
                        "reactions": reactions,
                        "claims": claims,
                        "badge": self.badges.get((role, name)),
                        "tool_filter": f"{role}:{name}",
                    }
                )
            homepage = next((t.homepage for t in infos if t.homepage), None)
            issues = _issue_tracker(homepage)
            base = (site.opts.base_url or "").rstrip("/")
            known = [e for e in site.explained if e.issue.tool == name or split_spec(name)[0] == e.issue.tool]
            self.page(
                "tool.html.j2",
                self.tool_hrefs[name],
                name=name,
                infos=infos,
                sections=sections,
                known=known,
                homepage=homepage if homepage and homepage.startswith(("https://", "http://")) else None,
                issues=issues,
                base_url=base,
                list_limit=LIST_LIMIT,
            )

    # ---- cases

    def case_pages(self) -> None:
        site = self.site
        by_case: dict[str, list[Row]] = defaultdict(list)
        for row in site.all_rows:
            by_case[row.case].append(row)
        summary = {}
        for case_id, info in self.cases.items():
            reads = [c.rec for c in site.cells.values() if c.rec.case == case_id and c.rec.step == "read"]
            passed = sum(r.status is Status.PASS for r in reads)
            tried = sum(r.status in TRIED for r in reads)
            summary[case_id] = (passed, tried)
            rows = by_case.get(case_id, [])
            self.page(
                "case.html.j2",
                info.href,
                info=info,
                rows=[r for r in rows if r not in site.unsupported],
                unsupported=[r for r in rows if r in site.unsupported],
                columns=site.columns,
                feature_text=self.features,
                passed=passed,
                tried=tried,
            )
        tiers = sorted({i.tier for i in self.cases.values()}, key=_tier_key)
        self.page("cases.html.j2", "cases.html", infos=list(self.cases.values()), summary=summary, tiers=tiers)

    # ---- history

    def history(self) -> None:
        site = self.site
        shown = site.runs[-site.opts.history_runs :]
        first = len(site.runs) - len(shown)
        runs = []
        prev_tools: dict[tuple[str, str], str | None] | None = None
        for i, d in enumerate(site.runs):
            tools: dict[tuple[str, str], str | None] = {(t.role, t.name): t.version for t in d.tools}
            changed = []
            if prev_tools is not None:
                for k, v in tools.items():
                    if k in prev_tools and prev_tools[k] != v:
                        changed.append(f"{k[1]} {prev_tools[k] or '—'} → {v or '—'}")
            prev_tools = {**(prev_tools or {}), **tools}
            if i >= first:
                reads = [r for r in d.records if r.step == "read"]
                runs.append(
                    {
                        "run": d.run,
                        "records": len(d.records),
                        "reads": Counter(r.status.value for r in reads),
                        "tiers": ", ".join(d.run.filters.get("tier", [])) or "—",
                        "scope": self._scope(d),
                        "versions": changed,
                        "current": d in site.current_docs,
                    }
                )
        lists = {
            k: sorted((c for c in site.cells.values() if c.change == k), key=lambda c: c.rec.key)
            for k in ("regressed", "fixed", "changed")
        }
        table = []
        for key, series in site.series.items():
            statuses = {i: r.status for i, r in series if i >= first}
            cell = site.cells.get(key)
            if len(set(statuses.values())) < 2 and not (cell and cell.change):
                continue
            table.append(
                (cell.change if cell else None, key, [statuses.get(i) for i in range(first, len(site.runs))], cell)
            )
        rank = {"regressed": 0, "fixed": 1, "changed": 2, None: 3}
        table.sort(key=lambda t: (rank[t[0]], t[1][0], t[1][1], t[1][2] or ""))
        full = {
            "runs": [d.run.run_id for d in site.runs],
            "cells": [
                {
                    "case": k[0],
                    "producer": k[1],
                    "consumer": k[2],
                    "statuses": {site.runs[i].run.run_id: r.status.value for i, r in s},
                }
                for k, s in sorted(site.series.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or ""))
            ],
        }
        _write_text(site.out_dir / "data" / "history.json", json.dumps(full, ensure_ascii=False, indent=0))
        self.page(
            "history.html.j2",
            "history.html",
            runs=runs,
            lists=lists,
            table=table[: LIST_LIMIT * 2],
            table_total=len(table),
            list_limit=LIST_LIMIT,
            shown_runs=[d.run for d in shown],
        )

    @staticmethod
    def _scope(d: ResultsDocument) -> str:
        f = d.run.filters
        parts = []
        if f.get("case"):
            parts.append(f"{len(f['case'])} case filter(s)")
        for k in ("producer", "consumer"):
            if f.get(k):
                parts.append(f"{len(f[k])} {k}(s)")
        if f.get("external"):
            parts.append("external objects")
        return ", ".join(parts) or "everything"

    # ---- badges and static files

    def badge_files(self) -> None:
        for b in self.badges.values():
            _write_text(self.site.out_dir / b.json_href, json.dumps(b.endpoint(), ensure_ascii=False) + "\n")
            _write_text(self.site.out_dir / b.svg_href, _badge_svg(b))
