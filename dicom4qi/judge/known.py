"""Known issues, as data: which upstream bug explains which failing cell.

``corpus/known-issues/*.toml`` holds one file per upstream bug (or per fault that has no upstream issue yet):
the tool at fault, the releases it affects where known, the upstream issue or pull request, a title, and the
cells it explains (``[[match]]``: step, producer and consumer globs, case globs, features the case must
have, the statuses, and a regular expression searched in the cell's message). The report marks every failing
cell **known** (with its link) or **new**, lists each tool's known issues with the cells they explain, and
shows a known issue whose scope was run without a matching failure as **possibly fixed**.

Matching happens when the report is drawn, so a known issue filed today explains yesterday's results too.
``dicom4qi corpus lint`` checks these files like case files (:func:`load_known_issues`).
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, field_validator

from dicom4qi.model.results import Record, Status

__all__ = [
    "KnownIssue",
    "KnownIssueError",
    "Match",
    "error_texts",
    "explained_errors",
    "load_known_issues",
    "matches",
    "cell_release",
    "release_in_cell",
    "schema_text",
    "version_affected",
]

FAILING = (Status.FAIL, Status.ERROR, Status.CRASH, Status.TIMEOUT)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Match(_Model):
    """Which cells a known issue explains: every field given must hold."""

    step: Literal["write", "read", "validate"] = Field(description="The cell's step.")
    producers: list[str] = Field(default_factory=list, description="Globs of producer names (empty: any).")
    consumers: list[str] = Field(default_factory=list, description="Globs of consumer or validator names (empty: any).")
    cases: list[str] = Field(
        default_factory=list, description="Globs of case ids, e.g. 'quick/labelmap-*' (empty: any)."
    )
    features: list[str] = Field(default_factory=list, description="Features the cell's case must all have.")
    statuses: list[Status] = Field(
        default_factory=lambda: list(FAILING), description="The cell's status is one of these."
    )
    message: str = Field(
        min_length=1, max_length=500, description="A regular expression searched in the cell's message."
    )

    @field_validator("message")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return v

    @field_validator("statuses")
    @classmethod
    def _failing(cls, v: list[Status]) -> list[Status]:
        bad = [s.value for s in v if s not in FAILING]
        if bad or not v:
            raise ValueError(
                f"a known issue explains failing cells only (FAIL, ERROR, CRASH, TIMEOUT), not {bad or 'none'}"
            )
        return v


class KnownIssue(_Model):
    """One upstream bug, or one fault with no upstream issue yet."""

    id: str = Field("", description="The file's name without .toml (set when loaded).")
    title: str = Field(min_length=3, max_length=200)
    tool: str = Field(
        min_length=1, max_length=64, description="The tool at fault, as the grid names it (e.g. ohif, dcmqi)."
    )
    upstream: HttpUrl | Literal["none"] = Field(
        description="The upstream issue or pull request that reports it; 'none': no upstream issue yet (never a guess)."
    )
    related: list[HttpUrl] = Field(
        default_factory=list, description="Other threads that bear on it (fixes, duplicates)."
    )
    affected: str | None = Field(
        None,
        description="Affected releases of the tool at fault as a PEP 440 specifier, e.g. '<=3.13.2' (absent: every release seen).",
    )
    notes: str = Field("", max_length=2000)
    match: list[Match] = Field(min_length=1)

    @field_validator("affected")
    @classmethod
    def _specifier(cls, v: str | None) -> str | None:
        if v is not None:
            from packaging.specifiers import InvalidSpecifier, SpecifierSet

            try:
                SpecifierSet(v)
            except InvalidSpecifier as exc:
                raise ValueError(f"not a PEP 440 version specifier: {exc}") from None
        return v

    @field_validator("upstream", "related")
    @classmethod
    def _https(cls, v: object) -> object:
        urls = v if isinstance(v, list) else [v]
        for u in urls:
            if u != "none" and getattr(u, "scheme", "https") != "https":
                raise ValueError("links must be https")
        return v

    @property
    def link(self) -> str | None:
        return None if self.upstream == "none" else str(self.upstream)

    @property
    def upstream_text(self) -> str:
        if self.upstream == "none":
            return "no upstream issue yet"
        m = re.match(r"https://github\.com/([^/]+/[^/]+)/(issues|pull)/(\d+)", str(self.upstream))
        return f"{m.group(1)}#{m.group(3)}" if m else str(self.upstream)


class KnownIssueError(Exception):
    def __init__(self, path: Path, field: str, reason: str) -> None:
        self.path, self.field, self.reason = path, field, reason
        super().__init__(f"{path}: {field}: {reason}")


def load_known_issues(
    folder: Path,
    *,
    features: dict[str, str] | None = None,
    case_ids: Iterable[str] | None = None,
    tool_names: Iterable[str] | None = None,
) -> tuple[list[KnownIssue], list[KnownIssueError]]:
    """Every known issue in ``folder``, and what is wrong with the files that are not usable.

    With ``features``, ``case_ids`` and ``tool_names`` (the linter gives them), a feature that does not
    exist, a case glob that matches no case and a tool glob that matches no adapter are errors too.
    """
    good: list[KnownIssue] = []
    bad: list[KnownIssueError] = []
    cases = list(case_ids) if case_ids is not None else None
    tools = list(tool_names) if tool_names is not None else None
    for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            bad.append(KnownIssueError(path, "(file)", f"not valid TOML: {exc}"))
            continue
        if "id" in data:
            bad.append(KnownIssueError(path, "id", "the id is the file's name; do not set it"))
            continue
        try:
            issue = KnownIssue.model_validate({**data, "id": path.stem})
        except ValidationError as exc:
            for e in exc.errors()[:5]:
                bad.append(KnownIssueError(path, ".".join(map(str, e["loc"])) or "(top)", e["msg"]))
            continue
        problems = []
        for i, m in enumerate(issue.match):
            where = f"match.{i}"
            if features is not None:
                problems += [
                    (f"{where}.features", f"unknown feature {f!r} (see corpus/features.txt)")
                    for f in m.features
                    if f not in features
                ]
            if cases is not None:
                problems += [
                    (f"{where}.cases", f"{g!r} matches no case")
                    for g in m.cases
                    if not any(fnmatch.fnmatchcase(c, g) for c in cases)
                ]
            if tools is not None:
                for key in ("producers", "consumers"):
                    # a glob with a parameter (ohif@*, dcmqi+*) names releases or variants of an adapter
                    problems += [
                        (f"{where}.{key}", f"{g!r} matches no adapter")
                        for g in getattr(m, key)
                        if not any(
                            fnmatch.fnmatchcase(t, g) or fnmatch.fnmatchcase(t, re.split(r"[@+]", g)[0]) for t in tools
                        )
                    ]
        if problems:
            bad += [KnownIssueError(path, f, r) for f, r in problems]
            continue
        good.append(issue)
    return good, bad


def release_in_cell(at_fault: str, column: str, versions: Mapping[str, str | None]) -> str | None:
    """The release of the tool at fault that a cell ran: the column's own where the column is a release of that tool
    (``cornerstone@5.6.8`` for a cornerstone issue), else that tool's version in the run (a dcmjs issue seen through
    another column), else the column's."""
    if column.partition("@")[0] == at_fault:
        return versions.get(column, versions.get(at_fault))
    return versions.get(at_fault, versions.get(column))


