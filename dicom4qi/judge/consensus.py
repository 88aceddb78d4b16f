"""Verdicts without truth: each reader against the majority of independent readers, never against one dissenter.

For an object with no truth (``run --external``), every reader's decoding is compared with every other's
(:func:`dicom4qi.judge.compare.agreement`), and the decodings fall into groups that agree. Readers that share
their decoding code are one **family** (dcmqi and ``dcmqi@mergeSegments`` and Slicer, which runs dcmqi; every
OHIF release; declared by the adapter, :attr:`dicom4qi.adapters.contract.Adapter.family`) and cast **one vote**: for
the group its members fall in, or none at all when its members disagree among themselves (the family then
abstains; each member is still judged).

- With at least :data:`MIN_VOTES` votes and a group that holds a strict majority of them, a reader in that
  group is PASS ("agrees with the majority: ...") and a reader outside it is FAIL, with its first difference
  from the majority and who formed it.
- Otherwise no majority exists and every read is DISPUTED: no pass, no blame.

Agreement with a majority is not truth: the cells say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dicom4qi.judge.compare import agreement
from dicom4qi.model.decoded import Decoded
from dicom4qi.model.results import Check, CheckStatus, Status

__all__ = ["MIN_VOTES", "Judgement", "consensus"]

#: The fewest independent votes (families) from which a majority may judge a reader.
MIN_VOTES = 3


@dataclass
class Judgement:
    status: Status
    message: str
    checks: list[Check] = field(default_factory=list)


def _groups(names: list[str], agree: dict[tuple[str, str], list[str]]) -> list[list[str]]:
    """Readers grouped by agreement: each joins the first group whose first member it agrees with."""
    groups: list[list[str]] = []
    for name in names:
        for g in groups:
            if not agree[(g[0], name)]:
                g.append(name)
                break
        else:
            groups.append([name])
    return groups


def consensus(decodings: Mapping[str, Decoded], families: Mapping[str, str], *, labelmap: bool) -> dict[str, Judgement]:
    """Judge every reader's decoding of one object by the majority of independent votes (see the module)."""
    names = list(decodings)
    diffs: dict[tuple[str, str], list[str]] = {}
    for i, a in enumerate(names):
        diffs[(a, a)] = []
        for b in names[i + 1 :]:
            problems = agreement(decodings[a], decodings[b], labelmap=labelmap)
            diffs[(a, b)] = problems
            diffs[(b, a)] = problems
    groups = _groups(names, diffs)
    group_of = {n: gi for gi, g in enumerate(groups) for n in g}
    family_of = {n: families.get(n, n) for n in names}
    votes: dict[str, int | None] = {}  # family -> the group it votes for (None: abstains)
    for fam in dict.fromkeys(family_of.values()):
        held = {group_of[n] for n in names if family_of[n] == fam}
        votes[fam] = held.pop() if len(held) == 1 else None
    cast = {f: g for f, g in votes.items() if g is not None}
    tally: dict[int, list[str]] = {}
    for fam, g in cast.items():
        tally.setdefault(g, []).append(fam)
    majority = None
    if len(cast) >= MIN_VOTES:
        best = max(tally, key=lambda g: len(tally[g]))
        if 2 * len(tally[best]) > len(cast):
            majority = best
    abstained = [f for f, g in votes.items() if g is None]
    out: dict[str, Judgement] = {}
    for name in names:
        checks = [
            Check(
                name=f"agrees-with-{other}",
                status=CheckStatus.FAIL if diffs[(name, other)] else CheckStatus.PASS,
                message="; ".join(diffs[(name, other)])[:500],
            )
            for other in names
            if other != name
        ]
        if majority is None:
            split = "; ".join(f"{', '.join(g)}" for g in groups)
            why = (
                f"only {len(cast)} independent vote(s), at least {MIN_VOTES} are needed"
                if len(cast) < MIN_VOTES
                else f"no group holds a strict majority of the {len(cast)} independent votes"
            )
            msg = f"disputed: {why}; the readers decode it as: {split}" + (
                f" (families split among themselves, not voting: {', '.join(abstained)})" if abstained else ""
            )
            checks.insert(0, Check(name="consensus", status=CheckStatus.NOT_CHECKED, message=msg[:500]))
            out[name] = Judgement(Status.DISPUTED, msg[:900], checks)
            continue
        formed = tally[majority]
        members = [n for n in groups[majority]]
        who = f"{len(formed)} of {len(cast)} independent votes ({', '.join(formed)}; readers {', '.join(members)})"
        if group_of[name] == majority:
            msg = f"agrees with the majority: {who} (agreement, not truth)"
            checks.insert(0, Check(name="consensus", status=CheckStatus.PASS, message=msg[:500]))
            out[name] = Judgement(Status.PASS, msg, checks)
        else:
            rep = groups[majority][0]
            first = (agreement(decodings[rep], decodings[name], labelmap=labelmap) or ["differs"])[0]
            msg = f"disagrees with the majority, {who}; first difference ({rep} vs {name}): {first}"
            checks.insert(0, Check(name="consensus", status=CheckStatus.FAIL, message=msg[:500]))
            out[name] = Judgement(Status.FAIL, msg[:900], checks)
    return out
