"""Where things are: the package, the project checkout, and the default folders of a run.

Every default path of the suite is resolved here, from the package's own location, never from the working
directory. ``PROJECT`` is the checkout the package runs from (the folder holding ``corpus/features.txt``
beside the package); an installed wheel outside a checkout has none, and then the commands that need the
corpus say so, while the ones that do not (``dicom4qi report`` on a results file) work without it.
``DICOM4QI_PROJECT`` names another checkout explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PACKAGE", "PROJECT", "project", "corpus_file", "reports"]

#: The ``dicom4qi`` package folder (templates, static files and tool data are package data beneath it).
PACKAGE = Path(__file__).resolve().parent
#: The folder that holds the ``dicom4qi`` package: what a child process needs on its ``PYTHONPATH``.
SUITE_ROOT = PACKAGE.parent


def _checkout() -> Path | None:
    named = os.environ.get("DICOM4QI_PROJECT")
    if named:
        return Path(named).resolve()
    if (SUITE_ROOT / "corpus" / "features.txt").is_file():
        return SUITE_ROOT
    return None


#: The project checkout, or None for an installed package outside one.
PROJECT: Path | None = _checkout()


def project() -> Path:
    """The project checkout; a clear error when the package runs outside one."""
    if PROJECT is None:
        raise FileNotFoundError(
            "this needs the dicom4qi checkout (its corpus/): run from a clone, or set DICOM4QI_PROJECT to one"
        )
    return PROJECT


def corpus_file(*parts: str) -> Path:
    """A path under the checkout's ``corpus/`` (a path that does not exist outside a checkout)."""
    return (PROJECT or SUITE_ROOT) / "corpus" / Path(*parts)


def reports(*parts: str) -> Path:
    """A default path under ``reports/``: the checkout's, else ``./reports`` for an installed package."""
    return (PROJECT or Path("reports").resolve()) / "reports" / Path(*parts) if PROJECT else Path("reports", *parts)
