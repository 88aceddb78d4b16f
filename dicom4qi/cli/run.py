"""The commands that run tools: ``run`` (the conformance matrix), ``bench`` (timings) and ``plan`` (CI shards)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from dicom4qi.adapters.contract import DEFAULTS
from dicom4qi.cli.options import (
    absolute_exec,
    add_build,
    add_cases,
    add_consumers,
    add_corpus_options,
    add_jobs,
    add_memory,
    add_producers,
    add_results_out,
    add_tiers,
    add_timeout,
    add_validation,
    seconds,
    unknown_adapters,
)
from dicom4qi.cli.progress import RichProgress, console
from dicom4qi.paths import reports as reports_path

__all__ = ["add_bench", "add_plan", "add_run", "add_sweep"]


def _shared_config(
    args: argparse.Namespace, tiers: list[str], producers: Sequence[str], consumers: Sequence[str]
) -> dict[str, Any]:
    """The RunConfig fields run and bench take from the same options (with their own default tiers and tools)."""
    return {
        "corpus": args.corpus,
        "features": args.features,
        "build": args.build,
        "results": args.out,
        "tiers": args.tier or tiers,
        "cases": args.case,
        "producers": args.producer or list(producers),
        "consumers": args.consumer or list(consumers),
        "workers": max(1, args.jobs),
        "timeout_s": args.timeout,
        "memory_mb": args.memory_mb,
    }


def cmd_run(args: argparse.Namespace) -> int:
    from dicom4qi.run.runner import RunConfig, run

    args.producer, args.consumer = absolute_exec(args.producer), absolute_exec(args.consumer)
    unknown = unknown_adapters(args.producer, args.consumer)
    if unknown:
        for u in unknown:
            console.print(f"[red]{u}")
        return 2

    cfg = RunConfig(
        **_shared_config(args, ["quick"], DEFAULTS["producer"], DEFAULTS["consumer"]),
        resume=args.resume,
        keep_decoded=args.keep_decoded,
        fork_servers=not args.fresh_processes,
        external=args.external,
        validate=not args.no_validate,
        ignore_claims=args.ignore_claims,
        validate_timeout_s=args.validate_timeout,
    )
    from dicom4qi.process.sandbox import DiskFull

    try:
        summary = run(cfg, RichProgress())
    except DiskFull as exc:
        console.print(f"[red]disk full: {exc.strerror}", soft_wrap=True)
        return 1
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]{exc}")
        return 2
    for e in summary.case_errors:
        console.print(f"[red]{e}")
    table = Table(title="reads")
    for s in sorted(summary.counts):
        table.add_column(s)
    table.add_row(*[str(n) for _, n in sorted(summary.counts.items())])
    console.print(table)
    console.print(f"results: {summary.path} (harness peak memory {summary.harness_peak_rss_mb:.0f} MiB)")
    if args.junit is not None:
        from dicom4qi.judge.known import load_known_issues
        from dicom4qi.model.results import ResultsDocument
        from dicom4qi.run.junit import write_junit

        folder = args.known_issues if args.known_issues is not None else args.corpus.parent / "known-issues"
        issues, _ = load_known_issues(folder) if folder.is_dir() else ([], [])
        console.print(f"JUnit XML: {write_junit(ResultsDocument.load(summary.path), args.junit, issues)}")
    return 1 if summary.case_errors else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from dicom4qi.run.bench import BENCH_CONSUMERS, BENCH_PRODUCERS, BenchConfig, bench
    from dicom4qi.run.runner import RunConfig

    args.producer, args.consumer = absolute_exec(args.producer), absolute_exec(args.consumer)
    unknown = unknown_adapters(args.producer, args.consumer)
    if unknown:
        for u in unknown:
            console.print(f"[red]{u}")
        return 2
    cfg = BenchConfig(
        run=RunConfig(
            **_shared_config(args, ["full"], BENCH_PRODUCERS, BENCH_CONSUMERS),
            validate=False,
            verify_writes=False,  # the benchmark times calls; each warm-up read is checked against the truth
        ),
        repeats=args.repeats,
        publish=None if args.no_publish else args.publish,
    )
    if args.repeats < 1:
        console.print("[red]--repeats must be at least 1")
        return 2
    try:
        path = bench(cfg, RichProgress())
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]{exc}")
        return 2
    from dicom4qi.model.results import ResultsDocument
    from dicom4qi.site.study import render_format_study

    doc = ResultsDocument.load(path)
    page = render_format_study([doc], args.site)
    console.print(f"results: {path}")
    if cfg.publish is not None:
        console.print(f"published: {cfg.publish / ('bench-' + '-'.join(cfg.run.tiers) + '.json')}")
    console.print(f"format study: {page}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """Print the shards of a sharded run as GitHub Actions' matrix JSON (or the produce step's arguments)."""
    from dicom4qi.run.plan import PlanError, matrix, plan, produce_args

    versions = [v for item in args.include_ohif_versions for v in item.replace(",", " ").split()]
    tiers = args.tier or ["quick"]
    if args.sweep_tools:
        from dicom4qi.run.plan import sweep_tools

        print(json.dumps({"tool": sweep_tools()}, separators=(",", ":")))
        return 0
    try:
        if args.produce:
            print(produce_args(tiers, args.case, args.producer or []))
        else:
            shards = plan(tiers, args.case, args.producer or [], args.consumer or None, versions)
            print(json.dumps(matrix(shards), separators=(",", ":")))
    except PlanError as exc:
        console.print(str(exc), highlight=False, markup=False, style="red", soft_wrap=True)
        return 2
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Releases of one tool side by side: the quick tier and the benchmark for each (:mod:`dicom4qi.run.sweep`)."""
    from dicom4qi.run.runner import RunConfig
    from dicom4qi.run.sweep import SweepConfig, SweepError, registry_releases, roles_of, select_releases, sweep
    from dicom4qi.site.releases import render_releases

    if not roles_of(args.tool):
        console.print(f"[red]{args.tool!r} is not a builtin adapter (see `dicom4qi tools`)")
        return 2
    if args.repeats < 1:
        console.print("[red]--repeats must be at least 1")
        return 2
    if args.no_bench and args.bench_only:
        console.print("[red]--no-bench and --bench-only leave nothing to do")
        return 2
    versions = [v for item in args.versions for v in item.replace(",", " ").split()]
    try:
        if not versions:
            available = registry_releases(args.tool)
            versions = select_releases(
                available, last=None if args.all else args.last, since=args.since, prereleases=args.prereleases
            )
            console.print(f"{args.tool}: the registry serves {len(available)} releases; sweeping {', '.join(versions)}")
        cfg = SweepConfig(
            tool=args.tool,
            versions=versions,
            run=RunConfig(
                corpus=args.corpus,
                features=args.features,
                build=args.build,
                tiers=args.tier or ["quick"],
                cases=args.case,
                workers=max(1, args.jobs),
                timeout_s=args.timeout,
                memory_mb=args.memory_mb,
                validate=args.validate,
            ),
            roles=[args.side] if args.side else [],
            bench=not args.no_bench,
            conformance=not args.bench_only,
            repeats=args.repeats,
            bench_timeout_s=args.bench_timeout,
            out=args.out,
        )
        result = sweep(cfg, lambda label: RichProgress())
    except (SweepError, FileNotFoundError, ValueError) as exc:
        console.print(f"[red]{exc}", soft_wrap=True)
        return 2
    for side, path in result.runs.items():
        console.print(f"{side} side: {path}")
    if result.bench is not None:
        console.print(f"benchmark: {result.bench}")
    page = render_releases(args.out, args.site, known_issues=args.known_issues, features=args.features)
    console.print(f"releases page: {page}")
    return 0


