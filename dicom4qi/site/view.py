"""The view model of the dashboard: what its pages are drawn from.

The status vocabulary (symbols, meanings, which statuses are problems), the report's options, the records the
pages show (a grid cell, a row, a case, a badge, a file offered for download) and how values read on a page
(rates, sizes, durations, and untrusted text made visible as it is).
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup

from dicom4qi.judge.known import KnownIssue
from dicom4qi.model.results import Record, RunInfo, Status
from dicom4qi.paths import FEATURES_FILE, corpus_file

#: Symbols shown with the colour, so that the grid reads without colour too.
SYMBOLS = {
    Status.PASS: "✓",
    Status.FAIL: "✗",
    Status.ERROR: "!",
    Status.CRASH: "☠",
    Status.TIMEOUT: "◔",
    Status.DISPUTED: "?",
    Status.UNSUPPORTED: "–",
    Status.SKIPPED: "∅",
}
MEANINGS = {
    Status.PASS: "the call worked and every required check passed",
    Status.FAIL: "the call worked but the result is wrong",
    Status.ERROR: "the tool reported an error, exceeded its memory limit, or its output is unusable",
    Status.CRASH: "the process died without an answer",
    Status.TIMEOUT: "killed at the time limit",
    Status.DISPUTED: "no verdict can be given honestly: the independent decoders or readers disagree (no pass, no blame)",
    Status.UNSUPPORTED: "the tool declares that it does not support a feature of the case",
    Status.SKIPPED: "not run: the tool is not installed, or there is no object to read",
}
PROBLEM = frozenset({Status.FAIL, Status.ERROR, Status.CRASH, Status.TIMEOUT})
TRIED = PROBLEM | {Status.PASS}

#: Order of severity, worst first (tool pages list failures in this order).
SEVERITY = [Status.CRASH, Status.TIMEOUT, Status.ERROR, Status.FAIL]

WRITE = "write"  # the column of the producer's own write step

LIST_LIMIT = 400  # rows of long lists on one page (findings, failing cells, segments, history)

#: How rows of the grid are grouped: by segmentation type, then the objects without truth.
GROUPS = {
    "binary": "BINARY",
    "fractional": "FRACTIONAL",
    "labelmap": "LABELMAP",
    "other": "Other",
    "external": "Objects from the wild (their shipped truth, else agreement)",
    "negative": "Broken objects: the negative corpus (graded by reaction)",
}


@dataclass
class SiteOptions:
    """Where the report finds the corpus and built cases, and how much it copies into the site."""

    corpus: Path = corpus_file("cases")
    features: Path = FEATURES_FILE
    negative: Path = corpus_file("negative.toml")
    #: Another build folder to look for built cases in (each run's own build folder is tried first).
    build: Path | None = None
    #: The known issues (one TOML file per upstream bug), matched with the failing cells when the report is drawn.
    known_issues: Path = corpus_file("known-issues")
    #: Where the site will be published, for the badge snippets (e.g. https://org.github.io/dicom4qi).
    base_url: str | None = None
    copy_max_bytes: int = 5 * 2**20
    copy_total_bytes: int = 300 * 2**20
    history_runs: int = 12
    pictures: bool = True


def _rate_class(passed: int, tried: int) -> str:
    if not tried:
        return "rnone"
    r = passed / tried
    return "r100" if r >= 1 else "r90" if r >= 0.9 else "r70" if r >= 0.7 else "r40" if r >= 0.4 else "r0"


def _pct(passed: int, tried: int) -> str:
    return f"{math.floor(100 * passed / tried)}%" if tried else "—"


def _mib(n: float | None) -> str:
    if n is None:
        return "—"
    if n < 1024:
        return f"{int(n)} B"
    if n < 2**20:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 2**20:.1f} MiB"


def _seconds(s: float | None) -> str:
    if s is None:
        return "—"
    return f"{s:.2f} s" if s < 100 else f"{s:.0f} s"


#: Characters that reorder or hide text (bidirectional overrides and isolates, marks) and control characters:
#: a tool name or label holding them could make the dashboard show something else than it holds.
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\u200b-\u200d\ufeff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _neutral(value: Any) -> Any:
    """Text made visible as it is: bidi and control characters shown as their code points (Markup kept)."""
    if isinstance(value, str) and not isinstance(value, Markup):
        value = _BIDI.sub(lambda m: f"[U+{ord(m.group()):04X}]", value)
        value = _CONTROL.sub(lambda m: f"[U+{ord(m.group()):04X}]", value)
    elif isinstance(value, list):
        return [_neutral(v) for v in value]
    elif isinstance(value, dict):
        return {_neutral(k): _neutral(v) for k, v in value.items()}
    return value


def _js_data(name: str, value: Any) -> str:
    """A script that sets ``window[name]``; '<', '>' and '&' escaped so that no text can end a script."""
    text = json.dumps(_neutral(value), ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f"window.{name} = {text};\n"


@dataclass
class FileLink:
    """A file offered for download: its href in the site, or why it is not there."""

    label: str
    href: str | None
    note: str = ""


@dataclass
class Cell:
    """One record of the current grid, with where it came from and how it changed."""

    rec: Record
    run: RunInfo
    col: str
    href: str
    change: str | None = None
    prev: Record | None = None
    prev_run: RunInfo | None = None
    artifacts: list[FileLink] = field(default_factory=list)
    object: FileLink | None = None
    #: The known issues that explain this cell (failing cells only).
    known: list[KnownIssue] = field(default_factory=list)
    #: A validator's cell: which of its errors a known issue explains, and the text of those none explains.
    explained_errors: set[int] = field(default_factory=set)
    unexplained: list[str] = field(default_factory=list)
    rerun: str = ""

    @property
    def status(self) -> str:
        return self.rec.status.value

    @property
    def failing(self) -> bool:
        return self.rec.status in PROBLEM

    @property
    def novelty(self) -> str | None:
        """'known' or 'new' for a failing cell charged to its tool (None otherwise: a refusal of an object its
        producer wrote wrong is nobody's fault to explain)."""
        if not self.failing or not self.rec.charged:
            return None
        return "known" if self.known and not self.unexplained else "new"

    @property
    def object_wrong(self) -> bool:
        """A read of an object its producer wrote wrong, faithful (PASS) or refused (ERROR): not the reader's fault."""
        return self.rec.step == "read" and self.rec.basis == "object" and self.rec.status in (Status.PASS, Status.ERROR)

    @property
    def screenshots(self) -> list[FileLink]:
        return [a for a in self.artifacts if a.href and a.href.endswith(".png") and a.label != "difference"]

    @property
    def difference(self) -> FileLink | None:
        return next((a for a in self.artifacts if a.label == "difference" and a.href), None)


@dataclass
class Row:
    case: str
    tier: str
    features: list[str]
    producer: str
    group: str
    write: Cell | None
    cells: list[Cell | None]  # one per consumer column


@dataclass
class CaseInfo:
    id: str
    href: str
    tier: str
    description: str = ""
    standard: str | None = None
    features: list[str] = field(default_factory=list)
    params: list[tuple[str, str]] = field(default_factory=list)
    base: str | None = None  # a mutant's base case
    segments: list[dict[str, Any]] = field(default_factory=list)
    segments_total: int = 0
    picture: str | None = None
    picture_note: str = ""
    files: list[FileLink] = field(default_factory=list)
    fingerprint: str | None = None
    truth_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    graded: str = ""  # an object from the wild: the truth file(s) shipped beside it that its reads are graded against


@dataclass
class Badge:
    role: str
    name: str
    passed: int
    tried: int
    json_href: str
    svg_href: str

    @property
    def label(self) -> str:
        return f"{self.name} SEG {'write' if self.role == 'producer' else 'read'}"

    @property
    def message(self) -> str:
        return f"{_pct(self.passed, self.tried)} ({self.passed}/{self.tried})" if self.tried else "no data"

    @property
    def color(self) -> str:
        if not self.tried:
            return "lightgrey"
        r = self.passed / self.tried
        return (
            "brightgreen"
            if r >= 0.95
            else "green"
            if r >= 0.85
            else "yellowgreen"
            if r >= 0.7
            else "yellow"
            if r >= 0.5
            else "orange"
            if r >= 0.3
            else "red"
        )

    def endpoint(self) -> dict[str, Any]:
        return {"schemaVersion": 1, "label": self.label, "message": self.message, "color": self.color}


_BADGE_HEX = {
    "brightgreen": "#4c1",
    "green": "#97ca00",
    "yellowgreen": "#a4a61d",
    "yellow": "#dfb317",
    "orange": "#fe7d37",
    "red": "#e05d44",
    "lightgrey": "#9f9f9f",
}


def _badge_svg(b: Badge) -> str:
    """A flat badge drawn locally, so that the site shows it offline (shields.io draws the same from the JSON)."""
    lw, rw = 7 * len(b.label) + 12, 7 * len(b.message) + 12
    label, message = html.escape(b.label), html.escape(b.message)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{lw + rw}" height="20" role="img" '
        f'aria-label="{label}: {message}"><title>{label}: {message}</title>'
        f'<rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{rw}" height="20" fill="{_BADGE_HEX[b.color]}"/>'
        f'<g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11" text-anchor="middle">'
        f'<text x="{lw / 2}" y="14">{label}</text><text x="{lw + rw / 2}" y="14">{message}</text></g></svg>\n'
    )
