"""A run's results as JUnit XML, the test report format CI systems show natively (``dicom4qi run --junit FILE``).

One ``<testsuite>`` per column of the grid (``consumer:NAME`` reads, ``producer:NAME`` writes, ``validator:NAME``
validations), one ``<testcase>`` per cell (``classname`` the column, ``name`` the case and the producer, ``time``
the call's wall seconds). A cell is reported as what it is for the tool of its suite:

- PASS: a passed test case (also a read that decoded a wrong object faithfully: the fault is the producer's);
- FAIL: ``<failure>``; ERROR, CRASH and TIMEOUT: ``<error>``, with the cell's message;
- UNSUPPORTED (declared), SKIPPED (not run: the tool is absent, or there was no object to read), DISPUTED (no
  verdict) and a reader's refusal of an object its producer wrote wrong (that fault is charged to the write):
  ``<skipped>``, with the reason, so they are never counted as passes nor as the tool's failures.

A failing cell that a known issue explains says so in its ``<system-out>`` (title and upstream link); it still fails:
JUnit has no "expected failure", and which failures may block a job is the regression check's business, not this
file's. The document follows the JUnit schema the Jenkins xUnit plugin publishes (``junit-10.xsd``), which GitHub,
GitLab and Jenkins reporters read.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from dicom4qi.judge.known import KnownIssue, cell_release, matches
from dicom4qi.model.results import Record, ResultsDocument, Status

__all__ = ["junit_xml", "write_junit"]

_FAILED = {Status.FAIL}
_ERRORED = {Status.ERROR, Status.CRASH, Status.TIMEOUT}
#: Characters XML 1.0 cannot carry (a tool's message may hold any byte it printed).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(s: str | None, limit: int = 4000) -> str:
    return _NOT_XML.sub("\ufffd", (s or ""))[:limit]


def _suite_of(rec: Record, validators: set[str]) -> str:
    if rec.step == "write":
        return f"producer:{rec.producer}"
    if rec.step == "validate" or (rec.consumer or "") in validators:
        return f"validator:{rec.consumer}"
    return f"consumer:{rec.consumer}"


def _explained(rec: Record, issues: Iterable[KnownIssue], versions: dict[str, str | None]) -> list[KnownIssue]:
    return [i for i in issues if matches(i, rec, cell_release(i, rec, versions))]


def _outcome(case: ET.Element, tag: str, rec: Record) -> None:
    """A ``<failure>`` or ``<error>`` of a test case: the status as its type, the cell's message."""
    element = ET.SubElement(case, tag, message=_text(rec.message, 1000), type=rec.status.value)
    element.text = _text(rec.message)


def junit_xml(doc: ResultsDocument, known: Iterable[KnownIssue] = ()) -> ET.ElementTree[ET.Element]:
    """The document as a JUnit ``<testsuites>`` tree."""
    issues = list(known)
    versions: dict[str, str | None] = {}
    for t in doc.tools:
        versions.setdefault(t.name, t.version)
    validators = {t.name for t in doc.tools if t.role == "validator"}
    suites: dict[str, list[Record]] = defaultdict(list)
    for rec in sorted(doc.records, key=lambda r: (r.case, r.producer, r.consumer or "")):
        suites[_suite_of(rec, validators)].append(rec)

    root = ET.Element("testsuites")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for name in sorted(suites):
        recs = suites[name]
        suite = ET.SubElement(root, "testsuite", name=name)
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        seconds = 0.0
        for rec in recs:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"dicom4qi.{name}",
                name=f"{rec.case} · {rec.producer}" + (f" → {rec.consumer}" if rec.step != "write" else ""),
                time=f"{rec.wall_s or 0.0:.3f}",
            )
            counts["tests"] += 1
            seconds += rec.wall_s or 0.0
            message = _text(rec.message, 1000)
            if not rec.charged or rec.status in (Status.UNSUPPORTED, Status.SKIPPED):
                if rec.status is not Status.PASS:
                    why = message if rec.charged else f"not this tool's fault or no verdict: {message}"
                    ET.SubElement(case, "skipped", message=_text(f"{rec.status.value}: {why}", 1000))
                    counts["skipped"] += 1
            elif rec.status in _FAILED:
                _outcome(case, "failure", rec)
                counts["failures"] += 1
            elif rec.status in _ERRORED:
                _outcome(case, "error", rec)
                counts["errors"] += 1
            if rec.status in _FAILED | _ERRORED:
                known_here = _explained(rec, issues, versions)
                lines = [
                    f"known issue: {k.title} ({k.upstream if k.upstream != 'none' else 'no upstream issue yet'})"
                    for k in known_here
                ]
                out = "\n".join([*lines, *rec.notes[:20]])
                if out:
                    ET.SubElement(case, "system-out").text = _text(out)
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("time", f"{seconds:.3f}")
        total_time += seconds
    root.set("name", f"dicom4qi {doc.run.run_id}")
    for key, value in totals.items():
        if key != "skipped":  # junit-10.xsd has no skipped count on <testsuites>, only on each <testsuite>
            root.set(key, str(value))
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(doc: ResultsDocument, path: Path, known: Iterable[KnownIssue] = ()) -> Path:
    """Write the JUnit XML of ``doc`` to ``path`` (its folder made if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_xml(doc, known).write(path, encoding="utf-8", xml_declaration=True)
    return path
