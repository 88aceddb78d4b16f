"""Consumer ``slicer-core``: Slicer's segmentation libraries (PyPI ``slicer-core``), not the application.

``slicer-core`` is 3D Slicer's MRML and Segmentations code (the C++ libraries behind the application, wrapped for
Python, without Qt). The adapter loads a SEG the way Slicer's DICOM SEG plugin (``DICOMSegmentationPlugin.py``,
Slicer 5.10) does, step by step, with the real libraries:

1. dcmqi's ``segimage2itkimage --mergeSegments`` writes one NRRD label map per group of non-overlapping segments
   and ``meta.json`` (the plugin's call);
2. each NRRD is loaded as a label map volume node (``vtkSlicerVolumesLogic.AddArchetypeVolume``, label map,
   single file: what ``slicer.util.loadLabelVolume(..., {"singleFile": True})`` does) and imported into one
   segmentation node (``vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode``) whose source
   representation is the binary label map, with closed surfaces made on import, as the plugin sets it up;
3. the new segments of each import get the ``meta.json`` attributes in order (name from Segment Label, else
   Description, else the type's meaning; colour; terminology entry; algorithm), skipping label ID 0 as the plugin
   does since Slicer PR #9163.

The segments and voxels are then read back from the node: each segment's name, colour and terminology, and the
voxels of its binary label map (its layer's voxels equal to its label value), placed on the source frames by the
layer's image-to-world matrix (RAS, turned to LPS). Slicer's segments carry names, not numbers: each is matched to
the SEG's segment that the plugin would name so (in order where names repeat), as for the ``slicer`` column. What
the application adds (its DICOM database, the subject hierarchy, the views) is not here: the ``slicer`` column is
the application, SKIPPED where it is not installed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from dicom4qi.adapters.contract import EVERY_FEATURE, Consumer, ReadRequest, package_version, run_tool
from dicom4qi.formats.source_frames import SourceFrames
from dicom4qi.model.decoded import DecodedWriter
from dicom4qi.model.segment import Code, Segment

__all__ = ["SlicerCoreConsumer"]

#: vtkSlicerVolumesLogic's loading options: bit 0 label map, bit 2 single file.
_LABEL_MAP_SINGLE_FILE = 1 | 4
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _dcmqi_binary(name: str) -> Path:
    """One of the dcmqi wheel's binaries in this environment (the plugin calls dcmqi's converter)."""
    import dcmqi

    path = Path(dcmqi.__file__).resolve().parent / "bin" / name
    if not path.is_file():
        raise FileNotFoundError(f"dcmqi binary {name} not found at {path}")
    return path


def _plugin_name(attrs: dict[str, Any]) -> str:
    """The segment name the plugin gives: Segment Label, else Segment Description, else the type's meaning."""
    if attrs.get("SegmentLabel"):
        return str(attrs["SegmentLabel"])
    if attrs.get("SegmentDescription"):
        return str(attrs["SegmentDescription"])
    return str((attrs.get("SegmentedPropertyTypeCodeSequence") or {}).get("CodeMeaning", ""))


def _code(d: dict[str, Any] | None) -> tuple[str, str, str]:
    if not d:
        return "", "", ""
    return str(d.get("CodeValue", "")), str(d.get("CodingSchemeDesignator", "")), str(d.get("CodeMeaning", ""))


def _parse_terminology(tag: str) -> dict[str, Code | None]:
    """Slicer's serialized terminology entry (``context~scheme^value^meaning~...|``) as codes."""
    parts = tag.rstrip("|").split("~")

    def code(i: int) -> Code | None:
        if i >= len(parts):
            return None
        fields = parts[i].split("^")
        if len(fields) < 3 or not fields[1]:
            return None
        return {"scheme": fields[0], "value": fields[1], "meaning": fields[2]}

    # context, category, type, type modifier, anatomic context, region, region modifier
    return {
        "category": code(1),
        "type": code(2),
        "type_modifier": code(3),
        "anatomic_region": code(5),
        "anatomic_region_modifier": code(6),
    }


def _tag(segment: Any, name: str) -> str | None:
    """A segment's tag (``vtkSegment::GetTag`` fills a reference), None where it has none."""
    import vtk

    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else None


