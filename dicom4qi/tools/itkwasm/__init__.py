"""itk-wasm's DICOM package (PyPI ``itkwasm-dicom``: dcmqi compiled to WebAssembly), in its own environment."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["module_cache", "warm_up"]


def module_cache() -> Path:
    """Where itkwasm keeps the compiled WebAssembly modules: one compile serves every later call."""
    path = Path(os.environ.get("ITKWASM_CACHE_DIR") or Path.home() / ".cache" / "itkwasm")
    os.environ["ITKWASM_CACHE_DIR"] = str(path)
    return path


def warm_up(name: str, first_call: Callable[[Path], object]) -> str:
    """Run a pipeline once so that its WebAssembly module is compiled into the cache the cells' calls share.

    ``first_call`` gets a scratch folder and may fail (there is nothing to read or write: only the compile
    matters); what it did is said from the cache itself: a new module compiled, one already there, or none (the
    call failed before compiling, so the first cell will compile it: said, never hidden).
    """
    cache = module_cache()
    cache.mkdir(parents=True, exist_ok=True)
    before = set(cache.glob("module-*"))
    scratch = cache / f"warm-up-{os.getpid()}"
    scratch.mkdir(exist_ok=True)
    failure = ""
    try:
        first_call(scratch)
    except Exception as exc:  # noqa: BLE001  (expected: the call has nothing to work on)
        failure = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
    finally:
        for p in scratch.iterdir():
            p.unlink(missing_ok=True)
        scratch.rmdir()
    after = set(cache.glob("module-*"))
    if after - before:
        return f"{name}'s WebAssembly module compiled into {cache}"
    if after:
        return f"{name}'s WebAssembly module already compiled in {cache}"
    return f"{name}'s WebAssembly module not compiled in the warm-up ({failure or 'no module cached'}): the first cell compiles it"
