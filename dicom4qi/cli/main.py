"""The ``dicom4qi`` command line.

Exit codes: 0 success; 1 the command ran but found problems (bad case files,
cases that could not be built, an outdated schema); 2 wrong usage or missing
input.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from dicom4qi import __version__
from dicom4qi.adapters.contract import DEFAULTS, Role
from dicom4qi.paths import FEATURES_FILE, corpus_file
from dicom4qi.paths import build as build_path
from dicom4qi.paths import reports as reports_path

if TYPE_CHECKING:
    from dicom4qi.judge.known import KnownIssue, KnownIssueError
    from dicom4qi.model.results import ResultsDocument
    from dicom4qi.vendors.ingest import Received

__all__ = ["main"]

console = Console(stderr=True)
CASE_SCHEMA = corpus_file("case.schema.json")
RESULTS_SCHEMA = reports_path("schema", "results.schema.json")


class RichProgress:
    """Shows the runner's phases as rich progress bars on stderr."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def start(self, phase: str, total: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.fields[phase]:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}", style="dim"),
            console=console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("", total=total, phase=phase)

    def advance(self, text: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1, description=text[:70])

    def note(self, text: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=text[:70])

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


#: Bounds of the limits a user may ask for: finite, positive, and sane.
MAX_TIMEOUT_S = 7 * 24 * 3600.0
MIN_MEMORY_MB, MAX_MEMORY_MB = 64.0, 4 * 2**20
MAX_JOBS = 256


def _bounded(kind: type, low: float, high: float, what: str) -> Callable[[str], float | int]:
    """An argparse type: a finite number of ``kind`` in [low, high]; anything else is a usage error (exit 2)."""
    import math

    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not a {what} (from {low:g} to {high:.0f})")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


seconds = _bounded(float, 0.001, MAX_TIMEOUT_S, "time limit in seconds")
megabytes = _bounded(float, MIN_MEMORY_MB, MAX_MEMORY_MB, "memory limit in MiB")
workers = _bounded(int, 1, MAX_JOBS, "number of workers")


def _unknown_adapters(producers: list[str] | None, consumers: list[str] | None) -> list[str]:
    """Usage errors for adapter names that name nothing (checked before anything runs)."""
    from dicom4qi.adapters.contract import unknown_spec
    from dicom4qi.run.runner import NO_CONSUMER

    problems = [unknown_spec("producer", p) for p in producers or []]
    problems += [unknown_spec("consumer", c) for c in consumers or [] if c != NO_CONSUMER]
    return [p for p in problems if p]


def _add_corpus_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--corpus", type=Path, default=corpus_file("cases"), help="folder of case files (default: %(default)s)"
    )
    p.add_argument(
        "--known-issues",
        type=Path,
        default=None,
        help="folder of known-issue files, one per upstream bug (default: known-issues beside the corpus folder)",
    )
    p.add_argument(
        "--features",
        type=Path,
        default=FEATURES_FILE,
        help="controlled feature list (default: %(default)s)",
    )


def _add_selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tier",
        action="append",
        choices=["quick", "full", "stress", "negative"],
        help="tier(s) to run (default: quick); negative: the broken objects of corpus/negative.toml, alone",
    )
    p.add_argument(
        "--case",
        action="append",
        default=[],
        metavar="ID",
        help="case id or glob, e.g. 'quick/labelmap-*' (repeatable)",
    )
    p.add_argument("-j", "--jobs", type=workers, default=1, metavar="N", help="parallel worker processes (default: 1)")
    p.add_argument(
        "--build",
        type=Path,
        default=build_path(),
        help="folder for generated corpus and objects (default: %(default)s)",
    )


