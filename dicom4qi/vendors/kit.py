"""The vendor's side: run a protocol adapter over a bundle and lay out a submission.

``dicom4qi submission make --adapter FOLDER --bundle BUNDLE --vendor ID --out DIR``
asks the adapter (``docs/protocol.md``) to read every object of the bundle (a
consumer) or to write every case (a producer), and writes ``DIR`` in the
submission layout of ``docs/vendors.md``, ready for ``dicom4qi
verify-submission`` or ``dicom4qi ingest``. A call the adapter fails is entered
as the tool's own ERROR (self-reported: there is no output to verify).
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path
from typing import Any

from dicom4qi.adapters.contract import missing_features
from dicom4qi.adapters.executable import AdapterError, ExecAdapterMixin, call_adapter, exec_adapter
from dicom4qi.model.protocol import CallResponse, Request, SelfReport, SubmissionDoc, SubmissionEntry, SubmittedTool

__all__ = ["make_submission"]


def make_submission(
    adapter: Path,
    bundle: Path,
    out: Path,
    *,
    vendor: str,
    timeout_s: float = 600.0,
    progress: Any = None,
) -> Path:
    """Run ``adapter`` over ``bundle`` and write a submission folder ``out``; return submission.json's path."""
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    cls: type[ExecAdapterMixin] = exec_adapter("consumer", adapter)
    probe: ExecAdapterMixin = cls()
    cls.prepare()
    info = probe.handshake()
    role = info.role if info else None
    if info is None:
        # perhaps a producer: ask again as one
        cls = exec_adapter("producer", adapter)
        probe = cls()
        info = probe.handshake()
        role = info.role if info else None
    if info is None or not info.available:
        why = probe._info_error if info is None else info.reason
        raise AdapterError(f"{adapter}: cannot use the adapter: {why}")
    assert probe.manifest is not None
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    entries: list[SubmissionEntry] = []
    items = sorted(manifest["objects"].items()) if role == "consumer" else sorted(manifest["cases"].items())
    if progress:
        progress.start("adapter", len(items))
    try:
        for key, item in items:
            case_info = manifest["cases"][item["case"]] if role == "consumer" else item
            reasons = missing_features(
                set(case_info.get("features", [])), set(info.features), info.unsupported_combinations
            )
            if reasons:
                # The tool declares the case unsupported: said so, never run.
                if role == "consumer":
                    entries.append(
                        SubmissionEntry(
                            object=key,
                            self_reported=SelfReport(status="UNSUPPORTED", message="; ".join(reasons)[:1000]),
                        )
                    )
                if progress:
                    progress.advance(key)
                continue
            if role == "consumer":
                case = manifest["cases"][item["case"]]
                target = out / "decoded" / key
                target.mkdir(parents=True)
                request = Request(
                    op="read",
                    seg=str((bundle / item["path"]).resolve()),
                    sources=[str((bundle / s).resolve()) for s in case.get("reader_sources", case["sources"])],
                    output=str(target.resolve()),
                )
                entry: SubmissionEntry | None = SubmissionEntry(object=key, decoded=f"decoded/{key}")
                writable = target
            else:
                case_doc = tomllib.loads((bundle / item["file"]).read_text(encoding="utf-8"))
                seg = Path("objects") / f"{key.replace('/', '__')}.dcm"
                (out / seg).parent.mkdir(parents=True, exist_ok=True)
                request = Request(
                    op="write",
                    case={"id": key, **case_doc},
                    truth=str((bundle / item["truth"]).resolve()),
                    sources=[str((bundle / s).resolve()) for s in item["sources"]],
                    output=str((out / seg).resolve()),
                )
                entry = SubmissionEntry(case=key, seg=seg.as_posix())
                writable = (out / seg).parent
            try:
                response = CallResponse.model_validate(
                    call_adapter(adapter.resolve(), probe.manifest, request, timeout_s=timeout_s, writable=[writable])
                )
                if not response.ok:
                    raise AdapterError(response.error or "failed without a message")
                assert entry is not None
                entry.notes = [n[:1000] for n in response.notes[:16]]
            except (AdapterError, ValueError) as exc:
                if role == "consumer":
                    shutil.rmtree(out / "decoded" / key, ignore_errors=True)
                    entry = SubmissionEntry(
                        object=key, self_reported=SelfReport(status="ERROR", message=str(exc)[:1000])
                    )
                else:
                    entry = None
            if entry is not None:
                entries.append(entry)
            if progress:
                progress.advance(key)
    finally:
        if progress:
            progress.stop()
    doc = SubmissionDoc(
        vendor=vendor,
        tool=SubmittedTool(
            name=info.tool or info.name or "unknown", version=info.version or "unknown", homepage=info.homepage
        ),
        role=role,
        bundle=manifest["id"],
        notes=f"made with dicom4qi submission make from the {info.name} adapter",
        entries=entries,
    )
    path = out / "submission.json"
    path.write_text(doc.model_dump_json(indent=1, exclude_none=True), encoding="utf-8")
    return path
