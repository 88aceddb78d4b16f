"""Taking in a folder or a zip from outside: bounded, no links, no paths that leave it.

A vendor submission is untrusted. Before the suite reads any file of it,
:func:`open_submission` checks the whole tree (or the zip's directory) and
copies it into a private work folder the suite owns:

- at most ``max_files`` files and ``max_bytes`` in all, each file at most ``max_file_bytes``;
- no symbolic or hard links, devices, pipes or sockets;
- no absolute names, no ``..``, no backslashes, no names starting with ``.`` in a zip;
- zip members are inflated with a cap on the bytes they actually produce (their
  declared sizes may lie) and a cap on the compression ratio (a zip bomb stops early);
- nested archives are not opened.

Every refusal is a :class:`SubmissionError` whose message names the file and the rule.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["Bounds", "SubmissionError", "open_submission"]


class SubmissionError(ValueError):
    """A submission refused, with the file and the rule it breaks."""


@dataclass(frozen=True)
class Bounds:
    max_files: int = 20_000
    max_bytes: int = 8 * 2**30
    max_file_bytes: int = 2 * 2**30
    #: Most a zip member may inflate per compressed byte.
    max_ratio: float = 200.0
    max_depth: int = 8


def _check_name(name: str) -> PurePosixPath:
    if "\\" in name or "\x00" in name:
        raise SubmissionError(f"{name!r}: backslashes and NUL are not allowed in names")
    p = PurePosixPath(name)
    if p.is_absolute() or name.startswith("/"):
        raise SubmissionError(f"{name!r}: absolute path")
    parts = [x for x in p.parts if x not in ("",)]
    if any(x == ".." for x in parts):
        raise SubmissionError(f"{name!r}: path traversal ('..')")
    if any(x.startswith(".") for x in parts):
        raise SubmissionError(f"{name!r}: names starting with '.' are not allowed")
    if not parts:
        raise SubmissionError(f"{name!r}: empty name")
    return PurePosixPath(*parts)


def _copy_tree(src: Path, dest: Path, bounds: Bounds, sums: dict[str, str]) -> None:
    files = 0
    total = 0
    root_depth = len(src.parts)
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        here = Path(dirpath)
        if len(here.parts) - root_depth > bounds.max_depth:
            raise SubmissionError(f"{here.relative_to(src)}: nested deeper than {bounds.max_depth} folders")
        for d in list(dirnames):
            st = os.lstat(here / d)
            if stat.S_ISLNK(st.st_mode):
                raise SubmissionError(f"{(here / d).relative_to(src)}: symbolic links are not allowed")
            _check_name((here / d).relative_to(src).as_posix())
        for f in filenames:
            path = here / f
            rel = path.relative_to(src).as_posix()
            _check_name(rel)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                raise SubmissionError(f"{rel}: symbolic links are not allowed")
            if not stat.S_ISREG(st.st_mode):
                raise SubmissionError(f"{rel}: not a regular file")
            if st.st_nlink > 1:
                raise SubmissionError(f"{rel}: hard links are not allowed")
            files += 1
            total += st.st_size
            if files > bounds.max_files:
                raise SubmissionError(f"more than {bounds.max_files} files")
            if st.st_size > bounds.max_file_bytes:
                raise SubmissionError(f"{rel}: {st.st_size} bytes, more than {bounds.max_file_bytes} per file")
            if total > bounds.max_bytes:
                raise SubmissionError(f"more than {bounds.max_bytes} bytes in all")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            # Open without following a link that might have appeared since the check.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as fin, open(target, "xb") as fout:
                copied = 0
                h = hashlib.sha256()
                while True:
                    block = fin.read(1 << 20)
                    if not block:
                        break
                    copied += len(block)
                    if copied > st.st_size:  # the file grew while we read it
                        raise SubmissionError(f"{rel}: changed while it was read")
                    h.update(block)
                    fout.write(block)
            sums[rel] = h.hexdigest()


def _declared_entries(src: Path) -> int | None:
    """The entry count the zip's end-of-central-directory record declares (read before zipfile parses the
    directory into memory), or None when it has none a plain zip has (zip64: zipfile's own checks follow)."""
    with open(src, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 65557))
        tail = fh.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        return None
    total = int.from_bytes(tail[at + 10 : at + 12], "little")
    return None if total == 0xFFFF else total


