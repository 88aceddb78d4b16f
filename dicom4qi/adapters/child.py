"""The child side of an isolated adapter call: ``python -m dicom4qi.adapters.child REQUEST.json``.

(Or, with ``--fork-server MODULE...``, a fork server that imports the modules once and forks one child per call,
which then runs as this module does: :mod:`dicom4qi.process.forkserver`.)

It reads one call (:mod:`dicom4qi.model.wire`), runs one adapter operation and
writes one reply next to the request. Operations:

- ``info``: the handshake (tool, version, availability, claimed features);
- ``write``: a producer writes a case's SEG;
- ``read``: a consumer decodes a SEG into the canonical ``.npz`` (with ``bench``: decodes only);
- ``baseline``: writes or reads the truth as .nii.gz or .seg.nrrd (:mod:`dicom4qi.formats.baselines`);
- ``exchange``: converts an exchange folder (a vendor's decoded output) into the canonical ``.npz``.

An exception becomes a :class:`~dicom4qi.model.wire.Failure` with its type,
message and traceback; a ``MemoryError`` is flagged so the harness can say which limit
was hit. If the process dies before writing a response, the harness records a
CRASH.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path

from dicom4qi.model.wire import (
    BaselineCall,
    Call,
    ExchangeCall,
    ExchangeReply,
    Failure,
    InfoCall,
    InfoReply,
    InspectCall,
    InspectReply,
    ReadCall,
    ReadReply,
    Reply,
    ScanCall,
    ScanReply,
    StartCall,
    StartReply,
    ValidateCall,
    WriteCall,
    WriteReply,
    dump,
    parse_call,
)
from dicom4qi.process.usage import own_peak_rss_mb

__all__ = ["main"]


def _run(call: Call) -> Reply:
    if isinstance(call, InspectCall):  # the header of an object the suite did not write: parsed here, bounded
        from dicom4qi.formats.headers import header_summary

        return InspectReply(header=header_summary(Path(call.seg)))
    if isinstance(call, ValidateCall):  # the validator, and the inflation it needs, under this call's limits
        from dicom4qi.judge.validate import validate_here

        return validate_here(Path(call.seg), Path(call.workdir), call.timeout_s)
    if isinstance(call, ScanCall):  # a folder of objects from the wild: their headers, read here
        from dicom4qi.corpus.wild import find_external

        return ScanReply(objects=[o.to_wire() for o in find_external(Path(call.folder))])
    if isinstance(call, BaselineCall):  # a benchmark baseline (.nii.gz, .seg.nrrd): no adapter involved
        from dicom4qi.formats.baselines import run_baseline

        return run_baseline(call)
    if isinstance(call, ExchangeCall):  # a vendor's decoded output (an exchange folder), checked and converted here
        from dicom4qi.formats.exchange import read_exchange

        writer = read_exchange(Path(call.folder), [Path(p) for p in call.sources])
        writer.write(Path(call.output))
        return ExchangeReply(notes=writer.notes)
    from dicom4qi.adapters.contract import (
        Consumer,
        Producer,
        ReadRequest,
        WriteRequest,
        resolve,
        split_spec,
    )

    service = call.service if isinstance(call, ReadCall) else None
    if service and service.get("netns"):
        join_network(str(service["netns"]))
    cls = resolve(call.role, call.adapter)
    variant = split_spec(call.adapter)[1]
    adapter = cls(variant)
    if isinstance(call, InfoCall):
        if hasattr(adapter, "describe"):  # an executable adapter: its own handshake says it
            described: InfoReply = adapter.describe(call.adapter)
            return described
        ok, reason = adapter.available()
        warmed = None
        if ok:
            t0 = time.perf_counter()
            done = adapter.warm_up()
            if done:
                warmed = f"{done} ({time.perf_counter() - t0:.1f} s, in the handshake: counted in no cell)"
        return InfoReply(
            warm_up=warmed,
            name=cls.name + (f"@{variant}" if variant else ""),
            service=bool(getattr(cls, "needs_service", False)),
            tool=cls.tool,
            role=cls.role,
            version=adapter.version() if ok else None,
            available=ok,
            reason=reason,
            features=sorted(cls.features),
            unsupported_combinations=[sorted(c) for c in cls.unsupported_combinations],
            homepage=cls.homepage,
            summary=cls.summary,
            family=cls.family,
        )
    if isinstance(call, WriteCall):
        from dicom4qi.model.case import load_case
        from dicom4qi.model.truth import Truth

        assert isinstance(adapter, Producer)
        loaded = load_case(Path(call.case_file), Path(call.case_root))
        wreq = WriteRequest(
            case_id=loaded.id,
            case=loaded.case,
            truth=Truth.load(Path(call.truth_dir)),
            output=Path(call.output),
        )
        notes = adapter.write(wreq)
        folder = Path(call.output).parent
        for p in wreq.instances:
            if p.parent != folder:
                raise ValueError(f"the producer wrote an instance outside its output folder: {p}")
        return WriteReply(notes=[str(n) for n in notes or []], instances=[p.name for p in wreq.instances])
    if isinstance(call, ReadCall):
        assert isinstance(adapter, Consumer)
        output = Path(call.output)
        start = time.perf_counter()
        writer = adapter.read(
            ReadRequest(
                seg=Path(call.seg),
                sources=[Path(p) for p in call.sources],
                workdir=output.parent,
                service=call.service,
            )
        )
        read_s = time.perf_counter() - start
        if writer.tool_s is not None:
            read_s = writer.tool_s
        if not call.bench:
            # A benchmark run decodes only; the canonical form is written (and checked) in the warm-up.
            writer.write(output)
        return ReadReply(
            notes=[str(n) for n in writer.notes], read_s=read_s, service_peak_rss_mb=writer.service_peak_rss_mb
        )
    assert isinstance(call, StartCall)
    assert isinstance(adapter, Consumer)
    started = adapter.start_service(Path(call.workdir), Path(call.cache))
    return StartReply(endpoints=dict(started.endpoints), pids=[int(p) for p in started.pids])


def join_network(path: str) -> None:
    """Enter a service's network namespace (``/proc/PID/ns/net``), where its servers listen on loopback."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise RuntimeError(f"the service's network namespace {path} is gone: {exc}") from None
    try:
        if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            raise RuntimeError(f"cannot join the service's network namespace: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def limit_memory() -> None:
    """Apply the address-space limit the harness asked for, to this process and its children.

    Soft and hard alike, so that the tool cannot raise it (where the harness runs as root, ``setpriv``
    has dropped CAP_SYS_RESOURCE from this process). A service start gets no limit (its browser
    reserves terabytes of address space); its calls do.
    """
    limit = os.environ.get("DICOM4QI_MEMORY_LIMIT")
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


#: What every fork server imports before its own tool's modules: what nearly every call imports anyway.
BASE_PRELOAD = (
    "numpy",
    "pydicom",
    "dicom4qi.adapters.contract",
    "dicom4qi.model.case",
    "dicom4qi.model.decoded",
    "scipy.ndimage",  # a label map's crops (model.masks): 150 modules, 0.25 s of each highdicom or pydicom-seg read
    "dicom4qi.model.truth",
    "dicom4qi.formats.headers",
    "dicom4qi.formats.source_frames",
    "dicom4qi.tools.reference.consumer",
    "dicom4qi.tools.reference.producer",
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "--fork-server":  # a long-lived server forking one child per call
        from dicom4qi.process.forkserver import serve

        return serve(list(dict.fromkeys([*BASE_PRELOAD, *args[1:]])), main)
    limit_memory()
    request_path = Path(args[0])
    response_path = request_path.with_name("response.json")
    response: Reply | Failure
    try:
        response = _run(parse_call(json.loads(request_path.read_text(encoding="utf-8"))))
    except MemoryError as exc:
        response = Failure(error_type="MemoryError", message=str(exc) or "out of memory", memory=True)
    except BaseException as exc:  # every failure of the tool becomes a recorded outcome
        response = Failure(
            error_type=type(exc).__name__, message=str(exc)[:4000], traceback=traceback.format_exc()[-8000:]
        )
    response.peak_rss_mb = own_peak_rss_mb(with_children=True)
    tmp = response_path.with_name("response.json.part")
    tmp.write_text(dump(response), encoding="utf-8")
    tmp.replace(response_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