def cmd_lint(args: argparse.Namespace) -> int:
    from dicom4qi.model.case import load_cases, load_features, uncovered_features

    if not args.corpus.is_dir():
        console.print(f"[red]no such folder: {args.corpus}")
        return 2
    cases, errors = load_cases(args.corpus, args.features)
    for e in errors:
        print(f"{e.path}: {e.field}: {e.reason}")
    features = load_features(args.features)
    uncovered = uncovered_features(cases, features)
    for name in uncovered:
        print(f"{args.features}: {name}: no quick case exercises this feature (every run must cover it)")
    folder = args.known_issues if args.known_issues is not None else args.corpus.parent / "known-issues"
    known, known_errors = _lint_known_issues(folder, args.corpus, features, [c.id for c in cases])
    for ke in known_errors:
        print(f"{ke.path}: {ke.field}: {ke.reason}")
    print(
        f"{len(cases)} case file(s) valid, {len(errors)} invalid; "
        f"{len(features) - len(uncovered)} of {len(features)} features covered by quick cases; "
        f"{len(known)} known-issue file(s) valid, {len(known_errors)} problem(s)"
    )
    return 1 if errors or uncovered or known_errors else 0


def _lint_known_issues(
    folder: Path, corpus: Path, features: dict[str, str], case_ids: list[str]
) -> tuple[list[KnownIssue], list[KnownIssueError]]:
    """The known issues, checked against the features, the cases (and mutants) and the adapters there are."""
    from dicom4qi.adapters.contract import BUILTIN
    from dicom4qi.corpus.mutate import load_mutants
    from dicom4qi.judge.known import load_known_issues

    negative = corpus.parent / "negative.toml"
    ids = list(case_ids) + ([m.id for m in load_mutants(negative)] if negative.is_file() else [])
    tools = {n for names in DEFAULTS.values() for n in names} | {n for names in BUILTIN.values() for n in names}
    tools |= {"dciodvfy"}
    return load_known_issues(folder, features=features, case_ids=ids, tool_names=sorted(tools))


def cmd_build(args: argparse.Namespace) -> int:
    from dicom4qi.model.case import load_cases
    from dicom4qi.run.runner import RunConfig, Runner, select_cases

    cases, errors = load_cases(args.corpus, args.features)
    for e in errors:
        print(f"{e.path}: {e.field}: {e.reason}")
    chosen = select_cases(cases, args.tier or ["quick"], args.case)
    runner = Runner(
        RunConfig(corpus=args.corpus, features=args.features, build=args.build, workers=args.jobs), RichProgress()
    )
    problems: list[str] = []
    truths = runner.build_corpus(chosen, problems)
    for p in problems:
        print(p)
    for case_id, truth in sorted(truths.items()):
        print(f"{case_id}\t{truth.directory}")
    return 1 if errors or problems else 0


