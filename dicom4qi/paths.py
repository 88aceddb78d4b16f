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

__all__ = [
    "BUILD_DIR",
    "CASES_DIR",
    "FEATURES_FILE",
    "PACKAGE",
    "PROJECT",
    "SUITE_ROOT",
    "build",
    "corpus_file",
    "project",
    "reports",
]

#: The ``dicom4qi`` package folder (templates, static files and tool data are package data beneath it).
PACKAGE = Path(__file__).resolve().parent
#: The folder that holds the ``dicom4qi`` package: what a child process needs on its ``PYTHONPATH``.
SUITE_ROOT = PACKAGE.parent
#: The controlled list of features, package data so that an installed package knows it too
#: (``corpus/features.txt`` in the checkout is a link to it).
FEATURES_FILE = PACKAGE / "model" / "features.txt"


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


def build(*parts: str) -> Path:
    """The default build folder (corpus, runs, environments, caches): the checkout's, else ``./build``."""
    return (PROJECT / "build" if PROJECT else Path("build")).joinpath(*parts)


def reports(*parts: str) -> Path:
    """A default path under ``reports/``: the checkout's; for an installed package outside one, ``./reports``."""
    return (PROJECT / "reports" if PROJECT else Path("reports")).joinpath(*parts)


#: The default folder of case files, and the default build folder.
CASES_DIR = corpus_file("cases")
BUILD_DIR = build()
