"""The results format: one JSON document per run, with a schema generated from these models.

The same document feeds the dashboard, merges of CI shards and vendor
submissions. ``reports/schema/results.schema.json`` is generated from
:class:`ResultsDocument` (``dicom4qi schema``); a test keeps it current.
"""

from __future__ import annotations

import json
import os
import threading
import time
from enum import Enum
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "GRADED_NOTE",
    "Check",
    "ContentCheck",
    "SubmissionInfo",
    "CheckStatus",
    "Finding",
    "Record",
    "ResultsDocument",
    "ResultsFileError",
    "ResultsWriter",
    "RunInfo",
    "SegObject",
    "Status",
    "ToolInfo",
]

RESULTS_FORMAT: Final = "dicom4qi-results/1"


class DiskFull(OSError):
    """The disk the run writes to is full: a fault of the harness's machine, never a tool's outcome."""


class Status(str, Enum):
    """The outcome of one adapter call, judged by the harness."""

    PASS = "PASS"  # the call worked and every required check passed
    FAIL = "FAIL"  # the call worked, but the result is wrong
    ERROR = "ERROR"  # the tool (or its adapter) reported an error, or its output is unusable
    CRASH = "CRASH"  # the process died without an answer (signal, abort, exit without response)
    TIMEOUT = "TIMEOUT"  # the call did not finish within the time limit and was killed
    DISPUTED = "DISPUTED"  # no verdict can be given honestly: the independent decoders disagree (no pass, no blame)
    UNSUPPORTED = "UNSUPPORTED"  # the tool declares it does not support what the case needs
    SKIPPED = "SKIPPED"  # not run: the tool is not installed, or there is no object to read

    @property
    def final(self) -> bool:
        """Whether a resumed run keeps this record instead of running it again."""
        return self is not Status.SKIPPED


#: The note that names the truth file a read of an object from the wild was graded against (its case page shows it).
GRADED_NOTE = "graded against the truth shipped beside the object: "


