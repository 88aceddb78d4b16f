"""Isolated Python environments for adapters whose tools conflict with the suite's own dependencies.

An adapter declares ``requirements``: a pinned requirements file beside its
module. The suite creates a virtual environment for it under
``build/envs/<name>`` on first use, reuses it afterwards and rebuilds it when
the requirements file changes (its hash is kept in the environment's marker
file). ``DICOM4QI_ENVS`` names another folder for them (the tests share the checkout's ``build/envs`` with
``make run`` that way, instead of building each environment again in every test's build folder): an environment is
rebuilt there, as anywhere, when its requirements change. The harness then runs that adapter's child processes with the
environment's Python; the suite's own packages reach it through
``PYTHONPATH``, so the environment needs only the tool and the few libraries
the harness's child code imports (numpy, scipy, pydantic, pydicom).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "ENVS_ENV",
    "EnvError",
    "EnvSpec",
    "EnvState",
    "ensure_env",
    "env_spec",
    "env_state",
    "release_env",
    "release_pins",
]

MARKER = ".dicom4qi-env.json"
#: Environment variable naming the folder of the environments, instead of ``BUILD/envs``.
ENVS_ENV = "DICOM4QI_ENVS"
EnvState = Literal["ready", "missing", "stale", "broken"]


class EnvError(RuntimeError):
    """An environment could not be built; the message says why (the end of pip's output)."""


@dataclass(frozen=True)
class EnvSpec:
    """An environment: its name and its pinned requirements file."""

    name: str
    requirements: Path

    def digest(self) -> str:
        return hashlib.sha256(self.requirements.read_bytes()).hexdigest()[:16]

    def directory(self, build: Path) -> Path:
        shared = os.environ.get(ENVS_ENV)
        return (Path(shared).resolve() if shared else build.resolve() / "envs") / self.name

    def python(self, build: Path) -> Path:
        return self.directory(build) / "bin" / "python"


def env_state(spec: EnvSpec, build: Path) -> tuple[EnvState, str]:
    """Whether the environment is ready, and a word on why not."""
    marker = spec.directory(build) / MARKER
    if not marker.is_file():
        if (spec.directory(build) / "build-failed.log").is_file():
            return "broken", f"the last build failed: see {spec.directory(build) / 'build-failed.log'}"
        return "missing", "not built yet"
    try:
        info = json.loads(marker.read_text())
    except ValueError:
        return "broken", f"unreadable marker {marker}"
    if info.get("digest") != spec.digest():
        return "stale", f"{spec.requirements.name} changed since it was built"
    if not spec.python(build).exists():
        return "broken", f"{spec.python(build)} is missing"
    return "ready", ""


def ensure_env(
    spec: EnvSpec, build: Path, *, log: Callable[[str], None] | None = None, timeout_s: float = 1800
) -> Path:
    """The environment's Python, building (or rebuilding) the environment when needed."""
    state, _ = env_state(spec, build)
    if state == "ready":
        return spec.python(build)
    directory = spec.directory(build)
    tmp = directory.with_name(directory.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    directory.parent.mkdir(parents=True, exist_ok=True)
    failed_log = directory / "build-failed.log"
    started = time.monotonic()
    steps = [
        [sys.executable, "-m", "venv", str(tmp)],
        [
            str(tmp / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
            str(spec.requirements),
        ],
    ]
    output = []
    proc: subprocess.CompletedProcess[str] | None
    for cmd in steps:
        if log:
            log(" ".join(cmd[-3:]))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            output.append(f"$ {' '.join(cmd)}\ntimed out after {timeout_s:g} s")
            proc = None
        else:
            output.append(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
        if proc is None or proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            directory.mkdir(parents=True, exist_ok=True)
            (directory / MARKER).unlink(missing_ok=True)
            failed_log.write_text("\n".join(output))
            tail = [line for line in output[-1].splitlines() if line.strip()][-3:]
            raise EnvError(f"environment {spec.name} could not be built: {' / '.join(tail)[-600:]}")
    # The versions pip chose, kept beside the environment: what the release ran with.
    freeze = subprocess.run(
        [str(tmp / "bin" / "python"), "-m", "pip", "freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    (tmp / "pip-freeze.txt").write_text(freeze.stdout)
    (tmp / MARKER).write_text(
        json.dumps(
            {
                "digest": spec.digest(),
                "requirements": str(spec.requirements),
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    )
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return spec.python(build)


#: What a release's environment holds beside the release: what the harness's child code imports. Unpinned, so that
#: pip picks the versions the release allows (an old highdicom takes pydicom 2 and numpy 1).
RELEASE_COMPANIONS = ("scipy", "pydantic>=2")


def _source_digest(folder: Path) -> str:
    """A digest of a checkout's files (names, sizes, modification times): it changes with the source. Not .git, nor
    what installing the checkout leaves in it (pip builds in the tree: ``build/``, ``*.egg-info``, ``__pycache__``),
    else every install would make the next run build the environment again."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).parts
        if ".git" in rel or "__pycache__" in rel or rel[0] == "build" or any(x.endswith(".egg-info") for x in rel):
            continue
        if not p.is_file():
            continue
        st = p.stat()
        h.update(f"{p.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def release_pins(adapter: type, version: str | None) -> list[str]:
    """The pins an adapter declares for this release beside it (``Adapter.release_pins``), in order. A checkout
    (``version`` None: its version is known only once it is built) gets the pins declared for every release."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    if version is None:
        return [pin for spec, pins in getattr(adapter, "release_pins", ()) if not spec.strip() for pin in pins]
    try:
        parsed = Version(version)
    except InvalidVersion:
        return []
    return [
        pin
        for spec, pins in getattr(adapter, "release_pins", ())
        if SpecifierSet(spec).contains(parsed, prereleases=True)
        for pin in pins
    ]


def release_env(adapter: type, version: str, build: Path) -> EnvSpec:
    """The environment of one release of a PyPI tool (``NAME@VERSION``): that release pinned, and what the harness's
    child code needs; its requirements file is written under ``build/envs/_releases`` (the pins pip chose are in the
    environment's ``pip-freeze.txt``).

    ``NAME@path:DIR`` is a local checkout (or a built wheel or sdist) of the tool, installed from there as it is
    when the run starts: the environment is rebuilt whenever the checkout's files change, so a maintainer's
    unreleased change is what runs."""
    dist = getattr(adapter, "pypi", None)
    if not dist:
        raise EnvError(f"{getattr(adapter, 'name', adapter)} is no PyPI tool: it has no releases to choose")
    label = version
    if version.startswith("path:"):
        source = Path(version[5:]).expanduser().resolve()
        if not source.exists():
            raise EnvError(f"{version}: no such checkout, wheel or sdist")
        digest = _source_digest(source) if source.is_dir() else hashlib.sha256(source.read_bytes()).hexdigest()[:16]
        label = "path-" + hashlib.sha256(str(source).encode()).hexdigest()[:8]
        pin = [f"# the files of {source}: {digest}", str(source), *release_pins(adapter, None)]
    else:
        pin = [f"{dist}=={version}", *release_pins(adapter, version)]
    name = f"{getattr(adapter, 'name', dist)}@{label}"
    folder = build.resolve() / "envs" / "_releases"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.requirements.txt"
    text = "\n".join([f"# {name}: generated by dicom4qi", *pin, *RELEASE_COMPANIONS]) + "\n"
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return EnvSpec(name=name, requirements=path)


def env_spec(adapter: type) -> EnvSpec | None:
    """The environment an adapter class declares (``requirements`` beside its module), if any."""
    name = getattr(adapter, "requirements", None)
    if not name:
        return None
    module = sys.modules[adapter.__module__]
    path = Path(module.__file__ or ".").resolve().parent / name
    return EnvSpec(
        name=path.name.removesuffix(".txt").removesuffix(".requirements").replace("_", "-"), requirements=path
    )
