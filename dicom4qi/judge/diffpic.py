"""The picture of a voxel difference: where a decoding differs from what was expected, on its first differing frame.

Drawn offline with numpy and Pillow (no browser, no matplotlib in the harness), one PNG with its own legend:
the whole frame on the left (scaled to fit), a zoom around the first differing pixel on the right. Colours
are from the Okabe-Ito palette, which stays distinct for colour-blind readers:

- decoded pixels that are right: grey;
- the expected segment's outline: yellow;
- missing (expected, not decoded) or, for FRACTIONAL, decoded too low: orange;
- extra (decoded, not expected) or decoded too high: sky blue.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from dicom4qi.judge.compare import Expected, _to_truth_frames, first_voxel_difference
from dicom4qi.model.decoded import Decoded
from dicom4qi.model.masks import Crop

__all__ = ["LEGEND", "difference_picture"]

BACKGROUND, DECODED, OUTLINE, MISSING, EXTRA = range(5)
#: RGB of each category, in drawing priority (later wins where a downscaled block holds several).
COLOURS = np.array(
    [
        (26, 28, 33),  # background
        (150, 150, 150),  # decoded and right
        (240, 228, 66),  # the expected outline (Okabe-Ito yellow)
        (230, 159, 0),  # missing (Okabe-Ito orange)
        (86, 180, 233),  # extra (Okabe-Ito sky blue)
    ],
    dtype=np.uint8,
)
LEGEND = (
    ("decoded, right", DECODED),
    ("expected outline", OUTLINE),
    ("missing / too low", MISSING),
    ("extra / too high", EXTRA),
)
PANEL = 360
ZOOM = 32


def _frame(crop: Crop | None, frame: int, rows: int, columns: int, dtype: type) -> np.ndarray:
    out: np.ndarray = np.zeros((rows, columns), dtype=dtype)
    if crop is None or not crop.offset[0] <= frame < crop.stop[0]:
        return out
    z, y, x = crop.offset
    plane = crop.data[frame - z]
    out[y : y + plane.shape[0], x : x + plane.shape[1]] = plane
    return out


def _categories(want: np.ndarray, have: np.ndarray, fractional: bool, step: float) -> np.ndarray:
    cat = np.full(want.shape, BACKGROUND, dtype=np.uint8)
    if fractional:
        expected_in = want > 0
        bad = ~(np.abs(have - want) <= step * 1.0001)
        cat[have > 0] = DECODED
        outline = expected_in & ~ndimage.binary_erosion(expected_in)
        cat[outline] = OUTLINE
        cat[bad & (have < want)] = MISSING
        cat[bad & ~(have < want)] = EXTRA
        return cat
    want_b, have_b = want.astype(bool), have.astype(bool)
    cat[have_b] = DECODED
    cat[want_b & ~ndimage.binary_erosion(want_b)] = OUTLINE
    cat[want_b & ~have_b] = MISSING
    cat[have_b & ~want_b] = EXTRA
    return cat


def _scaled(cat: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """``cat`` scaled to about ``side`` pixels on its long side: blown up by whole pixels, or shrunk by blocks
    keeping the most important category of each block (a single missing voxel stays visible)."""
    h, w = cat.shape
    longest = max(h, w)
    if longest <= side:
        k = max(1, side // longest)
        return np.kron(cat, np.ones((k, k), dtype=np.uint8)), float(k)
    k = -(-longest // side)
    ph, pw = -(-h // k) * k, -(-w // k) * k
    padded = np.zeros((ph, pw), dtype=np.uint8)
    padded[:h, :w] = cat
    return padded.reshape(ph // k, k, pw // k, k).max(axis=(1, 3)), 1.0 / k


def difference_picture(
    expected: Expected,
    decoded: Decoded,
    path: Path,
    *,
    labelmap: bool,
    expected_name: str = "the truth",
    reader: str = "the decoding",
) -> str | None:
    """Draw the first voxel difference of ``decoded`` against ``expected`` into ``path`` (PNG); its caption, or None
    when no voxel differs."""
    found = first_voxel_difference(expected, decoded, labelmap=labelmap)
    if found is None:
        return None
    number, frame = found
    rows, columns = expected.geometry.rows, expected.geometry.columns
    fractional = expected.fractional
    index = {k: i for i, k in enumerate(expected.frame_keys)}
    frame_map = np.array([index.get(k, -1) for k in decoded.frame_keys], dtype=np.int64)
    with expected.masks() as tm:
        want_crop = tm.get(number)
    have_raw = decoded.pixels(number)
    have_crop = None
    if have_raw is not None:
        mapped = _to_truth_frames(have_raw, frame_map)
        have_crop = None if isinstance(mapped, str) else mapped
    dtype = np.float32 if fractional else bool
    want = _frame(want_crop, frame, rows, columns, dtype)
    if fractional:
        want = want * np.float32(expected.fractional_scale)
    have = _frame(have_crop, frame, rows, columns, dtype)
    cat = _categories(want, have, fractional, expected.fractional_step)
    bad = np.argwhere((cat == MISSING) | (cat == EXTRA))
    cy, cx = (int(v) for v in bad[0]) if len(bad) else (rows // 2, columns // 2)
    half = ZOOM // 2
    y0, x0 = max(0, min(cy - half, rows - ZOOM)), max(0, min(cx - half, columns - ZOOM))
    window = cat[y0 : y0 + ZOOM, x0 : x0 + ZOOM]
    whole, scale = _scaled(cat, PANEL)
    zoom, _ = _scaled(window, PANEL)
    panels = [COLOURS[whole]]
    zoomed = max(rows, columns) > 3 * ZOOM  # a small frame is its own zoom
    if zoomed:
        img = panels[0].copy()
        r0, c0 = int(y0 * scale), int(x0 * scale)
        r1, c1 = (
            min(img.shape[0], int((y0 + window.shape[0]) * scale)),
            min(img.shape[1], int((x0 + window.shape[1]) * scale)),
        )
        img[r0:r1, [c0, max(c0, c1 - 1)]] = 255
        img[[r0, max(r0, r1 - 1)], c0:c1] = 255
        panels = [img, COLOURS[zoom]]
    return _compose(
        panels,
        path,
        number=number,
        frame=frame,
        missing=int(np.count_nonzero(cat == MISSING)),
        extra=int(np.count_nonzero(cat == EXTRA)),
        zoomed=zoomed,
        window=(y0, x0, window.shape),
        expected_name=expected_name,
        reader=reader,
        key=expected.frame_keys[frame],
    )


def _compose(
    panels: list[np.ndarray],
    path: Path,
    *,
    number: int,
    frame: int,
    missing: int,
    extra: int,
    zoomed: bool,
    window: tuple[int, int, tuple[int, ...]],
    expected_name: str,
    reader: str,
    key: str,
) -> str:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=13)
    pad, head, foot = 10, 42, 30
    width = sum(p.shape[1] for p in panels) + pad * (len(panels) + 1)
    height = max(p.shape[0] for p in panels) + head + foot + pad
    canvas = Image.new("RGB", (max(width, 560), height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    title = f"segment {number}, frame {frame}: {missing} missing, {extra} extra pixel(s) on this frame"
    draw.text((pad, 6), title, fill=(20, 20, 20), font=font)
    draw.text((pad, 22), f"{reader} against {expected_name}"[:90], fill=(90, 90, 90), font=font)
    x = pad
    for i, p in enumerate(panels):
        canvas.paste(Image.fromarray(p), (x, head))
        if i == 1:
            y0, x0, shape = window
            draw.text(
                (x, head + p.shape[0] + 2),
                f"zoom: rows {y0}-{y0 + shape[0] - 1}, columns {x0}-{x0 + shape[1] - 1}",
                fill=(90, 90, 90),
                font=font,
            )
        x += p.shape[1] + pad
    lx, ly = pad, height - 20
    for text, cat in LEGEND:
        draw.rectangle((lx, ly, lx + 12, ly + 12), fill=tuple(int(v) for v in COLOURS[cat]), outline=(60, 60, 60))
        draw.text((lx + 16, ly - 1), text, fill=(20, 20, 20), font=font)
        lx += 24 + int(draw.textlength(text, font=font))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    canvas.save(tmp, format="PNG")
    tmp.replace(path)
    where = "the whole frame and a zoom around the first differing pixel" if zoomed else "the whole frame"
    return (
        f"Segment {number} on frame {frame} (source {key}), {reader} against {expected_name}: {where}; "
        f"{missing} missing and {extra} extra pixel(s) on this frame."
    )
