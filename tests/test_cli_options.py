"""The command line's shared options: one definition each, so one default whatever the command; no default path
resolved from the working directory."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from dicom4qi.cli import options
from dicom4qi.cli.main import build_parser
from dicom4qi.paths import build as build_path

#: Not one option under one name: ``--out`` names a different thing per command (results folder, site, bundle,
#: submission); ``--bundle`` is a folder, manifest or id to look up for ``verify-submission`` and ``ingest``, and
#: the (required) bundle folder for ``submission make``.
PER_COMMAND = {"--out", "--bundle"}


def _commands(parser: argparse.ArgumentParser, name: str = "dicom4qi") -> dict[str, argparse.ArgumentParser]:
    """Every command and subcommand's parser, by its full name."""
    found = {name: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                found |= _commands(sub, f"{name} {sub_name}")
    return found


def _options() -> dict[str, dict[str, argparse.Action]]:
    """Each optional argument's action in every command that takes it: {option: {command: action}}."""
    table: dict[str, dict[str, argparse.Action]] = {}
    for command, parser in _commands(build_parser()).items():
        for action in parser._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                table.setdefault(action.option_strings[-1], {})[command] = action
    return table


OPTIONS = _options()
SHARED = sorted(o for o, per in OPTIONS.items() if len(per) > 1 and o not in PER_COMMAND)


def test_the_shared_options_are_shared() -> None:
    expected = {"--build", "--corpus", "--features", "--jobs", "--memory-mb", "--timeout", "--validate-timeout"}
    assert expected <= set(SHARED)
    assert {"dicom4qi run", "dicom4qi bench", "dicom4qi ingest"} <= set(OPTIONS["--jobs"])
    assert len(OPTIONS["--build"]) >= 7


@pytest.mark.parametrize("option", SHARED)
def test_a_shared_option_has_one_default_and_one_type(option: str) -> None:
    per = OPTIONS[option]
    defaults = {command: a.default for command, a in per.items()}
    assert len({repr(d) for d in defaults.values()}) == 1, f"{option} has several defaults: {defaults}"
    types = {command: a.type for command, a in per.items()}
    assert len(set(types.values())) == 1, f"{option} has several types: {types}"


@pytest.mark.parametrize(
    ("option", "default"),
    [
        ("--timeout", 600.0),
        ("--memory-mb", 8192.0),
        ("--validate-timeout", 300.0),
        ("--jobs", 1),
        ("--build", build_path()),
    ],
)
def test_the_single_defaults(option: str, default: object) -> None:
    assert {a.default for a in OPTIONS[option].values()} == {default}


def test_the_defaults_are_the_options_constants() -> None:
    assert (options.TIMEOUT_S, options.MEMORY_MB, options.VALIDATE_TIMEOUT_S, options.JOBS) == (600.0, 8192.0, 300.0, 1)


def test_no_default_path_is_relative() -> None:
    relative = []
    for command, parser in _commands(build_parser()).items():
        for action in parser._actions:
            values = action.default if isinstance(action.default, list) else [action.default]
            relative += [f"{command} {action.dest}: {v}" for v in values if isinstance(v, Path) and not v.is_absolute()]
    assert not relative, relative


def test_the_limits_are_bounded() -> None:
    parser = build_parser()
    for args in (["run", "--timeout", "inf"], ["bench", "--memory-mb", "1"], ["ingest", "x", "-j", "0"]):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(args)
        assert exc.value.code == 2


def test_progress_in_a_pipe_is_plain_lines_as_the_phase_goes(capsys) -> None:
    from dicom4qi.cli.progress import RichProgress

    progress = RichProgress(plain=True, every_s=0.0)  # a line at every item: the interval is what is tested apart
    progress.start("read", 3)
    progress.advance("quick/a highdicom → dcmqi: PASS")
    progress.note("the JVM started once")
    progress.advance("quick/b highdicom → dcmqi: FAIL")
    progress.advance("quick/c highdicom → dcmqi: PASS")
    progress.stop()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[read] 3 to do"
    assert lines[1].startswith("[read] 1/3 in ") and lines[1].endswith(
        "(PASS 1); last: quick/a highdicom → dcmqi: PASS"
    )
    assert "[read] the JVM started once" in lines
    assert lines[-1].startswith("[read] done: 3/3 in ") and lines[-1].endswith("(PASS 2, FAIL 1)")


def test_plain_progress_lines_are_spaced_in_time(capsys) -> None:
    from dicom4qi.cli.progress import RichProgress

    progress = RichProgress(plain=True, every_s=3600.0)
    progress.start("write", 100)
    for i in range(100):
        progress.advance(f"case {i}: PASS")
    progress.stop()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[-1].startswith("[write] done: 100/100")  # start and end, nothing between