def _extract_zip(src: Path, dest: Path, bounds: Bounds, sums: dict[str, str]) -> None:
    if src.stat().st_size > bounds.max_bytes:
        raise SubmissionError(f"{src.name}: {src.stat().st_size} bytes, more than {bounds.max_bytes} in all")
    declared = _declared_entries(src)
    if declared is not None and declared > bounds.max_files:
        raise SubmissionError(f"{src.name}: declares {declared} entries, more than {bounds.max_files}")
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SubmissionError(f"{src.name}: not a readable zip file ({exc})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > bounds.max_files:
            raise SubmissionError(f"{src.name}: {len(infos)} entries, more than {bounds.max_files}")
        files = {i.filename.rstrip("/").lower() for i in infos if not i.is_dir()}
        for info in infos:
            parts = info.filename.rstrip("/").lower().split("/")
            for k in range(1, len(parts)):
                if "/".join(parts[:k]) in files:
                    raise SubmissionError(
                        f"{info.filename}: {'/'.join(parts[:k])} is both a file and a folder in the zip"
                    )
        total = 0
        seen: set[str] = set()
        for info in infos:
            name = _check_name(info.filename.rstrip("/")) if info.filename.rstrip("/") else None
            if name is None:
                raise SubmissionError(f"{info.filename!r}: empty name")
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise SubmissionError(f"{info.filename}: symbolic links are not allowed")
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no type recorded (Python's own zips)
                raise SubmissionError(f"{info.filename}: not a regular file")
            if len(name.parts) > bounds.max_depth + 1:
                raise SubmissionError(f"{info.filename}: nested deeper than {bounds.max_depth} folders")
            key = name.as_posix().lower()
            if key in seen:
                raise SubmissionError(f"{info.filename}: appears twice")
            seen.add(key)
            if info.is_dir():
                (dest / name).mkdir(parents=True, exist_ok=True)
                continue
            if info.flag_bits & 0x1:
                raise SubmissionError(f"{info.filename}: encrypted entries are not accepted")
            if info.file_size > bounds.max_file_bytes:
                raise SubmissionError(
                    f"{info.filename}: declares {info.file_size} bytes, more than {bounds.max_file_bytes}"
                )
            allowed = min(
                bounds.max_file_bytes, int(max(info.compress_size, 1024) * bounds.max_ratio), bounds.max_bytes - total
            )
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            h = hashlib.sha256()
            with zf.open(info) as fin, open(target, "xb") as fout:
                while True:
                    try:
                        block = fin.read(1 << 20)
                    except (zipfile.BadZipFile, OSError, EOFError) as exc:
                        raise SubmissionError(f"{info.filename}: corrupt entry ({exc})") from None
                    if not block:
                        break
                    written += len(block)
                    if written > allowed:
                        raise SubmissionError(
                            f"{info.filename}: inflates past {allowed} bytes (compression ratio or size limit): "
                            "refused as a zip bomb"
                        )
                    h.update(block)
                    fout.write(block)
            sums[name.as_posix()] = h.hexdigest()
            total += written


def open_submission(src: Path, work: Path, bounds: Bounds | None = None) -> tuple[Path, str]:
    """Check ``src`` (a folder or a .zip) and copy it into ``work`` (created).

    Returns the private copy and the submission's identity: a sha256 over every file's path and sha256 (taken while
    the file was copied, so nothing is read twice). Raises :class:`SubmissionError` on the first rule broken;
    nothing partial is left behind.
    """
    bounds = bounds or Bounds()
    if src.is_symlink():
        raise SubmissionError(f"{src}: the submission itself is a symbolic link")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    sums: dict[str, str] = {}
    try:
        if src.is_dir():
            _copy_tree(src, work, bounds, sums)
        elif src.is_file() and zipfile.is_zipfile(src):
            _extract_zip(src, work, bounds, sums)
        elif src.is_file():
            raise SubmissionError(f"{src}: neither a folder nor a zip file")
        else:
            raise SubmissionError(f"{src}: no such folder or file")
        # A zip holding one folder: that folder is the submission.
        entries = list(work.iterdir())
        if len(entries) == 1 and entries[0].is_dir() and not (work / "submission.json").exists():
            prefix = entries[0].name + "/"
            inner = entries[0].rename(work / f".inner-{os.getpid()}")  # its children may share its name
            for child in inner.iterdir():
                child.rename(work / child.name)
            inner.rmdir()
            sums = {k.removeprefix(prefix): v for k, v in sums.items()}
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    h = hashlib.sha256()
    for rel, digest in sorted(sums.items()):
        h.update(f"{digest}  {rel}\n".encode())
    return work, h.hexdigest()
