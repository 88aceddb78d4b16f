"""The commands on results documents: ``diff`` two runs, ``gate`` a tool's column against a baseline run,
``summary`` of one, ``combine`` several into one."""

from __future__ import annotations

import argparse
from pathlib import Path

from dicom4qi.cli.options import LATEST_RESULTS, add_known_issues
from dicom4qi.cli.progress import console
from dicom4qi.paths import corpus_file

__all__ = ["add_combine", "add_diff", "add_gate", "add_summary"]


def cmd_diff(args: argparse.Namespace) -> int:
    """Two runs' verdicts, cell by cell: exit 0 when they are the same, 1 when they differ, 2 on a bad file."""
    from pydantic import ValidationError

    from dicom4qi.model.results import ResultsDocument
    from dicom4qi.run.diff import diff_runs

    try:
        old, new = ResultsDocument.load(args.old), ResultsDocument.load(args.new)
    except (OSError, ValidationError, ValueError) as exc:
        console.print(f"[red]{str(exc)[:700]}")
        return 2
    diffs = diff_runs(old, new)
    for d in diffs[: args.limit]:
        case, producer, consumer, step = d.key
        cell = f"{case} {producer}" + (f" → {consumer}" if consumer else "") + f" [{step}]"
        print(f"{cell}: {d.field}\n  old: {d.old[:400]}\n  new: {d.new[:400]}")
    if len(diffs) > args.limit:
        print(f"... and {len(diffs) - args.limit} more")
    cells = len({(r.case, r.producer, r.consumer, r.step) for r in old.records})
    print(f"{cells} cells in {args.old.name}, {len(new.records)} in {args.new.name}: {len(diffs)} difference(s)")
    return 1 if diffs else 0


def cmd_gate(args: argparse.Namespace) -> int:
    """A tool's column against a baseline run: exit 0 without regressions, 1 with, 2 on bad input."""
    from dicom4qi.judge.known import load_known_issues
    from dicom4qi.run.gate import (
        GateError,
        baseline_column_for,
        gate,
        gate_json,
        gate_markdown,
        gate_text,
        load_baseline,
        load_run,
        resolve_column,
    )

    def bad(message: str) -> int:
        console.print(message, style="red", markup=False, highlight=False, soft_wrap=True)
        return 2

    try:
        new = load_run(args.new)
        column = resolve_column(new, args.tool)
        as_name = args.baseline_column or baseline_column_for(new, column)
        cases = {r.case for r in new.records if column in (r.producer, r.consumer)}
        baseline, baseline_path, warnings = load_baseline(args.baseline, as_name, cases)
        folder = args.known_issues if args.known_issues is not None else corpus_file("known-issues")
        issues, _ = load_known_issues(folder) if folder.is_dir() else ([], [])
        report = gate(baseline, new, column, as_name, issues, baseline_file=str(baseline_path))
    except GateError as exc:
        return bad(str(exc)[:1200])
    report.warnings[:0] = warnings
    markdown = gate_markdown(report, title=args.title)
    try:
        if args.summary is not None:
            with args.summary.open("a", encoding="utf-8") as f:
                f.write(markdown)
        if args.json is not None:
            args.json.write_text(gate_json(report), encoding="utf-8")
    except OSError as exc:
        return bad(f"cannot write the gate's output: {exc}")
    if args.markdown:
        print(markdown, end="")
    else:
        print(gate_text(report), end="")
    return report.exit_code


def cmd_summary(args: argparse.Namespace) -> int:
    from pydantic import ValidationError
    from rich.table import Table

    from dicom4qi.model.results import ResultsDocument
    from dicom4qi.run.summary import by_feature

    try:
        doc = ResultsDocument.load(args.results)
    except (OSError, ValidationError, ValueError) as exc:
        console.print(f"[red]{str(exc)[:700]}")
        return 2
    table_data = by_feature(doc, args.role)
    tools = sorted({t for per in table_data.values() for t in per})
    table = Table(title=f"{args.role}s: passed / tried per feature ({args.results.name})")
    table.add_column("feature")
    for t in tools:
        table.add_column(t, justify="right")
    for feature, per in table_data.items():
        cells = []
        for t in tools:
            c = per.get(t)
            cells.append("" if c is None or not c.tried else f"{c.passed}/{c.tried}")
        table.add_row(feature, *cells)
    console.print(table)
    return 0


