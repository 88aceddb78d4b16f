"""The matrix of a sharded run: one produce step, then one shard per consumer (and per OHIF version).

A sharded run (the nightly CI workflow, or the same by hand) goes:

1. **produce**, once: ``dicom4qi run SELECTION --consumer none`` builds the corpus and has every producer
   write every case, and dciodvfy validate each object; no consumer reads.
2. **shards**, one per consumer: each gets the produce step's results document, ``build/corpus`` and
   ``build/runs/<run id>``, and runs ``dicom4qi run --resume RUN_ID SELECTION --consumer NAME``. The resume
   keeps the produce step's write and validate records (and its description of the producers and the
   validator), so the shard only reads: every produced object, with its one consumer.
3. **merge**: ``dicom4qi combine`` on the shards' documents, then ``dicom4qi report``.

:func:`plan` lists the shards; :func:`matrix` gives them in the form GitHub Actions takes for
``strategy.matrix`` (``fromJSON``), so the workflow's matrix comes from the suite, not from a list kept by hand.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass
from typing import Any

from dicom4qi.adapters.contract import DEFAULTS, resolve, split_spec
from dicom4qi.adapters.envs import env_spec

__all__ = ["PlanError", "Shard", "matrix", "plan", "produce_args", "selection_args", "sweep_tools"]

#: Tiers a sharded run takes (the negative tier and --external are one job each: ``dicom4qi run --tier negative``).
SHARDABLE_TIERS = ("quick", "full", "stress")
_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+(?:[-.][0-9A-Za-z.]+)?$")
_UNSAFE = re.compile(r"[^0-9A-Za-z._-]+")


class PlanError(ValueError):
    """The plan cannot be made as asked (a bad version, an unknown consumer, an unshardable tier)."""


@dataclass(frozen=True)
class Shard:
    """One job of the matrix: one consumer reading every produced object."""

    #: Unique, safe as a job and an artifact name: ``consumer-highdicom``, ``consumer-ohif-3.11.1``.
    name: str
    #: The consumer spec, as ``--consumer`` takes it (``ohif@3.11.1``).
    consumer: str
    #: The arguments of the shard's ``dicom4qi run`` after ``--resume RUN_ID``, shell-quoted:
    #: the produce step's selection and the one consumer.
    args: str
    #: The consumer runs a service (OHIF: chromium, Orthanc, npm): the job needs the Debian packages.
    service: bool
    #: The OHIF release the shard fetches with npm (its cache key); empty for other consumers.
    ohif_version: str
    #: The consumer runs in its own Python environment (``build/envs``, e.g. pydicom-seg): worth caching.
    own_env: bool


def selection_args(tiers: list[str], cases: list[str], producers: list[str]) -> list[str]:
    """The arguments naming what a sharded run covers: the same in the produce step and in every shard.

    The shards resume the produce step, which checks the corpus fingerprint of the selection; producers
    are named only when not the default set.
    """
    bad = [t for t in tiers if t not in SHARDABLE_TIERS]
    if bad:
        raise PlanError(
            f"tier {', '.join(bad)} cannot be sharded (only {', '.join(SHARDABLE_TIERS)}): "
            "run it as one job, e.g. `dicom4qi run --tier negative`"
        )
    args: list[str] = []
    for t in tiers:
        args += ["--tier", t]
    for c in cases:
        args += ["--case", c]
    if producers and producers != list(DEFAULTS["producer"]):
        for p in producers:
            args += ["--producer", p]
    return args


def produce_args(tiers: list[str], cases: list[str], producers: list[str]) -> str:
    """The produce step's ``dicom4qi run`` arguments (shell-quoted): every write and validation, no read."""
    return shlex.join([*selection_args(tiers, cases, producers), "--consumer", "none"])


def _shard_name(consumer: str) -> str:
    return "consumer-" + _UNSAFE.sub("-", consumer.replace("@", "-")).strip("-")


def plan(
    tiers: list[str] | None = None,
    cases: list[str] | None = None,
    producers: list[str] | None = None,
    consumers: list[str] | None = None,
    ohif_versions: list[str] | None = None,
) -> list[Shard]:
    """The shards of a run: one per consumer (default: every default consumer) and one per extra OHIF version.

    ``ohif_versions`` adds ``ohif@VERSION`` columns beside the consumers (the plain ``ohif`` column is the
    adapter's default release). Every shard reads every producer's objects.
    """
    tiers = list(tiers or ["quick"])
    selection = selection_args(tiers, list(cases or []), list(producers or []))
    specs = list(consumers or DEFAULTS["consumer"])
    if "none" in specs:
        raise PlanError("consumer 'none' is the produce step's, not a shard's")
    for v in ohif_versions or []:
        if not _VERSION.match(v):
            raise PlanError(f"--include-ohif-versions: {v!r} is not a release number like 3.11.1")
        specs.append(f"ohif@{v}")
    shards: list[Shard] = []
    seen: set[str] = set()
    for spec in specs:
        if spec in seen:
            continue
        seen.add(spec)
        try:
            cls = resolve("consumer", spec)
        except (ImportError, AttributeError, ValueError, TypeError) as exc:
            raise PlanError(f"consumer {spec!r}: {exc}") from exc
        own_env = env_spec(cls) is not None
        name, param = split_spec(spec)
        ohif = ""
        if name == "ohif":
            from dicom4qi.tools.ohif.consumer import DEFAULT_VERSION

            ohif = param or DEFAULT_VERSION
        shards.append(
            Shard(
                name=_shard_name(spec),
                consumer=spec,
                args=shlex.join([*selection, "--consumer", spec]),
                service=bool(getattr(cls, "needs_service", False)),
                ohif_version=ohif,
                own_env=own_env,
            )
        )
    names = [s.name for s in shards]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise PlanError(f"consumers whose shard names clash: {', '.join(clashes)}")
    return shards


def matrix(shards: list[Shard]) -> dict[str, Any]:
    """The shards as GitHub Actions' ``strategy.matrix`` takes them: ``{"include": [{...}, ...]}``."""
    return {"include": [asdict(s) for s in shards]}


def sweep_tools() -> list[str]:
    """The builtin tools whose releases a sweep can take (their adapter declares ``pypi`` or ``npm``, or its manifest
    lists the releases it installs): the nightly's small sweep runs one job for each (``dicom4qi plan --sweep-tools``)."""
    from dicom4qi.adapters.contract import BUILTIN, Role

    out: list[str] = []
    roles: tuple[Role, ...] = ("consumer", "producer")
    for role in roles:
        for name in BUILTIN[role]:
            cls = resolve(role, name)
            manifest = getattr(cls, "manifest", None)
            listed = manifest is not None and bool(manifest.releases)
            if (getattr(cls, "pypi", None) or getattr(cls, "npm", None) or listed) and name not in out:
                out.append(name)
    return out
