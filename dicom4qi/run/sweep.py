"""``dicom4qi sweep TOOL [VERSION ...]``: releases of one tool side by side, for the Releases page.

A sweep answers "which version do I need?" and "did the upgrade break my SEGs?". For each release of the tool
(``TOOL@VERSION``, each in its own environment: :func:`dicom4qi.adapters.envs.release_env` for a PyPI tool, npm for
a viewer), it runs

1. **the conformance matrix** of the selection (the quick tier by default), with the suite's reference on the
   other side, so that only the release is judged: as a consumer, every release reads the reference writer's
   objects; as a producer, every release writes every case, checked as any write is (the reference decoder and
   highdicom decode what it holds) and read back by the reference decoder. One run per side, every release a
   column (or row) of it, so one object is read by every release;
2. **the benchmark** (``dicom4qi bench``'s whole-process timing, warm-up plus timed repeats) of each release's read
   (and write) of the 104-organ body CT, BINARY and LABELMAP, and of the 1000-segment label map, beside
   nibabel's ``.nii.gz`` read of the same labels.

Everything goes under ``reports/sweeps/<tool>/`` (``consumer/``, ``producer/``, ``bench/``; each keeps its runs and a
``latest.json``), never into ``reports/results``: the grid shows one release per tool, the Releases page
(:mod:`dicom4qi.site.releases`) shows the sweeps. Releases come from the registry when none are named: the last
``last`` final releases (``pip index versions``, ``npm view``), or every one since a given release.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from dicom4qi.adapters.contract import BUILTIN, Role, resolve, takes_releases
from dicom4qi.paths import reports as reports_path
from dicom4qi.run.config import RunConfig

__all__ = [
    "BENCH_CASES",
    "SweepConfig",
    "SweepError",
    "SweepResult",
    "registry_releases",
    "release_roles",
    "roles_of",
    "select_releases",
    "sort_versions",
    "sweep",
    "version_key",
]

#: The benchmark of every release: the body CT's 104 organs as BINARY and LABELMAP, and 1000 segments.
BENCH_CASES = ["full/body-104-binary", "full/body-104-labelmap", "full/body-1000-labelmap"]
#: Where sweeps go.
SWEEPS = reports_path("sweeps")


class SweepError(ValueError):
    """A sweep that cannot start: the message says why (no such tool, no releases, a registry that did not answer)."""


def roles_of(tool: str) -> list[Role]:
    """The roles in which ``tool`` is a builtin adapter: consumer first."""
    order: tuple[Role, ...] = ("consumer", "producer")
    return [role for role in order if tool in BUILTIN[role]]


def release_roles(tool: str) -> list[Role]:
    """The roles in which ``tool``'s adapter runs other releases than the installed one (highdicom's reader does, its
    writer does not: a writer column named highdicom@0.22.0 would be the installed release under that name)."""
    return [role for role in roles_of(tool) if takes_releases(resolve(role, tool))]


def version_key(v: str) -> tuple[int, object]:
    """A release's sort key: (1, its PEP 440 version), or (0, the string) for what does not parse."""
    from packaging.version import InvalidVersion, Version

    try:
        return (1, Version(v))
    except InvalidVersion:
        return (0, v)


def sort_versions(versions: list[str]) -> list[str]:
    """Oldest first, by PEP 440 (npm's ``3.14.0-beta.6`` is ``3.14.0b6``); what does not parse goes first."""
    return sorted(dict.fromkeys(versions), key=version_key)


