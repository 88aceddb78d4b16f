"""The options several commands share, each defined once here with its one default.

A command adds an option by calling its function; the ``help`` argument says what the option means for that
command (what a time limit applies to, what a build folder is read for), never another default. Every default
path comes from ``dicom4qi.paths`` (the project's folders), never from the working directory.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from dicom4qi.paths import FEATURES_FILE, corpus_file
from dicom4qi.paths import build as build_path
from dicom4qi.paths import reports as reports_path

__all__ = [
    "JOBS",
    "LATEST_RESULTS",
    "MAX_JOBS",
    "MAX_MEMORY_MB",
    "MAX_TIMEOUT_S",
    "MEMORY_MB",
    "MIN_MEMORY_MB",
    "RESULTS_DIR",
    "SUBMISSIONS_DIR",
    "TIERS",
    "TIMEOUT_S",
    "VALIDATE_TIMEOUT_S",
    "add_build",
    "add_cases",
    "add_consumers",
    "add_corpus",
    "add_corpus_options",
    "add_features",
    "add_jobs",
    "add_known_issues",
    "add_memory",
    "add_producers",
    "add_results_out",
    "add_tiers",
    "add_timeout",
    "add_validation",
    "megabytes",
    "seconds",
    "unknown_adapters",
    "absolute_exec",
    "workers",
]

#: Bounds of the limits a user may ask for: finite, positive, and sane.
MAX_TIMEOUT_S = 7 * 24 * 3600.0
MIN_MEMORY_MB, MAX_MEMORY_MB = 64.0, 4 * 2**20
MAX_JOBS = 256

#: The one default of each shared limit, whatever the command.
TIMEOUT_S = 600.0
MEMORY_MB = 8192.0
VALIDATE_TIMEOUT_S = 300.0
JOBS = 1

#: Default folders and files, the project's own.
RESULTS_DIR = reports_path("results")
LATEST_RESULTS = reports_path("results", "latest.json")
SUBMISSIONS_DIR = reports_path("submissions")

#: The tiers a run selects from (negative: the broken objects of corpus/negative.toml, alone).
TIERS = ("quick", "full", "stress", "negative")


def _bounded(kind: type, low: float, high: float, what: str) -> Callable[[str], float | int]:
    """An argparse type: a finite number of ``kind`` in [low, high]; anything else is a usage error (exit 2)."""

    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not a {what} (from {low:g} to {high:.0f})")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


seconds = _bounded(float, 0.001, MAX_TIMEOUT_S, "time limit in seconds")
megabytes = _bounded(float, MIN_MEMORY_MB, MAX_MEMORY_MB, "memory limit in MiB")
workers = _bounded(int, 1, MAX_JOBS, "number of workers")


def absolute_exec(specs: list[str] | None) -> list[str] | None:
    """``exec:FOLDER[@param]`` with FOLDER made absolute: the calls run in folders of their own, not in the user's."""
    if specs is None:
        return None
    out = []
    for spec in specs:
        if spec.startswith("exec:"):
            folder, sep, param = spec[5:].partition("@")
            spec = f"exec:{Path(folder).absolute()}{sep}{param}"
        out.append(spec)
    return out


def unknown_adapters(producers: list[str] | None, consumers: list[str] | None) -> list[str]:
    """Usage errors for adapter names that name nothing (checked before anything runs)."""
    from dicom4qi.adapters.contract import unknown_spec
    from dicom4qi.run.runner import NO_CONSUMER

    problems = [unknown_spec("producer", p) for p in producers or []]
    problems += [unknown_spec("consumer", c) for c in consumers or [] if c != NO_CONSUMER]
    return [p for p in problems if p]


# --------------------------------------------------------------------------- the corpus


def add_corpus(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--corpus", type=Path, default=corpus_file("cases"), help="folder of case files (default: %(default)s)"
    )


def add_known_issues(
    p: argparse.ArgumentParser,
    help: str = "folder of known-issue files, one per upstream bug (default: known-issues beside the corpus folder)",
) -> None:
    p.add_argument("--known-issues", type=Path, default=None, help=help)


def add_features(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--features", type=Path, default=FEATURES_FILE, help="controlled feature list (default: %(default)s)"
    )


def add_corpus_options(p: argparse.ArgumentParser) -> None:
    """``--corpus``, ``--known-issues`` and ``--features``."""
    add_corpus(p)
    add_known_issues(p)
    add_features(p)


# --------------------------------------------------------------------------- what runs


def add_tiers(
    p: argparse.ArgumentParser,
    help: str = "tier(s) to run (default: quick); negative: the broken objects of corpus/negative.toml, alone",
    choices: Sequence[str] = TIERS,
) -> None:
    p.add_argument("--tier", action="append", choices=choices, help=help)


def add_cases(p: argparse.ArgumentParser, help: str = "case id or glob, e.g. 'quick/labelmap-*' (repeatable)") -> None:
    p.add_argument("--case", action="append", default=[], metavar="ID", help=help)


def add_producers(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--producer", action="append", metavar="NAME", help=help)


def add_consumers(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--consumer", action="append", metavar="NAME", help=help)


# --------------------------------------------------------------------------- where and how


def add_build(p: argparse.ArgumentParser, help: str = "build folder") -> None:
    p.add_argument("--build", type=Path, default=build_path(), help=f"{help} (default: %(default)s)")


def add_results_out(p: argparse.ArgumentParser, help: str) -> None:
    """``--out`` of the commands that write a results document (run, bench)."""
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help=f"{help} (default: %(default)s)")


def add_jobs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-j", "--jobs", type=workers, default=JOBS, metavar="N", help="parallel worker processes (default: %(default)s)"
    )


def add_timeout(p: argparse.ArgumentParser, help: str = "time limit per call in seconds") -> None:
    p.add_argument("--timeout", type=seconds, default=TIMEOUT_S, metavar="S", help=f"{help} (default: %(default)s)")


def add_memory(p: argparse.ArgumentParser, help: str = "address-space limit per call") -> None:
    p.add_argument(
        "--memory-mb", type=megabytes, default=MEMORY_MB, metavar="MB", help=f"{help} (default: %(default)s)"
    )


def add_validation(p: argparse.ArgumentParser, no_validate_help: str) -> None:
    """``--no-validate`` and ``--validate-timeout`` (dciodvfy on the objects)."""
    p.add_argument("--no-validate", action="store_true", help=no_validate_help)
    p.add_argument(
        "--validate-timeout",
        type=seconds,
        default=VALIDATE_TIMEOUT_S,
        metavar="S",
        help="dciodvfy time limit per object (default: %(default)s)",
    )
