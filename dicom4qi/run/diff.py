"""``dicom4qi diff OLD NEW``: two runs compared cell by cell, for the verdicts only.

A refactoring, an upgrade of the harness or a new machine must not change a verdict. This compares what a
verdict is made of: status, message, subchecks, basis, what the object holds, validator findings and the
reaction to a broken object. Timings, memory, artifacts and ids are left out, and run ids, temporary paths
UUIDs (a viewer's display sets) and durations inside messages are masked. Cells that only one run has are listed too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pydantic import BaseModel

from dicom4qi.model.results import Record, ResultsDocument

__all__ = ["CellDifference", "diff_runs"]

#: The parts of a record that make its verdict.
FIELDS = ("status", "message", "checks", "basis", "content", "findings", "reaction", "harness")

_MASKS = (
    (re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}"), "<run>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<uuid>"),
    (re.compile(r"/tmp/\S+"), "<tmp>"),
    (re.compile(r"\b\d+(?:\.\d+)? ?(?:s|ms|MiB|KiB)\b"), "<n>"),
)


@dataclass(frozen=True)
class CellDifference:
    """One cell whose verdict differs, or that only one of the runs has."""

    key: tuple[str, str, str | None, str]
    field: str
    old: str
    new: str


def _masked(text: str) -> str:
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    return text


def _part(rec: Record, name: str) -> str:
    value = getattr(rec, name)
    if isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    elif isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return _masked(json.dumps(value, sort_keys=True, default=str))


def _cells(doc: ResultsDocument) -> dict[tuple[str, str, str | None, str], Record]:
    return {(r.case, r.producer, r.consumer, r.step): r for r in doc.records}


def diff_runs(old: ResultsDocument, new: ResultsDocument) -> list[CellDifference]:
    """Every difference in the verdicts of two runs, in cell order."""
    a, b = _cells(old), _cells(new)
    out: list[CellDifference] = []
    for key in sorted(a.keys() | b.keys(), key=lambda k: tuple(p or "" for p in k)):
        if key not in b:
            out.append(CellDifference(key, "cell", a[key].status.value, "(absent)"))
            continue
        if key not in a:
            out.append(CellDifference(key, "cell", "(absent)", b[key].status.value))
            continue
        for name in FIELDS:
            x, y = _part(a[key], name), _part(b[key], name)
            if x != y:
                out.append(CellDifference(key, name, x, y))
    return out
