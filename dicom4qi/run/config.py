"""What a run is told and what it reports: its configuration, its summary, its progress, and its choice of cases."""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from dicom4qi.adapters.contract import DEFAULTS
from dicom4qi.model.case import SYNTHESIS_VERSION, LoadedCase
from dicom4qi.paths import FEATURES_FILE, corpus_file
from dicom4qi.paths import build as build_path
from dicom4qi.paths import reports as reports_path

__all__ = ["NO_CONSUMER", "Progress", "ProgressSink", "RunConfig", "RunSummary", "corpus_fingerprint", "select_cases"]

#: ``--consumer none``: no consumer reads; the run only writes and validates (a CI matrix's produce step,
#: whose objects the shards then read with ``--resume``).
NO_CONSUMER = "none"


@dataclass
class RunConfig:
    """Everything a run is told (the CLI's options)."""

    corpus: Path = corpus_file("cases")
    features: Path = FEATURES_FILE
    build: Path = build_path()
    results: Path = reports_path("results")
    tiers: list[str] = field(default_factory=lambda: ["quick"])
    cases: list[str] = field(default_factory=list)
    producers: list[str] = field(default_factory=lambda: list(DEFAULTS["producer"]))
    consumers: list[str] = field(default_factory=lambda: list(DEFAULTS["consumer"]))
    workers: int = 1
    timeout_s: float = 600.0
    memory_mb: float = 8192.0
    resume: str | None = None
    run_id: str | None = None
    #: A folder of SEG objects written elsewhere: read by every consumer, judged by agreement.
    external: Path | None = None
    #: Run dciodvfy on every produced object, with this time limit per object.
    validate: bool = True
    validate_timeout_s: float = 300.0
    #: Time limit per call on the negative corpus (a hang there is a finding, not a wait).
    negative_timeout_s: float = 60.0
    keep_decoded: bool = False
    #: Decode every produced object with the check decoders and judge what it holds (dicom4qi.judge.content).
    verify_writes: bool = True
    #: Run adapters on cases they do not claim (to find out what a tool can do); never used for the grid.
    ignore_claims: bool = False
    #: Fork each call from a long-lived server that has the tool imported (:mod:`dicom4qi.process.forkserver`)
    #: instead of starting a new interpreter; False: every call a new process (as in the benchmark).
    fork_servers: bool = True

    def __post_init__(self) -> None:
        """Limits are real: finite and positive, or the run does not start (the CLI says so as a usage error)."""
        import math

        for name in ("timeout_s", "memory_mb", "validate_timeout_s", "negative_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite positive number, not {value!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be a positive whole number, not {self.workers!r}")


@dataclass
class RunSummary:
    path: Path
    counts: dict[str, int]
    case_errors: list[str]
    harness_peak_rss_mb: float


class Progress:
    """What the runner tells whoever watches (the CLI shows a rich progress bar)."""

    def start(self, phase: str, total: int) -> None: ...
    def advance(self, text: str) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self) -> None: ...


class ProgressSink(Protocol):
    """The type of whoever watches: a :class:`Progress`, or anything with its methods (the CLI's rich bars)."""

    def start(self, phase: str, total: int) -> None: ...
    def advance(self, text: str) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self) -> None: ...


def select_cases(cases: Iterable[LoadedCase], tiers: list[str], patterns: list[str]) -> list[LoadedCase]:
    out = []
    for c in cases:
        if tiers and c.case.tier.value not in tiers:
            continue
        if patterns and not any(fnmatch.fnmatch(c.id, p) or c.id.endswith("/" + p) or c.id == p for p in patterns):
            continue
        out.append(c)
    return out


def corpus_fingerprint(cases: list[LoadedCase]) -> str:
    h = hashlib.sha256(f"synthesis-{SYNTHESIS_VERSION}".encode())
    for c in sorted(cases, key=lambda c: c.id):
        h.update(c.id.encode())
        h.update(c.path.read_bytes())
    return h.hexdigest()[:16]