class SlicerCoreConsumer(Consumer):
    name = "slicer-core"
    preload = (
        "vtk",
        "slicer",
    )  # slicer-core's own import is 0.8 s of every call after vtk's 0.6 s; one thread after both
    tool = "slicer-core"
    homepage = "https://github.com/KitwareMedical/SlicerCore"
    summary = (
        "Slicer's segmentation libraries, not the application: slicer-core's MRML and Segmentations code loading the "
        "SEG as Slicer's DICOM plugin does (dcmqi's segimage2itkimage --mergeSegments, then ImportLabelmapToSegmentationNode)"
    )
    #: It decodes with dcmqi's segimage2itkimage, as Slicer's plugin does: one vote with dcmqi.
    family = "dcmqi"
    requirements = "slicer_core.requirements.txt"
    features = EVERY_FEATURE  # Slicer's plugin claims to load any SEG dcmqi converts, as the `slicer` column does

    def version(self) -> str | None:
        return package_version("slicer-core")

    def read(self, request: ReadRequest) -> DecodedWriter:
        import pydicom

        work = request.workdir or request.seg.parent
        out_dir = work / "slicer-core-output"
        out_dir.mkdir(parents=True, exist_ok=True)
        notes: list[str] = []
        run_tool(
            [
                str(_dcmqi_binary("segimage2itkimage")),
                "--inputDICOM",
                str(request.seg),
                "--outputDirectory",
                str(out_dir),
                "--mergeSegments",
            ],
            notes,
            ["segimage2itkimage", "--inputDICOM", "seg.dcm", "--outputDirectory", "out", "--mergeSegments"],
        )
        meta_path = out_dir / "meta.json"
        meta = json.loads(meta_path.read_text())
        groups: list[list[dict[str, Any]]] = meta.get("segmentAttributes", [])
        files = sorted(out_dir.glob("*.nrrd"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
        if len(files) != len(groups):
            # the plugin's own check: "Inconsistent number of segments in the descriptor file and on disk"
            raise RuntimeError(
                f"{len(files)} NRRD files on disk but {len(groups)} groups in meta.json: the plugin stops"
            )
        segmentation_node, scene = self._load(
            out_dir, meta_path, groups, loadable_name=str(meta.get("SeriesDescription", "SEG")), notes=notes
        )
        notes.append(
            "slicer-core: AddArchetypeVolume(label map, single file), ImportLabelmapToSegmentationNode per NRRD, "
            "the plugin's attributes in order"
        )

        header = pydicom.dcmread(request.seg, stop_before_pixels=True)
        src = SourceFrames(request.sources)
        writer = DecodedWriter(src.keys, src.rows, src.columns)
        writer.notes.extend(notes)
        self._read_back(segmentation_node, header, src, writer)
        scene.Clear(1)
        return writer

    @staticmethod
    def _load(
        out_dir: Path, meta_path: Path, groups: list[list[dict[str, Any]]], loadable_name: str, notes: list[str]
    ) -> Any:
        """The plugin's load(): label map nodes imported into one segmentation node, attributes set in order."""
        import slicer

        scene = slicer.vtkMRMLScene()
        volumes = slicer.vtkSlicerVolumesLogic()
        volumes.SetMRMLScene(scene)
        terminologies = slicer.vtkSlicerTerminologiesModuleLogic()
        terminologies.SetMRMLScene(scene)
        category_context = loadable_name
        if not terminologies.LoadTerminologyFromSegmentDescriptorFile(category_context, str(meta_path)):
            category_context = "Segmentation category and type - DICOM master list"
        anatomic_context = loadable_name
        if not terminologies.LoadRegionContextFromSegmentDescriptorFile(anatomic_context, str(meta_path)):
            anatomic_context = "Anatomic codes - DICOM master list"

        segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        segmentation_node.SetName(loadable_name)
        display = scene.AddNewNodeByClass("vtkMRMLSegmentationDisplayNode")
        segmentation_node.SetAndObserveDisplayNodeID(display.GetID())
        converter = slicer.vtkSegmentationConverter
        segmentation = slicer.vtkSegmentation()
        segmentation.SetSourceRepresentationName(converter.GetSegmentationBinaryLabelmapRepresentationName())
        segmentation.CreateRepresentation(converter.GetSegmentationClosedSurfaceRepresentationName(), True)
        segmentation_node.SetAndObserveSegmentation(segmentation)

        for index, group in enumerate(groups):
            label_node = volumes.AddArchetypeVolume(
                str(out_dir / f"{index + 1}.nrrd"), f"label-{index + 1}", _LABEL_MAP_SINGLE_FILE
            )
            if label_node is None:
                raise RuntimeError(f"Slicer could not load {index + 1}.nrrd as a label map")
            attributes = []
            for attrs in group:
                if attrs.get("labelID", 1) == 0:
                    continue  # the plugin skips the background entry (Slicer PR #9163)
                rgb = attrs.get("recommendedDisplayRGBValue")
                cat, typ, mod = (
                    _code(attrs.get(k))
                    for k in (
                        "SegmentedPropertyCategoryCodeSequence",
                        "SegmentedPropertyTypeCodeSequence",
                        "SegmentedPropertyTypeModifierCodeSequence",
                    )
                )
                reg, regmod = (
                    _code(attrs.get(k)) for k in ("AnatomicRegionSequence", "AnatomicRegionModifierSequence")
                )
                tag = terminologies.SerializeTerminologyEntry(
                    category_context, *cat, *typ, *mod, anatomic_context, *reg, *regmod
                )
                attributes.append(
                    {
                        "name": _plugin_name(attrs),
                        "description": attrs.get("SegmentDescription"),
                        "color": [float(c) / 255.0 for c in rgb] if rgb else [150.0, 150.0, 0.0],
                        "terminology": tag,
                        "algorithm_type": attrs.get("SegmentAlgorithmType"),
                        "algorithm_name": attrs.get("SegmentAlgorithmName"),
                    }
                )
            before = segmentation.GetNumberOfSegments()
            if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
                label_node, segmentation_node
            ):
                raise RuntimeError(f"ImportLabelmapToSegmentationNode failed on {index + 1}.nrrd")
            made = segmentation.GetNumberOfSegments() - before
            if made > len(attributes):
                # the plugin's loop indexes its attribute list by position and fails here with an IndexError
                raise RuntimeError(
                    f"ImportLabelmapToSegmentationNode made {made} segments of {index + 1}.nrrd (one per label value "
                    f"in it) where meta.json lists {len(attributes)}: the plugin's naming loop fails (IndexError)"
                )
            if made < len(attributes):
                notes.append(
                    f"{index + 1}.nrrd: ImportLabelmapToSegmentationNode made {made} segments where meta.json lists "
                    f"{len(attributes)} (it makes none for a label value absent from the image); the plugin names "
                    "them by position"
                )
            # the plugin names the new segments in order, by position among this file's attributes
            for position, k in enumerate(range(before, segmentation.GetNumberOfSegments())):
                segment = segmentation.GetNthSegment(k)
                a = attributes[position]
                segment.SetName(a["name"])
                segment.SetTag("Description", a["description"] or "")
                segment.SetColor(a["color"])
                segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), a["terminology"])
                if a["algorithm_name"] is not None:
                    segment.SetTag("DICOM.SegmentAlgorithmName", a["algorithm_name"])
                if a["algorithm_type"] is not None:
                    segment.SetTag("DICOM.SegmentAlgorithmType", a["algorithm_type"])
            display_node = label_node.GetDisplayNode()
            if display_node is not None:
                scene.RemoveNode(display_node)
            scene.RemoveNode(label_node)
        return segmentation_node, scene

    @staticmethod
    def _read_back(segmentation_node: Any, header: Any, src: SourceFrames, writer: DecodedWriter) -> None:
        """Segments and voxels from the node, matched to the SEG's segments by the names the plugin gives."""
        import vtk
        from vtk.util.numpy_support import vtk_to_numpy

        declared: list[tuple[int, str]] = []
        for item in header.get("SegmentSequence", []):
            attrs = {
                "SegmentLabel": item.get("SegmentLabel"),
                "SegmentDescription": item.get("SegmentDescription"),
                "SegmentedPropertyTypeCodeSequence": {
                    "CodeMeaning": item.SegmentedPropertyTypeCodeSequence[0].CodeMeaning
                }
                if item.get("SegmentedPropertyTypeCodeSequence")
                else None,
            }
            declared.append((int(item.SegmentNumber), _plugin_name(attrs)))
        unused = list(declared)
        segmentation = segmentation_node.GetSegmentation()
        grids: dict[int, np.ndarray] = {}
        for k in range(segmentation.GetNumberOfSegments()):
            segment_id = segmentation.GetNthSegmentID(k)
            segment = segmentation.GetSegment(segment_id)
            name = segment.GetName()
            match = next(((n, label) for n, label in unused if label == name), None)
            if match is None:
                writer.notes.append(f"Slicer segment {name!r} matches no SEG segment's name")
                continue
            unused.remove(match)
            number = match[0]
            codes = _parse_terminology(_tag(segment, segment.GetTerminologyEntryTagName()) or "")
            description = _tag(segment, "Description")
            r, g, b = (int(round(c * 255)) for c in segment.GetColor())
            writer.add_segment(
                Segment(
                    number=number,
                    label=name,
                    color_rgb=(r, g, b),
                    description=description or None,
                    algorithm_name=_tag(segment, "DICOM.SegmentAlgorithmName"),
                    algorithm_type=_tag(segment, "DICOM.SegmentAlgorithmType"),
                    category=codes["category"],
                    type=codes["type"],
                    type_modifier=codes["type_modifier"],
                    anatomic_region=codes["anatomic_region"],
                    anatomic_region_modifier=codes["anatomic_region_modifier"],
                )
            )
            layer = segmentation.GetLayerIndex(segment_id)
            if layer not in grids:
                image = segmentation.GetSegmentRepresentation(segment_id, "Binary labelmap")
                extent = image.GetExtent()
                if extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]:
                    grids[layer] = np.zeros((len(src.keys), src.rows, src.columns), dtype=np.int32)
                else:
                    dims = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
                    data = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims)
                    matrix = vtk.vtkMatrix4x4()
                    image.GetImageToWorldMatrix(matrix)
                    m = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(3)])
                    axes_ras = m[:, :3].T  # rows: the step along i (column), j (row), k (slice)
                    origin_ras = m[:, 3] + np.array(extent[0::2], dtype=float) @ m[:, :3].T
                    origin = _RAS_TO_LPS @ origin_ras
                    axes = axes_ras @ _RAS_TO_LPS
                    placement = src.place(origin, axes, dims[0])
                    grids[layer] = src.to_grid(placement, data)
            writer.set_pixels(number, grids[layer] == segment.GetLabelValue())