def add_sweep(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="releases of one tool side by side: the quick tier and the benchmark for each, for the Releases page",
        description="Each release runs as a column (TOOL@VERSION, in its own environment) against the suite's "
        "reference, on the quick tier (or --tier/--case), and is timed on the 104-organ body CT (BINARY, LABELMAP) "
        "and the 1000-segment label map. Without VERSIONs: the last --last final releases the registry serves "
        "(PyPI, npm). Results go under --out/TOOL/, the Releases page into --site.",
    )
    sweep.add_argument("tool", help="a builtin adapter with releases (highdicom, ohif, ...)")
    sweep.add_argument("versions", nargs="*", metavar="VERSION", help="releases, space- or comma-separated")
    sweep.add_argument(
        "--last", type=int, default=3, metavar="N", help="without VERSIONs: the last N releases (default: %(default)s)"
    )
    sweep.add_argument("--since", metavar="VERSION", help="without VERSIONs: every release since this one")
    sweep.add_argument("--all", action="store_true", help="without VERSIONs: every release the registry serves")
    sweep.add_argument("--prereleases", action="store_true", help="without VERSIONs: count pre-releases too")
    sweep.add_argument(
        "--side",
        choices=("consumer", "producer"),
        help="sweep one side only, reading or writing (default: every side whose adapter takes releases)",
    )
    add_corpus_options(sweep)
    add_tiers(sweep)
    add_cases(sweep)
    add_jobs(sweep)
    add_build(sweep, "folder for generated corpus and objects")
    add_timeout(sweep)
    add_memory(sweep)
    sweep.add_argument("--validate", action="store_true", help="also run dciodvfy on the objects written")
    sweep.add_argument("--no-bench", action="store_true", help="do not time the releases")
    sweep.add_argument(
        "--bench-only",
        action="store_true",
        help="only time the releases (the conformance matrix of the last sweep stays)",
    )
    sweep.add_argument(
        "--repeats", type=int, default=3, help="timed runs per benchmark cell after the warm-up (default: %(default)s)"
    )
    sweep.add_argument(
        "--bench-timeout",
        type=seconds,
        default=300.0,
        metavar="S",
        help="time limit per benchmark call; slower is TIMEOUT, the finding (default: %(default)s)",
    )
    sweep.add_argument(
        "--out", type=Path, default=reports_path("sweeps"), help="folder of the sweeps (default: %(default)s)"
    )
    sweep.add_argument(
        "--site", type=Path, default=reports_path("site"), help="where the Releases page goes (default: %(default)s)"
    )
    sweep.set_defaults(func=cmd_sweep)


