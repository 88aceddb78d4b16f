"""The wire between the harness and its child processes: one typed call and one typed reply per operation.

Every isolated call (:func:`dicom4qi.process.sandbox.run_child`) sends one
:data:`Call` and gets back one :data:`Reply` or a :class:`Failure`, as JSON
files in the call's folder; :mod:`dicom4qi.adapters.child` is the other end.
The operations:

======== ============================================ ==========================
op       what the child does                          reply
======== ============================================ ==========================
info     an adapter's handshake                       :class:`InfoReply`
write    a producer writes a case's SEG               :class:`WriteReply`
read     a consumer decodes a SEG (``bench``: only)   :class:`ReadReply`
start    a consumer starts its service                :class:`StartReply`
inspect  the header of an object, bounded             :class:`InspectReply`
validate dciodvfy (and the inflation it needs)        :class:`ValidateReply`
scan     a folder of objects from the wild            :class:`ScanReply`
baseline write or read a .nii.gz/.seg.nrrd baseline   :class:`BaselineReply`
exchange a vendor's exchange folder into ``.npz``     :class:`ExchangeReply`
======== ============================================ ==========================

The models are standard-library dataclasses, checked field by field on both
ends by :func:`parse_call` and :func:`parse_reply` (unknown fields, missing
fields and wrong types are a :class:`WireError`). They are not pydantic models
on purpose: every call starts a new interpreter, and importing pydantic and
building the models would add about a third of a second to each of thousands
of calls. Pydantic generates their JSON Schemas (:func:`schema_texts`,
``reports/schema/wire-*.schema.json``, checked by ``dicom4qi schema --check``).

Programs in other languages speak a different, public protocol
(:mod:`dicom4qi.model.protocol`, ``docs/protocol.md``); the executable adapter
translates it into these calls inside the child.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Union

__all__ = [
    "WIRE_VERSION",
    "BaselineCall",
    "BaselineReply",
    "Call",
    "ExchangeCall",
    "ExchangeReply",
    "Failure",
    "FoundObject",
    "Header",
    "InfoCall",
    "InfoReply",
    "InspectCall",
    "InspectReply",
    "ReadCall",
    "ReadReply",
    "Reply",
    "ScanCall",
    "ScanReply",
    "StartCall",
    "StartReply",
    "ValidateCall",
    "ValidateReply",
    "WireError",
    "WriteCall",
    "WriteReply",
    "dump",
    "parse_call",
    "parse_reply",
    "schema_texts",
]

#: Bumped when a call or reply changes incompatibly (the child of another environment may be older).
WIRE_VERSION: Final = 1

Role = Literal["producer", "consumer"]
_FORBID = {"extra": "forbid"}  # what pydantic's schema says of unknown fields


class WireError(ValueError):
    """A call or reply that does not fit its model."""


# --------------------------------------------------------------------------- calls
@dataclass(kw_only=True)
class InfoCall:
    """Ask an adapter who it is and what it claims."""

    __pydantic_config__ = _FORBID
    op: Literal["info"] = "info"
    role: Role
    adapter: str


@dataclass(kw_only=True)
class WriteCall:
    """Have a producer write the SEG of a case (the child loads the case and its truth)."""

    __pydantic_config__ = _FORBID
    op: Literal["write"] = "write"
    role: Literal["producer"] = "producer"
    adapter: str
    case_file: str
    case_root: str
    truth_dir: str
    output: str


@dataclass(kw_only=True)
class ReadCall:
    """Have a consumer decode a SEG into the canonical ``.npz`` at ``output``."""

    __pydantic_config__ = _FORBID
    op: Literal["read"] = "read"
    role: Literal["consumer"] = "consumer"
    adapter: str
    seg: str
    sources: list[str]
    output: str
    #: The leased service's endpoints, for consumers that need one (a viewer).
    service: dict[str, str] | None = None
    #: A timed repeat of the benchmark: decode only, write nothing.
    bench: bool = False


@dataclass(kw_only=True)
class StartCall:
    """Have a consumer start its long-lived service (servers, a browser) in ``workdir``."""

    __pydantic_config__ = _FORBID
    op: Literal["start"] = "start"
    role: Literal["consumer"] = "consumer"
    adapter: str
    workdir: str
    cache: str


@dataclass(kw_only=True)
class InspectCall:
    """Read what the write step checks of an object's header, in a bounded child."""

    __pydantic_config__ = _FORBID
    op: Literal["inspect"] = "inspect"
    seg: str


@dataclass(kw_only=True)
class ValidateCall:
    """Run the validator on an object (inflating a deflated one into ``workdir`` first)."""

    __pydantic_config__ = _FORBID
    op: Literal["validate"] = "validate"
    seg: str
    workdir: str
    timeout_s: float


