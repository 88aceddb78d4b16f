"""The ``dicom4qi`` command line: the parser of every command, and the entry point.

Each command lives in the module of its group (``corpus``, ``run``, ``results``, ``report``, ``vendors``), which
adds its subparser; the options several commands share are defined once, in ``options``.

A run that seems stuck prints every thread's stack to standard error on SIGUSR1 (``kill -USR1 PID``).

Exit codes: 0 success; 1 the command ran but found problems (bad case files,
cases that could not be built, an outdated schema); 2 wrong usage or missing
input.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import io
import signal
import sys
import threading

from dicom4qi import __version__
from dicom4qi.cli.corpus import add_corpus_commands
from dicom4qi.cli.progress import console
from dicom4qi.cli.report import add_env, add_report, add_schema, add_tools
from dicom4qi.cli.results import add_combine, add_diff, add_gate, add_summary
from dicom4qi.cli.run import add_bench, add_plan, add_run, add_sweep
from dicom4qi.cli.vendors import add_vendor_commands

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dicom4qi", description="DICOM SEG interoperability conformance suite.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_corpus_commands(sub)  # corpus lint, build, export
    add_run(sub)
    add_bench(sub)
    add_sweep(sub)
    add_report(sub)
    add_diff(sub)
    add_gate(sub)
    add_summary(sub)
    add_combine(sub)
    add_plan(sub)
    add_vendor_commands(sub)  # verify-submission, ingest, submission make
    add_schema(sub)
    add_tools(sub)
    add_env(sub)
    return parser


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C: services are stopped and results kept.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
        # Not where standard error is no real file (the command called in-process, under a test's capture).
        with contextlib.suppress(io.UnsupportedOperation, AttributeError, ValueError):
            faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; results so far are kept (use --resume)")
        return 130


if __name__ == "__main__":
    sys.exit(main())
