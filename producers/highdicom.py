"""Producer ``highdicom``: :class:`highdicom.seg.Segmentation` from the truth.

Disjoint segments are handed over as one label map (frames x rows x columns
of segment numbers), which highdicom accepts for BINARY and LABELMAP and which
keeps memory at one volume whatever the number of segments; overlapping and
fractional segments as a 4D array (frames x rows x columns x segments).
highdicom's defaults are kept (``omit_empty_frames=True``), as a user would.
"""

from __future__ import annotations

import numpy as np

from conformance.adapter import Producer, WriteRequest, package_version
from conformance.masks import labelmap_from_crops
from conformance.truth import SegmentInfo

__all__ = ["HighdicomProducer"]

_TS_FEATURES = {"ts-implicit-le", "ts-explicit-le", "ts-rle", "ts-jpeg2000", "ts-jpegls"}


def _code(c: dict[str, str]):  # type: ignore[no-untyped-def]
    from highdicom.sr import CodedConcept

    return CodedConcept(value=c["value"], scheme_designator=c["scheme"], meaning=c["meaning"])


def segment_description(info: SegmentInfo, algorithm):  # type: ignore[no-untyped-def]
    """A highdicom SegmentDescription carrying the truth's metadata for one segment."""
    import highdicom as hd

    color = hd.color.CIELabColor.from_rgb(*info.color_rgb) if info.color_rgb else None  # type: ignore[attr-defined]
    desc = hd.seg.SegmentDescription(
        segment_number=info.number,
        segment_label=info.label,
        segmented_property_category=_code(info.category),
        segmented_property_type=_code(info.type),
        algorithm_type=info.algorithm_type,
        algorithm_identification=algorithm if info.algorithm_type != "MANUAL" else None,
        tracking_id=info.tracking_id,
        tracking_uid=info.tracking_uid,
        display_color=color,
    )
    if info.description:
        desc.SegmentDescription = info.description
    return desc


class HighdicomProducer(Producer):
    name = "highdicom"
    tool = "highdicom"
    homepage = "https://github.com/ImagingDataCommons/highdicom"
    features = frozenset(
        {
            "binary", "fractional", "labelmap", "labelmap-8bit", "labelmap-16bit",
            "disjoint", "overlap", "empty-segment", "empty-frames", "oblique", "many-segments",
            "single-frame-source", "multiframe-source", "segment-metadata",
        }
        | _TS_FEATURES
    )
    # highdicom refuses every encapsulated transfer syntax but JPEG 2000 for BINARY.
    unsupported_combinations = (frozenset({"binary", "ts-rle"}), frozenset({"binary", "ts-jpegls"}))

    def version(self) -> str | None:
        return package_version("highdicom")

    def write(self, request: WriteRequest) -> list[str]:
        import highdicom as hd
        import pydicom
        from pydicom.sr.codedict import codes

        case, truth = request.case, request.truth
        enc = case.encoding
        sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in truth.source_paths]
        algorithm = hd.AlgorithmIdentificationSequence(
            name=case.metadata.algorithm_name,
            version=case.metadata.algorithm_version,
            family=codes.DCM.ArtificialIntelligence,
        )
        descriptions = [segment_description(s, algorithm) for s in truth.segments]
        shape = truth.shape
        notes: list[str] = []
        with truth.masks() as masks:
            if truth.fractional or truth.overlap:
                numbers = [s.number for s in truth.segments]
                dtype = np.float32 if truth.fractional else bool
                pixels = np.zeros((*shape, len(numbers)), dtype=dtype)
                for i, n in enumerate(numbers):
                    crop = masks.get(n)
                    if crop is None:
                        continue
                    (z0, y0, x0), (z1, y1, x1) = crop.offset, crop.stop
                    if truth.fractional:
                        pixels[z0:z1, y0:y1, x0:x1, i] = crop.data.astype(np.float32) / truth.fractional_max
                    else:
                        pixels[z0:z1, y0:y1, x0:x1, i] = crop.data
                notes.append(f"pixel_array: 4D {pixels.dtype} (frames, rows, columns, segments)")
            else:
                dtype = np.uint8 if len(truth.segments) < 256 else np.uint16
                pixels = labelmap_from_crops(dict(masks), shape, dtype=dtype)
                notes.append(f"pixel_array: 3D {pixels.dtype} label map of segment numbers")
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=pixels,
            segmentation_type=enc.type.value,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=100,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="dicom4qi",
            manufacturer_model_name="highdicom producer",
            software_versions=f"highdicom {self.version()}",
            device_serial_number="1",
            max_fractional_value=enc.max_fractional_value,
            transfer_syntax_uid=enc.transfer_syntax_uid,
            series_description=f"SEG highdicom {request.case_id}"[:64],
        )
        bits = int(seg.BitsAllocated)
        if bits != enc.bits:
            raise ValueError(f"highdicom wrote {bits} bits allocated, the case asks for {enc.bits}")
        seg.save_as(request.output)
        notes.append(f"{int(seg.NumberOfFrames)} frames, {bits} bits allocated")
        return notes