def add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run producers and consumers over the corpus")
    add_corpus_options(run)
    add_tiers(run)
    add_cases(run)
    add_jobs(run)
    add_build(run, "folder for generated corpus and objects")
    add_producers(
        run,
        f"producer(s) (default: {', '.join(DEFAULTS['producer'])}); also NAME+rle|jpegls|jpeg2000, NAME@PARAM, module:Class",
    )
    add_consumers(
        run,
        f"consumer(s) (default: {', '.join(DEFAULTS['consumer'])}); also NAME@PARAM (e.g. ohif@3.11.1), module:Class",
    )
    add_results_out(run, "results folder")
    add_timeout(run)
    add_memory(run)
    run.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="RUN_ID",
        help="continue an interrupted run (default: the latest)",
    )
    run.add_argument("--keep-decoded", action="store_true", help="keep each consumer's decoded .npz")
    run.add_argument(
        "--fresh-processes",
        action="store_true",
        help="start a new interpreter for every call (slower) instead of forking it from a server that has the "
        "tool imported; each call is its own process either way",
    )
    run.add_argument(
        "--junit",
        type=Path,
        metavar="FILE",
        help="also write the results as JUnit XML (a test suite per tool, a test case per cell) for CI reporters",
    )
    run.add_argument(
        "--ignore-claims",
        action="store_true",
        help="also run adapters on cases they do not claim, to find out what a tool can do "
        "(the run is marked so; do not publish it as the grid)",
    )
    add_validation(run, "do not run dciodvfy on the produced objects")
    run.add_argument(
        "--external",
        type=Path,
        metavar="DIR",
        help="read SEG objects written elsewhere (no truth: every consumer, judged by agreement)",
    )
    run.set_defaults(func=cmd_run)


def add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser(
        "bench", help="time every write and read of a tier (default: full) against .nii.gz and the reference decoder"
    )
    add_corpus_options(bench)
    add_tiers(bench)
    add_cases(bench)
    add_jobs(bench)
    add_build(bench, "folder for generated corpus and objects")
    add_producers(bench, "producer(s) to time (default: the builtin ones)")
    add_consumers(
        bench,
        "consumer(s) to time (default: the builtin readers, and the viewers ohif and cornerstone on the cases "
        "with bench_viewers = true, or on the cases named with --case)",
    )
    bench.add_argument(
        "--repeats", type=int, default=3, help="timed runs per cell after the warm-up (default: %(default)s)"
    )
    add_results_out(bench, "folder for the results JSON")
    bench.add_argument(
        "--publish",
        type=Path,
        default=reports_path("bench"),
        help="folder of the published benchmark JSON, rewritten (default: %(default)s)",
    )
    bench.add_argument("--no-publish", action="store_true", help="do not rewrite the published benchmark JSON")
    bench.add_argument(
        "--site",
        type=Path,
        default=reports_path("site"),
        help="where the format study page goes (default: %(default)s)",
    )
    add_timeout(bench, "seconds per call; slower is TIMEOUT")
    add_memory(bench)
    bench.set_defaults(func=cmd_bench)


def add_plan(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = sub.add_parser(
        "plan",
        help="print the matrix of shards (one per consumer) as JSON for GitHub Actions",
        description='Print {"include": [...]} with one shard per consumer (and per extra OHIF version): '
        "name, consumer, args (of the shard's `dicom4qi run --resume RUN_ID ...`), service (needs chromium, "
        "Orthanc, npm), ohif_version. With --produce: the produce step's `dicom4qi run` arguments.",
    )
    add_tiers(plan, "tier(s) (default: quick)", choices=("quick", "full", "stress"))
    add_cases(plan, "case id or glob (repeatable)")
    add_producers(plan, "producer(s) (default: the run's defaults)")
    add_consumers(plan, "consumer(s), one shard each (default: the run's defaults)")
    plan.add_argument(
        "--include-ohif-versions",
        nargs="*",
        default=[],
        metavar="VERSION",
        help="more OHIF releases, one shard each (ohif@VERSION); space- or comma-separated",
    )
    plan.add_argument(
        "--produce", action="store_true", help="print the produce step's `dicom4qi run` arguments instead"
    )
    plan.add_argument(
        "--sweep-tools",
        action="store_true",
        help='print the matrix of the nightly\'s releases sweeps instead ({"tool": [...]}: the tools with releases)',
    )
    plan.set_defaults(func=cmd_plan)
