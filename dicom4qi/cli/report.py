"""The dashboard and the suite's own upkeep: ``report`` (the static site), ``schema``, ``tools`` and ``env``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from dicom4qi.adapters.contract import DEFAULTS, Role
from dicom4qi.cli.options import LATEST_RESULTS, RESULTS_DIR, SUBMISSIONS_DIR, add_build, add_corpus, add_known_issues
from dicom4qi.cli.progress import console
from dicom4qi.paths import corpus_file
from dicom4qi.paths import reports as reports_path

__all__ = ["add_env", "add_report", "add_schema", "add_tools"]

CASE_SCHEMA = corpus_file("case.schema.json")
RESULTS_SCHEMA = reports_path("schema", "results.schema.json")


def cmd_report(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from dicom4qi.model.results import ResultsDocument
    from dicom4qi.site.report import render_site
    from dicom4qi.site.view import SiteOptions

    paths = args.results or [LATEST_RESULTS]
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
    elif history_dir is None and not args.results and RESULTS_DIR.is_dir():
        history_dir = RESULTS_DIR  # the earlier runs `dicom4qi run` keeps beside latest.json
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
    if args.sweeps.is_dir() and any(args.sweeps.glob("*/*/latest.json")):
        from dicom4qi.site.releases import render_releases

        links["releases.html"] = "Releases"
        page = render_releases(args.sweeps, args.out, known_issues=args.known_issues)
        console.print(f"wrote {page}")
    submissions = [d for d in docs if d.run.kind in ("submission", "ingest")]
    if args.submissions.is_dir():
        from dicom4qi.vendors.ingest import load_submissions

        submissions += load_submissions(args.submissions)
    runs = [d for d in docs if d.run.kind == "run"]
    if not runs:
        console.print("[red]no conformance results among the files given (only benchmarks)")
        return 2 if not benches else 0
    options = SiteOptions(
        corpus=args.corpus,
        build=args.build,  # tried after each run's own build folder; one that does not exist holds no case
        base_url=args.base_url,
        copy_max_bytes=int(args.copy_max_mb * 2**20),
        copy_total_bytes=int(args.copy_total_mb * 2**20),
        history_runs=max(1, args.history_runs),
        pictures=not args.no_pictures,
    )
    if args.known_issues is not None:
        options.known_issues = args.known_issues
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


def cmd_schema(args: argparse.Namespace) -> int:
    from dicom4qi.model.case import schema_text as case_schema
    from dicom4qi.model.protocol import schema_texts
    from dicom4qi.model.results import schema_text as results_schema
    from dicom4qi.model.wire import schema_texts as wire_schema_texts

    stale = []
    from dicom4qi.judge.known import schema_text as known_schema

    pairs = [
        (CASE_SCHEMA, case_schema()),
        (RESULTS_SCHEMA, results_schema()),
        (CASE_SCHEMA.with_name("known-issue.schema.json"), known_schema()),
    ]
    pairs += [(RESULTS_SCHEMA.parent / name, text) for name, text in schema_texts().items()]
    pairs += [(RESULTS_SCHEMA.parent / name, text) for name, text in wire_schema_texts().items()]
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


def add_report(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        "--sweeps",
        type=Path,
        default=reports_path("sweeps"),
        help="folder of the releases sweeps (`dicom4qi sweep`) for the Releases page (default: %(default)s)",
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
        default=SUBMISSIONS_DIR,
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
    add_corpus(report)
    add_build(report, "another build folder to find built cases (truth) in")
    add_known_issues(report, "folder of known-issue files (default: the suite's corpus/known-issues)")
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


def add_schema(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schema = sub.add_parser("schema", help="write the JSON Schemas generated from the models")
    schema.add_argument("--check", action="store_true", help="only check that the committed schemas are current")
    schema.set_defaults(func=cmd_schema)


def add_tools(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tools = sub.add_parser("tools", help="print every builtin adapter's handshake (tool, version, features) as JSON")
    add_build(tools, "build folder (environments)")
    tools.set_defaults(func=cmd_tools)


def add_env(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    env = sub.add_parser("env", help="list adapters with their environment state and tool version")
    add_build(env, "build folder (environments)")
    env.set_defaults(func=cmd_env, env_command="list")
    esub = env.add_subparsers(dest="env_command")
    esetup = esub.add_parser("setup", help="build the environments (all, or the one of NAME)")
    esetup.add_argument("name", nargs="?", help="an adapter name or an environment name")
    add_build(esetup)
    esetup.set_defaults(func=cmd_env, env_command="setup")
