"""The vendors' commands: ``verify-submission`` and ``ingest`` (the suite's side), ``submission make`` (theirs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from dicom4qi.cli.options import (
    SUBMISSIONS_DIR,
    add_build,
    add_consumers,
    add_corpus_options,
    add_jobs,
    add_memory,
    add_timeout,
    add_validation,
    unknown_adapters,
)
from dicom4qi.cli.progress import RichProgress, console

if TYPE_CHECKING:
    from dicom4qi.model.results import ResultsDocument
    from dicom4qi.vendors.ingest import Received

__all__ = ["add_vendor_commands"]


def _receive(args: argparse.Namespace) -> Received:
    from dicom4qi.vendors.ingest import receive

    return receive(args.submission, build=args.build, bundle=args.bundle, corpus=args.corpus, features=args.features)


def cmd_verify_submission(args: argparse.Namespace) -> int:
    from dicom4qi.vendors.ingest import SubmissionError, save_submission_results, verify_submission

    try:
        rec = _receive(args)
        doc = verify_submission(
            rec, build=args.build, progress=RichProgress(), timeout_s=args.timeout, memory_mb=args.memory_mb
        )
    except SubmissionError as exc:
        console.print(f"[red]refused: {exc}")
        return 2
    path = save_submission_results(doc, rec, args.out)
    _print_submission(doc, path)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from dicom4qi.adapters.contract import DEFAULTS
    from dicom4qi.vendors.ingest import SubmissionError, ingest_submission, save_submission_results

    unknown = unknown_adapters(None, args.consumer)
    if unknown:
        for u in unknown:
            console.print(f"[red]{u}")
        return 2
    try:
        rec = _receive(args)
        doc = ingest_submission(
            rec,
            consumers=args.consumer or list(DEFAULTS["consumer"]),
            build=args.build,
            corpus=args.corpus,
            features=args.features,
            workers=max(1, args.jobs),
            timeout_s=args.timeout,
            memory_mb=args.memory_mb,
            validate=not args.no_validate,
            validate_timeout_s=args.validate_timeout,
            progress=RichProgress(),
        )
    except (SubmissionError, ValueError, FileNotFoundError) as exc:
        console.print(f"[red]refused: {exc}")
        return 2
    path = save_submission_results(doc, rec, args.out)
    _print_submission(doc, path)
    return 0


def _print_submission(doc: ResultsDocument, path: Path) -> None:
    info = doc.run.submission
    assert info is not None  # a verified or ingested submission's results
    counts: dict[str, int] = {}
    for r in doc.records:
        if r.step == "read":
            label = r.status.value + (" (self-reported)" if r.provenance == "self-reported" else "")
            counts[label] = counts.get(label, 0) + 1
    for problem in info.problems:
        console.print(f"[yellow]{problem}")
    console.print(
        f"{info.vendor}: {info.tool} {info.tool_version}, bundle {info.bundle}: "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    )
    console.print(f"results: {path}")


def cmd_submission_make(args: argparse.Namespace) -> int:
    from dicom4qi.adapters.executable import AdapterError
    from dicom4qi.vendors.kit import make_submission

    try:
        path = make_submission(
            args.adapter, args.bundle, args.out, vendor=args.vendor, timeout_s=args.timeout, progress=RichProgress()
        )
    except (AdapterError, OSError, ValueError, KeyError) as exc:
        console.print(f"[red]{exc}")
        return 2
    console.print(f"wrote {path}")
    return 0


def _submission_options(p: argparse.ArgumentParser) -> None:
    """What ``verify-submission`` and ``ingest`` share: the submission, its bundle, where results go, the limits."""
    add_corpus_options(p)
    p.add_argument("submission", type=Path, help="the submission: a folder or a .zip holding submission.json")
    p.add_argument(
        "--bundle",
        help="the bundle it answers (folder, manifest.json or id; default: the id it names, "
        "looked up in build/bundles)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=SUBMISSIONS_DIR,
        help="where results are kept, per vendor (default: %(default)s)",
    )
    add_build(p)
    add_timeout(p, "seconds per object")
    add_memory(p)


def add_vendor_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = sub.add_parser(
        "verify-submission", help="check a vendor's consumer submission against the truth (results marked verified)"
    )
    _submission_options(verify)
    verify.set_defaults(func=cmd_verify_submission)

    ingest = sub.add_parser("ingest", help="run every consumer and the validator on a vendor's producer submission")
    _submission_options(ingest)
    add_consumers(ingest, "consumer(s) to run (default: all)")
    add_jobs(ingest)
    add_validation(ingest, "skip dciodvfy")
    ingest.set_defaults(func=cmd_ingest)

    subm = sub.add_parser("submission", help="the vendor's side: make a submission with a protocol adapter")
    smsub = subm.add_subparsers(dest="submission_command", required=True)
    make = smsub.add_parser("make", help="run an adapter (docs/protocol.md) over a bundle; write a submission folder")
    make.add_argument("--adapter", type=Path, required=True, help="the adapter's folder (with dicom4qi-adapter.json)")
    make.add_argument("--bundle", type=Path, required=True, help="the bundle folder (dicom4qi-bundle-<id>)")
    make.add_argument("--vendor", required=True, help="your id: letters, digits, '.', '_', '-'")
    make.add_argument("--out", type=Path, required=True, help="the submission folder to write")
    add_timeout(make, "seconds per call")
    make.set_defaults(func=cmd_submission_make)
