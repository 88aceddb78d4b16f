"""Consumer ``highdicom``: read a SEG through highdicom's public API.

The variant ``highdicom@strict`` keeps highdicom's defaults throughout; the plain
``highdicom`` column, when highdicom refuses an object that does not declare
Spatial Locations Preserved, reads it again with ``ignore_spatial_locations=True``
as a user would, and says so in the notes.

The pixels come from ``Segmentation.get_pixels_by_source_instance`` for the
source series' SOP Instance UIDs (``get_pixels_by_source_frame`` for the frames
of a multi-frame source), with ``assert_missing_frames_are_empty=True``
(a SEG may omit empty frames) and highdicom's other defaults: first as one
label map (``combine_segments=True``, memory of one volume however many
segments), and for overlapping or fractional objects segment by segment in
chunks that keep memory bounded. Which call was used is recorded in the notes.

A whole slide image source is one frame of the grid, its total pixel matrix: the
SEG is read with ``Segmentation.get_total_pixel_matrix`` (highdicom places the
tiles, TILED_FULL or TILED_SPARSE), first with ``combine_segments=True`` and for
overlapping or fractional objects segment by segment, one matrix per segment at
most in each chunk.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import numpy as np

from dicom4qi.adapters.contract import EVERY_FEATURE, Consumer, ReadRequest, missing_calls, package_version
from dicom4qi.formats.segmeta import segments_from_dataset
from dicom4qi.formats.source_frames import SourceFrames
from dicom4qi.model.decoded import DecodedWriter, frame_key
from dicom4qi.model.uids import VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE

__all__ = ["HighdicomConsumer", "geometry_from_dataset"]

#: highdicom's refusal to index frames that name no source frame, in the words of each release: "image does not
#: contain information about source frames" (0.28), "frames do not contain ..." (0.26); 0.24 says "some frames in the
#: image specify multiple source frames" for frames that name none as for frames that name several (told apart below).
_NO_SOURCE_INFO = re.compile(r"contain information about source frames")
_MULTIPLE_SOURCES = re.compile(r"frames in the image specify multiple source frames")


def _frames_name_no_source(seg: Any) -> bool:
    """Whether no frame of the SEG names a source frame (Derivation Image Sequence absent or without sources)."""
    for frame in seg.get("PerFrameFunctionalGroupsSequence", []):
        for derivation in frame.get("DerivationImageSequence", []):
            if derivation.get("SourceImageSequence"):
                return False
    return True


def _no_source_frames(message: str, seg: Any) -> bool:
    """Whether highdicom refused to index by source frames because the frames name none (then the volume, placed
    by position, is what highdicom offers), not for another reason (frames that name several sources)."""
    if _NO_SOURCE_INFO.search(message):
        return True
    return bool(_MULTIPLE_SOURCES.search(message)) and _frames_name_no_source(seg)


#: Largest dense chunk (bytes) a chunked read may allocate.
CHUNK_BYTES = 256 * 1024 * 1024


def _highdicom_rgb(lab: list[int]) -> tuple[int, int, int]:
    """highdicom's own CIELab conversion, clipped to the RGB gamut as a display would (the colour check is advisory);
    the suite's where a release of highdicom has none (0.26.0 has no ``CIELabColor.from_dicom_value``; 0.27.0 has it)."""
    from highdicom.color import CIELabColor

    if not hasattr(CIELabColor, "from_dicom_value"):
        from dicom4qi.model.color import dicom_lab_to_rgb

        return dicom_lab_to_rgb(lab)
    r, g, b = CIELabColor.from_dicom_value(lab).to_rgb(clip=True)
    return int(r), int(g), int(b)


def geometry_from_dataset(ds: Any, writer: DecodedWriter) -> None:
    """Orientation, spacing and the position of each referenced source frame, from the functional groups."""
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    if shared is not None and "PlaneOrientationSequence" in shared:
        writer.geometry.orientation = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    if shared is not None and "PixelMeasuresSequence" in shared:
        writer.geometry.pixel_spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
    for frame in ds.get("PerFrameFunctionalGroupsSequence", []):
        try:
            ref = frame.DerivationImageSequence[0].SourceImageSequence[0]
            pos = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        except (AttributeError, IndexError):
            continue
        number = ref.get("ReferencedFrameNumber")
        key = frame_key(ref.ReferencedSOPInstanceUID, int(number) if number is not None else None)
        writer.geometry.positions.setdefault(key, pos)


