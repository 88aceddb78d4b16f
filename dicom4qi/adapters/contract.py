"""The adapter contract: what every producer and consumer implements.

An adapter is small. It declares the tool it wraps, the tool's real installed
version, and the features (from ``corpus/features.txt``) it claims; then a
producer turns a case into a SEG file and a consumer turns a SEG file (plus its
source series) into the canonical decoded form (:mod:`dicom4qi.model.decoded`).

The harness never calls an adapter in its own process: every call runs in a
child process (:mod:`dicom4qi.adapters.child`) with a timeout and a memory limit.
Adapters are named by the builtin registry below, by ``module:Class`` for
adapters that live elsewhere (the tests' misbehaving fakes, a vendor's module),
or by ``exec:FOLDER`` for a program in any language that speaks the JSON
protocol of ``docs/protocol.md`` (:mod:`dicom4qi.adapters.executable`).
"""

from __future__ import annotations

import importlib
import re
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from dicom4qi.model.decoded import DecodedWriter
from dicom4qi.paths import FEATURES_FILE, PACKAGE

if TYPE_CHECKING:  # a read need not import the case model (pydantic): every call's start-up counts
    from dicom4qi.model.case import Case
    from dicom4qi.model.truth import Truth

__all__ = [
    "Adapter",
    "Consumer",
    "Producer",
    "ReadRequest",
    "Service",
    "WriteRequest",
    "family_of",
    "is_release",
    "refuses_release",
    "takes_releases",
    "missing_calls",
    "split_spec",
    "BUILTIN",
    "DEFAULTS",
    "EVERY_FEATURE",
    "package_version",
    "run_tool",
    "missing_features",
    "resolve",
    "unknown_spec",
]

Role = Literal["producer", "consumer"]

#: Every feature of the controlled list: what a reader claims when it claims to read any SEG.
EVERY_FEATURE: frozenset[str] = frozenset(
    line.split()[0] for line in FEATURES_FILE.read_text().splitlines() if line.strip() and not line.startswith("#")
)


