"""Runs inside 3D Slicer (``Slicer --no-splash --no-main-window --python-script slicer_export.py REQUEST.json``).

Imports the source series and the SEG into a temporary DICOM database, loads both
through Slicer's own DICOM plugins (the SEG through DICOMSegmentationPlugin, as a
user's "Load" does), and exports every segment's binary labelmap on the source
volume's grid, with its name, as ``segments.npz`` plus ``slicer.json`` (volume
geometry in LPS, Slicer's version, the plugin's messages). Exits Slicer with 0
on success and 3 on any error (message in ``slicer.json``).
"""

import json
import sys
import traceback
from pathlib import Path
from typing import Any


def main() -> None:
    request = json.loads(Path(sys.argv[-1]).read_text())
    out = Path(request["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"slicer_version": None, "segments": [], "error": None}
    try:
        import numpy as np
        import slicer
        from DICOMLib import DICOMUtils

        report["slicer_version"] = slicer.app.applicationVersion
        with DICOMUtils.TemporaryDICOMDatabase(str(out / "dicom-db")) as db:
            DICOMUtils.importDicom(request["input_dir"], db)
            DICOMUtils.loadSeriesByUID([request["source_series_uid"]])
            DICOMUtils.loadSeriesByUID([request["seg_series_uid"]])
        volumes = slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
        segmentations = slicer.util.getNodesByClass("vtkMRMLSegmentationNode")
        if not volumes:
            raise RuntimeError("Slicer loaded no source volume")
        if not segmentations:
            raise RuntimeError("Slicer loaded no segmentation from the SEG")
        reference = volumes[0]
        matrix = slicer.vtkMatrix4x4() if hasattr(slicer, "vtkMatrix4x4") else __import__("vtk").vtkMatrix4x4()
        reference.GetIJKToRASMatrix(matrix)
        ijk_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
        ras_to_lps = np.diag([-1.0, -1.0, 1.0, 1.0])
        ijk_to_lps = ras_to_lps @ ijk_to_ras
        report["origin"] = ijk_to_lps[:3, 3].tolist()
        report["axes"] = [ijk_to_lps[:3, i].tolist() for i in range(3)]  # steps along i (column), j (row), k (slice)
        arrays: dict[str, Any] = {}  # numpy's savez_compressed types **kwds against its allow_pickle: bool
        for node in segmentations:
            segmentation = node.GetSegmentation()
            for n in range(segmentation.GetNumberOfSegments()):
                segment_id = segmentation.GetNthSegmentID(n)
                segment = segmentation.GetSegment(segment_id)
                array = slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, reference)
                key = f"s{len(report['segments'])}"
                arrays[key] = np.asarray(array, dtype=np.uint8)
                color = [round(float(c) * 255) for c in segment.GetColor()]
                report["segments"].append({"key": key, "name": segment.GetName(), "color": color})
        np.savez_compressed(out / "segments.npz", **arrays)
    except Exception:  # everything Slicer raises is the tool's outcome
        report["error"] = traceback.format_exc()[-3000:]
    (out / "slicer.json").write_text(json.dumps(report))
    try:
        import slicer

        slicer.util.exit(3 if report["error"] else 0)
    except ImportError:
        sys.exit(3 if report["error"] else 0)


main()
