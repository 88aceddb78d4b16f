"""The site's files: where its templates and static files are (package data in dicom4qi/site, so an installed
wheel finds them too), safe file names and paths for untrusted names, atomic writes, and copying files into the
site (each under a size cap, all under a budget, only from the suite's own run folders).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from dicom4qi.model.results import RunInfo
from dicom4qi.paths import PACKAGE
from dicom4qi.site.view import WRITE, Cell, FileLink, _mib

TEMPLATES = PACKAGE / "site" / "templates"
STATIC = PACKAGE / "site" / "static"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _clean(text: str, limit: int = 60) -> str:
    return _UNSAFE.sub("_", text).strip("._")[:limit] or "x"


def _slug(*parts: str | None) -> str:
    """A file name for untrusted names: readable, safe, and unique (a short hash of the exact parts)."""
    digest = hashlib.sha1("\x00".join(p if p is not None else "\x01" for p in parts).encode()).hexdigest()[:6]
    return ".".join(_clean(p if p is not None else WRITE) for p in parts) + "." + digest


def _href(path: str) -> str:
    """A site-relative path as an href (untrusted characters quoted; '@' and '+' kept readable)."""
    return quote(path, safe="/@+-._~")


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


class Copier:
    """Copies files into the site: each under ``max_bytes``, all under ``total_bytes``; says why not otherwise."""

    def __init__(self, out_dir: Path, max_bytes: int, total_bytes: int) -> None:
        self.out_dir = out_dir
        self.max_bytes = max_bytes
        self.total_bytes = total_bytes
        self.used = 0
        self.copied = 0
        self.refused = 0
        self._done: dict[Path, tuple[str | None, str]] = {}

    def copy(self, src: Path, dest: str, *, reuse: bool = False) -> tuple[str | None, str]:
        """Copy ``src`` to ``dest`` (site-relative): (href, "") or (None, the reason)."""
        key = src.resolve() if src.exists() else src
        if key in self._done:
            return self._done[key]
        result = self._copy(src, dest, reuse)
        self._done[key] = result
        return result

    def _copy(self, src: Path, dest: str, reuse: bool) -> tuple[str | None, str]:
        if not src.is_file():
            return None, "not available: the file is not on this machine"
        size = src.stat().st_size
        if size > self.max_bytes:
            self.refused += 1
            return None, f"not copied into the site: {_mib(size)}, over the {_mib(self.max_bytes)} cap per file"
        if self.used + size > self.total_bytes:
            self.refused += 1
            return None, f"not copied into the site: its copy budget ({_mib(self.total_bytes)}) is used up"
        target = self.out_dir / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        if not (reuse and target.is_file() and target.stat().st_size == size):
            shutil.copyfile(src, target)
        self.used += size
        self.copied += 1
        return _href(dest), ""


_UNSAFE_PART = re.compile(r"[^A-Za-z0-9._@+-]+")


def _site_path(rel: str) -> str:
    """A run-relative path as a path in the site: each part reduced to safe characters."""
    return "/".join(_UNSAFE_PART.sub("_", part).lstrip("._") or "x" for part in PurePosixPath(rel).parts)


def _inside(root: Path, rel: str) -> Path | None:
    """``root / rel`` if ``rel`` is a plain relative path that stays inside ``root`` (no link out); else None."""
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        return None
    full = (root / p).resolve()
    return full if full.is_relative_to(root.resolve()) else None


def _run_root(run: RunInfo) -> Path | None:
    """The run folder a results document names, if it is one the suite makes: ``<build>/runs/<run id>``
    (or ``<build>/runs`` for a combined run). A document may say anything: ``run_dir = "/"`` would
    otherwise have ``/etc/shadow`` copied into the site."""
    if not run.run_dir:
        return None
    try:
        root = Path(run.run_dir).resolve()
    except (OSError, RuntimeError):
        return None
    if (root.name == "runs" or root.parent.name == "runs") and root.is_dir() and len(root.parts) > 2:
        return root
    return None


def _zip_folder(folder: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(folder.parent).as_posix())
    tmp.replace(target)


def _copy_cell_files(cells: list[Cell], copier: Copier) -> None:
    """Artifacts (screenshots first, then text) and the objects, for the cell pages."""
    for pngs in (True, False):
        for cell in cells:
            root = _run_root(cell.run)
            for name, rel in cell.rec.artifacts.items():
                if (Path(rel).suffix.lower() == ".png") != pngs:
                    continue
                src = _inside(root, rel) if root else None
                if src is None:
                    cell.artifacts.append(
                        FileLink(name, None, "not available: outside the run folder or no run folder")
                    )
                    continue
                href, note = copier.copy(src, f"artifacts/{_clean(cell.run.run_id, 80)}/{_site_path(rel)}")
                cell.artifacts.append(FileLink(name, href, note))
    for cell in cells:
        seg = cell.rec.seg
        if seg is None:
            continue
        root = _run_root(cell.run)
        src = _inside(root, seg.path) if root else None
        if src is None:
            cell.object = FileLink("the SEG object", None, f"not copied: {seg.path} lies outside the run folder")
            continue
        href, note = copier.copy(src, f"files/runs/{_clean(cell.run.run_id, 80)}/{_site_path(seg.path)}")
        many = len(seg.instances) + 1
        cell.object = FileLink("the SEG object" if many == 1 else f"the SEG object, instance 1 of {many}", href, note)
        for k, part in enumerate(seg.instances, 2):
            src = _inside(root, part.path) if root else None
            name = f"instance {k} of {many}"
            if src is None:
                cell.artifacts.append(FileLink(name, None, f"not copied: {part.path} lies outside the run folder"))
                continue
            href, note = copier.copy(src, f"files/runs/{_clean(cell.run.run_id, 80)}/{_site_path(part.path)}")
            cell.artifacts.append(FileLink(name, href, note))
