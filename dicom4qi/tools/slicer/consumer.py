"""Consumer ``slicer``: 3D Slicer itself, headless, through its own DICOM plugins.

Runs when a Slicer executable is found (``SLICER_EXECUTABLE``, or ``Slicer`` on
PATH): ``Slicer --no-splash --no-main-window --python-script slicer_export.py``
imports the source and the SEG into a temporary DICOM database, loads them as a
user does and exports every segment's binary labelmap on the source volume's
grid. Where Slicer is absent, the column is SKIPPED with that reason: a Slicer
PASS exists only when Slicer itself ran. Slicer's segments carry names, not
numbers: each is matched to the SEG's segment of the same label (in order for
repeated labels), and the match is noted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from dicom4qi.adapters.contract import EVERY_FEATURE, Consumer, ReadRequest
from dicom4qi.formats.source_frames import SourceFrames
from dicom4qi.model.decoded import DecodedWriter
from dicom4qi.model.segment import Segment

__all__ = ["SlicerConsumer", "slicer_executable"]

SCRIPT = Path(__file__).with_name("slicer_export.py")


def slicer_executable() -> str | None:
    env = os.environ.get("SLICER_EXECUTABLE")
    if env:
        return env if os.access(env, os.X_OK) else None
    return shutil.which("Slicer")


class SlicerConsumer(Consumer):
    name = "slicer"
    #: Slicer's DICOM SEG plugin decodes with dcmqi's segimage2itkimage: it shares dcmqi's decoding code.
    family = "dcmqi"
    tool = "3D Slicer"
    homepage = "https://github.com/Slicer/Slicer"
    summary = "3D Slicer, the application, headless, through its own DICOM database and SEG plugin"
    features = EVERY_FEATURE  # it claims to read any SEG

    def available(self) -> tuple[bool, str]:
        if slicer_executable() is None:
            return False, "3D Slicer not found (set SLICER_EXECUTABLE or put Slicer on PATH)"
        return True, ""

    def version(self) -> str | None:
        exe = slicer_executable()
        if exe is None:
            return None
        try:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else None

    def read(self, request: ReadRequest) -> DecodedWriter:
        import pydicom

        exe = slicer_executable()
        if exe is None:
            raise FileNotFoundError("3D Slicer not found")
        work = request.workdir or request.seg.parent
        input_dir = work / "slicer-input"
        shutil.rmtree(input_dir, ignore_errors=True)
        input_dir.mkdir(parents=True)
        for i, path in enumerate([*request.sources, request.seg]):
            shutil.copyfile(path, input_dir / f"{i:05d}.dcm")
        seg = pydicom.dcmread(request.seg, stop_before_pixels=True)
        first = pydicom.dcmread(request.sources[0], stop_before_pixels=True)
        slicer_req = {
            "input_dir": str(input_dir),
            "output_dir": str(work / "slicer-output"),
            "seg_series_uid": str(seg.SeriesInstanceUID),
            "source_series_uid": str(first.SeriesInstanceUID),
        }
        (work / "slicer-request.json").write_text(json.dumps(slicer_req))
        cmd = [
            exe,
            "--no-splash",
            "--no-main-window",
            "--python-script",
            str(SCRIPT),
            str(work / "slicer-request.json"),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        report_path = work / "slicer-output" / "slicer.json"
        if not report_path.is_file():
            raise RuntimeError(f"Slicer exited with status {proc.returncode} without a report: {proc.stderr[-500:]}")
        report = json.loads(report_path.read_text())
        if report.get("error"):
            raise RuntimeError(f"Slicer: {report['error'].strip().splitlines()[-1]}")
        src = SourceFrames(request.sources)
        writer = DecodedWriter(src.keys, src.rows, src.columns)
        writer.notes.append(f"Slicer {report.get('slicer_version')}: " + " ".join(Path(c).name for c in cmd))
        declared = [(int(s.SegmentNumber), str(s.get("SegmentLabel", ""))) for s in seg.SegmentSequence]
        unused = list(declared)
        arrays = np.load(work / "slicer-output" / "segments.npz")
        for item in report["segments"]:
            match = next(((n, label) for n, label in unused if label == item["name"]), None)
            if match is None:
                writer.notes.append(f"Slicer segment {item['name']!r} matches no SEG segment label")
                continue
            unused.remove(match)
            number = match[0]
            writer.add_segment(Segment(number=number, label=item["name"], color_rgb=tuple(item["color"])))
            data = arrays[item["key"]]
            placement = src.place(np.asarray(report["origin"]), np.asarray(report["axes"]), data.shape[0])
            writer.set_pixels(number, src.to_grid(placement, data.astype(bool)))
        return writer