class CheckStatus(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    NOT_CHECKED = "NOT_CHECKED"  # the consumer did not report what this check needs


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Check(_Model):
    """A subcheck of a record; advisory checks are shown but do not decide the status."""

    name: str
    status: CheckStatus
    message: str = ""
    advisory: bool = False


class Finding(_Model):
    """One finding of a validator."""

    severity: Literal["error", "warning"]
    message: str
    path: str | None = Field(
        None, description="Attribute path, e.g. /SegmentSequence(0062,0002)[1]/SegmentLabel(0062,0005)"
    )


class SegObject(_Model):
    """A produced SEG file."""

    path: str = Field(description="Path relative to the results document's run folder.")
    size: int
    sha256: str
    sop_class_uid: str | None = None
    transfer_syntax_uid: str | None = None
    frames: int | None = None
    instances: list[SegObject] = Field(
        default_factory=list,
        description="Further instances of the same series, after this one, when the segmentation is delivered "
        "in several (readers read each and are graded on the union).",
    )

    @property
    def paths(self) -> list[str]:
        """Every instance's path, this one first."""
        return [self.path, *(i.path for i in self.instances)]


class ContentCheck(_Model):
    """How the write step checked what a produced object holds, by decoding it independently.

    Two decoders (the reference decoder and highdicom) read every object; each decoding is compared with the
    truth. ``verdict``: ``matches`` (every decoder that could read it finds the truth), ``differs`` (every one
    finds it differs from the truth: the producer's fault), ``disputed`` (the decoders disagree with each other),
    ``unverified`` (no decoder could read it).
    """

    verdict: Literal["matches", "differs", "disputed", "unverified"]
    decoders: dict[str, str] = Field(
        default_factory=dict,
        description="Each check decoder's finding: 'matches the truth', 'differs: ...', 'could not read: ...'.",
    )
    agreed: bool | None = Field(
        None, description="Whether the decoders that found a difference decoded the object identically (one content)."
    )
    content: dict[str, str] = Field(
        default_factory=dict,
        description="Decoder -> its decoding of the object (relative to the run folder), kept when the object is not "
        "as the truth says, so that readers are judged against what the object holds.",
    )


class Timing(_Model):
    """One timed call: the whole process."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    tool_s: float | None = Field(None, description="Seconds inside the tool's own call, as measured in the process.")


class BenchStats(_Model):
    """A benchmark cell: repeated timed runs after a warm-up, and how it compares."""

    runs: list[Timing]
    warmup: Timing | None = None
    median_wall_s: float
    median_cpu_s: float
    median_peak_rss_mb: float
    min_wall_s: float
    max_wall_s: float
    median_tool_s: float | None = None
    size: int | None = Field(None, description="Bytes of the file written or read.")
    ratio_nifti: float | None = Field(
        None,
        description="Median wall time (a viewer's: its own seconds, to the segmentation shown and the page answering "
        "again) over that of nibabel's .nii.gz (same case, same operation).",
    )
    ratio_reference: float | None = Field(
        None,
        description="Median wall time (a viewer's: its own seconds) over that of the reference decoder's read of "
        "the same object.",
    )


class Record(_Model):
    """One adapter call: a producer writing a case, or a consumer reading a producer's object."""

    case: str
    producer: str
    consumer: str | None = Field(
        None, description="None for the producer's own write step; the validator for a validate step."
    )
    step: Literal["write", "read", "validate"]
    status: Status
    message: str = ""
    checks: list[Check] = Field(default_factory=list)
    limit: Literal["time", "memory"] | None = Field(None, description="Which resource limit ended the call.")
    wall_s: float | None = None
    cpu_s: float | None = None
    peak_rss_mb: float | None = None
    seg: SegObject | None = None
    features: list[str] = Field(default_factory=list)
    tier: str | None = None
    segments: int | None = Field(None, description="How many segments the case has.")
    notes: list[str] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list, description="A validator's findings.")
    reaction: Literal["clean-reject", "crash", "hang", "memory", "silent-accept"] | None = Field(
        None, description="On the negative corpus: how the consumer met the broken object."
    )
    artifacts: dict[str, str] = Field(
        default_factory=dict, description="Files the call left (e.g. a screenshot), relative to the run folder."
    )
    bench: BenchStats | None = Field(None, description="Set on benchmark records (dicom4qi bench).")
    basis: Literal["truth", "object", "consensus"] | None = Field(
        None,
        description="What a read was judged against: the case's truth; what the object holds (its producer wrote it "
        "wrong, so a faithful read is the reader's PASS); or the consensus of independent readers (no truth).",
    )
    content: ContentCheck | None = Field(
        None, description="Write records: what the object holds, as decoded independently."
    )
    harness: str | None = Field(
        None,
        description="A fault of the harness, not of the tool: a full disk, a service that could not start, a call the "
        "harness interrupted. Shown apart, counted in no tool's rate, and run again on --resume.",
    )
    provenance: Literal["verified", "self-reported", "submitted"] | None = Field(
        None,
        description="Vendor submissions: 'verified' (the suite compared the vendor's decoded output with the truth), "
        "'self-reported' (the vendor's own status, no output: not verified), 'submitted' (a vendor-written object).",
    )

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.case, self.producer, self.consumer)

    @property
    def final(self) -> bool:
        """Whether a resumed run keeps this record (a harness fault is run again)."""
        return self.status.final and self.harness is None

    @property
    def charged(self) -> bool:
        """Whether this cell's outcome counts in its tool's pass rate.

        Not a DISPUTED cell (no verdict), nor a reader's refusal (ERROR) of an object its producer wrote
        wrong (``basis`` "object"): that fault is the producer's, counted on its write.
        """
        if self.status is Status.DISPUTED or self.harness is not None:
            return False
        return not (self.step == "read" and self.basis == "object" and self.status is Status.ERROR)


class ToolInfo(_Model):
    """What an adapter said in its handshake."""

    name: str
    role: Literal["producer", "consumer", "validator"]
    tool: str
    version: str | None = None
    available: bool
    reason: str = ""
    features: list[str] = Field(default_factory=list)
    unsupported_combinations: list[list[str]] = Field(default_factory=list)
    homepage: str | None = None
    summary: str | None = Field(None, description="What the column is, in one line, where its name could mislead.")
    service: bool = Field(False, description="The adapter runs a long-lived service (a server, a browser).")
    family: str | None = Field(
        None,
        description="Readers of one family share their decoding code and count as one vote where there is no truth.",
    )
    environment: str | None = Field(None, description="The adapter's own Python environment, if it has one.")
    error: str | None = Field(None, description="Why the adapter cannot run although it should (a broken environment).")
    warm_up: str | None = Field(
        None, description="One-time work done in the handshake (a module compiled), with its time: in no cell."
    )


class SubmissionInfo(_Model):
    """Where a vendor submission's results come from."""

    vendor: str
    tool: str
    tool_version: str
    homepage: str | None = None
    role: Literal["consumer", "producer"]
    bundle: str
    sha256: str = Field(
        description="The submission as received: sha256 of its files' sha256sum lines ('<sha256>  <path>'), sorted by path."
    )
    received: str
    verified_by: str = Field(description="The suite's version and commit that verified it.")
    contact: str | None = None
    notes: str | None = None
    entries: int = 0
    verified: int = Field(0, description="Objects whose outputs the suite checked against the truth.")
    self_reported: int = Field(0, description="Objects with only the vendor's own status.")
    problems: list[str] = Field(default_factory=list, description="Entries the suite could not use, and why.")


