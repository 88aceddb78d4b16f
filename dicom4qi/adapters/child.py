"""The child side of an isolated adapter call: ``python -m dicom4qi.adapters.child REQUEST.json``.

It reads one JSON request, runs one adapter operation and writes one JSON
response next to the request. Operations:

- ``info``: the handshake (tool, version, availability, claimed features);
- ``write``: a producer writes a case's SEG;
- ``read``: a consumer decodes a SEG into the canonical ``.npz`` (with ``bench``: decodes only);
- ``baseline``: writes or reads the truth as .nii.gz or .seg.nrrd (:mod:`dicom4qi.formats.baselines`);
- ``exchange``: converts an exchange folder (a vendor's decoded output) into the canonical ``.npz``.

An exception becomes ``{"ok": false, ...}`` with its type, message and
traceback; a ``MemoryError`` is flagged so the harness can say which limit
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
from typing import Any

__all__ = ["main"]


def _run(req: dict[str, Any]) -> dict[str, Any]:
    if req["op"] == "inspect":  # the header of an object the suite did not write: parsed here, bounded
        from dicom4qi.formats.headers import header_summary

        return {"ok": True, "header": header_summary(Path(req["seg"]))}
    if req["op"] == "validate":  # the validator, and the inflation it needs, under this call's limits
        from dicom4qi.judge.validate import validate_here

        return {"ok": True, **validate_here(Path(req["seg"]), Path(req["workdir"]), float(req["timeout_s"]))}
    if req["op"] == "scan":  # a folder of objects from the wild: their headers, read here
        from dicom4qi.corpus.wild import find_external

        return {"ok": True, "objects": [o.to_json() for o in find_external(Path(req["folder"]))]}
    if req["op"] == "baseline":  # a benchmark baseline (.nii.gz, .seg.nrrd): no adapter involved
        from dicom4qi.formats.baselines import run_baseline

        return {"ok": True, **run_baseline(req)}
    if req["op"] == "exchange":  # a vendor's decoded output (an exchange folder), checked and converted here, isolated
        from dicom4qi.formats.exchange import read_exchange

        writer = read_exchange(Path(req["folder"]), [Path(p) for p in req["sources"]])
        writer.write(Path(req["output"]))
        return {"ok": True, "notes": writer.notes}
    from dicom4qi.adapters.contract import (
        Consumer,
        Producer,
        ReadRequest,
        WriteRequest,
        resolve,
        split_spec,
    )

    service = req.get("service") or {}
    if service.get("netns"):
        join_network(str(service["netns"]))
    cls = resolve(req["role"], req["adapter"])
    variant = split_spec(req["adapter"])[1]
    adapter = cls(variant)
    op = req["op"]
    if op == "info":
        if hasattr(adapter, "describe"):  # an executable adapter: its own handshake says it
            return {
                "ok": True,
                "name": req["adapter"],
                "service": False,
                "role": cls.role,
                "tool": cls.tool,
                "homepage": None,
                "family": None,
                "unsupported_combinations": [],
                **adapter.describe(),
            }
        ok, reason = adapter.available()
        return {
            "ok": True,
            "name": cls.name + (f"@{variant}" if variant else ""),
            "service": bool(getattr(cls, "needs_service", False)),
            "tool": cls.tool,
            "role": cls.role,
            "version": adapter.version() if ok else None,
            "available": ok,
            "reason": reason,
            "features": sorted(cls.features),
            "unsupported_combinations": [sorted(c) for c in cls.unsupported_combinations],
            "homepage": cls.homepage,
            "family": cls.family,
        }
    if op == "write":
        from dicom4qi.model.case import load_case
        from dicom4qi.model.truth import Truth

        assert isinstance(adapter, Producer)
        loaded = load_case(Path(req["case_file"]), Path(req["case_root"]))
        notes = adapter.write(
            WriteRequest(
                case_id=loaded.id,
                case=loaded.case,
                truth=Truth.load(Path(req["truth_dir"])),
                output=Path(req["output"]),
            )
        )
        return {"ok": True, "notes": list(notes or [])}
    if op == "read":
        assert isinstance(adapter, Consumer)
        output = Path(req["output"])
        start = time.perf_counter()
        writer = adapter.read(
            ReadRequest(
                seg=Path(req["seg"]),
                sources=[Path(p) for p in req["sources"]],
                workdir=output.parent,
                service=req.get("service"),
            )
        )
        read_s = time.perf_counter() - start
        if req.get("bench"):
            # A benchmark run: the tool's decode only; the canonical form is written (and checked) in the warm-up.
            return {"ok": True, "notes": writer.notes, "read_s": read_s}
        writer.write(output)
        return {"ok": True, "notes": writer.notes, "read_s": read_s}
    if op == "start":
        assert isinstance(adapter, Consumer)
        service = adapter.start_service(Path(req["workdir"]), Path(req["cache"]))
        return {"ok": True, "endpoints": service.endpoints, "pids": service.pids}
    raise ValueError(f"unknown operation {op!r}")


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


def own_peak_rss_mb() -> float | None:
    """Peak resident memory of this process since its exec, and of the processes it waited for (MiB).

    The harness cannot take it from ``wait4``: Linux records the parent's high-water mark into the
    child's at exec (the child starts as a copy of the harness), so a small tool would be charged
    the harness's memory. ``VmHWM`` counts this process's own address space only; a tool's
    subprocesses (dcmqi's binaries) come from ``RUSAGE_CHILDREN``, whose own exec-time copy of this
    process is never larger than this process's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                own_kb = int(line.split()[1])
                break
        else:
            return None
    except (OSError, ValueError):
        return None
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own_kb, children_kb) / 1024, 1)


def main(argv: list[str] | None = None) -> int:
    limit_memory()
    args = sys.argv[1:] if argv is None else argv
    request_path = Path(args[0])
    response_path = request_path.with_name("response.json")
    req = json.loads(request_path.read_text(encoding="utf-8"))
    try:
        response = _run(req)
    except MemoryError as exc:
        response = {"ok": False, "error_type": "MemoryError", "message": str(exc) or "out of memory", "memory": True}
    except BaseException as exc:  # every failure of the tool becomes a recorded outcome
        response = {
            "ok": False,
            "error_type": type(exc).__name__,
            "message": str(exc)[:4000],
            "traceback": traceback.format_exc()[-8000:],
        }
    peak = own_peak_rss_mb()
    if peak is not None:
        response["peak_rss_mb"] = peak
    tmp = response_path.with_name("response.json.part")
    tmp.write_text(json.dumps(response), encoding="utf-8")
    tmp.replace(response_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
