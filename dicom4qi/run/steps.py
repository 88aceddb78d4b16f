"""Pieces every flow of a run shares: file hashes, artifact collection, outcome records, the write-step check."""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from dicom4qi.adapters.contract import Role, resolve
from dicom4qi.model.case import LoadedCase
from dicom4qi.model.results import (
    Check,
    CheckStatus,
    Record,
    SegObject,
    Status,
)
from dicom4qi.model.truth import Truth
from dicom4qi.model.uids import LABEL_MAP_SEGMENTATION_STORAGE, SEGMENTATION_STORAGE
from dicom4qi.model.wire import Header, WriteCall
from dicom4qi.process.sandbox import ChildOutcome
from dicom4qi.process.services import ServicePool

if TYPE_CHECKING:
    from dicom4qi.judge.pixelmed import PixelmedServer
    from dicom4qi.run.config import RunConfig

__all__ = [
    "EXTERNAL",
    "MUTANT",
    "VALIDATOR",
    "ChildLimits",
    "artifacts_of",
    "changed_note",
    "git_commit",
    "inspect_object",
    "instance_checks",
    "now_iso",
    "outcome_record",
    "preload_of",
    "private_copy",
    "sha256_of",
    "slug",
    "united_header",
    "write_call",
]


class ChildLimits(TypedDict):
    """The limits of one adapter call, passed on to ``run_child`` as its keywords."""

    timeout_s: float
    memory_mb: float | None
    python: str | None


@functools.cache
def preload_of(role: Role, spec: str) -> tuple[str, ...]:
    """What a fork server imports for an adapter's calls: the adapter's own modules, then the tool's it declares
    (:attr:`dicom4qi.adapters.contract.Adapter.preload`); nothing where the spec does not resolve (the call then
    says why)."""
    try:
        cls = resolve(role, spec)
    except Exception:  # noqa: BLE001 - a spec that does not resolve fails in its call, with its own message
        return ()
    own = [c.__module__ for c in reversed(cls.__mro__) if c.__module__.startswith("dicom4qi.tools.")]
    return tuple(dict.fromkeys([*own, *cls.preload]))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def slug(case_id: str) -> str:
    return case_id.replace("/", "__")


EXTERNAL = "external"
MUTANT = "mutant"
VALIDATOR = "dciodvfy"


def outcome_record(base: dict[str, Any], out: ChildOutcome, what: str) -> Record:
    """A record for a call that did not give a usable answer."""
    status = {"error": Status.ERROR, "crash": Status.CRASH, "timeout": Status.TIMEOUT}[out.kind]
    return Record(
        **base,
        status=status,
        message=f"{what}: {out.message}",
        limit=out.limit,
        wall_s=out.wall_s,
        cpu_s=out.cpu_s,
        peak_rss_mb=out.peak_rss_mb,
        checks=[
            Check(
                name="opened" if base["step"] == "read" else "written",
                status=CheckStatus.FAIL,
                message=out.message[:500],
            )
        ],
        harness=out.harness,
    )


def private_copy(src: Path, work: Path) -> Path:
    """The object a reader gets: its own copy in its work folder, so that no reader can change another's input.

    Copied by the kernel (sendfile), never held in memory; a full disk raises DiskFull.
    """
    from dicom4qi.process.sandbox import DiskFull

    work.mkdir(parents=True, exist_ok=True)
    target = work / "input.dcm"
    target.unlink(missing_ok=True)
    try:
        shutil.copyfile(src, target)
    except OSError as exc:
        if exc.errno == 28:
            target.unlink(missing_ok=True)
            raise DiskFull(28, f"the disk holding {work} is full while copying the object for a reader") from None
        raise
    return target


def changed_note(copy: Path, sha256: str) -> str | None:
    """A note when a reader changed its own copy of the object (no other reader saw the change); None otherwise."""
    try:
        now = sha256_of(copy)
    except OSError as exc:
        return f"the reader removed or damaged its copy of the object ({exc}); no other reader saw it"
    if now != sha256:
        return f"the reader changed its copy of the object (sha256 {now[:16]}…, was {sha256[:16]}…); no other reader saw it"
    return None


ARTIFACT_SUFFIXES = (".png", ".txt", ".log", ".json")