def cmd_combine(args: argparse.Namespace) -> int:
    """Merge results documents (shards of a run, earlier runs) into one; exit 2 when they do not merge."""
    from dicom4qi.run.combine import CombineError, combine, load_inputs, write_combined

    if args.out.resolve() in {p.resolve() for p in args.results}:
        console.print(
            f"--out {args.out} is one of the inputs: write the combined document elsewhere",
            style="red",
            markup=False,
            soft_wrap=True,
        )
        return 2
    try:
        inputs = load_inputs(args.results)
        command = ["dicom4qi", "combine", *map(str, args.results), "--out", str(args.out)]
        doc = combine(inputs, command=command + (["--run-id", args.run_id] if args.run_id else []), run_id=args.run_id)
    except CombineError as exc:
        console.print(str(exc), highlight=False, markup=False, style="red", soft_wrap=True)
        return 2
    write_combined(doc, args.out)
    unfinished = [i.label for i in inputs if i.doc.run.finished is None]
    if unfinished:
        console.print(
            f"not finished (interrupted?): {', '.join(unfinished)}; the combined run is marked unfinished",
            style="yellow",
            markup=False,
            soft_wrap=True,
        )
    console.print(
        f"combined {len(inputs)} document(s): {len(doc.records)} records, {len(doc.tools)} tools, "
        f"run {doc.run.run_id} -> {args.out}",
        markup=False,
        soft_wrap=True,
    )
    return 0


def add_diff(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    diff = sub.add_parser("diff", help="compare the verdicts of two runs cell by cell (exit 1 when they differ)")
    diff.add_argument("old", type=Path, help="the earlier results JSON")
    diff.add_argument("new", type=Path, help="the later results JSON")
    diff.add_argument("--limit", type=int, default=50, help="differences printed at most (default: %(default)s)")
    diff.set_defaults(func=cmd_diff)


def add_gate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    g = sub.add_parser(
        "gate",
        help="compare a tool's column with a baseline run (the nightly): exit 1 on regressions only",
        description="Compare every cell of one column of a run (a tool's checkout, `highdicom@path:.`) with the "
        "baseline's cell of the same tool (the nightly's `highdicom`), by case, step and the other side of the cell. "
        "A regression is a cell that passed in the baseline and now fails (FAIL, ERROR, CRASH, TIMEOUT), or is "
        "SKIPPED because the column is not available; fixes, cells still failing, verdicts lost (UNSUPPORTED, "
        "SKIPPED, DISPUTED) and new cells are reported and never fail. Exit 0: no regression; 1: regressions; "
        "2: a baseline or run that cannot be read, or a column that is not in the run. A baseline without the "
        "column is no error: every cell is new (a warning says so). See docs/github-action.md.",
    )
    g.add_argument(
        "baseline",
        type=Path,
        help="the baseline results JSON, or a folder of them (the newest with the column for the run's cases)",
    )
    g.add_argument(
        "new", type=Path, nargs="?", default=LATEST_RESULTS, help="the run's results JSON (default: %(default)s)"
    )
    g.add_argument(
        "--tool",
        required=True,
        metavar="COLUMN",
        help="the column under test, as the run names it (highdicom@path:DIR, exec:DIR), or the tool's name when "
        "the run has one checkout of it",
    )
    g.add_argument(
        "--baseline-column",
        metavar="NAME",
        help="the baseline's name of the column (default: the name before @path:, or the tool an exec adapter names)",
    )
    add_known_issues(g, "folder of known-issue files, to name what explains a failure (default: the suite's)")
    g.add_argument("--summary", type=Path, metavar="FILE", help="append the comparison as Markdown (a job summary)")
    g.add_argument("--json", type=Path, metavar="FILE", help="write the comparison as JSON")
    g.add_argument("--markdown", action="store_true", help="print Markdown instead of plain text")
    g.add_argument("--title", default="dicom4qi", help="the Markdown heading's first words (default: %(default)s)")
    g.set_defaults(func=cmd_gate)


def add_summary(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    summary = sub.add_parser("summary", help="print pass counts per feature and tool from a results JSON")
    summary.add_argument("results", type=Path, nargs="?", default=LATEST_RESULTS)
    summary.add_argument("--role", choices=["consumer", "producer", "validator"], default="consumer")
    summary.set_defaults(func=cmd_summary)


def add_combine(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    combine = sub.add_parser(
        "combine",
        help="merge results documents (shards of a run, earlier runs) into one",
        description="Merge results documents into one that validates against the results schema. Refused (exit 2), "
        "with the files and values named: inputs of different corpus fingerprints (case files or selection), a tool "
        "described differently (another version), or a cell (case, producer, consumer) in two inputs with different "
        "records. A cell in several inputs as the same record (the produce step's writes, carried by every shard) is "
        "kept once.",
    )
    combine.add_argument("results", nargs="+", type=Path, help="results documents to merge")
    combine.add_argument("--out", type=Path, required=True, help="the combined document to write")
    combine.add_argument(
        "--run-id", help="the combined run's id (default: the inputs' when they share one, else derived)"
    )
    combine.set_defaults(func=cmd_combine)