def cmd_run(args: argparse.Namespace) -> int:
    from dicom4qi.run.runner import RunConfig, run

    unknown = _unknown_adapters(args.producer, args.consumer)
    if unknown:
        for u in unknown:
            console.print(f"[red]{u}")
        return 2

    cfg = RunConfig(
        corpus=args.corpus,
        features=args.features,
        build=args.build,
        results=args.out,
        tiers=args.tier or ["quick"],
        cases=args.case,
        producers=args.producer or list(DEFAULTS["producer"]),
        consumers=args.consumer or list(DEFAULTS["consumer"]),
        workers=max(1, args.jobs),
        timeout_s=args.timeout,
        memory_mb=args.memory_mb,
        resume=args.resume,
        keep_decoded=args.keep_decoded,
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
    return 1 if summary.case_errors else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from dicom4qi.run.bench import BENCH_CONSUMERS, BENCH_PRODUCERS, BenchConfig, bench
    from dicom4qi.run.runner import RunConfig

    unknown = _unknown_adapters(args.producer, args.consumer)
    if unknown:
        for u in unknown:
            console.print(f"[red]{u}")
        return 2
    cfg = BenchConfig(
        run=RunConfig(
            corpus=args.corpus,
            features=args.features,
            build=args.build,
            results=args.out,
            tiers=args.tier or ["full"],
            cases=args.case,
            producers=args.producer or list(BENCH_PRODUCERS),
            consumers=args.consumer or list(BENCH_CONSUMERS),
            workers=max(1, args.jobs),
            timeout_s=args.timeout,
            memory_mb=args.memory_mb,
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


def cmd_report(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from dicom4qi.model.results import ResultsDocument
    from dicom4qi.site.report import render_site
    from dicom4qi.site.view import SiteOptions

    paths = args.results or [reports_path("results", "latest.json")]
    docs = []
    for p in paths:
        if not p.is_file():
            console.print(f"[red]no results file {p} (run `dicom4qi run` first)")
            return 2
        try:
            docs.append(ResultsDocument.load(p))
        except (ValidationError, ValueError) as exc:
            console.print(f"[red]{str(exc)[:700]}")
            return 2
    history = []
    history_dir = args.history
    if history_dir is None and reports_path("history").is_dir():
        history_dir = reports_path("history")
    elif history_dir is None and not args.results and reports_path("results").is_dir():
        history_dir = reports_path("results")  # the earlier runs `dicom4qi run` keeps beside latest.json
    if history_dir is not None:
        if not history_dir.is_dir():
            console.print(f"[red]no history folder {history_dir}")
            return 2
        for p in sorted(history_dir.glob("*.json")):
            try:
                history.append(ResultsDocument.load(p))
            except (ValidationError, ValueError, OSError) as exc:
                console.print(f"[yellow]{p}: not a valid results document, left out of the history: {str(exc)[:300]}")
    links = {}
    benches = [d for d in docs if d.run.kind == "bench"]
    for bench_path in sorted(args.bench.glob("*.json")) if args.bench.is_dir() else []:
        try:
            benches.append(ResultsDocument.load(bench_path))
        except (ValidationError, ValueError) as exc:
            console.print(f"[yellow]{bench_path}: not a valid benchmark document, left out: {str(exc)[:300]}")
    if benches:
        from dicom4qi.site.study import render_format_study

        links["format-study.html"] = "Format study"
        console.print(f"wrote {render_format_study(benches, args.out)}")
    submissions = [d for d in docs if d.run.kind in ("submission", "ingest")]
    if args.submissions.is_dir():
        from dicom4qi.vendors.ingest import load_submissions

        submissions += load_submissions(args.submissions)
    runs = [d for d in docs if d.run.kind == "run"]
    if not runs:
        console.print("[red]no conformance results among the files given (only benchmarks)")
        return 2 if not benches else 0
    options = SiteOptions(
        base_url=args.base_url,
        copy_max_bytes=int(args.copy_max_mb * 2**20),
        copy_total_bytes=int(args.copy_total_mb * 2**20),
        history_runs=max(1, args.history_runs),
        pictures=not args.no_pictures,
    )
    if args.corpus is not None:
        options.corpus = args.corpus
    if args.known_issues is not None:
        options.known_issues = args.known_issues
    if args.build is not None:
        options.build = args.build
    elif build_path().is_dir():
        options.build = build_path()
    if args.bundle_zip is not None and not args.bundle_zip.is_file():
        console.print(f"[red]no bundle zip {args.bundle_zip}")
        return 2
    target = render_site(
        runs,
        args.out,
        links=links,
        history=history,
        options=options,
        submissions=submissions,
        bundle_zip=args.bundle_zip,
    )
    sizes = json.loads((args.out / "data" / "pages.json").read_text(encoding="utf-8"))
    biggest = max(sizes["pages"].items(), key=lambda kv: kv[1])
    console.print(
        f"wrote {target}: {len(sizes['pages'])} pages (largest {biggest[0]}, {biggest[1] / 2**20:.2f} MiB), "
        f"{sizes['copied_files']} files copied ({sizes['copied_bytes'] / 2**20:.1f} MiB), {sizes['not_copied']} too big to copy"
    )
    return 0


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


def cmd_plan(args: argparse.Namespace) -> int:
    """Print the shards of a sharded run as GitHub Actions' matrix JSON (or the produce step's arguments)."""
    from dicom4qi.run.plan import PlanError, matrix, plan, produce_args

    versions = [v for item in args.include_ohif_versions for v in item.replace(",", " ").split()]
    tiers = args.tier or ["quick"]
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


def cmd_schema(args: argparse.Namespace) -> int:
    from dicom4qi.model.case import schema_text as case_schema
    from dicom4qi.model.protocol import schema_texts
    from dicom4qi.model.results import schema_text as results_schema

    stale = []
    from dicom4qi.judge.known import schema_text as known_schema

    pairs = [
        (CASE_SCHEMA, case_schema()),
        (RESULTS_SCHEMA, results_schema()),
        (CASE_SCHEMA.with_name("known-issue.schema.json"), known_schema()),
    ]
    pairs += [(RESULTS_SCHEMA.parent / name, text) for name, text in schema_texts().items()]
    for path, text in pairs:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        if args.check:
            stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            console.print(f"wrote {path}")
    if stale:
        console.print(f"[red]out of date (run `dicom4qi schema`): {', '.join(stale)}")
        return 1
    return 0


def _all_specs() -> list[tuple[Role, str]]:
    return [(role, name) for role, names in DEFAULTS.items() for name in names]


def cmd_tools(args: argparse.Namespace) -> int:
    import tempfile

    from dicom4qi.run.runner import prepare_tool

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for role, name in _all_specs():
            info, _ = prepare_tool(role, name, args.build, Path(tmp) / f"{role}-{name}", 4096)
            out.append(info.model_dump(mode="json"))
    print(json.dumps(out, indent=1))
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    """List adapters with their environment state and real version; ``env setup`` builds them."""
    import tempfile

    from dicom4qi.adapters.contract import resolve
    from dicom4qi.adapters.envs import EnvError, ensure_env, env_spec, env_state
    from dicom4qi.run.runner import handshake

    specs = _all_specs()
    if args.env_command == "setup" and args.name:
        specs = [
            (r, n)
            for r, n in specs
            if n == args.name or ((spec_env := env_spec(resolve(r, n))) is not None and spec_env.name == args.name)
        ]
        if not specs:
            console.print(f"[red]no adapter or environment named {args.name!r}")
            return 2
    table = Table(title="adapters and their environments")
    for col in ("role", "adapter", "environment", "state", "tool version"):
        table.add_column(col)
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for role, name in specs:
            cls = resolve(role, name)
            env = env_spec(cls)
            python = None
            state, why = ("ready", "") if env is None else env_state(env, args.build)
            if env is not None and args.env_command == "setup":
                with console.status(f"building environment {env.name} for {role} {name} ..."):
                    try:
                        python = str(ensure_env(env, args.build))
                        state, why = "ready", ""
                    except EnvError as exc:
                        state, why, failed = "broken", str(exc), True
            elif env is not None and state == "ready":
                python = str(env.python(args.build))
            version = "—"
            if state == "ready":
                info = handshake(role, name, Path(tmp) / f"{role}-{name}", 300, 4096, python=python)
                version = info.version or f"not available: {info.reason or info.error}"
            table.add_row(
                role, name, env.name if env else "(suite's own)", state + (f": {why}" if why else ""), version
            )
    console.print(table)
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from dicom4qi.vendors.bundle import BundleError, export_bundle

    try:
        folder, manifest = export_bundle(
            args.results,
            args.out,
            corpus=args.corpus,
            features=args.features,
            build=args.build,
            make_zip=args.zip,
            progress=RichProgress(),
        )
    except BundleError as exc:
        console.print(f"[red]{exc}")
        return 2
    for s in manifest["skipped"]:
        console.print(f"[yellow]left out: {s}")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    console.print(
        f"bundle {manifest['id']}: {len(manifest['objects'])} objects over {len(manifest['cases'])} cases, "
        f"{size / 2**20:.1f} MiB in {folder}" + (f" (and {folder}.zip)" if args.zip else "")
    )
    print(folder)
    return 0


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
    from dicom4qi.vendors.ingest import SubmissionError, ingest_submission, save_submission_results

    unknown = _unknown_adapters(None, args.consumer)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dicom4qi", description="DICOM SEG interoperability conformance suite.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    corpus = sub.add_parser("corpus", help="check or build the corpus of cases")
    csub = corpus.add_subparsers(dest="corpus_command", required=True)
    lint = csub.add_parser("lint", help="validate every case file; exit 1 on any bad file")
    _add_corpus_args(lint)
    lint.set_defaults(func=cmd_lint)
    build = csub.add_parser("build", help="synthesize source series and truth (cached)")
    _add_corpus_args(build)
    _add_selection_args(build)
    build.set_defaults(func=cmd_build)
    export = csub.add_parser(
        "export",
        help="write the vendor bundle: a run's objects, their sources and truth (NIfTI + JSON), checksums",
    )
    _add_corpus_args(export)
    export.add_argument("--out", type=Path, required=True, help="folder to write dicom4qi-bundle-<id>/ into")
    export.add_argument(
        "--results",
        type=Path,
        default=reports_path("results", "latest.json"),
        help="the run whose objects to export (default: %(default)s)",
    )
    export.add_argument("--zip", action="store_true", help="also write dicom4qi-bundle-<id>.zip")
    export.add_argument("--build", type=Path, default=build_path(), help="build folder (default: %(default)s)")
    export.set_defaults(func=cmd_export)

    run = sub.add_parser("run", help="run producers and consumers over the corpus")
    _add_corpus_args(run)
    _add_selection_args(run)
    run.add_argument(
        "--producer",
        action="append",
        help=f"producer(s) (default: {', '.join(DEFAULTS['producer'])}); also NAME+rle|jpegls|jpeg2000, NAME@PARAM, module:Class",
    )
    run.add_argument(
        "--consumer",
        action="append",
        help=f"consumer(s) (default: {', '.join(DEFAULTS['consumer'])}); also NAME@PARAM (e.g. ohif@3.11.1), module:Class",
    )
    run.add_argument("--out", type=Path, default=reports_path("results"), help="results folder (default: %(default)s)")
    run.add_argument(
        "--timeout",
        type=seconds,
        default=600.0,
        metavar="S",
        help="time limit per call in seconds (default: %(default)s)",
    )
    run.add_argument(
        "--memory-mb",
        type=megabytes,
        default=8192.0,
        metavar="MB",
        help="address-space limit per call (default: %(default)s)",
    )
    run.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="RUN_ID",
        help="continue an interrupted run (default: the latest)",
    )
    run.add_argument("--keep-decoded", action="store_true", help="keep each consumer's decoded .npz")
    run.add_argument(
        "--ignore-claims",
        action="store_true",
        help="also run adapters on cases they do not claim, to find out what a tool can do "
        "(the run is marked so; do not publish it as the grid)",
    )
    run.add_argument("--no-validate", action="store_true", help="do not run dciodvfy on the produced objects")
    run.add_argument(
        "--validate-timeout",
        type=seconds,
        default=300.0,
        metavar="S",
        help="dciodvfy time limit per object (default: %(default)s)",
    )
    run.add_argument(
        "--external",
        type=Path,
        metavar="DIR",
        help="read SEG objects written elsewhere (no truth: every consumer, judged by agreement)",
    )
    run.set_defaults(func=cmd_run)

    bench = sub.add_parser(
        "bench", help="time every write and read of a tier (default: full) against .nii.gz and the reference decoder"
    )
    _add_corpus_args(bench)
    _add_selection_args(bench)
    bench.add_argument(
        "--producer", action="append", metavar="NAME", help="producer(s) to time (default: the builtin ones)"
    )
    bench.add_argument(
        "--consumer", action="append", metavar="NAME", help="consumer(s) to time (default: all but viewers)"
    )
    bench.add_argument(
        "--repeats", type=int, default=3, help="timed runs per cell after the warm-up (default: %(default)s)"
    )
    bench.add_argument(
        "--out", type=Path, default=reports_path("results"), help="folder for the results JSON (default: %(default)s)"
    )
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
    bench.add_argument(
        "--timeout", type=seconds, default=300.0, help="seconds per call; slower is TIMEOUT (default: %(default)s)"
    )
    bench.add_argument(
        "--memory-mb", type=megabytes, default=12288.0, help="address-space limit per call (default: %(default)s)"
    )
    bench.set_defaults(func=cmd_bench)

    report = sub.add_parser(
        "report",
        help="render the dashboard (a static site) from results JSON",
        description="Merge the results files into the current grid (a later run wins a cell) and write the static site: "
        "grid, overview, a page per cell, tool and case, history, badges, format study.",
    )
    report.add_argument(
        "results",
        nargs="*",
        type=Path,
        help="results files, merged into the grid and shown in the history (default: reports/results/latest.json)",
    )
    report.add_argument("--out", type=Path, default=reports_path("site"), help="site folder (default: %(default)s)")
    report.add_argument(
        "--bench",
        type=Path,
        default=reports_path("bench"),
        help="folder of published benchmark JSON for the format study (default: %(default)s)",
    )
    report.add_argument(
        "--bundle-zip",
        type=Path,
        metavar="ZIP",
        help="a bundle made by `dicom4qi corpus export --zip`, offered for download on the Vendors page",
    )
    report.add_argument(
        "--submissions",
        type=Path,
        default=reports_path("submissions"),
        help="folder of vendor submissions' results, one folder per vendor (default: %(default)s)",
    )
    report.add_argument(
        "--history",
        type=Path,
        metavar="DIR",
        help="folder of earlier results JSON, for the history page and change markers only "
        "(default: reports/history if it exists; else, with no results files named, reports/results)",
    )
    report.add_argument(
        "--history-runs", type=int, default=12, metavar="N", help="runs shown side by side (default: %(default)s)"
    )
    report.add_argument("--corpus", type=Path, help="folder of case files (default: the suite's corpus/cases)")
    report.add_argument(
        "--build", type=Path, help="another build folder to find built cases (truth) in (default: build)"
    )
    report.add_argument(
        "--known-issues", type=Path, help="folder of known-issue files (default: the suite's corpus/known-issues)"
    )
    report.add_argument("--base-url", metavar="URL", help="where the site is published, for the badge snippets")
    report.add_argument(
        "--copy-max-mb",
        type=float,
        default=5.0,
        metavar="MB",
        help="copy objects, truth and artifacts up to this size into the site (default: %(default)s)",
    )
    report.add_argument(
        "--copy-total-mb",
        type=float,
        default=300.0,
        metavar="MB",
        help="at most this much copied in all (default: %(default)s)",
    )
    report.add_argument("--no-pictures", action="store_true", help="do not draw the truth of each case")
    report.set_defaults(func=cmd_report)

    diff = sub.add_parser("diff", help="compare the verdicts of two runs cell by cell (exit 1 when they differ)")
    diff.add_argument("old", type=Path, help="the earlier results JSON")
    diff.add_argument("new", type=Path, help="the later results JSON")
    diff.add_argument("--limit", type=int, default=50, help="differences printed at most (default: %(default)s)")
    diff.set_defaults(func=cmd_diff)
    summary = sub.add_parser("summary", help="print pass counts per feature and tool from a results JSON")
    summary.add_argument("results", type=Path, nargs="?", default=reports_path("results", "latest.json"))
    summary.add_argument("--role", choices=["consumer", "producer", "validator"], default="consumer")
    summary.set_defaults(func=cmd_summary)

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

    plan = sub.add_parser(
        "plan",
        help="print the matrix of shards (one per consumer) as JSON for GitHub Actions",
        description='Print {"include": [...]} with one shard per consumer (and per extra OHIF version): '
        "name, consumer, args (of the shard's `dicom4qi run --resume RUN_ID ...`), service (needs chromium, "
        "Orthanc, npm), ohif_version. With --produce: the produce step's `dicom4qi run` arguments.",
    )
    plan.add_argument("--tier", action="append", choices=["quick", "full", "stress"], help="tier(s) (default: quick)")
    plan.add_argument("--case", action="append", default=[], metavar="ID", help="case id or glob (repeatable)")
    plan.add_argument("--producer", action="append", help="producer(s) (default: the run's defaults)")
    plan.add_argument("--consumer", action="append", help="consumer(s), one shard each (default: the run's defaults)")
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
    plan.set_defaults(func=cmd_plan)

    def submission_args(p: argparse.ArgumentParser) -> None:
        _add_corpus_args(p)
        p.add_argument("submission", type=Path, help="the submission: a folder or a .zip holding submission.json")
        p.add_argument(
            "--bundle",
            help="the bundle it answers (folder, manifest.json or id; default: the id it names, "
            "looked up in build/bundles)",
        )
        p.add_argument(
            "--out",
            type=Path,
            default=reports_path("submissions"),
            help="where results are kept, per vendor (default: %(default)s)",
        )
        p.add_argument("--build", type=Path, default=build_path(), help="build folder (default: %(default)s)")
        p.add_argument("--timeout", type=seconds, default=600.0, help="seconds per object (default: %(default)s)")
        p.add_argument(
            "--memory-mb", type=megabytes, default=8192.0, help="address-space limit per call (default: %(default)s)"
        )

    verify = sub.add_parser(
        "verify-submission", help="check a vendor's consumer submission against the truth (results marked verified)"
    )
    submission_args(verify)
    verify.set_defaults(func=cmd_verify_submission)
    ingest = sub.add_parser("ingest", help="run every consumer and the validator on a vendor's producer submission")
    submission_args(ingest)
    ingest.add_argument("--consumer", action="append", help="consumer(s) to run (default: all)")
    ingest.add_argument(
        "-j", "--jobs", type=workers, default=1, metavar="N", help="parallel worker processes (default: 1)"
    )
    ingest.add_argument("--no-validate", action="store_true", help="skip dciodvfy")
    ingest.add_argument(
        "--validate-timeout",
        type=seconds,
        default=300.0,
        metavar="S",
        help="dciodvfy time limit per object (default: %(default)s)",
    )
    ingest.set_defaults(func=cmd_ingest)
    subm = sub.add_parser("submission", help="the vendor's side: make a submission with a protocol adapter")
    smsub = subm.add_subparsers(dest="submission_command", required=True)
    make = smsub.add_parser("make", help="run an adapter (docs/protocol.md) over a bundle; write a submission folder")
    make.add_argument("--adapter", type=Path, required=True, help="the adapter's folder (with dicom4qi-adapter.json)")
    make.add_argument("--bundle", type=Path, required=True, help="the bundle folder (dicom4qi-bundle-<id>)")
    make.add_argument("--vendor", required=True, help="your id: letters, digits, '.', '_', '-'")
    make.add_argument("--out", type=Path, required=True, help="the submission folder to write")
    make.add_argument("--timeout", type=seconds, default=600.0, help="seconds per call (default: %(default)s)")
    make.set_defaults(func=cmd_submission_make)

    schema = sub.add_parser("schema", help="write the JSON Schemas generated from the models")
    schema.add_argument("--check", action="store_true", help="only check that the committed schemas are current")
    schema.set_defaults(func=cmd_schema)

    tools = sub.add_parser("tools", help="print every builtin adapter's handshake (tool, version, features) as JSON")
    tools.add_argument("--build", type=Path, default=build_path(), help="build folder (environments)")
    tools.set_defaults(func=cmd_tools)

    env = sub.add_parser("env", help="list adapters with their environment state and tool version")
    env.add_argument(
        "--build", type=Path, default=build_path(), help="build folder (environments) (default: %(default)s)"
    )
    env.set_defaults(func=cmd_env, env_command="list")
    esub = env.add_subparsers(dest="env_command")
    esetup = esub.add_parser("setup", help="build the environments (all, or the one of NAME)")
    esetup.add_argument("name", nargs="?", help="an adapter name or an environment name")
    esetup.add_argument("--build", type=Path, default=build_path(), help="build folder (default: %(default)s)")
    esetup.set_defaults(func=cmd_env, env_command="setup")
    return parser


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C: services are stopped and results kept.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; results so far are kept (use --resume)")
        return 130


if __name__ == "__main__":
    sys.exit(main())