def cell_release(issue: KnownIssue, rec: Record, versions: Mapping[str, str | None]) -> str | None:
    """The release of ``issue``'s tool that the cell ``rec`` ran (its column: the producer of a write, else the
    consumer), for :func:`matches`; ``versions`` is each tool's version by name, from the run's handshakes."""
    own = rec.producer if rec.step == "write" else rec.consumer or ""
    return release_in_cell(issue.tool, own, versions)


def version_affected(issue: KnownIssue, version: str | None) -> bool:
    """Whether a tool's version lies in the issue's affected releases (an unknown or odd version: yes)."""
    if issue.affected is None or not version:
        return True
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        v = Version(version.split()[0])
    except InvalidVersion:
        return True
    return v in SpecifierSet(issue.affected, prereleases=True)


def in_scope(m: Match, rec: Record) -> bool:
    """Whether a cell is one the match is about (whatever its status and message)."""
    if rec.step != m.step:
        return False
    if m.producers and not any(fnmatch.fnmatchcase(rec.producer, g) for g in m.producers):
        return False
    if m.consumers and not any(fnmatch.fnmatchcase(rec.consumer or "", g) for g in m.consumers):
        return False
    if m.cases and not any(fnmatch.fnmatchcase(rec.case, g) for g in m.cases):
        return False
    return all(f in rec.features for f in m.features)


def matches(issue: KnownIssue, rec: Record, version: str | None) -> bool:
    """Whether the known issue explains this cell (a validator's cell with errors: at least one of them)."""
    if not version_affected(issue, version):
        return False
    if error_texts(rec):
        return bool(explained_errors(issue, rec, version))
    return any(in_scope(m, rec) and rec.status in m.statuses and re.search(m.message, rec.message) for m in issue.match)


def error_texts(rec: Record) -> list[str]:
    """A validator's cell: each error finding as ``path: message`` (what a known issue's regex is searched in)."""
    if rec.step != "validate" or rec.status is not Status.FAIL:
        return []
    return [f"{f.path}: {f.message}" if f.path else f.message for f in rec.findings if f.severity == "error"]


def explained_errors(issue: KnownIssue, rec: Record, version: str | None) -> set[int]:
    """Which of a validator cell's errors (indices into :func:`error_texts`) the known issue explains.

    A validator's cell may hold errors of several causes (one the producer's, one the validator's own): each
    error is explained on its own, and the cell is known only when every error is (see ``Cell.unexplained``).
    """
    if not version_affected(issue, version):
        return set()
    texts = error_texts(rec)
    out: set[int] = set()
    for m in issue.match:
        if in_scope(m, rec) and rec.status in m.statuses:
            out |= {i for i, t in enumerate(texts) if re.search(m.message, t)}
    return out


@dataclass
class Explained:
    """A known issue against the cells of one report."""

    issue: KnownIssue
    cells: list[Record]
    in_scope: int

    @property
    def state(self) -> str:
        if self.cells:
            return "seen"
        return "possibly fixed" if self.in_scope else "not run"


def schema_text() -> str:
    import json

    schema = KnownIssue.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dicom4qi known issue"
    schema["properties"].pop("id", None)
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