class RunInfo(_Model):
    run_id: str
    started: str
    finished: str | None = None
    suite_version: str
    suite_commit: str | None = None
    platform: str
    python: str
    cpu_count: int | None = None
    memory_total_mb: float | None = None
    command: list[str] = Field(default_factory=list)
    corpus_fingerprint: str = Field(
        description="Hash of every case file run, so shards of different corpora are not merged."
    )
    filters: dict[str, list[str]] = Field(default_factory=dict)
    timeout_s: float
    memory_limit_mb: float
    workers: int
    run_dir: str | None = Field(None, description="Folder of the run's objects and artifacts when it ran.")
    harness_peak_rss_mb: float | None = Field(None, description="Peak resident memory of the harness process itself.")
    harness_cpu_s: float | None = Field(
        None, description="CPU seconds of the harness process itself (tool calls excluded)."
    )
    kind: Literal["run", "bench", "submission", "ingest"] = Field(
        "run",
        description="A conformance run; a benchmark (records carry bench stats); a vendor's consumer submission "
        "verified by the suite; a vendor's producer submission read by every consumer.",
    )
    submission: SubmissionInfo | None = Field(None, description="Vendor submissions: who, what, from which bundle.")
    machine: dict[str, str] = Field(default_factory=dict, description="CPU model and the like, for benchmarks.")
    harness_overhead: dict[str, float] = Field(
        default_factory=dict,
        description="Benchmarks: the time a quick run spent outside the tools (seconds and share).",
    )
    combined_from: list[dict[str, str | int | None]] = Field(
        default_factory=list,
        description="Set by `dicom4qi combine`: each document merged into this one (file, sha256, run id, started, "
        "finished, consumers, records, workers, platform, suite commit), in the order given.",
    )


class ResultsDocument(_Model):
    format: Literal["dicom4qi-results/1"] = RESULTS_FORMAT
    run: RunInfo
    tools: list[ToolInfo] = Field(default_factory=list)
    records: list[Record] = Field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> ResultsDocument:
        """Read a results document; a damaged one raises :class:`ResultsFileError` naming the file (and, for
        ``latest.json``, the run's own intact copy beside it)."""
        from pydantic import ValidationError

        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ResultsFileError(path, f"not UTF-8 text ({exc})") from None
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "/".join(map(str, first["loc"])) or "(top)"
            raise ResultsFileError(path, f"{where}: {first['msg']}", text[:4096]) from None


class ResultsFileError(ValueError):
    """A results file that cannot be used: which file, why, and where an intact copy is."""

    def __init__(self, path: Path, reason: str, head: str = "") -> None:
        import re

        self.path = path
        message = f"{path}: not a valid results document ({reason[:300]})"
        m = re.search(r'"run_id"\s*:\s*"([A-Za-z0-9._-]+)"', head)
        if m and path.name == "latest.json":
            intact = path.with_name(f"{m.group(1)}.json")
            if intact.is_file() and intact != path:
                message += (
                    f"; the run's own copy {intact} may be intact: give that file instead (or --resume {m.group(1)})"
                )
        elif path.name == "latest.json":
            message += "; each run also keeps <run id>.json beside it: give one of those instead"
        super().__init__(message)


class ResultsWriter:
    """Keeps a results document on disk up to date as records arrive.

    Every record is written through at once (atomic replace, at most every
    ``interval`` seconds, and always at :meth:`close`), so a killed run keeps
    what it did and ``--resume`` continues it.
    """

    def __init__(self, doc: ResultsDocument, paths: list[Path], interval: float = 0.5) -> None:
        self.doc = doc
        self.paths = paths
        self.interval = interval
        self._lock = threading.Lock()
        self._last = 0.0
        self.flush()

    def add(self, record: Record) -> None:
        with self._lock:
            self.doc.records.append(record)
            if time.monotonic() - self._last >= self.interval:
                self._write()

    def flush(self) -> None:
        with self._lock:
            self._write()

    def _write(self) -> None:
        text = self.doc.model_dump_json(indent=1)
        for path in self.paths:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_text(text, encoding="utf-8")
                tmp.replace(path)
            except OSError as exc:
                tmp.unlink(missing_ok=True)  # the last complete copy stays as it was
                if exc.errno == 28:
                    raise DiskFull(
                        28,
                        f"the disk holding {path.parent} is full: the results could not be written "
                        f"(the last complete copy is kept)",
                    ) from None
                raise
        self._last = time.monotonic()


def schema_text() -> str:
    """The JSON Schema of the results document, as committed in reports/schema."""
    schema = ResultsDocument.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dicom4qi results"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
