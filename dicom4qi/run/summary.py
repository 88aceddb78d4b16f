"""Pass counts by feature: how each tool fares on the cases that exercise each feature.

A read cell counts for every feature its case exercises. Only cells that were
really tried count (PASS, FAIL, ERROR, CRASH, TIMEOUT); UNSUPPORTED and SKIPPED
cells are counted apart, never as passes; DISPUTED cells (no verdict could be
given honestly) and a reader's refusal of an object written wrong count neither way.

Blame goes where the fault is: a producer's wrong object is its write's FAIL; a
reader that decodes that object faithfully is the reader's PASS (judged against
what the object holds, :mod:`dicom4qi.judge.content`), so reader rates count only
the readers' own faults. The interop score counts only objects written right.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from dicom4qi.model.results import Record, ResultsDocument, Status

__all__ = ["FeatureCount", "by_feature", "harness_overhead", "interop_score"]

TRIED = frozenset({Status.PASS, Status.FAIL, Status.ERROR, Status.CRASH, Status.TIMEOUT})


@dataclass
class FeatureCount:
    """Cells of one tool on one feature."""

    passed: int = 0
    tried: int = 0
    untried: int = 0
    #: Tried, but charged to nobody: DISPUTED, or a refusal of an object its producer wrote wrong.
    uncharged: int = 0
    failed_cases: set[str] = field(default_factory=set)

    @property
    def rate(self) -> float | None:
        return self.passed / self.tried if self.tried else None

    def add(self, r: Record) -> None:
        if not r.charged:
            self.uncharged += 1
        elif r.status in TRIED:
            self.tried += 1
            if r.status is Status.PASS:
                self.passed += 1
            else:
                self.failed_cases.add(r.case)
        else:
            self.untried += 1


def _graded(doc: ResultsDocument, step: str) -> list[Record]:
    return [r for r in doc.records if r.step == step and r.tier not in ("negative", "external")]


def by_feature(doc: ResultsDocument, role: str = "consumer") -> dict[str, dict[str, FeatureCount]]:
    """feature -> tool -> counts; ``role`` "consumer" counts reads, "producer" writes, "validator" validations."""
    step = {"consumer": "read", "producer": "write", "validator": "validate"}[role]
    out: dict[str, dict[str, FeatureCount]] = defaultdict(lambda: defaultdict(FeatureCount))
    for r in _graded(doc, step):
        tool = r.producer if role == "producer" else r.consumer
        if tool is None:
            continue
        for f in r.features:
            out[f][tool].add(r)
    return {f: dict(v) for f, v in sorted(out.items())}


def interop_score(doc: ResultsDocument, tools: list[str]) -> dict[str, tuple[int, int]]:
    """feature -> (objects every listed reader decoded right, objects of that feature written right).

    An object counts when its write is PASS (checked for content: a wrong object is its producer's
    fault, scored on the producer's write, not here); it scores when every reader in ``tools`` passed
    it (a reader that did not try it, for any reason, does not pass it).
    """
    written = {(r.case, r.producer) for r in _graded(doc, "write") if r.status is Status.PASS}
    reads: dict[tuple[str, str], dict[str, Status]] = defaultdict(dict)
    features: dict[tuple[str, str], list[str]] = {}
    for r in _graded(doc, "read"):
        if r.consumer in tools and r.seg is not None and (r.case, r.producer) in written:
            reads[(r.case, r.producer)][r.consumer] = r.status
            features[(r.case, r.producer)] = r.features
    score: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for key, statuses in reads.items():
        ok = all(statuses.get(t) is Status.PASS for t in tools)
        for f in features[key]:
            score[f][1] += 1
            score[f][0] += ok
    return {f: (a, b) for f, (a, b) in sorted(score.items())}


def harness_overhead(doc: ResultsDocument) -> dict[str, float]:
    """The time a run spent outside the tools' own processes.

    ``slots`` is the run's elapsed time times its workers; ``tools`` the wall time of every
    tool call (writes, reads, validations); what is left is the harness: synthesis, comparison,
    bookkeeping, and workers idle at the end. Empty when the run has not finished.
    """
    from datetime import datetime

    if not doc.run.finished:
        return {}
    elapsed = (datetime.fromisoformat(doc.run.finished) - datetime.fromisoformat(doc.run.started)).total_seconds()
    slots = elapsed * max(1, doc.run.workers)
    tools = sum(r.wall_s or 0.0 for r in doc.records if r.step in ("write", "read", "validate"))
    out = {
        "elapsed_s": round(elapsed, 1),
        "workers": float(doc.run.workers),
        "tool_wall_s": round(tools, 1),
        "outside_s": round(max(slots - tools, 0.0), 1),
        "share": round(max(slots - tools, 0.0) / slots, 4) if slots else 0.0,
    }
    if doc.run.harness_cpu_s is not None:
        out["harness_cpu_s"] = doc.run.harness_cpu_s
    return out