class HighdicomConsumer(Consumer):
    name = "highdicom"
    preload = ("highdicom",)
    tool = "highdicom"
    homepage = "https://github.com/ImagingDataCommons/highdicom"
    features = EVERY_FEATURE  # it claims to read any SEG
    pypi = "highdicom"  # any release a column of its own: highdicom@0.26.0
    calls = (
        "highdicom.seg:segread",
        "highdicom.seg:Segmentation.get_pixels_by_source_instance(assert_missing_frames_are_empty, "
        "ignore_spatial_locations, combine_segments, segment_numbers)",
        "highdicom.seg:Segmentation.get_pixels_by_source_frame(assert_missing_frames_are_empty, "
        "ignore_spatial_locations, combine_segments, segment_numbers)",
        # Where a release has them (dtype since 0.21, get_total_pixel_matrix since 0.22, get_volume since 0.23):
        # the objects that need them fail on an older release with the release's own words, the rest are read.
        "highdicom.seg:Segmentation.get_pixels_by_source_instance(dtype)?",
        "highdicom.seg:Segmentation.get_volume(combine_segments)?",
        "highdicom.seg:Segmentation.get_total_pixel_matrix(combine_segments)?",
    )
    #: highdicom before 0.23 imports pydicom 2 names that pydicom 3 removed, and its metadata does not bound pydicom.
    release_pins = (("<0.23", ("pydicom<3",)),)

    def version(self) -> str | None:
        return package_version("highdicom")

    def read(self, request: ReadRequest) -> DecodedWriter:
        import highdicom as hd
        import pydicom

        seg = hd.seg.segread(request.seg)
        notes: list[str] = []
        headers = [
            pydicom.dcmread(
                p,
                stop_before_pixels=True,
                specific_tags=[
                    "SOPClassUID",
                    "SOPInstanceUID",
                    "NumberOfFrames",
                    "TotalPixelMatrixRows",
                    "TotalPixelMatrixColumns",
                ],
            )
            for p in request.sources
        ]
        if any(str(h.get("SOPClassUID", "")) == VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE for h in headers):
            if len(headers) != 1:
                raise ValueError(
                    f"{len(headers)} source instances with a whole slide image among them: expected the one slide"
                )
            return self._read_slide(seg, headers[0])
        multiframe = len(headers) == 1 and int(headers[0].get("NumberOfFrames", 1) or 1) > 1
        # A release before 0.21 has no dtype parameter: its arrays' own dtype (uint8, or float for FRACTIONAL).
        no_dtype = "dtype" not in inspect.signature(seg.get_pixels_by_source_instance).parameters
        if no_dtype:
            notes.append(f"highdicom {hd.__version__} has no dtype parameter: its arrays' own dtype")
        if multiframe:
            uid = str(headers[0].SOPInstanceUID)
            numbers_of_frames = list(range(1, int(headers[0].NumberOfFrames) + 1))
            keys = [frame_key(uid, n) for n in numbers_of_frames]
            call = "get_pixels_by_source_frame(assert_missing_frames_are_empty=True"

            def get(**kw: Any) -> np.ndarray:
                if no_dtype:
                    kw.pop("dtype", None)
                return seg.get_pixels_by_source_frame(uid, numbers_of_frames, **self._options, **kw)
        else:
            uids = [str(h.SOPInstanceUID) for h in headers]
            keys = [frame_key(u) for u in uids]
            call = "get_pixels_by_source_instance(assert_missing_frames_are_empty=True"

            def get(**kw: Any) -> np.ndarray:
                if no_dtype:
                    kw.pop("dtype", None)
                return seg.get_pixels_by_source_instance(uids, **self._options, **kw)

        self._options: dict[str, Any] = {"assert_missing_frames_are_empty": True}
        try:
            get(segment_numbers=[n for n in seg.segment_numbers if n != 0][:1] or None)
        except RuntimeError as exc:
            if _no_source_frames(str(exc), seg):
                # Frames placed by position alone: what highdicom offers for them is the volume.
                return self._read_volume(seg, request.sources, str(exc))
            if "spatial locations are preserved" not in str(exc) or self.variant == "strict":
                raise
            # What a highdicom user does next: say that the frames are on the source grid.
            self._options["ignore_spatial_locations"] = True
            call += ", ignore_spatial_locations=True"
            notes.append(
                "the object does not declare Spatial Locations Preserved: read with ignore_spatial_locations=True"
            )
        seg_type = seg.segmentation_type.value
        fractional = seg_type == "FRACTIONAL"
        writer = DecodedWriter(keys, int(seg.Rows), int(seg.Columns), fractional=fractional)
        writer.notes.extend(notes)
        for s in segments_from_dataset(seg, color=_highdicom_rgb):
            writer.add_segment(s)
        geometry_from_dataset(seg, writer)
        numbers = [n for n in seg.segment_numbers if n != 0]
        if not fractional:
            try:
                labels = get(combine_segments=True)
            except (ValueError, RuntimeError) as exc:
                if "overlap" not in str(exc).lower():
                    raise
                writer.notes.append(f"combine_segments=True refused ({exc}); reading segment by segment")
            else:
                writer.set_labelmap(np.asarray(labels))
                writer.notes.append(f"{call}, combine_segments=True)")
                return writer
        per_segment = len(keys) * int(seg.Rows) * int(seg.Columns) * (4 if fractional else 1)
        chunk = max(1, CHUNK_BYTES // max(per_segment, 1))
        for i in range(0, len(numbers), chunk):
            part = numbers[i : i + chunk]
            arr = get(segment_numbers=part, dtype=np.float32 if fractional else np.uint8)
            for j, n in enumerate(part):
                writer.set_pixels(n, arr[..., j])
            del arr
        writer.notes.append(f"{call}, segment_numbers in chunks of {chunk})")
        return writer

    def _read_volume(self, seg: Any, sources: list[Path], why: str) -> DecodedWriter:
        """A SEG whose frames name no source image: ``get_volume()``, its slices placed on the sources by position."""
        lacking = missing_calls(("highdicom.seg:Segmentation.get_volume(combine_segments, segment_numbers, dtype)",))
        if lacking:  # a release that cannot read such frames at all: its refusal, and what it lacks
            raise RuntimeError(f"{why} (and this release of highdicom has no {lacking[0]}, which reads such frames)")
        src = SourceFrames(sources)
        fractional = seg.segmentation_type.value == "FRACTIONAL"
        writer = DecodedWriter(src.keys, src.rows, src.columns, fractional=fractional)
        writer.notes.append(f"get_pixels_by_source_instance refused ({why[:160]}); read with get_volume()")
        for s in segments_from_dataset(seg, color=_highdicom_rgb):
            writer.add_segment(s)
        geometry_from_dataset(seg, writer)

        def placed(volume: Any) -> np.ndarray:
            """The volume's slices on the source grid."""
            a = np.asarray(volume.affine, dtype=float)
            axes = np.stack([a[:3, 2], a[:3, 1], a[:3, 0]])  # column, row and slice steps
            placement = src.place(a[:3, 3], axes, int(volume.spatial_shape[0]))
            return src.to_grid(placement, np.asarray(volume.array))

        numbers = [n for n in seg.segment_numbers if n != 0]
        if not fractional:
            try:
                labels = placed(seg.get_volume(combine_segments=True))
            except (ValueError, RuntimeError) as exc:
                if "overlap" not in str(exc).lower():
                    raise
                writer.notes.append(f"get_volume(combine_segments=True) refused ({exc}); reading segment by segment")
            else:
                writer.set_labelmap(labels)
                writer.notes.append("get_volume(combine_segments=True), slices placed by position")
                return writer
        for n in numbers:
            volume = seg.get_volume(segment_numbers=[n], dtype=np.float32 if fractional else np.uint8)
            writer.set_pixels(n, placed(volume.squeeze_channel() if volume.number_of_channel_dimensions else volume))
        writer.notes.append("get_volume(segment_numbers=[n]) per segment, slices placed by position")
        return writer

    def _read_slide(self, seg: Any, source: Any) -> DecodedWriter:
        """A SEG of a whole slide image, as its total pixel matrix (one frame keyed by the slide's UID)."""
        uid = str(source.SOPInstanceUID)
        if not hasattr(seg, "get_total_pixel_matrix"):
            raise RuntimeError(
                "this release of highdicom has no get_total_pixel_matrix: it cannot place a slide's tiles"
            )
        referenced = {str(u[2]) for u in seg.get_source_image_uids()}
        if uid not in referenced:
            raise ValueError(
                f"the SEG does not reference the source slide {uid} (it references {sorted(referenced)[:3]})"
            )
        rows, columns = int(source.TotalPixelMatrixRows), int(source.TotalPixelMatrixColumns)
        if "TotalPixelMatrixRows" not in seg or "TotalPixelMatrixColumns" not in seg:
            raise ValueError("the source is a whole slide image but the SEG has no Total Pixel Matrix Rows/Columns")
        seg_matrix = (int(seg.TotalPixelMatrixRows), int(seg.TotalPixelMatrixColumns))
        if seg_matrix != (rows, columns):
            raise ValueError(
                f"the SEG's total pixel matrix is {seg_matrix[0]}x{seg_matrix[1]}, the slide's {rows}x{columns}"
            )
        fractional = seg.segmentation_type.value == "FRACTIONAL"
        writer = DecodedWriter([frame_key(uid)], rows, columns, fractional=fractional)
        for s in segments_from_dataset(seg, color=_highdicom_rgb):
            writer.add_segment(s)
        shared = seg.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in seg else None
        if shared is not None and "PixelMeasuresSequence" in shared:
            writer.geometry.pixel_spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
        organization = seg.get("DimensionOrganizationType", "absent")
        if not fractional:
            try:
                labels = seg.get_total_pixel_matrix(combine_segments=True)
            except (ValueError, RuntimeError) as exc:
                if "overlap" not in str(exc).lower():
                    raise
                writer.notes.append(f"combine_segments=True refused ({exc}); reading segment by segment")
            else:
                writer.set_labelmap(np.asarray(labels)[np.newaxis])
                writer.notes.append(f"get_total_pixel_matrix(combine_segments=True) of a {organization} SEG")
                return writer
        numbers = [n for n in seg.segment_numbers if n != 0]
        chunk = max(1, CHUNK_BYTES // max(rows * columns * (4 if fractional else 1), 1))
        for i in range(0, len(numbers), chunk):
            part = numbers[i : i + chunk]
            arr = seg.get_total_pixel_matrix(segment_numbers=part, dtype=np.float32 if fractional else np.uint8)
            for j, n in enumerate(part):
                writer.set_pixels(n, arr[np.newaxis, :, :, j])
            del arr
        writer.notes.append(f"get_total_pixel_matrix(segment_numbers in chunks of {chunk}) of a {organization} SEG")
        return writer
