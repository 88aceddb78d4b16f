"""Producer ``highdicom``: :class:`highdicom.seg.Segmentation` from the truth.

Disjoint segments are handed over as one label map (frames x rows x columns
of segment numbers), which highdicom accepts for BINARY and LABELMAP and which
keeps memory at one volume whatever the number of segments; overlapping and
fractional segments as a 4D array (frames x rows x columns x segments).
highdicom's defaults are kept (``omit_empty_frames=True``), as a user would.

A whole slide image source is segmented the way highdicom documents for slides:
the truth's total pixel matrix as a single "frame" (shape (1, rows, columns)),
``tile_pixel_array=True`` so that highdicom cuts it into tiles of the source's
tile size, and ``dimension_organization_type="TILED_FULL"`` (which highdicom
accepts only with ``omit_empty_frames=False``: every tile is stored).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dicom4qi.adapters.contract import Producer, WriteRequest, package_version
from dicom4qi.model.masks import labelmap_from_crops
from dicom4qi.model.segment import Code, Segment
from dicom4qi.model.uids import VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE

if TYPE_CHECKING:
    from highdicom.seg import SegmentDescription
    from highdicom.sr import CodedConcept

__all__ = ["HighdicomProducer"]

_TS_FEATURES = {"ts-implicit-le", "ts-explicit-le", "ts-rle", "ts-jpeg2000", "ts-jpegls"}


def slide_options(sources: list[Any]) -> dict[str, Any]:
    """The Segmentation arguments for a whole slide image source (none for other sources).

    The pixel array is then the total pixel matrix: highdicom tiles it like the source
    (``tile_pixel_array``) and writes every tile in the implicit TILED_FULL order.
    """
    if not (len(sources) == 1 and str(sources[0].SOPClassUID) == VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE):
        return {}
    return {"tile_pixel_array": True, "dimension_organization_type": "TILED_FULL", "omit_empty_frames": False}


def _code(c: Code) -> CodedConcept:
    from highdicom.sr import CodedConcept

    return CodedConcept(value=c["value"], scheme_designator=c["scheme"], meaning=c["meaning"])


def segment_description(info: Segment, colour: bool = True) -> SegmentDescription:
    """A highdicom SegmentDescription carrying the truth's metadata for one segment.

    highdicom has no parameter for the Segmented Property Type Modifier nor the Anatomic Region
    Modifier: as a user would, they are set on the description (a pydicom Dataset), nested in the
    code they modify (PS3.3 C.8.20.4 and 10.25).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    color = hd.color.CIELabColor.from_rgb(*info.color_rgb) if info.color_rgb and colour else None
    algorithm = None
    if info.algorithm_type != "MANUAL":
        assert info.algorithm_name is not None and info.algorithm_version is not None  # the truth always has them
        algorithm = hd.AlgorithmIdentificationSequence(
            name=info.algorithm_name, version=info.algorithm_version, family=codes.DCM.ArtificialIntelligence
        )
    # the truth always has these
    assert info.label is not None and info.category is not None and info.type is not None
    assert info.algorithm_type is not None
    desc = hd.seg.SegmentDescription(
        segment_number=info.number,
        segment_label=info.label,
        segmented_property_category=_code(info.category),
        segmented_property_type=_code(info.type),
        algorithm_type=info.algorithm_type,
        algorithm_identification=algorithm,
        tracking_id=info.tracking_id,
        tracking_uid=info.tracking_uid,
        anatomic_regions=[_code(info.anatomic_region)] if info.anatomic_region else None,
        display_color=color,
    )
    if info.description:
        desc.SegmentDescription = info.description
    if info.type_modifier:
        desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            _code(info.type_modifier)
        ]
    if info.anatomic_region_modifier and info.anatomic_region:
        desc.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [_code(info.anatomic_region_modifier)]
    return desc


class HighdicomProducer(Producer):
    name = "highdicom"
    preload = ("highdicom",)
    tool = "highdicom"
    homepage = "https://github.com/ImagingDataCommons/highdicom"
    features = frozenset(
        {
            "binary",
            "binary-unaligned-frames",
            "fractional",
            "fractional-occupancy",
            "fractional-max-value",
            "labelmap-palette",
            "labelmap",
            "labelmap-8bit",
            "labelmap-16bit",
            "disjoint",
            "overlap",
            "empty-segment",
            "empty-frames",
            "oblique",
            "many-segments",
            "single-frame-source",
            "source-default-charset",
            "source-no-slice-thickness",
            "source-two-series",  # producers get the referenced series only; readers get both
            "multiframe-source",
            "segment-metadata",
            "slide-source",
            "projection-source",
            "uneven-spacing",
            "non-ascii-text",
            "long-text",
            "anatomic-region",
            "multiple-algorithms",
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

        case, truth = request.case, request.truth
        enc = case.encoding
        sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in truth.source_paths]
        # A PALETTE COLOR label map's colours are in its lookup table, not in the segments (Sup 243).
        descriptions = [segment_description(s, enc.photometric != "PALETTE COLOR") for s in truth.segments]
        shape = truth.shape
        notes: list[str] = []
        tiling = slide_options(sources)
        if tiling:
            notes.append("slide source: total pixel matrix, " + ", ".join(f"{k}={v!r}" for k, v in tiling.items()))
        with truth.masks() as masks:
            if truth.fractional or truth.overlap:
                numbers = [s.number for s in truth.segments]
                dtype: type = np.float32 if truth.fractional else bool
                pixels: np.ndarray = np.zeros((*shape, len(numbers)), dtype=dtype)
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
        from dicom4qi.formats.icc import srgb_icc_profile

        palette: dict[str, Any] = {}
        if enc.photometric == "PALETTE COLOR":
            entries = max(s.number for s in truth.segments) + 1
            wide = entries > 256  # highdicom: more entries than 8 bits can count need 16-bit entries
            lut = np.zeros((entries, 3), dtype=np.uint16 if wide else np.uint8)
            for s in truth.segments:
                if s.color_rgb is not None:
                    lut[s.number] = [c * 257 for c in s.color_rgb] if wide else s.color_rgb
            palette["palette_color_lut_transformation"] = hd.PaletteColorLUTTransformation.from_combined_lut(lut)
            palette["icc_profile"] = srgb_icc_profile()  # Type 1 with PALETTE COLOR; highdicom adds none itself
            notes.append(f"palette_color_lut_transformation: a {len(lut)}-entry LUT of the segments' colours")
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
            fractional_type=enc.fractional_type,
            transfer_syntax_uid=enc.transfer_syntax_uid,
            series_description=f"SEG highdicom {request.case_id}"[:64],
            **tiling,
            **palette,
        )
        bits = int(seg.BitsAllocated)
        if bits != enc.bits:
            raise ValueError(f"highdicom wrote {bits} bits allocated, the case asks for {enc.bits}")
        seg.save_as(request.output)
        notes.append(f"{int(seg.NumberOfFrames)} frames, {bits} bits allocated")
        return notes
