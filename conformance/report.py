"""Render results JSON into a static HTML grid (Jinja2, autoescaped, no external assets)."""

from __future__ import annotations

import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from conformance.mutate import REACTIONS
from conformance.results import Record, ResultsDocument, Status

__all__ = ["render_site"]

TEMPLATES = Path(__file__).resolve().parent.parent / "reports" / "templates"

#: Symbols shown with the colour, so that the grid reads without colour too.
SYMBOLS = {
    Status.PASS: "✓",
    Status.FAIL: "✗",
    Status.ERROR: "!",
    Status.CRASH: "☠",
    Status.TIMEOUT: "◔",
    Status.UNSUPPORTED: "–",
    Status.SKIPPED: "∅",
}


@dataclass
class Row:
    case: str
    tier: str
    features: list[str]
    producer: str
    write: Record | None
    cells: dict[str, Record | None]


def _rows(doc: ResultsDocument, consumers: list[str]) -> list[Row]:
    by_key: dict[tuple[str, str], dict[str | None, Record]] = defaultdict(dict)
    for r in doc.records:
        by_key[(r.case, r.producer)][r.consumer] = r
    rows = []
    for (case, producer), recs in sorted(by_key.items()):
        any_rec = next(iter(recs.values()))
        rows.append(
            Row(
                case=case,
                tier=any_rec.tier or "",
                features=any_rec.features,
                producer=producer,
                write=recs.get(None),
                cells={c: recs.get(c) for c in consumers},
            )
        )
    return rows


def _copy_artifacts(
    doc: ResultsDocument, documents: list[ResultsDocument], out_dir: Path
) -> dict[tuple[str, str, str | None], dict[str, str]]:
    """Copy each record's artifacts (screenshots) into the site, so that it works from any folder."""
    run_dirs = {r.key: (d.run.run_id, Path(d.run.run_dir)) for d in documents if d.run.run_dir for r in d.records}
    links: dict[tuple[str, str, str | None], dict[str, str]] = {}
    shutil.rmtree(out_dir / "artifacts", ignore_errors=True)
    for rec in doc.records:
        if rec.key not in run_dirs:
            continue
        run_id, root = run_dirs[rec.key]
        for name, rel in rec.artifacts.items():
            if Path(rel).suffix != ".png":
                continue
            src = (root / rel).resolve()
            if not src.is_relative_to(root.resolve()) or not src.is_file():
                continue
            href = Path("artifacts") / run_id / rel
            (out_dir / href).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out_dir / href)
            links.setdefault(rec.key, {})[name] = href.as_posix()
    return links


def render_site(documents: list[ResultsDocument], out_dir: Path) -> Path:
    """Write ``index.html`` (the grid) for the given results into ``out_dir``."""
    if not documents:
        raise ValueError("no results to report")
    doc = documents[-1]
    if len(documents) > 1:
        merged = doc.model_copy(deep=True)
        seen = {r.key for r in merged.records}
        for other in documents[:-1]:
            for r in other.records:
                if r.key not in seen:
                    merged.records.append(r)
                    seen.add(r.key)
            for t in other.tools:
                if all((t.role, t.name) != (m.role, m.name) for m in merged.tools):
                    merged.tools.append(t)
        doc = merged
    consumers = [t.name for t in doc.tools if t.role in ("consumer", "validator")]
    producers = [t.name for t in doc.tools if t.role == "producer"]
    all_rows = _rows(doc, consumers)
    # Pairs whose producer declares the case unsupported have nothing to read: listed apart, compactly.
    rows = [r for r in all_rows if not (r.write and r.write.status is Status.UNSUPPORTED)]
    unsupported = [r for r in all_rows if r.write and r.write.status is Status.UNSUPPORTED]
    reads = [r for r in doc.records if r.step != "write"]
    totals = Counter(r.status.value for r in reads)
    per_consumer = {
        c: Counter(r.status.value for r in reads if r.consumer == c) for c in consumers
    }
    per_producer = {
        p: Counter(r.status.value for r in doc.records if r.producer == p and r.step == "write") for p in producers
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    links = _copy_artifacts(doc, documents, out_dir)
    negative_reads = [r for r in doc.records if r.tier == "negative" and r.step == "read"]
    reactions = {c: Counter(r.reaction for r in negative_reads if r.consumer == c and r.reaction) for c in consumers}
    reactions = {c: v for c, v in reactions.items() if v}
    mutant_checks = [r for r in doc.records if r.tier == "negative" and r.step == "validate" and r.status in (Status.PASS, Status.FAIL)]
    sensitivity = (sum(r.status is Status.PASS for r in mutant_checks), len(mutant_checks))
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("index.html.j2").render(
        run=doc.run,
        tools=doc.tools,
        consumers=consumers,
        rows=rows,
        unsupported=unsupported,
        totals=totals,
        per_consumer=per_consumer,
        per_producer=per_producer,
        statuses=[s.value for s in Status],
        symbols={s.value: sym for s, sym in SYMBOLS.items()},
        links=links,
        reactions=reactions,
        reaction_names=list(REACTIONS),
        sensitivity=sensitivity,
    )
    target = out_dir / "index.html"
    tmp = target.with_name("index.html.part")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(target)
    return target
