"""The layering rule of docs/architecture.md: imports point down the layers, never up, and tools never import
each other.

Every ``import`` statement counts, at module level or inside a function (a deferred import is still a
dependency), and under ``TYPE_CHECKING`` too. Adapters are found by the registry from their names, so the
contract never imports a tool.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dicom4qi"

#: Lowest first. A module may import from its own layer and the layers before it.
LAYERS = ["model", "formats", "process", "corpus", "judge", "adapters", "tools", "run", "vendors", "site", "cli"]
#: Modules beneath every layer (the version and the paths), importable from anywhere.
BASE = {"dicom4qi", "dicom4qi.paths"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int | None:
    if module in BASE:
        return None
    if module == "dicom4qi.__main__":  # ``python -m dicom4qi``: the command line
        return LAYERS.index("cli")
    parts = module.split(".")
    assert parts[0] == "dicom4qi" and len(parts) > 1, module
    if parts[1] not in LAYERS:
        return -1
    return LAYERS.index(parts[1])


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "dicom4qi"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "dicom4qi":
                continue
            if node.module == "dicom4qi":  # from dicom4qi import model / paths / __version__
                found += [
                    (node.lineno, f"dicom4qi.{a.name}") if a.name in LAYERS else (node.lineno, "dicom4qi")
                    for a in node.names
                ]
            else:
                found.append((node.lineno, node.module))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_layer() -> None:
    stray = [_module_name(p) for p in MODULES if _layer(_module_name(p)) == -1]
    assert not stray, f"modules outside the layers {LAYERS}: {stray}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_imports_point_down(path: Path) -> None:
    me = _module_name(path)
    mine = _layer(me)
    wrong = []
    for line, target in _imports(path):
        theirs = _layer(target)
        if theirs is None or mine is None:
            if mine is None and theirs is not None:
                wrong.append(f"line {line}: {target} (the base imports no layer)")
            continue
        if theirs > mine:
            wrong.append(f"line {line}: {target} ({LAYERS[theirs]} is above {LAYERS[mine]})")
        if LAYERS[mine] == "tools" and theirs == mine and target.split(".")[2] != me.split(".")[2]:
            wrong.append(f"line {line}: {target} (a tool imports another tool; share through the contract)")
    assert not wrong, f"{me} imports upward:\n" + "\n".join(wrong)


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: a model module importing the site is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from dicom4qi.site.report import render_site\n")
    assert _imports(bad) == [(2, "dicom4qi.site.report")]
    site, model = _layer("dicom4qi.site.report"), _layer("dicom4qi.model.case")
    assert site is not None and model is not None and site > model
