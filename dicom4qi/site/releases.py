"""The Releases page (``releases.html``): which release of each tool supports what, since when, and how fast.

caniuse-style, from the sweeps (:mod:`dicom4qi.run.sweep`, ``reports/sweeps/<tool>/``). Per tool and side
(reading, writing):

- a table of features by release: passed/tried cells of the feature's cases (UNSUPPORTED and SKIPPED apart,
  never passes), coloured by how much passes;
- **since**: the first release from which the feature passes in every later release swept;
- **regressed** and **fixed** marks where a release does worse, or better again, than the release before it, with
  the cells that changed and the known issues (``corpus/known-issues``) that explain the failing side;
- plots of the whole-process read (and write) time and peak memory against release, on the body CT's 104 organs
  (BINARY, LABELMAP) and the 1000-segment label map, with nibabel's ``.nii.gz`` read of the same labels beside them.

Releases that are not available (an adapter that cannot drive them, a release that does not install) are columns
too, with the reason: a missing release is never a pass.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError

from dicom4qi.judge.known import KnownIssue, cell_release, load_known_issues, matches
from dicom4qi.model.results import Record, ResultsDocument, Status, ToolInfo
from dicom4qi.paths import FEATURES_FILE, corpus_file
from dicom4qi.run.summary import TRIED
from dicom4qi.run.sweep import version_key
from dicom4qi.site.files import TEMPLATES
from dicom4qi.site.study import _pyplot, _save

__all__ = ["FeatureRow", "Release", "ToolReleases", "load_sweeps", "releases_of", "render_releases"]

#: The benchmark cases plotted against release, with their legend.
TIMED = {
    "full/body-104-binary": "104 organs, BINARY",
    "full/body-104-labelmap": "104 organs, LABELMAP",
    "full/body-1000-labelmap": "1000 segments, LABELMAP",
}


@dataclass
class Release:
    """One column: a release of the tool as a run's handshake saw it."""

    column: str
    version: str
    available: bool
    reason: str = ""
    passed: int = 0
    tried: int = 0


@dataclass
class FeatureCell:
    passed: int = 0
    tried: int = 0
    untried: int = 0
    failing: list[Record] = field(default_factory=list)
    #: case -> the cell's record, for every case tried (what a release broke or mended is read from these)
    tried_cases: dict[str, Record] = field(default_factory=dict)

    @property
    def state(self) -> str:
        """``pass``, ``partial``, ``fail``, or ``none`` (nothing tried: unsupported, skipped, unavailable)."""
        if not self.tried:
            return "none"
        return "pass" if self.passed == self.tried else "fail" if self.passed == 0 else "partial"


@dataclass
class Change:
    """What a release changed on a feature against the release before it that ran: the cases it fails that the
    earlier one passed (``broke``: regressed) and those it passes that the earlier one failed (``mended``: fixed)."""

    release: str
    previous: str
    broke: list[str]
    mended: list[str]
    known: list[KnownIssue]  # what explains the failing side of each (this release's, or the earlier one's)

    @property
    def kind(self) -> str:
        return "regressed" if self.broke else "fixed"


@dataclass
class ReleaseChange:
    """What one release changed against the release before it that ran, over every case: the cases that broke and
    the cases that were mended, with the features they touch and the known issues that explain the failing side."""

    release: str
    previous: str
    broke: list[str]
    mended: list[str]
    broke_features: list[str]
    mended_features: list[str]
    broke_known: list[KnownIssue]
    mended_known: list[KnownIssue]


@dataclass
class FeatureRow:
    feature: str
    cells: list[FeatureCell]
    since: str | None = None
    changes: dict[int, Change] = field(default_factory=dict)  # column index -> change


@dataclass
class TimingPoint:
    column: str
    release: str
    case: str
    operation: str
    status: Status
    seconds: float | None
    peak_mb: float | None
    ratio_nifti: float | None
    message: str = ""


@dataclass
class ToolReleases:
    """One tool's side (reading or writing) across its releases."""

    tool: str
    role: str
    run_id: str
    releases: list[Release]
    rows: list[FeatureRow]
    timings: list[TimingPoint] = field(default_factory=list)
    nifti: dict[str, float] = field(default_factory=dict)  # case -> nibabel's .nii.gz read
    plots: list[tuple[str, str]] = field(default_factory=list)
    bench_run: str | None = None
    changes: list[ReleaseChange] = field(default_factory=list)


