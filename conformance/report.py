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


def render_site(documents: list[ResultsDocument], out_dir: Path, *, links: dict[str, str] | None = None) -> Path:
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
        links_out=links or {},
    )
    target = out_dir / "index.html"
    tmp = target.with_name("index.html.part")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(target)
    return target


# --------------------------------------------------------------------------- format study


def _encoding_of(features: list[str]) -> str:
    """A short name of an object's encoding: BINARY, LABELMAP 16-bit, ... and its transfer syntax."""
    kind = "BINARY" if "binary" in features else "FRACTIONAL" if "fractional" in features else "LABELMAP"
    ts = {"ts-rle": "RLE", "ts-jpeg2000": "JPEG 2000", "ts-jpegls": "JPEG-LS", "ts-deflate": "Deflate",
          "ts-implicit-le": "implicit VR"}
    extra = [v for k, v in ts.items() if k in features]
    return kind + (f" + {extra[0]}" if extra else "")


@dataclass
class BenchRow:
    case: str
    segments: int | None
    encoding: str
    tool: str
    operation: str
    record: Record


def _bench_rows(doc: ResultsDocument) -> list[BenchRow]:
    rows = []
    for r in doc.records:
        if r.bench is None and r.status is Status.UNSUPPORTED:
            continue
        if r.producer in ("nifti", "seg-nrrd"):
            encoding = ".nii.gz" if r.producer == "nifti" else ".seg.nrrd"
            tool = r.consumer or (r.notes[0].removeprefix("written by ") if r.notes else r.producer)
            op = "read" if r.consumer else "write"
        else:
            encoding = _encoding_of(r.features)
            tool = r.consumer if r.step == "read" else r.producer
            op = f"read {r.producer}'s" if r.step == "read" else "write"
        rows.append(BenchRow(r.case, r.segments, encoding, tool or "", op, r))
    return rows


def _plot(series: dict[str, list[tuple[float, float]]], ylabel: str, title: str, path: Path, *, logy: bool = True) -> bool:
    """One log-log line plot of ``series`` (label -> (segments, value) points) as SVG; False if nothing to draw."""
    series = {k: sorted(v) for k, v in series.items() if v}
    if not series:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "dicom4qi"  # stable ids: the same figures give the same file
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    markers = "os^vD<>ph*"
    for i, (label, points) in enumerate(sorted(series.items())):
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker=markers[i % len(markers)], label=label, linewidth=1.6)
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("segments")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return True


def render_format_study(documents: list[ResultsDocument], out_dir: Path) -> Path:
    """Write ``format-study.html`` and its plots from benchmark results (the last document of each tier wins)."""
    benches = [d for d in documents if d.run.kind == "bench"]
    if not benches:
        raise ValueError("no benchmark results (run `dicom4qi bench`)")
    doc = benches[-1]
    rows = [row for d in benches for row in _bench_rows(d)]
    # Body cases of one grid (the same source) make the curves: pick the cases with most rows per segment count.
    plots: list[tuple[str, str]] = []
    figures = out_dir / "bench"
    size: dict[str, list[tuple[float, float]]] = defaultdict(list)
    read: dict[str, list[tuple[float, float]]] = defaultdict(list)
    memory: dict[str, list[tuple[float, float]]] = defaultdict(list)
    study = [r for r in rows if r.case.split("/")[-1].startswith("body-") and r.segments and r.record.bench]
    for r in study:
        b = r.record.bench
        assert b is not None
        if r.operation == "write" and r.tool == "highdicom" and b.size:
            size[f"SEG {r.encoding} (highdicom)"].append((r.segments, b.size / 2**20))
        if r.operation == "write" and r.encoding in (".nii.gz", ".seg.nrrd") and b.size and "BINARY" not in r.case:
            if r.case.endswith("-labelmap"):
                size[r.encoding].append((r.segments, b.size / 2**20))
        if r.operation == "read highdicom's" and r.tool in ("reference", "highdicom"):
            read[f"{r.tool} reads {r.encoding}"].append((r.segments, b.median_wall_s))
            memory[f"{r.tool} reads {r.encoding}"].append((r.segments, b.median_peak_rss_mb))
        if r.operation == "read" and r.encoding == ".nii.gz" and r.case.endswith("-labelmap"):
            read[f"{r.tool} reads .nii.gz"].append((r.segments, b.median_wall_s))
            memory[f"{r.tool} reads .nii.gz"].append((r.segments, b.median_peak_rss_mb))
    if _plot(size, "file size (MiB)", "File size against segments, 512x512x300", figures / "size.svg"):
        plots.append(("bench/size.svg", "File size against the number of segments"))
    if _plot(read, "read time, whole process (s)", "Read time against segments (median of the timed runs)", figures / "read.svg"):
        plots.append(("bench/read.svg", "Read time against the number of segments"))
    if _plot(memory, "peak memory (MiB)", "Peak memory of the reading process", figures / "memory.svg"):
        plots.append(("bench/memory.svg", "Peak memory against the number of segments"))
    by_case: dict[str, list[BenchRow]] = defaultdict(list)
    for r in rows:
        by_case[r.case].append(r)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("format-study.html.j2").render(
        run=doc.run, tools=doc.tools, by_case=dict(sorted(by_case.items())), plots=plots,
        overhead=doc.run.harness_overhead, machine=doc.run.machine,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "format-study.html"
    tmp = target.with_name("format-study.html.part")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(target)
    return target
