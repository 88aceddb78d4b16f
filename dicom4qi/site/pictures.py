"""Pictures of the truth and the cases' files: one slice per group of segments drawn into a PNG (kept between
reports, keyed by the case's fingerprint), and each built case's truth and zipped source copied into the site.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dicom4qi.site.files import Copier, _clean, _href, _zip_folder
from dicom4qi.site.merge import _Site
from dicom4qi.site.view import LIST_LIMIT, CaseInfo, FileLink, _mib

PICTURE_VERSION = 2


def _color(seg: Any, number: int) -> tuple[int, ...]:
    if seg is not None and getattr(seg, "color_rgb", None):
        return tuple(int(v) for v in seg.color_rgb)
    import matplotlib

    r, g, b, _ = matplotlib.colormaps["tab20"]((number - 1) % 20)
    return int(r * 255), int(g * 255), int(b * 255)


def _truth_picture(truth: Any, path: Path, *, panels: int = 6, side: int = 360) -> str:
    """Draw the truth, one slice per group of segments (the frame where the group covers most), into a PNG.

    Reads the truth one crop at a time; large images are drawn at a reduced scale. Returns a caption.
    """
    import numpy as np

    frames, rows, cols = truth.shape
    info = {s.number: s for s in truth.segments}
    with truth.masks() as mf:
        present = list(mf.numbers)
        empty = [s.number for s in truth.segments if s.number not in set(present)]
        if not present:
            return "every segment of this case is empty: there is nothing to draw"
        groups = [[int(n) for n in g] for g in np.array_split(np.array(present), min(panels, len(present)))]
        group_of = {n: gi for gi, g in enumerate(groups) for n in g}
        counts = np.zeros((len(groups), frames), dtype=np.int64)
        for n, crop in mf:
            per = np.count_nonzero(crop.data.reshape(crop.data.shape[0], -1), axis=1)
            counts[group_of[n], crop.offset[0] : crop.offset[0] + len(per)] += per
        best = counts.argmax(axis=1)
        step = max(1, math.ceil(max(rows, cols) / side))
        h, w = -(-rows // step), -(-cols // step)
        canvas = np.empty((len(groups), h, w, 3), dtype=np.float32)
        canvas[:] = (0.12, 0.13, 0.15)  # the frame's extent, dark
        for n, crop in mf:
            g = group_of[n]
            f = int(best[g])
            z0, y0, x0 = crop.offset
            if not z0 <= f < z0 + crop.data.shape[0]:
                continue
            fy, fx = (-y0) % step, (-x0) % step
            sub = crop.data[f - z0][fy::step, fx::step]
            if sub.size == 0:
                continue
            r0, c0 = (y0 + fy) // step, (x0 + fx) // step
            alpha = (
                sub.astype(np.float32) / truth.fractional_max
                if truth.fractional
                else sub.astype(bool).astype(np.float32)
            )
            alpha = alpha[..., None] * 0.9
            color = np.asarray(_color(info.get(n), n), dtype=np.float32) / 255
            region = canvas[g, r0 : r0 + sub.shape[0], c0 : c0 + sub.shape[1]]
            region[:] = region * (1 - alpha) + color * alpha
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = min(3, len(groups))
    nrows = -(-len(groups) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 3.6 * nrows), squeeze=False, layout="constrained")
    aspect = truth.geometry.pixel_spacing[0] / truth.geometry.pixel_spacing[1]
    for ax in axes.flat:
        ax.axis("off")
    for gi, (ax, group) in enumerate(zip(axes.flat, groups)):
        ax.imshow(np.clip(canvas[gi], 0, 1), interpolation="nearest", aspect=aspect)
        who = f"segment {group[0]}" if len(group) == 1 else f"segments {group[0]}–{group[-1]}"
        ax.set_title(f"{who}\nframe {int(best[gi]) + 1} of {frames}", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    fig.savefig(tmp, format="png", dpi=80, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.08)
    plt.close(fig)
    tmp.replace(path)
    caption = (
        f"One slice per group of segments, each at the frame where its segments cover the most pixels; "
        f"{rows}×{cols} pixels, {frames} frame(s)"
    )
    if step > 1:
        caption += f", drawn at 1/{step} scale"
    if empty:
        caption += f"; empty segment(s), not drawn: {', '.join(map(str, empty[:20]))}{' …' if len(empty) > 20 else ''}"
    return caption + "."


def _case_files(site: _Site, cases: dict[str, CaseInfo], copier: Copier, *, pictures: bool) -> None:
    """Copy each built case's truth (and zip its source) into the site; draw its picture."""
    from dicom4qi.model.truth import Truth

    keep_img: set[str] = set()
    keep_files: set[str] = set()
    for info in cases.values():
        if info.truth_dir is None or info.fingerprint is None:
            if info.fingerprint:
                info.picture_note = (
                    "the case is not built on this machine (dicom4qi corpus build): no picture of the truth"
                )
                info.files = [FileLink("truth", None, "not available: the case is not built on this machine")]
            continue
        fp = _clean(info.fingerprint)
        try:
            truth = Truth.load(info.truth_dir)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            info.picture_note = f"the truth could not be read: {exc}"
            continue
        info.segments_total = len(truth.segments)
        for s in truth.segments[:LIST_LIMIT]:
            assert s.category is not None and s.type is not None  # the truth always has them
            info.segments.append(
                {
                    "number": s.number,
                    "label": s.label,
                    "color": s.color_rgb or _color(None, s.number),
                    "category": s.category.get("meaning", ""),
                    "type": s.type.get("meaning", ""),
                    "description": (s.description or "")[:300],
                    "empty": s.empty,
                    "tracking": s.tracking_id or "",
                    "algorithm": f"{s.algorithm_type} {s.algorithm_name} {s.algorithm_version}",
                }
            )
        png = f"img/case/{fp}-v{PICTURE_VERSION}.png"
        keep_img.add(png)
        if pictures:
            target = site.out_dir / png
            try:
                if not target.is_file():
                    cap = _truth_picture(truth, target)
                    (site.out_dir / (png + ".txt")).write_text(cap, encoding="utf-8")
                cap_file = site.out_dir / (png + ".txt")
                info.picture_note = cap_file.read_text(encoding="utf-8") if cap_file.is_file() else ""
                if target.is_file():
                    info.picture = _href(png)
            except (OSError, ValueError, MemoryError) as exc:
                info.picture_note = f"the picture could not be drawn: {exc}"
            keep_img.add(png + ".txt")
        files = []
        for name, label in (
            ("truth.json", "truth: geometry and segment metadata (truth.json)"),
            ("truth.npz", "truth: one crop per segment (truth.npz, see dicom4qi/model/masks.py)"),
        ):
            dest = f"files/case/{fp}/{name}"
            href, note = copier.copy(info.truth_dir / name, dest, reuse=True)
            if href:
                keep_files.add(dest)
            files.append(FileLink(label, href, note))
        source = info.truth_dir / "source"
        if source.is_dir():
            size = sum(f.stat().st_size for f in source.rglob("*") if f.is_file())
            dest = f"files/case/{fp}/source.zip"
            if size > copier.max_bytes:
                files.append(
                    FileLink(
                        "source images (zip)",
                        None,
                        f"not copied into the site: {_mib(size)}, over the {_mib(copier.max_bytes)} cap per file",
                    )
                )
            else:
                target = site.out_dir / dest
                if not target.is_file():
                    _zip_folder(source, target)
                href, note = copier.copy(target, dest, reuse=True)
                if href:
                    keep_files.add(dest)
                files.append(
                    FileLink(
                        f"source images ({sum(1 for f in source.rglob('*') if f.is_file())} files, zip)", href, note
                    )
                )
        info.files = files
    # Pictures and case files are kept between reports (keyed by the case's fingerprint); drop the stale ones.
    for folder, keep in (("img/case", keep_img), ("files/case", keep_files)):
        base = site.out_dir / folder
        if not base.is_dir():
            continue
        for f in sorted(base.rglob("*"), reverse=True):
            rel = f.relative_to(site.out_dir).as_posix()
            if f.is_file() and rel not in keep and not (folder == "img/case" and not pictures):
                f.unlink()
            elif f.is_dir() and not any(f.iterdir()):
                f.rmdir()