def _load(path: Path) -> ResultsDocument | None:
    try:
        return ResultsDocument.load(path)
    except (ValidationError, ValueError, OSError):
        return None


def load_sweeps(folder: Path) -> dict[str, dict[str, ResultsDocument]]:
    """tool -> {"consumer" | "producer" | "bench": the latest document} from ``folder`` (``reports/sweeps``)."""
    out: dict[str, dict[str, ResultsDocument]] = {}
    for tool_dir in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        docs = {}
        for side in ("consumer", "producer", "bench"):
            doc = _load(tool_dir / side / "latest.json")
            if doc is not None:
                docs[side] = doc
        if docs:
            out[tool_dir.name] = docs
    return out


def _releases(doc: ResultsDocument, tool: str, role: str) -> list[Release]:
    out = []
    for t in doc.tools:
        if t.role != role or not t.name.startswith(tool + "@"):
            continue
        param = t.name.partition("@")[2]
        out.append(_release(t, param))
    return sorted(out, key=lambda r: version_key(r.version))


def _same_release(asked: str, ran: str | None) -> bool:
    """Whether the version a column ran (its handshake's, e.g. '0.28.2' or '0.1.0 (pydicom 3.0.2)') is the release it
    is named for (PEP 440 equality: '3.14.0-beta.6' is '3.14.0b6')."""
    from packaging.version import InvalidVersion, Version

    if not ran:
        return False
    try:
        return Version(asked) == Version(ran.split()[0])
    except InvalidVersion:
        return asked == ran.split()[0]


def _release(t: ToolInfo, param: str) -> Release:
    checkout = param.startswith("path")
    version = t.version or param if checkout else param
    if t.available and not checkout and not _same_release(param, t.version):
        # Never shown as that release: the column ran something else (an adapter that ignored its parameter).
        return Release(t.name, version, False, f"the column ran {t.version or 'an unknown version'}, not {param}")
    return Release(
        column=t.name,
        version=version,
        available=t.available,
        reason="" if t.available else (t.error or t.reason or "not available"),
    )


def _plain(rec: Record, tool: str, role: str) -> Record:
    """The record as if its column were the plain tool's (known issues name ``highdicom``, not each release)."""
    return rec.model_copy(update={"consumer": tool} if role == "consumer" else {"producer": tool})


def _known_for(
    rec: Record, tool: str, role: str, versions: dict[str, str | None], issues: list[KnownIssue]
) -> list[KnownIssue]:
    """The known issues that explain a failing cell of a release column, as the grid matches them
    (:func:`dicom4qi.judge.known.cell_release`: the release of the issue's tool that the cell ran), whether the issue
    names the release's column (``highdicom@*``) or the plain tool (``highdicom``)."""
    plain = _plain(rec, tool, role)
    out = []
    for issue in issues:
        version = cell_release(issue, rec, versions)
        if matches(issue, rec, version) or matches(issue, plain, version):
            out.append(issue)
    return out


def releases_of(
    doc: ResultsDocument, tool: str, role: str, issues: list[KnownIssue], feature_order: list[str]
) -> ToolReleases:
    """The feature-by-release table of one side of a sweep."""
    step = "read" if role == "consumer" else "write"
    releases = _releases(doc, tool, role)
    index = {r.column: i for i, r in enumerate(releases)}
    cells: dict[str, list[FeatureCell]] = defaultdict(lambda: [FeatureCell() for _ in releases])
    for rec in doc.records:
        column = rec.consumer if role == "consumer" else rec.producer
        if rec.step != step or column not in index or rec.tier in ("negative", "external"):
            continue
        i = index[column]
        tried = rec.status in TRIED and rec.charged
        if tried:
            releases[i].tried += 1
            releases[i].passed += rec.status is Status.PASS
        for f in rec.features:
            c = cells[f][i]
            if not rec.charged:
                continue
            if rec.status in TRIED:
                c.tried += 1
                c.tried_cases[rec.case] = rec
                if rec.status is Status.PASS:
                    c.passed += 1
                else:
                    c.failing.append(rec)
            else:
                c.untried += 1
    versions = _versions(doc)
    order = [f for f in feature_order if f in cells] + sorted(set(cells) - set(feature_order))
    rows = []
    for f in order:
        row = FeatureRow(f, cells[f])
        row.since = _since(releases, row.cells)
        row.changes = _changes(releases, row.cells, tool, role, versions, issues)
        rows.append(row)
    side = ToolReleases(tool, role, doc.run.run_id, releases, rows)
    side.changes = _release_changes(doc, side, step, versions, issues)
    return side


