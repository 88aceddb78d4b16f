"""The benchmark's format study (``format-study.html``): a row per timed write and read, and SVG plots of
file size, read time and peak memory against the number of segments, and of size and read time per encoding.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from jinja2 import Environment, FileSystemLoader, select_autoescape

from dicom4qi.model.results import Record, ResultsDocument, Status
from dicom4qi.site.files import TEMPLATES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["render_format_study"]


def _encoding_of(features: list[str]) -> str:
    """A short name of an object's encoding: BINARY, LABELMAP 16-bit, ... and its transfer syntax."""
    kind = "BINARY" if "binary" in features else "FRACTIONAL" if "fractional" in features else "LABELMAP"
    ts = {
        "ts-rle": "RLE",
        "ts-jpeg2000": "JPEG 2000",
        "ts-jpegls": "JPEG-LS",
        "ts-deflate": "Deflate",
        "ts-implicit-le": "implicit VR",
    }
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

    @property
    def own_lower_bound(self) -> bool:
        """A viewer's own seconds measured before its busy time was split out (a lower bound, not the figure).

        OHIF holds the segmentation in its state before it is done with it, and the page runs nothing else until
        then; until 2026-12-07 that wait was counted in the suite's "read back", not in OHIF's own seconds (on
        1000 segments, 16 s of its own shown where most of a 262 s call was its own). Such a record's phases
        have a "read back" and no "viewer busy"."""
        phases = next((n for n in self.record.notes if n.startswith("seconds: ")), "")
        return self.record.bench is not None and "read back" in phases and "viewer busy" not in phases


def _bench_rows(doc: ResultsDocument) -> list[BenchRow]:
    rows = []
    for r in doc.records:
        if r.bench is None and r.status is Status.UNSUPPORTED:
            continue
        if r.producer in ("nifti", "seg-nrrd"):
            encoding = ".nii.gz" if r.producer == "nifti" else ".seg.nrrd"
            tool: str | None = r.consumer or (r.notes[0].removeprefix("written by ") if r.notes else r.producer)
            op = "read" if r.consumer else "write"
        else:
            encoding = _encoding_of(r.features)
            tool = r.consumer if r.step == "read" else r.producer
            op = f"read {r.producer}'s" if r.step == "read" else "write"
        rows.append(BenchRow(r.case, r.segments, encoding, tool or "", op, r))
    return rows


def _pyplot() -> ModuleType:
    """matplotlib's pyplot, drawing offline, with stable SVG ids (the same figures give the same files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "dicom4qi"
    return plt


def _save(fig: Figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def _plot(
    series: dict[str, list[tuple[float, float]]], ylabel: str, title: str, path: Path, *, logy: bool = True
) -> bool:
    """One log-log line plot of ``series`` (label -> (segments, value) points) as SVG; False if nothing to draw."""
    series = {k: sorted(v) for k, v in series.items() if v}
    if not series:
        return False
    fig, ax = _pyplot().subplots(figsize=(9.0, 4.2))
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
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    _save(fig, path)
    return True


def _encoding_bars(study: list[BenchRow], path: Path) -> bool:
    """File size and reference read time per encoding for the 104-segment body case, as two bar panels."""
    size: dict[str, float] = {}
    read: dict[str, float] = {}
    for r in study:
        b = r.record.bench
        if r.segments != 104 or b is None:
            continue
        if r.operation == "write" and b.size and (r.tool == "highdicom" or r.encoding in (".nii.gz", ".seg.nrrd")):
            size.setdefault(r.encoding, b.size / 2**20)
        if (r.operation == "read highdicom's" and r.tool == "reference") or (
            r.operation == "read" and r.tool == "nibabel"
        ):
            read.setdefault(r.encoding, b.median_wall_s)
    names = [n for n in size if n in read]
    if not names:
        return False
    names.sort(key=lambda n: size[n], reverse=True)
    fig, (a1, a2) = _pyplot().subplots(1, 2, figsize=(10, 0.5 * len(names) + 1.6), sharey=True)
    ys = range(len(names))
    colours = ["#8250df" if n.startswith(".") else "#0969da" for n in names]
    a1.barh(ys, [size[n] for n in names], color=colours)
    a1.set_xscale("log")
    a1.set_xlabel("file size (MiB, log)")
    a1.set_yticks(list(ys), names)
    a1.invert_yaxis()
    a2.barh(ys, [read[n] for n in names], color=colours)
    a2.set_xlabel("read time, whole process (s)")
    for ax, values in ((a1, [size[n] for n in names]), (a2, [read[n] for n in names])):
        for y, v in zip(ys, values):
            ax.text(v, y, f" {v:.2f}" if v < 10 else f" {v:.0f}", va="center", fontsize=8)
        ax.grid(True, axis="x", alpha=0.3)
    a1.set_title("size", fontsize=10)
    a2.set_title("read by the reference decoder (.nii.gz: nibabel)", fontsize=10)
    _save(fig, path)
    return True


@dataclass
class FormatLimit:
    """One object against .nii.gz: the reference decoder, and the floor any reader of the format must pay."""

    case: str
    segments: int | None
    encoding: str
    nifti_s: float
    floor_s: float
    floor_own_s: float | None
    size_mib: float | None
    reference_s: float | None

    @property
    def startup_s(self) -> float | None:
        """The floor's Python start-up (numpy and pydicom imported): its whole process less its own work."""
        return round(self.floor_s - self.floor_own_s, 3) if self.floor_own_s is not None else None

    @property
    def floor_ratio(self) -> float:
        return round(self.floor_s / self.nifti_s, 2)

    @property
    def reference_ratio(self) -> float | None:
        return round(self.reference_s / self.nifti_s, 2) if self.reference_s is not None else None


