"""Objects from the wild: SEG files written elsewhere, read by every consumer, judged by agreement.

There is no synthetic truth for them. Each object is read by every consumer;
the decodings are compared pairwise (:func:`dicom4qi.judge.compare.agreement`) and
each reader is judged by the majority of independent readers
(:mod:`dicom4qi.judge.consensus`): agreement, not truth. Source images are found in
the same folder or in pydicom's bundled test data, by the SOP Instance UIDs the
object references.

Where the package ships a truth beside an object (a label file, declared in
``corpus/wild/sources.toml`` and listed under ``graded`` in the gathered folder's
``provenance.json``), every reader of it is graded against that truth instead
(:mod:`dicom4qi.run.external`).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from dicom4qi.model.case import TRANSFER_SYNTAXES
from dicom4qi.model.uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    LABEL_MAP_SEGMENTATION_STORAGE,
    SEGMENTATION_CLASSES,
    VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE,
)
from dicom4qi.model.wire import FoundObject, ScanCall, ScanReply

__all__ = ["ExternalObject", "find_external", "scan_external"]

_TS_FEATURE = {uid: feature for uid, feature in TRANSFER_SYNTAXES.values()}


@dataclass
class ExternalObject:
    id: str
    path: Path
    sources: list[Path]
    missing: list[str]
    features: list[str] = field(default_factory=list)
    labelmap: bool = False
    written_by: str = ""
    #: The label file shipped beside the object (its voxels are segment numbers), or None: judged by agreement.
    truth: Path | None = None
    #: The segment numbers ``truth`` holds.
    truth_segments: list[int] = field(default_factory=list)

    def to_wire(self) -> FoundObject:
        return FoundObject(
            id=self.id,
            path=str(self.path),
            sources=[str(p) for p in self.sources],
            missing=list(self.missing),
            features=list(self.features),
            labelmap=self.labelmap,
            written_by=self.written_by,
            truth=str(self.truth) if self.truth is not None else None,
            truth_segments=list(self.truth_segments),
        )

    @classmethod
    def from_wire(cls, d: FoundObject) -> ExternalObject:
        return cls(
            id=d.id,
            path=Path(d.path),
            sources=[Path(p) for p in d.sources],
            missing=list(d.missing),
            features=list(d.features),
            labelmap=d.labelmap,
            written_by=d.written_by,
            truth=Path(d.truth) if d.truth else None,
            truth_segments=list(d.truth_segments),
        )


def scan_external(folder: Path, workdir: Path, *, timeout_s: float, memory_mb: float) -> list[ExternalObject]:
    """:func:`find_external` in a bounded child (the files are untrusted: any of them may be a bomb)."""
    from dicom4qi.process.sandbox import run_child

    out = run_child(ScanCall(folder=str(folder.resolve())), workdir, timeout_s=timeout_s, memory_mb=memory_mb)
    if out.kind != "ok":
        raise ValueError(f"--external: the folder {folder} could not be scanned: {out.message}")
    return [ExternalObject.from_wire(o) for o in out.expect(ScanReply).objects]


def _index(paths: list[Path]) -> tuple[dict[str, Path], list[Path]]:
    """SOP Instance UID to file for non-SEG DICOM files; and the SEG files."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    index: dict[str, Path] = {}
    segs: list[Path] = []
    from pydicom.filereader import read_file_meta_info

    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # odd files (pydicom's own test data) are only looked at, not judged
                try:
                    meta = read_file_meta_info(path)
                except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError, KeyError):
                    meta = None
                if meta is not None and str(meta.get("TransferSyntaxUID", "")) == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
                    # never inflated here: the file meta (not deflated) names the instance
                    sop_class, uid = (
                        str(meta.get("MediaStorageSOPClassUID", "")),
                        str(meta.get("MediaStorageSOPInstanceUID", "")),
                    )
                else:
                    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
                    sop_class, uid = str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", ""))
        except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError, KeyError, MemoryError):
            continue
        if sop_class in SEGMENTATION_CLASSES:
            segs.append(path)
        elif uid:
            index.setdefault(uid, path)
    return index, segs


def _pydicom_test_files() -> list[Path]:
    """The test files bundled in the pydicom package (never the ones it would download)."""
    import pydicom

    root = Path(pydicom.__file__).resolve().parent / "data" / "test_files"
    return [p for p in root.rglob("*") if p.is_file()]