def _versions(doc: ResultsDocument) -> dict[str, str | None]:
    """Each column's version as its handshake gave it (for known issues' affected releases)."""
    out: dict[str, str | None] = {}
    for t in doc.tools:
        out.setdefault(t.name, t.version)
    return out


def _broke_and_mended(now: dict[str, Record], before: dict[str, Record]) -> tuple[list[str], list[str]]:
    """Cases tried by both releases: those that passed before and fail now, and those that failed before and pass
    now (a case one of them did not try, UNSUPPORTED or SKIPPED, is neither)."""
    both = sorted(set(now) & set(before))
    broke = [c for c in both if now[c].status is not Status.PASS and before[c].status is Status.PASS]
    mended = [c for c in both if now[c].status is Status.PASS and before[c].status is not Status.PASS]
    return broke, mended


def _release_changes(
    doc: ResultsDocument, side: ToolReleases, step: str, versions: dict[str, str | None], issues: list[KnownIssue]
) -> list[ReleaseChange]:
    """Release by release, the cases it broke and mended against the release before it that ran."""
    by_column: dict[str, dict[str, Record]] = defaultdict(dict)
    for rec in doc.records:
        column = rec.consumer if side.role == "consumer" else rec.producer
        if rec.step == step and column and rec.charged and rec.status in TRIED:
            by_column[column][rec.case] = rec
    out = []
    previous: Release | None = None
    for r in side.releases:
        if not r.available:
            continue
        if previous is not None:
            now, before = by_column[r.column], by_column[previous.column]
            broke, mended = _broke_and_mended(now, before)
            if broke or mended:

                def known(recs: list[Record]) -> list[KnownIssue]:
                    found: dict[str, KnownIssue] = {}
                    for rec in recs:
                        for issue in _known_for(rec, side.tool, side.role, versions, issues):
                            found.setdefault(issue.id, issue)
                    return list(found.values())

                def features(recs: list[Record]) -> list[str]:
                    return sorted({f for rec in recs for f in rec.features})

                out.append(
                    ReleaseChange(
                        r.version,
                        previous.version,
                        broke,
                        mended,
                        features([now[c] for c in broke]),
                        features([before[c] for c in mended]),
                        known([now[c] for c in broke]),
                        known([before[c] for c in mended]),
                    )
                )
        previous = r
    return out


def _since(releases: list[Release], cells: list[FeatureCell]) -> str | None:
    """The first release from which every later release swept passes the feature (and an earlier one did not)."""
    states = [c.state for r, c in zip(releases, cells) if r.available]
    names = [r.version for r in releases if r.available]
    if not states or states[-1] != "pass":
        return None
    i = len(states) - 1
    while i > 0 and states[i - 1] in ("pass",):
        i -= 1
    return names[i] if i > 0 else None  # passes in the oldest release swept: no "since" to tell


def _changes(
    releases: list[Release],
    cells: list[FeatureCell],
    tool: str,
    role: str,
    versions: dict[str, str | None],
    issues: list[KnownIssue],
) -> dict[int, Change]:
    """Where a release broke or mended cases of the feature against the release before it that ran."""
    out: dict[int, Change] = {}
    previous: int | None = None
    for i, r in enumerate(releases):
        if not r.available:
            continue
        if previous is not None:
            now, before = cells[i].tried_cases, cells[previous].tried_cases
            broke, mended = _broke_and_mended(now, before)
            if broke or mended:
                known: dict[str, KnownIssue] = {}
                for rec in [now[c] for c in broke] + [before[c] for c in mended]:
                    for issue in _known_for(rec, tool, role, versions, issues):
                        known.setdefault(issue.id, issue)
                out[i] = Change(r.version, releases[previous].version, broke, mended, list(known.values()))
        previous = i
    return out


