"""dicom4qi plan: the shards of a nightly run, as GitHub Actions' matrix JSON."""

from __future__ import annotations

import json
import shlex

import pytest

from dicom4qi.adapters.contract import DEFAULTS
from dicom4qi.cli.main import build_parser, main
from dicom4qi.run.plan import PlanError, plan, produce_args


def _printed(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["plan", *args]) == 0
    return capsys.readouterr().out


def test_plan_prints_one_shard_per_consumer(capsys: pytest.CaptureFixture[str]) -> None:
    out = _printed(capsys, "--tier", "quick")
    assert out.count("\n") == 1, "one line, for $GITHUB_OUTPUT"
    data = json.loads(out)
    assert list(data) == ["include"], "any other top-level key would become a matrix dimension"
    shards = data["include"]
    assert [s["consumer"] for s in shards] == list(DEFAULTS["consumer"])
    names = [s["name"] for s in shards]
    assert len(set(names)) == len(names)
    assert all(set(n) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") for n in names)
    for s in shards:
        assert set(s) == {"name", "consumer", "args", "service", "ohif_version", "own_env"}
        # Each shard's arguments are a valid `dicom4qi run` after `--resume RUN_ID`: the tier and its one consumer,
        # every producer (the default set, so not named).
        ns = build_parser().parse_args(["run", "--resume", "RUN", *shlex.split(s["args"])])
        assert ns.consumer == [s["consumer"]] and ns.tier == ["quick"] and ns.producer is None
    by = {s["consumer"]: s for s in shards}
    assert by["ohif"]["service"] is True and by["ohif"]["ohif_version"]
    assert by["highdicom"]["service"] is False and by["highdicom"]["ohif_version"] == ""
    assert by["pydicom-seg"]["own_env"] is True and by["highdicom"]["own_env"] is False


def test_plan_adds_a_shard_per_ohif_version(capsys: pytest.CaptureFixture[str]) -> None:
    out = _printed(capsys, "--consumer", "highdicom", "--include-ohif-versions", "3.11.1,3.10.2", "3.12.0")
    shards = json.loads(out)["include"]
    assert [s["consumer"] for s in shards] == ["highdicom", "ohif@3.11.1", "ohif@3.10.2", "ohif@3.12.0"]
    ohif = shards[1]
    assert ohif == {
        "name": "consumer-ohif-3.11.1",
        "consumer": "ohif@3.11.1",
        "args": "--tier quick --consumer ohif@3.11.1",
        "service": True,
        "ohif_version": "3.11.1",
        "own_env": False,
    }


def test_plan_keeps_the_selection_in_every_shard(capsys: pytest.CaptureFixture[str]) -> None:
    out = _printed(capsys, "--case", "quick/labelmap-*", "--producer", "highdicom", "--consumer", "reference")
    (shard,) = json.loads(out)["include"]
    assert shlex.split(shard["args"]) == [
        "--tier",
        "quick",
        "--case",
        "quick/labelmap-*",
        "--producer",
        "highdicom",
        "--consumer",
        "reference",
    ]


def test_the_produce_step_writes_and_reads_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    out = _printed(capsys, "--produce", "--tier", "full")
    ns = build_parser().parse_args(["run", *shlex.split(out)])
    assert ns.consumer == ["none"] and ns.tier == ["full"]
    assert produce_args(["quick"], [], []) == "--tier quick --consumer none"


def test_plan_refuses_what_it_cannot_shard(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--include-ohif-versions", "3.11;rm -rf ~"]) == 2
    assert "is not a release number" in capsys.readouterr().err
    assert main(["plan", "--consumer", "no-such-reader"]) == 2
    assert "unknown consumer 'no-such-reader'" in capsys.readouterr().err
    with pytest.raises(PlanError, match="cannot be sharded"):
        plan(["negative"])
    with pytest.raises(PlanError, match="produce step"):
        plan(consumers=["none"])