def format_limits(rows: list[BenchRow]) -> list[FormatLimit]:
    """For every object with a floor: nibabel's .nii.gz read of the same labels, the floor, the reference read."""
    nifti: dict[str, float] = {}
    reference: dict[tuple[str, str], float] = {}
    for row in rows:
        b, r = row.record.bench, row.record
        if b is None or r.status is not Status.PASS or r.step != "read":
            continue
        if r.producer == "nifti" and r.consumer == "nibabel":
            nifti[r.case] = b.median_wall_s
        if r.consumer == "reference":
            reference[(r.case, r.producer)] = b.median_wall_s
    out = []
    for row in rows:
        b, r = row.record.bench, row.record
        if b is None or r.consumer != "floor" or r.status is not Status.PASS or r.case not in nifti:
            continue
        out.append(
            FormatLimit(
                case=r.case,
                segments=r.segments,
                encoding=row.encoding,
                nifti_s=nifti[r.case],
                floor_s=b.median_wall_s,
                floor_own_s=b.median_tool_s,
                size_mib=round(b.size / 2**20, 1) if b.size else None,
                reference_s=reference.get((r.case, r.producer)),
            )
        )
    return sorted(out, key=lambda x: x.case)


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
    plain = ("BINARY", "LABELMAP")  # uncompressed SEG, against the segment count; compression gets its own figure
    for r in study:
        b = r.record.bench
        assert b is not None
        assert r.segments is not None  # study holds only rows with a segment count
        if r.operation == "write" and r.tool == "highdicom" and b.size and r.encoding in plain:
            size[f"SEG {r.encoding}"].append((r.segments, b.size / 2**20))
        if (
            r.operation == "write"
            and r.encoding in (".nii.gz", ".seg.nrrd")
            and b.size
            and r.case.endswith("-labelmap")
        ):
            size[r.encoding].append((r.segments, b.size / 2**20))
        if r.operation == "read highdicom's" and r.tool in ("reference", "highdicom") and r.encoding in plain:
            read[f"{r.tool} reads {r.encoding}"].append((r.segments, b.median_wall_s))
            memory[f"{r.tool} reads {r.encoding}"].append((r.segments, b.median_peak_rss_mb))
        if r.operation == "read" and r.tool == "nibabel" and r.encoding == ".nii.gz" and r.case.endswith("-labelmap"):
            read["nibabel reads .nii.gz"].append((r.segments, b.median_wall_s))
            memory["nibabel reads .nii.gz"].append((r.segments, b.median_peak_rss_mb))
    if _plot(size, "file size (MiB)", "File size against segments, 512x512x300", figures / "size.svg"):
        plots.append(("bench/size.svg", "File size against the number of segments (SEG written by highdicom)"))
    if _plot(
        read,
        "read time, whole process (s)",
        "Read time against segments (median of the timed runs)",
        figures / "read.svg",
    ):
        plots.append(("bench/read.svg", "Read time against the number of segments"))
    if _plot(memory, "peak memory (MiB)", "Peak memory of the reading process", figures / "memory.svg"):
        plots.append(("bench/memory.svg", "Peak memory against the number of segments"))
    if _encoding_bars(study, figures / "encodings.svg"):
        plots.append(
            (
                "bench/encodings.svg",
                "What label maps and compression buy, 104 organs on 512x512x300: "
                "file size and the reference decoder's read time per encoding",
            )
        )
    by_case: dict[str, list[BenchRow]] = defaultdict(list)
    for r in rows:
        by_case[r.case].append(r)
    limits = format_limits(rows)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("format-study.html.j2").render(
        run=doc.run,
        tools=doc.tools,
        by_case=dict(sorted(by_case.items())),
        plots=plots,
        overhead=doc.run.harness_overhead,
        limits=limits,
        machine=doc.run.machine,
        lower_bounds=sorted({f"{r.tool} on {r.case}" for r in rows if r.own_lower_bound}),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "format-study.html"
    tmp = target.with_name("format-study.html.part")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(target)
    return target