def _timings(
    bench: ResultsDocument, tool: str, role: str, releases: list[Release]
) -> tuple[list[TimingPoint], dict[str, float]]:
    step = "read" if role == "consumer" else "write"
    versions = {r.column: r.version for r in releases}
    points: list[TimingPoint] = []
    nifti: dict[str, float] = {}
    for rec in bench.records:
        if rec.producer == "nifti" and rec.consumer == "nibabel" and rec.bench is not None:
            nifti[rec.case] = rec.bench.median_wall_s
            continue
        column = rec.consumer if step == "read" else rec.producer
        if rec.step != step or column not in versions:
            continue
        b = rec.bench
        points.append(
            TimingPoint(
                column,
                versions[column],
                rec.case,
                step,
                rec.status,
                b.median_wall_s if b else None,
                b.median_peak_rss_mb if b else None,
                b.ratio_nifti if b else None,
                rec.message,
            )
        )
    return points, nifti


def timed_cases(side: ToolReleases) -> dict[str, str]:
    """The cases a side was timed on, with their legends: the body CT's first, then any other."""
    seen = {p.case for p in side.timings}
    return {c: TIMED[c] for c in TIMED if c in seen} | {c: c for c in sorted(seen - set(TIMED))}


def _timing_plot(side: ToolReleases, out: Path) -> list[tuple[str, str]]:
    """Read (or write) time and peak memory against release, one line per timed case, as two SVG panels."""
    names = [r.version for r in side.releases]
    if not side.timings or not names:
        return []
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11.0, 4.0))
    xs = {r.column: i for i, r in enumerate(side.releases)}  # by column: two columns may run one version
    markers = "os^vD<>ph*"
    for k, (case, label) in enumerate(timed_cases(side).items()):
        pts = sorted(((xs[p.column], p) for p in side.timings if p.case == case and p.column in xs), key=lambda t: t[0])
        good = [(x, p) for x, p in pts if p.seconds is not None and p.status is Status.PASS]
        if good:
            m = markers[k % len(markers)]
            a1.plot([x for x, _ in good], [p.seconds for _, p in good], marker=m, label=label, linewidth=1.6)
            a2.plot([x for x, _ in good], [p.peak_mb for _, p in good], marker=m, label=label, linewidth=1.6)
        for x, p in pts:
            if p.status is not Status.PASS:  # a failed or timed-out release: marked where the line would be
                a1.annotate(
                    p.status.value,
                    (x, 0.05),
                    xycoords=("data", "axes fraction"),
                    fontsize=7,
                    rotation=90,
                    color="#cf222e",
                    ha="center",
                )
        if case in side.nifti and side.role == "consumer":
            a1.axhline(side.nifti[case], linestyle=":", linewidth=1, color=f"C{k}")
    a1.set_yscale("log")
    a1.set_ylabel("whole-process time (s, log)")
    a1.set_title(
        f"{side.tool}: {'read' if side.role == 'consumer' else 'write'} time by release "
        "(dotted: nibabel reads .nii.gz)",
        fontsize=10,
    )
    a2.set_ylabel("peak memory (MiB)")
    a2.set_title("peak memory of the process", fontsize=10)
    for ax in (a1, a2):
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_xlim(-0.5, len(names) - 0.5)
        ax.grid(True, alpha=0.3)
    a2.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    path = out / "releases" / f"{side.tool}-{side.role}.svg"
    _save(fig, path)
    return [(f"releases/{path.name}", f"{side.tool}: whole-process time and peak memory per release on the body CT")]


def render_releases(
    sweeps: Path, out_dir: Path, *, known_issues: Path | None = None, features: Path | None = None
) -> Path:
    """Write ``releases.html`` (and its plots) from the sweeps under ``sweeps``; return its path."""
    from dicom4qi.model.case import load_features

    issues, issue_errors = load_known_issues(known_issues or corpus_file("known-issues"))
    feature_file = features or FEATURES_FILE
    described = load_features(feature_file) if feature_file.is_file() else {}
    sides: list[ToolReleases] = []
    for tool, docs in load_sweeps(sweeps).items():
        for role in ("consumer", "producer"):
            doc = docs.get(role)
            if doc is None:
                continue
            side = releases_of(doc, tool, role, issues, list(described))
            if "bench" in docs:
                side.timings, side.nifti = _timings(docs["bench"], tool, role, side.releases)
                side.bench_run = docs["bench"].run.run_id
                side.plots = _timing_plot(side, out_dir)
            sides.append(side)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    page = env.get_template("releases.html.j2").render(
        sides=sides, features=described, timed_cases=timed_cases, issue_errors=[str(e) for e in issue_errors]
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "releases.html"
    tmp = target.with_name("releases.html.part")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(target)
    return target
