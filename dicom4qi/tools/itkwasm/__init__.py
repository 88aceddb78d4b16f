"""itk-wasm's DICOM package (PyPI ``itkwasm-dicom``: dcmqi compiled to WebAssembly), in its own environment."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["module_cache"]


def module_cache() -> Path:
    """Where itkwasm keeps the compiled WebAssembly modules: one compile serves every later call."""
    path = Path(os.environ.get("ITKWASM_CACHE_DIR") or Path.home() / ".cache" / "itkwasm")
    os.environ["ITKWASM_CACHE_DIR"] = str(path)
    return path