def artifacts_of(work: Path, run_dir: Path) -> dict[str, str]:
    """Files a call left for the report: screenshots and logs in its work folder (never followed out of it)."""
    out: dict[str, str] = {}
    for path in sorted(work.glob("*")):
        if (
            path.is_file()
            and not path.is_symlink()
            and path.suffix in ARTIFACT_SUFFIXES
            and path.stem not in ("request", "response")
        ):
            if path.stat().st_size:
                out[path.stem] = path.relative_to(run_dir).as_posix()
    return out


def write_call(adapter: str, loaded: LoadedCase, corpus: Path, truth: Truth, output: Path) -> WriteCall:
    """The call that has ``adapter`` write ``loaded``'s SEG to ``output``."""
    return WriteCall(
        adapter=adapter,
        case_file=str(loaded.path.resolve()),
        case_root=str(corpus.resolve()),
        truth_dir=str(truth.directory.resolve()),
        output=str(output.resolve()),
    )


def inspect_object(path: Path, header: Header, loaded: LoadedCase, truth: Truth) -> tuple[list[Check], SegObject]:
    """Check a producer's output: a DICOM SEG of the type, bits and transfer syntax asked for, describing every segment.

    ``header`` is what :func:`dicom4qi.formats.headers.header_summary` read from the object, in a bounded child:
    the harness itself parses no byte of an object it did not write.
    """
    enc = loaded.case.encoding
    sop, ts = header.sop_class_uid, header.transfer_syntax_uid
    want_sop = LABEL_MAP_SEGMENTATION_STORAGE if enc.type.value == "LABELMAP" else SEGMENTATION_STORAGE
    checks = [Check(name="written", status=CheckStatus.PASS)]

    def chk(name: str, ok: bool, msg: str) -> None:
        checks.append(Check(name=name, status=CheckStatus.PASS if ok else CheckStatus.FAIL, message="" if ok else msg))

    chk("sop-class", sop == want_sop, f"SOP Class {sop or 'missing'}, expected {want_sop}")
    seg_type = header.segmentation_type
    chk(
        "segmentation-type",
        seg_type == enc.type.value,
        f"Segmentation Type {seg_type or 'missing'}, expected {enc.type.value}",
    )
    bits = header.bits_allocated
    chk("bits-allocated", bits == enc.bits, f"Bits Allocated {bits}, expected {enc.bits}")
    if enc.photometric != "MONOCHROME2":  # asked for explicitly (labelmap-palette)
        chk(
            "photometric",
            header.photometric == enc.photometric,
            f"Photometric Interpretation {header.photometric or 'missing'}, expected {enc.photometric}",
        )
    if enc.type.value == "FRACTIONAL" and (enc.fractional_type != "PROBABILITY" or enc.max_fractional_value != 255):
        # Asked for explicitly (the features fractional-occupancy, fractional-max-value): said as asked?
        got = (header.fractional_type or "missing", header.max_fractional_value)
        chk(
            "fractional-type",
            got == (enc.fractional_type, enc.max_fractional_value),
            f"Segmentation Fractional Type {got[0]} with Maximum Fractional Value {got[1]}, "
            f"expected {enc.fractional_type} with {enc.max_fractional_value}",
        )
    chk(
        "transfer-syntax",
        ts == enc.transfer_syntax_uid,
        f"transfer syntax {ts or 'missing'}, expected {enc.transfer_syntax_uid}",
    )
    declared = header.segment_numbers
    expected = [s.number for s in truth.segments]
    listed = [
        n for n in declared if not (n == 0 and want_sop == LABEL_MAP_SEGMENTATION_STORAGE)
    ]  # 0: a label map's background
    missing = sorted(set(expected) - set(listed))
    extra = sorted(set(listed) - set(expected))
    chk(
        "segments-declared",
        not missing and not extra and len(listed) == len(set(listed)),
        f"Segment Sequence has {len(declared)} items"
        + (f"; missing segment numbers {missing[:10]}" if missing else "")
        + (f"; unexpected segment numbers {extra[:10]}" if extra else ""),
    )
    frames = header.frames
    obj = SegObject(
        path="",
        size=path.stat().st_size,
        sha256=sha256_of(path),
        sop_class_uid=sop or None,
        transfer_syntax_uid=ts or None,
        frames=int(frames) if frames is not None else None,
    )
    return checks, obj