def is_final(version: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return not Version(version).is_prerelease
    except InvalidVersion:
        return False


def registry_releases(tool: str, *, timeout_s: float = 120.0, prereleases: bool = True) -> list[str]:
    """Every release of the tool that its registry serves here, oldest first (PyPI for ``pypi``, npm for ``npm``);
    for an executable adapter, the releases its manifest says it installs (``releases``)."""
    if not roles_of(tool):
        raise SweepError(f"{tool!r} is not a builtin adapter")
    roles = release_roles(tool) or roles_of(tool)
    cls = resolve(roles[0], tool)
    dist, package = getattr(cls, "pypi", None), getattr(cls, "npm", None)
    manifest = getattr(cls, "manifest", None)  # an executable adapter lists the releases it installs
    if manifest is not None and manifest.releases:
        return sort_versions(list(manifest.releases))
    if dist:
        cmd = [sys.executable, "-m", "pip", "index", "versions", dist, "--disable-pip-version-check"]
        if prereleases:
            cmd.append("--pre")  # pip leaves them out otherwise
    elif package:
        npm = shutil.which("npm")
        if npm is None:
            raise SweepError(f"{tool}'s releases are on npm, and npm is not installed")
        cmd = [npm, "view", package, "versions", "--json"]
    else:
        raise SweepError(
            f"{tool}'s adapter drives one release only (it declares no PyPI distribution or npm package): "
            "name its releases only where it takes them as its parameter"
        )
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise SweepError(f"{' '.join(cmd)} did not answer in {timeout_s:g} s") from None
    if out.returncode != 0:
        raise SweepError(f"{' '.join(cmd)} failed: {(out.stderr or out.stdout).strip()[-300:]}")
    if dist:
        m = re.search(r"Available versions:\s*(.+)", out.stdout)
        versions = [v.strip() for v in m.group(1).split(",")] if m else []
    else:
        parsed = json.loads(out.stdout or "[]")
        versions = [parsed] if isinstance(parsed, str) else list(parsed)
    if not versions:
        raise SweepError(f"the registry serves no release of {tool}: {out.stdout.strip()[:200]}")
    return sort_versions(versions)


def select_releases(
    available: list[str], *, last: int | None = 3, since: str | None = None, prereleases: bool = False
) -> list[str]:
    """The releases to sweep: every one since ``since`` (inclusive), or the last ``last``; final releases only
    unless ``prereleases``."""
    pool = sort_versions([v for v in available if prereleases or is_final(v)])
    if since is not None:
        start = version_key(since)
        if start[0] == 0:
            raise SweepError(f"--since {since!r} is not a version")
        return [v for v in pool if version_key(v) >= start]
    if last is not None and last < 1:
        raise SweepError(f"--last must be at least 1, not {last}")
    return pool[-last:] if last else pool


@dataclass
class SweepConfig:
    """What a sweep is told."""

    tool: str
    versions: list[str]
    #: The base of every run (corpus, build, tiers, cases, workers, limits); its tools are set by the sweep.
    run: RunConfig = field(default_factory=RunConfig)
    #: Which sides to sweep (default: every role the tool has).
    roles: list[Role] = field(default_factory=list)
    bench: bool = True
    #: Run the conformance matrix (False: the benchmark only, beside the last sweep's matrix).
    conformance: bool = True
    bench_cases: list[str] = field(default_factory=lambda: list(BENCH_CASES))
    repeats: int = 3
    #: Time limit per benchmark call: a release that reads the body CT slower than this is TIMEOUT there, which
    #: is the finding (highdicom before its reading was rewritten took over 8 minutes for 98 segments).
    bench_timeout_s: float = 300.0
    out: Path = SWEEPS
    #: Check every release against what the registry serves (or the adapter installs) before anything runs: a typo
    #: must not become a column of the installed release.
    check_versions: bool = True


@dataclass
class SweepResult:
    """The results documents a sweep wrote."""

    tool: str
    versions: list[str]
    runs: dict[str, Path] = field(default_factory=dict)  # side -> results document
    bench: Path | None = None


def columns(tool: str, versions: list[str]) -> list[str]:
    return [f"{tool}@{v}" for v in versions]


def role_versions(tool: str, role: Role, versions: list[str]) -> list[str]:
    """The releases of ``versions`` the tool's adapter in ``role`` takes: all of them, except where an executable
    adapter lists the releases it installs (cornerstone's reader has three, its writer two)."""
    manifest = getattr(resolve(role, tool), "manifest", None)
    if manifest is None or not manifest.releases:
        return versions
    return [v for v in versions if v in manifest.releases]


def _keep_latest(path: Path) -> None:
    shutil.copyfile(path, path.with_name("latest.json"))


def sweep(
    config: SweepConfig,
    progress_for: Callable[[str], object] | None = None,
) -> SweepResult:
    """Run the sweep; ``progress_for(label)`` gives each stage its progress sink."""
    from dicom4qi.run.bench import BenchConfig, bench
    from dicom4qi.run.runner import ProgressSink, run

    if not config.versions:
        raise SweepError("no releases to sweep")
    if not roles_of(config.tool):
        raise SweepError(f"{config.tool!r} is not a builtin adapter (see `dicom4qi tools`)")
    roles = config.roles or release_roles(config.tool)
    if not roles:
        raise SweepError(f"{config.tool}'s adapters drive the installed release only: there are no releases to sweep")
    bad = [r for r in roles if r not in release_roles(config.tool)]
    if bad:
        raise SweepError(
            f"{config.tool} as {' and '.join(bad)} drives the installed release only (it declares no PyPI "
            "distribution, npm package or list of releases): its columns would all be that release"
        )
    versions = sort_versions(config.versions)
    if config.check_versions:
        served = set(registry_releases(config.tool))
        unknown = [v for v in versions if v not in served]
        if unknown:
            raise SweepError(f"not releases of {config.tool} its registry serves here: {', '.join(unknown)}")
    for role in roles:
        if not role_versions(config.tool, role, versions):
            raise SweepError(f"the {role} {config.tool} installs none of {', '.join(versions)}")
    folder = config.out / config.tool
    result = SweepResult(config.tool, versions)

    def sink(label: str) -> ProgressSink | None:
        return progress_for(label) if progress_for is not None else None  # type: ignore[return-value]

    for role in roles if config.conformance else []:
        side = folder / role
        cols = columns(config.tool, role_versions(config.tool, role, versions))
        cfg = replace(
            config.run,
            results=side,
            producers=["reference"] if role == "consumer" else cols,
            consumers=cols if role == "consumer" else ["reference"],
            resume=None,
            run_id=None,
        )
        summary = run(cfg, sink(f"{config.tool} releases as {role}s"))
        _keep_latest(summary.path)
        result.runs[role] = summary.path
    if config.bench:
        consumer = "consumer" in roles
        readers = columns(config.tool, role_versions(config.tool, "consumer", versions)) if consumer else []
        writers = columns(config.tool, role_versions(config.tool, "producer", versions)) if "producer" in roles else []
        bcfg = BenchConfig(
            run=replace(
                config.run,
                results=folder / "bench",
                tiers=[],  # the named cases, whatever their tier
                cases=list(config.bench_cases),
                producers=(["reference"] if consumer else []) + writers,
                consumers=readers if consumer else ["reference"],
                workers=1,
                validate=False,
                verify_writes=False,
                timeout_s=config.bench_timeout_s,
                resume=None,
                run_id=None,
            ),
            repeats=config.repeats,
            publish=None,
            quick_results=None,
        )
        result.bench = bench(bcfg, sink(f"{config.tool} releases timed"))
        _keep_latest(result.bench)
    return result