def package_version(distribution: str) -> str | None:
    """The installed version of a Python distribution, or None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class WriteRequest:
    """What a producer gets: the case, its truth (with the masks) and the source series."""

    case_id: str
    case: Case
    truth: Truth
    output: Path
    #: Further instances of the same series (a case with ``encoding.instances``), written beside ``output`` at
    #: :meth:`instance_output`; the producer appends each path it writes, in order.
    instances: list[Path] = field(default_factory=list)

    def instance_output(self, k: int) -> Path:
        """Where instance ``k`` (2, 3, ...) of a segmentation in several instances is written."""
        if k < 2:
            raise ValueError("instance 1 is written to output")
        return self.output.with_name(f"{self.output.stem}.{k}{self.output.suffix}")


@dataclass(frozen=True)
class ReadRequest:
    """What a consumer gets: the SEG and the source series; never the truth."""

    seg: Path
    sources: list[Path]
    #: A folder of the call's own: PNG, TXT, LOG and JSON files left there are kept as artifacts.
    workdir: Path | None = None
    #: Endpoints of the adapter's running service (see :meth:`Consumer.start_service`), if it has one.
    service: dict[str, str] | None = None


@dataclass(frozen=True)
class Service:
    """A long-running helper of an adapter (a server, a browser), started once per worker and reused.

    The harness stops it by killing each PID's process group when the run ends,
    on errors and on Ctrl-C.
    """

    endpoints: dict[str, str]
    pids: list[int]


class Adapter(ABC):
    """Common declarations of producers and consumers.

    An adapter may take one parameter, given as ``name@param`` (e.g. a version
    of the tool, ``ohif@3.11.1``): it arrives as ``variant`` and should show in
    :meth:`version`.
    """

    def __init__(self, variant: str | None = None) -> None:
        self.variant = variant

    #: Column name in the grid (unique per role), e.g. ``"highdicom"``.
    name: ClassVar[str]
    #: The tool's own name, e.g. the PyPI distribution.
    tool: ClassVar[str]
    role: ClassVar[Role]
    #: Features claimed; a case needing any other feature is UNSUPPORTED.
    features: ClassVar[frozenset[str]]
    #: Feature combinations the tool declares it cannot handle, e.g. {binary, ts-rle}.
    unsupported_combinations: ClassVar[tuple[frozenset[str], ...]] = ()
    homepage: ClassVar[str | None] = None
    #: What the column is, in one line, where its name could mislead (the dashboard shows it with the name).
    summary: ClassVar[str | None] = None
    #: Adapters that share their decoding code (releases of one viewer, one binary called two ways) declare one
    #: family: where there is no truth they count as one vote (:mod:`dicom4qi.judge.consensus`). None: the name.
    family: ClassVar[str | None] = None
    #: A pinned requirements file beside the adapter's module: the adapter then runs in its own
    #: environment built from it (see :mod:`dicom4qi.adapters.envs`). Keep tool imports inside methods,
    #: so that the harness can read these declarations without the tool installed.
    requirements: ClassVar[str | None] = None
    #: The tool's PyPI distribution, where any of its releases can be a column or row group of its own
    #: (``highdicom@0.26.0``): that release then runs in an environment of its own, with only it pinned
    #: (:func:`dicom4qi.adapters.envs.release_env`). None: the adapter drives the installed release only.
    pypi: ClassVar[str | None] = None
    #: The tool's npm package, where the adapter installs any of its releases itself (``ohif@3.12.10``): a sweep
    #: (:mod:`dicom4qi.run.sweep`) asks npm which releases there are.
    npm: ClassVar[str | None] = None
    #: What of the tool the adapter calls: ``module:attribute`` paths that must exist in a release for the
    #: adapter to drive it; a release without one is not available (said with the missing name), never forced.
    #: A path ending in ``?`` is optional: the adapter checks for it where it uses it (a release without it
    #: fails only the objects that need it, with its own message).
    calls: ClassVar[tuple[str, ...]] = ()
    #: Pins a release's environment needs beside the release, by release (PEP 440 specifier, pins): what the
    #: release's own metadata leaves open but it cannot work with (``("<0.23", ("pydicom<3",))``: highdicom before
    #: 0.23 does not import with pydicom 3, although it does not say so).
    release_pins: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = ()
    #: Modules of the tool a fork server imports once for all the adapter's calls of a run (``("highdicom",)``),
    #: besides the adapter's own module (:mod:`dicom4qi.process.forkserver`): each call still runs in a process
    #: of its own, forked after the imports. Only what a call would import anyway; a module that does not import
    #: is no error (the call then imports it itself, and fails as it would in a new process).
    preload: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def version(self) -> str | None:
        """The real installed version of the tool (None if it is not installed)."""

    def available(self) -> tuple[bool, str]:
        """Whether the tool can run here, and why not (a release without what the adapter calls, too)."""
        version = self.version()
        if version is None:
            return False, f"{self.tool} is not installed"
        missing = missing_calls(self.calls)
        if missing:
            return False, (
                f"{self.tool} {version} has no {', '.join(dict.fromkeys(missing))}, which this adapter calls: "
                "a release the adapter cannot drive"
            )
        return True, ""

    def warm_up(self) -> str | None:
        """One-time work before any cell (a WebAssembly module compiled into a cache the calls share), done in the
        handshake and timed there, never in a cell; returns what was done, or None where there is nothing to do."""
        return None


class Producer(Adapter):
    role: ClassVar[Role] = "producer"

    @abstractmethod
    def write(self, request: WriteRequest) -> list[str]:
        """Write ``request.output`` as a DICOM SEG; return notes on how it was written."""


class Consumer(Adapter):
    role: ClassVar[Role] = "consumer"

    @abstractmethod
    def read(self, request: ReadRequest) -> DecodedWriter:
        """Decode ``request.seg`` into the canonical form."""

    #: Whether the adapter needs a service (see :meth:`start_service`).
    needs_service: ClassVar[bool] = False

    def start_service(self, workdir: Path, cache: Path) -> Service:
        """Start the adapter's long-running helpers; only for adapters with ``needs_service``.

        ``workdir`` is the service's own folder; ``cache`` a folder kept across runs for downloads.
        """
        raise TypeError(f"{self.name} has no service")


def missing_calls(calls: tuple[str, ...]) -> list[str]:
    """Which ``module:attribute.path`` names (with ``(keyword, ...)``: and those parameters) do not exist in what is
    installed."""
    import inspect

    missing = []
    for path in calls:
        if path.endswith("?"):
            continue
        target, _, params = path.partition("(")
        module_name, _, attrs = target.partition(":")
        try:
            obj: object = importlib.import_module(module_name)
        except ImportError as exc:  # the release does not import with what was installed beside it
            missing.append(f"{module_name} (it does not import: {type(exc).__name__}: {exc})")
            continue
        try:
            for attr in attrs.split(".") if attrs else []:
                obj = getattr(obj, attr)
        except AttributeError:
            missing.append(target)
            continue
        wanted = [p.strip() for p in params.rstrip(")").split(",") if p.strip()]
        if wanted:
            try:
                have = inspect.signature(obj).parameters  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
            absent = [p for p in wanted if p not in have]
            if absent:
                missing.append(f"{target}({', '.join(absent)}=)")
    return missing


#: A release of a tool given as ``NAME@VERSION`` (PEP 440 public version), as opposed to a mode (``@strict``).
_RELEASE = re.compile(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?")


def is_release(variant: str | None) -> bool:
    """Whether an adapter's parameter names a release of its tool (``0.26.0``) or a local checkout or built
    wheel of it (``path:../highdicom``), not a mode."""
    if not variant:
        return False
    return variant.startswith("path:") or _RELEASE.fullmatch(variant) is not None


def run_tool(cmd: list[str], notes: list[str], shown: list[str], timeout: float | None = None) -> None:
    """Run one tool command; record it (as ``shown``) in the notes; raise with its own words on failure."""
    notes.append("$ " + " ".join(shown))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower() or "exception" in ln.lower()] or lines
        raise RuntimeError(
            f"{Path(cmd[0]).name} exited with status {proc.returncode}: {' / '.join(errors[-3:])[-700:]}"
        )


BUILTIN: dict[Role, dict[str, str]] = {
    "producer": {
        "highdicom": "dicom4qi.tools.highdicom.producer:HighdicomProducer",
        "dcmqi": "dicom4qi.tools.dcmqi.producer:DcmqiProducer",
        "dcmqi-bin2label": "dicom4qi.tools.dcmqi.bin2label:DcmqiBin2LabelProducer",
        "itkwasm": "dicom4qi.tools.itkwasm.producer:ItkWasmProducer",
        "pydicom-seg": "dicom4qi.tools.pydicom_seg.producer:PydicomSegProducer",
        "pydicom-seg-rb": "dicom4qi.tools.pydicom_seg.fork_producer:PydicomSegRbProducer",
        "reference": "dicom4qi.tools.reference.producer:ReferenceProducer",
        "dwv": "exec:tools/dwv-writer",
        "cornerstone": "exec:tools/cornerstone-writer",
    },
    "consumer": {
        "highdicom": "dicom4qi.tools.highdicom.consumer:HighdicomConsumer",
        "ohif": "dicom4qi.tools.ohif.consumer:OhifConsumer",
        "reference": "dicom4qi.tools.reference.consumer:ReferenceConsumer",
        "dcmqi": "dicom4qi.tools.dcmqi.consumer:DcmqiConsumer",
        "pydicom-seg": "dicom4qi.tools.pydicom_seg.consumer:PydicomSegConsumer",
        "pydicom-seg-rb": "dicom4qi.tools.pydicom_seg.fork_consumer:PydicomSegRbConsumer",
        "slicer": "dicom4qi.tools.slicer.consumer:SlicerConsumer",
        "slicer-core": "dicom4qi.tools.slicer.core:SlicerCoreConsumer",
        "simpleitk": "dicom4qi.tools.simpleitk.consumer:SimpleItkConsumer",
        "itkwasm": "dicom4qi.tools.itkwasm.consumer:ItkWasmConsumer",
        "dcmjs": "exec:tools/dcmjs",
        "cornerstone": "exec:tools/cornerstone",
        "dwv": "exec:tools/dwv",
    },
}


#: Adapters made from a folder by a higher layer, found by name like the builtins (the contract imports no
#: implementation): ``submission:FOLDER`` replays the objects of a vendor's producer submission.
FACTORIES: dict[Role, dict[str, str]] = {
    "producer": {"submission:": "dicom4qi.vendors.replay:submitted_producer"},
    "consumer": {},
}


def family_of(name: str, declared: str | None = None) -> str:
    """The family a reader votes with: what its adapter declares, else its name without ``@param``."""
    return declared or split_spec(name)[0]


def split_spec(spec: str) -> tuple[str, str | None]:
    """``name@param`` into its name and parameter (None when there is none)."""
    name, sep, param = spec.partition("@")
    return name, (param if sep else None)


#: What a run uses when no --producer / --consumer is given: every builtin plus transcoded variants.
DEFAULTS: dict[Role, list[str]] = {
    "producer": [
        *BUILTIN["producer"],
        "highdicom+rle",
        "highdicom+jpegls",
        "highdicom+jpeg2000",
        "dcmqi+jpegls",
        "dcmqi+jpeg2000",
    ],
    # cornerstone@5.6.8: the adapters release OHIF 3.13.2 pins, beside the current one
    "consumer": [*BUILTIN["consumer"], "dcmqi@mergeSegments", "cornerstone@5.6.8"],
}


def resolve(role: Role, spec: str) -> type[Adapter]:
    """The adapter class for a builtin name, ``producer+transcoding``, ``module:Class`` or ``exec:FOLDER``.

    Any ``@param`` is ignored here. ``exec:FOLDER`` is an executable adapter (``docs/protocol.md``).
    """
    spec = split_spec(spec)[0]
    if role == "producer" and "+" in spec and ":" not in spec:
        from dicom4qi.adapters.transcode import transcoded

        inner, _, variant = spec.rpartition("+")
        inner_cls = resolve(role, inner)
        assert issubclass(inner_cls, Producer)
        return transcoded(inner_cls, variant)
    target = BUILTIN[role].get(spec, spec)
    for prefix, factory in FACTORIES[role].items():
        if target.startswith(prefix):
            module_name, _, attr = factory.partition(":")
            return getattr(importlib.import_module(module_name), attr)(Path(target[len(prefix) :]))
    if target.startswith("exec:"):
        from dicom4qi.adapters.executable import exec_adapter

        path = Path(target[5:])
        if spec in BUILTIN[role]:  # a builtin executable adapter lives in the suite
            return exec_adapter(role, PACKAGE / path, name=spec)
        return exec_adapter(role, path, name=spec)
    if ":" not in target:
        known = ", ".join(sorted(BUILTIN[role]))
        raise ValueError(f"unknown {role} {spec!r} (known: {known}; or give module:Class)")
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    base: type[Adapter] = Producer if role == "producer" else Consumer
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"{target} is not a {role} adapter")
    return cls


def unknown_spec(role: Role, spec: str) -> str | None:
    """Why ``spec`` names no adapter (a usage error, before anything runs), or None.

    Builtin names (with ``+transcoding``) must exist and ``exec:FOLDER`` must be a folder; a
    ``module:Class`` is only imported in its own child, where a fault of its code is its cells' ERROR. A checkout
    (``NAME@path:DIR``) is for an adapter that declares its PyPI distribution: any other would run its own
    installed release under the checkout's name.
    """
    name, param = split_spec(spec)
    if name.startswith("exec:"):
        folder = Path(name[5:])
        return None if folder.is_dir() else f"{role} {spec!r}: no such adapter folder {folder}"
    if ":" in name:
        return None
    try:
        cls = resolve(role, spec)
    except (ValueError, TypeError) as exc:
        return str(exc)
    if param is not None and param.startswith("path:") and not getattr(cls, "pypi", None):
        return (
            f"{role} {spec!r}: the {role} {name} takes no checkout (it declares no PyPI distribution to install "
            f"from one); it would run its installed release under that name"
        )
    why = refuses_release(cls, param)
    if why:
        return f"{role} {spec!r}: {why}"
    return None


def takes_releases(cls: type) -> bool:
    """Whether an adapter runs other releases of its tool than the installed one: it declares its PyPI distribution
    (an environment per release) or npm package (it fetches the release itself), or an executable adapter lists the
    releases it installs."""
    manifest = getattr(cls, "manifest", None)
    return bool(getattr(cls, "pypi", None) or getattr(cls, "npm", None) or (manifest is not None and manifest.releases))


def refuses_release(cls: type, param: str | None) -> str | None:
    """Why ``NAME@param`` cannot be that release of the tool (None: it can, or param is a mode): an adapter that
    takes no releases would run its installed release under the release's name."""
    if not is_release(param) or takes_releases(cls):
        return None
    return (
        f"{getattr(cls, 'name', cls)} drives the installed release of its tool only (its adapter declares no PyPI "
        f"distribution, npm package or list of releases): {param} would be the installed release under another name"
    )


def missing_features(needed: set[str], claimed: set[str], unsupported: list[set[str]] | list[list[str]]) -> list[str]:
    """Why an adapter cannot take a case: features it does not claim or a declared bad combination."""
    reasons = [f"does not claim {f}" for f in sorted(needed - claimed)]
    for combo in unsupported:
        if set(combo) <= needed:
            reasons.append(f"declares {' + '.join(sorted(combo))} unsupported")
    return reasons
