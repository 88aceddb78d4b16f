"""Render results JSON into the static dashboard (Jinja2, autoescaped, no external assets, no CDN): the entry point,
:func:`render_site`, which merges the documents, copies the files and renders every page.

``dicom4qi report`` writes a site that works from a folder (file://) and from GitHub Pages::

    index.html, grid-2.html ...   the grid: rows case x producer, columns the write step, every consumer and the
                                  validator, grouped by segmentation type; filters kept in the URL hash
                                  (static/grid.js); pages of at most pages.GRID_PAGE_BUDGET bytes of rows
    overview.html                 per reader and per writer pass rates by feature, interop score, tool versions,
                                  the negative corpus's reactions, objects from the wild
    cell/*.html                   one call: subchecks, message, validator findings, screenshot, timings, notes,
                                  the object, its source and the truth to download (small files are copied)
    tool/*.html                   a tool: version, claims, where it fails most, homepage and issue tracker, badge
    cases.html, case/*.html       a case: what it tests, the standard, a picture of the truth, its cells
    history.html                  earlier runs side by side; regressions and fixes since the previous run
    badges/*.json                 shields.io endpoint JSON per tool (with a local SVG for the site itself)
    format-study.html             the benchmark's format study (:func:`dicom4qi.site.study.render_format_study`)

Every label comes from results that may be untrusted (vendor submissions): templates autoescape, file names
are sanitized, copied files are confined to their run folder.

The work is shared by the modules of this package: ``view`` (the view model: statuses, options, cells, rows,
cases, badges), ``merge`` (merging the documents into the grid, its history and counts), ``files`` (package
data, safe names and paths, copying into the site), ``pictures`` (the truth's pictures and the cases' files),
``pages`` (the Jinja2 environment and every page) and ``study`` (the format study).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from dicom4qi.model.results import ResultsDocument
from dicom4qi.site.files import STATIC, Copier, _copy_cell_files, _write_text
from dicom4qi.site.merge import _case_infos, _Site
from dicom4qi.site.pages import _Renderer
from dicom4qi.site.pictures import _case_files
from dicom4qi.site.view import SiteOptions

__all__ = ["render_site"]

#: Folders render_site owns and rewrites on every report (img/case and files/case are pruned, not cleared).
_OWNED = ("cell", "case", "tool", "badges", "artifacts", "data", "static", "files/runs", "submission", "bundle")


def render_site(
    documents: list[ResultsDocument],
    out_dir: Path,
    *,
    links: dict[str, str] | None = None,
    history: list[ResultsDocument] | None = None,
    options: SiteOptions | None = None,
    submissions: list[ResultsDocument] | None = None,
    bundle_zip: Path | None = None,
) -> Path:
    """Write the dashboard for ``documents`` into ``out_dir``; return the grid's first page (``index.html``).

    ``documents`` are merged into the current grid (where two runs hold the same cell, the later run wins) and
    are the most recent entries of the history; ``history`` adds earlier runs, for the history page and the
    change markers only. Benchmark documents are left out (they feed
    :func:`dicom4qi.site.study.render_format_study`).
    """
    if not documents:
        raise ValueError("no results to report")
    opts = options or SiteOptions()
    links = dict(links or {})
    links.setdefault("submissions.html", "Vendors")
    site = _Site(documents, history or [], out_dir, opts, links)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in _OWNED:
        shutil.rmtree(out_dir / name, ignore_errors=True)
    for stale in out_dir.glob("grid-*.html"):
        stale.unlink()
    shutil.copytree(STATIC, out_dir / "static")
    (out_dir / ".nojekyll").write_text("", encoding="utf-8")  # GitHub Pages: serve every file as it is
    from dicom4qi.model.case import load_features

    features = load_features(opts.features) if opts.features.is_file() else {}
    copier = Copier(out_dir, opts.copy_max_bytes, opts.copy_total_bytes)
    cases = _case_infos(site)
    _copy_cell_files(list(site.cells.values()), copier)  # screenshots first: they are the viewers' evidence
    _case_files(site, cases, copier, pictures=opts.pictures)
    r = _Renderer(site, cases, features, copier)
    r.badge_files()
    r.cell_pages()
    r.tool_pages()
    r.case_pages()
    r.history()
    r.overview()
    r.grid()
    download = None
    if bundle_zip is not None:
        (out_dir / "bundle").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle_zip, out_dir / "bundle" / bundle_zip.name)
        digest = hashlib.sha256(bundle_zip.read_bytes()).hexdigest()
        download = {
            "href": f"bundle/{bundle_zip.name}",
            "name": bundle_zip.name,
            "size": bundle_zip.stat().st_size,
            "sha256": digest,
        }
    r.submissions(submissions or [], download)
    _write_text(
        out_dir / "data" / "pages.json",
        json.dumps(
            {
                "pages": r.sizes,
                "copied_files": copier.copied,
                "copied_bytes": copier.used,
                "not_copied": copier.refused,
            },
            indent=1,
            sort_keys=True,
        ),
    )
    return out_dir / "index.html"