def _graded(folder: Path) -> dict[Path, tuple[Path, list[int]]]:
    """Object file -> (its shipped truth, the segment numbers it holds), from a gathered ``provenance.json``.

    Looked for in ``folder`` (the whole wild set) and in its parent (one source's folder given alone). A
    provenance file that cannot be used grades nothing: its objects are judged by agreement, as any.
    """
    for root, prefix in ((folder, None), (folder.parent, folder.name)):
        doc_path = root / "provenance.json"
        if not doc_path.is_file() or doc_path.is_symlink() or doc_path.stat().st_size > 4 * 2**20:
            continue
        try:
            entries = json.loads(doc_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        out: dict[Path, tuple[Path, list[int]]] = {}
        for entry in entries if isinstance(entries, list) else []:
            source_id = entry.get("id") if isinstance(entry, dict) else None
            graded = entry.get("graded") if isinstance(entry, dict) else None
            if not isinstance(source_id, str) or not isinstance(graded, dict):
                continue
            if prefix is not None and source_id != prefix:
                continue
            base = (root / source_id).resolve()
            for obj, spec in graded.items():
                if not (isinstance(obj, str) and isinstance(spec, dict) and isinstance(spec.get("truth"), str)):
                    continue
                segments = spec.get("segments")
                if not isinstance(segments, list) or not all(isinstance(n, int) and 0 < n < 65536 for n in segments):
                    continue
                obj_path, truth_path = (base / obj).resolve(), (base / spec["truth"]).resolve()
                if base in obj_path.parents and base in truth_path.parents and truth_path.is_file():
                    out[obj_path] = (truth_path, list(segments))
        return out
    return {}


def find_external(folder: Path) -> list[ExternalObject]:
    """Every SEG below ``folder`` with the source images it references (and its shipped truth, if any)."""

    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    graded = _graded(folder)
    index, segs = _index(files)
    fallback: dict[str, Path] | None = None
    out = []
    for seg in segs:
        from dicom4qi.formats.headers import read_header

        try:
            ds = read_header(seg)  # a Deflated object inflated only as far as its header
        except (ValueError, OSError, EOFError, MemoryError, AttributeError, KeyError):
            continue
        refs = [
            str(inst.ReferencedSOPInstanceUID)
            for series in ds.get("ReferencedSeriesSequence", [])
            for inst in series.get("ReferencedInstanceSequence", [])
        ]
        if any(r not in index for r in refs) and fallback is None:
            fallback, _ = _index(_pydicom_test_files())
        found = {r: index.get(r) or (fallback or {}).get(r) for r in refs}
        sources = list(dict.fromkeys(p for p in found.values() if p is not None))
        labelmap = str(ds.SOPClassUID) == LABEL_MAP_SEGMENTATION_STORAGE or ds.get("SegmentationType") == "LABELMAP"
        seg_type = "labelmap" if labelmap else str(ds.get("SegmentationType", "BINARY")).lower()
        features = [seg_type, _TS_FEATURE.get(str(ds.file_meta.TransferSyntaxUID), "ts-explicit-le")]
        if labelmap:
            features.append(f"labelmap-{int(ds.BitsAllocated)}bit")
        features.append(_source_feature(sources))
        truth, truth_segments = graded.get(seg.resolve(), (None, []))
        out.append(
            ExternalObject(
                id="external/" + seg.relative_to(folder).with_suffix("").as_posix(),
                path=seg,
                sources=sources,
                missing=[r for r, p in found.items() if p is None],
                features=features,
                labelmap=labelmap,
                written_by=" ".join(
                    str(ds.get(k, "")) for k in ("Manufacturer", "ManufacturerModelName", "SoftwareVersions")
                ).strip(),
                truth=truth,
                truth_segments=truth_segments,
            )
        )
    return out


def _source_feature(sources: list[Path]) -> str:
    """The source-layout feature of an external object, from its source images' headers."""
    if len(sources) != 1:
        return "single-frame-source"
    import pydicom

    ds = pydicom.dcmread(
        sources[0], stop_before_pixels=True, specific_tags=["SOPClassUID", "NumberOfFrames", "FrameOfReferenceUID"]
    )
    if str(ds.get("SOPClassUID", "")) == VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE:
        return "slide-source"
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        return "multiframe-source"
    return "single-frame-source" if "FrameOfReferenceUID" in ds else "projection-source"