@dataclass(kw_only=True)
class ScanCall:
    """Find the SEG objects (and their sources) in a folder of objects written elsewhere."""

    __pydantic_config__ = _FORBID
    op: Literal["scan"] = "scan"
    folder: str


@dataclass(kw_only=True)
class BaselineCall:
    """Write the truth as a baseline file, or read one back with ``reader``; or (``floor``) do the least any
    reader of a SEG object at ``path`` must do: read its bytes, parse its header, and look at every pixel byte
    once (native) or decode every frame (compressed), placing nothing."""

    __pydantic_config__ = _FORBID
    op: Literal["baseline"] = "baseline"
    action: Literal["write", "read", "floor"]
    format: str
    truth_dir: str
    path: str
    reader: str | None = None
    bench: bool = False


@dataclass(kw_only=True)
class ExchangeCall:
    """Check a vendor's exchange folder and convert it into the canonical ``.npz``."""

    __pydantic_config__ = _FORBID
    op: Literal["exchange"] = "exchange"
    folder: str
    sources: list[str]
    output: str


Call = InfoCall | WriteCall | ReadCall | StartCall | InspectCall | ValidateCall | ScanCall | BaselineCall | ExchangeCall


# --------------------------------------------------------------------------- replies
@dataclass(kw_only=True)
class Failure:
    """The call failed in the child: its exception, or the memory limit (``memory``)."""

    __pydantic_config__ = _FORBID
    ok: Literal[False] = False
    error_type: str
    message: str
    traceback: str | None = None
    memory: bool = False
    peak_rss_mb: float | None = None


@dataclass(kw_only=True)
class InfoReply:
    """An adapter's handshake (the fields of :class:`dicom4qi.model.results.ToolInfo` it knows)."""

    __pydantic_config__ = _FORBID
    ok: Literal[True] = True
    name: str
    role: Role
    tool: str
    version: str | None = None
    available: bool = True
    reason: str = ""
    features: list[str] = field(default_factory=list)
    unsupported_combinations: list[list[str]] = field(default_factory=list)
    homepage: str | None = None
    summary: str | None = None
    family: str | None = None
    service: bool = False
    #: Why the adapter cannot run although it should (a broken handshake of an executable adapter).
    error: str | None = None
    peak_rss_mb: float | None = None
    #: One-time work done in the handshake, with its time (:meth:`dicom4qi.adapters.contract.Adapter.warm_up`).
    warm_up: str | None = None


@dataclass(kw_only=True)
class WriteReply:
    __pydantic_config__ = _FORBID
    ok: Literal[True] = True
    notes: list[str] = field(default_factory=list)
    #: File names (in the output's folder) of further instances of the same series, in order, after ``output``.
    instances: list[str] = field(default_factory=list)
    peak_rss_mb: float | None = None


@dataclass(kw_only=True)
class ReadReply:
    __pydantic_config__ = _FORBID
    ok: Literal[True] = True
    notes: list[str] = field(default_factory=list)
    #: The tool's decode alone (seconds), without the child's start-up and the canonical form.
    read_s: float | None = None
    peak_rss_mb: float | None = None
    #: The peak memory of the service the read ran in (a viewer's browser), outside the call's process (MiB).
    service_peak_rss_mb: float | None = None


@dataclass(kw_only=True)
class StartReply:
    __pydantic_config__ = _FORBID
    ok: Literal[True] = True
    endpoints: dict[str, str]
    #: The service's processes, stopped by PID when the run ends.
    pids: list[int] = field(default_factory=list)
    peak_rss_mb: float | None = None


@dataclass(kw_only=True)
class Header:
    """What the write step checks of an object's header."""

    __pydantic_config__ = _FORBID
    sop_class_uid: str = ""
    transfer_syntax_uid: str = ""
    segmentation_type: str = ""
    bits_allocated: int | None = None
    segment_numbers: list[int] = field(default_factory=list)
    frames: int | None = None
    fractional_type: str = ""
    max_fractional_value: int | None = None
    photometric: str = ""
    series_instance_uid: str = ""
    sop_instance_uid: str = ""
    frame_of_reference_uid: str = ""
    instance_number: int | None = None


@dataclass(kw_only=True)
class InspectReply:
    __pydantic_config__ = _FORBID
    ok: Literal[True] = True
    header: Header
    peak_rss_mb: float | None = None


@dataclass(kw_only=True)
class ValidateReply:
    """The validator's run: ``kind`` ok, error or timeout; its raw output is parsed by the harness."""

    __pydantic_config__ = _FORBID
    ok: Literal[True] = True
    kind: str
    raw: str = ""
    seconds: float = 0.0
    exit_code: int | None = None
    message: str = ""
    peak_rss_mb: float | None = None


@dataclass(kw_only=True)
class FoundObject:
    """One SEG object found in a folder from the wild (:class:`dicom4qi.corpus.wild.ExternalObject`)."""

    __pydantic_config__ = _FORBID
    id: str
    path: str
    sources: list[str]
    missing: list[str]
    features: list[str]
    labelmap: bool
    written_by: str = ""
    truth: str | None = None
    truth_segments: list[int] = field(default_factory=list)


