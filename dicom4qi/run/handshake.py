"""The tools of a run, before any cell: each adapter loaded, its environment built, and asked in a child who it is.

A tool that is not installed is SKIPPED with the reason (never a pass); one whose adapter cannot be loaded, or
whose environment cannot be built, is an ERROR of every cell it has.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dicom4qi.adapters.contract import Role, family_of, is_release, refuses_release, resolve, split_spec
from dicom4qi.adapters.envs import EnvError, ensure_env, env_spec, release_env
from dicom4qi.model.results import (
    ToolInfo,
)
from dicom4qi.model.wire import InfoCall, InfoReply
from dicom4qi.process.sandbox import run_child
from dicom4qi.run.steps import preload_of

__all__ = ["handshake", "prepare_tool"]


def handshake(
    role: Role, spec: str, workdir: Path, timeout_s: float, memory_mb: float, python: str | None = None
) -> ToolInfo:
    """Ask an adapter, in a child process (in its own environment, if any), who it is and what it supports."""
    out = run_child(
        InfoCall(role=role, adapter=spec),
        workdir,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        python=python,
        preload=preload_of(role, spec),
    )
    if out.kind == "ok":
        r = out.expect(InfoReply)
        name = spec if ":" in spec else r.name
        return ToolInfo(
            name=name,
            role=role,
            tool=r.tool,
            version=r.version,
            available=r.available,
            reason=r.reason,
            features=r.features,
            unsupported_combinations=r.unsupported_combinations,
            homepage=r.homepage,
            summary=r.summary,
            service=r.service,
            family=family_of(name, r.family),
            error=r.error,
            warm_up=r.warm_up,
        )
    return ToolInfo(name=spec, role=role, tool=spec, available=False, error=f"handshake failed: {out.message}")


def prepare_tool(
    role: Role, spec: str, build: Path, workdir: Path, memory_mb: float, log: Callable[[str], None] | None = None
) -> tuple[ToolInfo, str | None]:
    """Load an adapter's declarations, build its environment if it has one, and shake hands.

    Returns the tool's description and the Python its calls run with (None: the suite's own).
    A tool whose adapter cannot be loaded or whose environment cannot be built has ``error`` set:
    its cells are ERROR with that reason, never SKIPPED or passed.
    """
    try:
        cls = resolve(role, spec)
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        return ToolInfo(name=spec, role=role, tool=spec, available=False, error=f"cannot load the adapter: {exc}"), None
    if hasattr(cls, "prepare"):  # an executable adapter: its setup step (npm ci, ...) where due
        from dicom4qi.adapters.executable import AdapterError

        try:
            cls.prepare(log)
        except AdapterError as exc:
            return ToolInfo(name=spec, role=role, tool=cls.tool, available=False, error=str(exc)), None
    env = env_spec(cls)
    variant = split_spec(spec)[1]
    refused = refuses_release(cls, variant)
    if refused:  # never the installed release under a release's name
        return ToolInfo(name=spec, role=role, tool=cls.tool, available=False, error=refused), None
    if is_release(variant) and getattr(cls, "pypi", None):
        # A release of a PyPI tool: its own environment. Other adapters take their variant themselves (OHIF
        # and cornerstone install their releases from npm).
        assert variant is not None
        if env is not None:
            return (
                ToolInfo(
                    name=spec,
                    role=role,
                    tool=cls.tool,
                    available=False,
                    error=f"{spec}: this adapter runs in an environment of its own pins and takes no other release",
                ),
                None,
            )
        try:
            env = release_env(cls, variant, build)
        except EnvError as exc:
            return ToolInfo(name=spec, role=role, tool=cls.tool, available=False, error=str(exc)), None
    python = None
    if env is not None:
        try:
            python = str(ensure_env(env, build, log=log))
        except EnvError as exc:
            return (
                ToolInfo(
                    name=spec,
                    role=role,
                    tool=cls.tool,
                    available=False,
                    environment=env.name,
                    features=sorted(cls.features),
                    error=str(exc),
                ),
                None,
            )
    info = handshake(role, spec, workdir, 300, memory_mb, python=python)
    info.environment = env.name if env else None
    return info, python