def united_header(headers: list[Header], numbering: list[dict[int, int]] | None = None) -> Header:
    """The header the write step checks of a segmentation in one or several instances: the first instance's,
    with the segments (numbered as the case numbers them, by ``numbering``) and frames of all; each instance's
    own fields are compared by :func:`instance_checks`."""
    first = headers[0]
    if len(headers) == 1:
        return first
    frames = [h.frames for h in headers]
    maps = numbering if numbering and len(numbering) == len(headers) else [{} for _ in headers]
    return replace(
        first,
        segment_numbers=[m.get(n, n) for h, m in zip(headers, maps) for n in h.segment_numbers],
        frames=sum(f for f in frames if f is not None) if all(f is not None for f in frames) else None,
    )


def instance_checks(headers: list[Header], loaded: LoadedCase) -> list[Check]:
    """Checks of a segmentation delivered in several instances: as many as the case asks, of one series."""
    asked = loaded.case.encoding.instances
    want = len(asked) if asked else 1
    if want == 1 and len(headers) == 1:
        return []
    checks: list[Check] = []

    def chk(name: str, ok: bool, msg: str) -> None:
        checks.append(Check(name=name, status=CheckStatus.PASS if ok else CheckStatus.FAIL, message="" if ok else msg))

    chk("instances", len(headers) == want, f"{len(headers)} instance(s) written, the case asks for {want}")
    if len(headers) < 2:
        return checks
    series = {h.series_instance_uid for h in headers}
    chk("instances-one-series", len(series) == 1 and "" not in series, f"Series Instance UIDs {sorted(series)}")
    frames_of_ref = {h.frame_of_reference_uid for h in headers}
    chk(
        "instances-one-frame-of-reference",
        len(frames_of_ref) == 1,
        f"Frame of Reference UIDs {sorted(frames_of_ref)}",
    )
    sops = [h.sop_instance_uid for h in headers]
    chk("instances-distinct", len(set(sops)) == len(sops) and "" not in sops, f"SOP Instance UIDs {sops}")
    numbers = [h.instance_number for h in headers]
    chk(
        "instances-numbered",
        None not in numbers and len(set(numbers)) == len(numbers),
        f"Instance Numbers {numbers}: each instance of a series needs its own",
    )
    numbering = loaded.case.encoding.instance_numbering()
    if len(numbering) == len(headers):
        wrong = [
            f"instance {k} declares segments {sorted(n for n in h.segment_numbers if n)}, expected {sorted(m)}"
            for k, (h, m) in enumerate(zip(headers, numbering), 1)
            if sorted(n for n in h.segment_numbers if n) != sorted(m)  # 0: a label map's background
        ]
        chk("instances-segments", not wrong, "; ".join(wrong))
    same = ("sop_class_uid", "segmentation_type", "bits_allocated", "transfer_syntax_uid", "photometric")
    differ = [f for f in same if len({getattr(h, f) for h in headers}) > 1]
    chk(
        "instances-alike",
        not differ,
        "; ".join(f"{f}: {[getattr(h, f) for h in headers]}" for f in differ),
    )
    return checks


class FlowHost:
    """What the flows mixed into the runner (external, negative) use of it, declared so that they are typed.

    Annotations only: the runner sets these attributes and defines these methods.
    """

    cfg: RunConfig
    pythons: dict[str, str | None]
    _pools: dict[str, ServicePool]

    if TYPE_CHECKING:

        def _parallel(
            self, phase: str, items: list[tuple[Any, ...]], fn: Callable[..., Record], done: Callable[[Record], Any]
        ) -> None: ...

        def validate_object(
            self, base: dict[str, Any], seg: SegObject, parts: list[Path], work: Path, run_dir: Path
        ) -> Record: ...

        def pixelmed_object(
            self,
            base: dict[str, Any],
            seg: SegObject,
            parts: list[Path],
            work: Path,
            run_dir: Path,
            server: PixelmedServer | None,
            reason: str = "",
        ) -> Record: ...

        def _pixelmed_phase(
            self, items: list[tuple[Any, ...]], fn: Callable[..., Record], done: Callable[[Record], Any]
        ) -> None: ...