@dataclass(kw_only=True)
class ScanReply:
    __pydantic_config__ = _FORBID
    ok: Literal[True] = True
    objects: list[FoundObject] = field(default_factory=list)
    peak_rss_mb: float | None = None


@dataclass(kw_only=True)
class BaselineReply:
    """A baseline's write (``size``) or read (``shape`` and labelled ``voxels``, to be checked; not when timed)."""

    __pydantic_config__ = _FORBID
    ok: Literal[True] = True
    seconds: float
    size: int | None = None
    shape: list[int] | None = None
    voxels: int | None = None
    peak_rss_mb: float | None = None


@dataclass(kw_only=True)
class ExchangeReply:
    __pydantic_config__ = _FORBID
    ok: Literal[True] = True
    notes: list[str] = field(default_factory=list)
    peak_rss_mb: float | None = None


Reply = (
    InfoReply
    | WriteReply
    | ReadReply
    | StartReply
    | InspectReply
    | ValidateReply
    | ScanReply
    | BaselineReply
    | ExchangeReply
)

_CALLS: dict[str, type] = {
    "info": InfoCall,
    "write": WriteCall,
    "read": ReadCall,
    "start": StartCall,
    "inspect": InspectCall,
    "validate": ValidateCall,
    "scan": ScanCall,
    "baseline": BaselineCall,
    "exchange": ExchangeCall,
}
#: The reply to each operation.
REPLIES: Final[dict[str, type]] = {
    "info": InfoReply,
    "write": WriteReply,
    "read": ReadReply,
    "start": StartReply,
    "inspect": InspectReply,
    "validate": ValidateReply,
    "scan": ScanReply,
    "baseline": BaselineReply,
    "exchange": ExchangeReply,
}


# --------------------------------------------------------------------------- checking
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _check(value: Any, hint: Any, where: str) -> Any:
    """``value`` as ``hint`` wants it (nested dataclasses built), or a WireError that says where it is wrong."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise WireError(f"{where}: {value!r} is not one of {typing.get_args(hint)}")
        return value
    if origin is Union or origin is types.UnionType:
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, where)
            except WireError as exc:
                errors.append(str(exc))
        raise WireError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {hint}")
    if origin is list:
        if not isinstance(value, list):
            raise WireError(f"{where}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(hint)
        return [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise WireError(f"{where}: expected an object, got {type(value).__name__}")
        key, item = typing.get_args(hint)
        return {_check(k, key, f"{where} key"): _check(v, item, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _build(hint, value, where)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise WireError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise WireError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint in (str, bool):
        if not isinstance(value, hint):
            raise WireError(f"{where}: expected {hint.__name__}, got {type(value).__name__}")
        return value
    raise WireError(f"{where}: no rule for {hint!r}")  # a model this module cannot check is a bug here


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise WireError(f"{where}: expected an object, got {type(data).__name__}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise WireError(f"{where}: unknown field(s) {', '.join(unknown)}")
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing = sorted(required - set(data))
    if missing:
        raise WireError(f"{where}: missing field(s) {', '.join(missing)}")
    return cls(**{k: _check(v, hints[k], f"{where}.{k}") for k, v in data.items()})


def parse_call(data: Any) -> Call:
    """A call from its JSON object (the child's side)."""
    op = data.get("op") if isinstance(data, dict) else None
    cls = _CALLS.get(op) if isinstance(op, str) else None
    if cls is None:
        raise WireError(f"unknown operation {op!r}")
    result: Call = _build(cls, data, str(op))
    return result


def parse_reply(op: str, data: Any) -> Reply | Failure:
    """The reply to an ``op`` call from its JSON object (the harness's side): the op's reply, or a Failure."""
    if isinstance(data, dict) and data.get("ok") is False:
        failure: Failure = _build(Failure, data, f"{op} failure")
        return failure
    reply: Reply = _build(REPLIES[op], data, f"{op} reply")
    return reply


def dump(message: Call | Reply | Failure) -> str:
    """A call or reply as JSON text."""
    return json.dumps(dataclasses.asdict(message))


def schema_texts() -> dict[str, str]:
    """The JSON Schemas of the wire, by file name under reports/schema (generated by pydantic)."""
    from pydantic import Field, TypeAdapter

    call: Any = typing.Annotated[Call, Field(discriminator="op")]
    reply: Any = Reply | Failure
    out = {}
    for name, hint, title in (
        ("wire-call.schema.json", call, "dicom4qi wire: a call from the harness to its child process"),
        ("wire-reply.schema.json", reply, "dicom4qi wire: the child's reply"),
    ):
        schema = TypeAdapter(hint).json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = title
        out[name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out
