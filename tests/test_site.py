"""The dashboard, opened in real chromium (Debian's, through Playwright): pages, filters, links, escaping, badges,
history, page sizes.

One real run (highdicom writes quick/binary-3-disjoint; reference and highdicom read it; dciodvfy validates) is
made once; the other documents are derived from it: an earlier run where every cell passed, and the current run
where the reference reader fails with a message carrying markup, plus an object from the wild whose very name
carries markup.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

import pytest

from dicom4qi.cli.main import main
from dicom4qi.model.results import (
    Check,
    CheckStatus,
    Finding,
    Record,
    ResultsDocument,
    Status,
)
from dicom4qi.run.runner import RunConfig, run
from dicom4qi.site import pages
from dicom4qi.site.report import render_site
from dicom4qi.site.view import SiteOptions
from dicom4qi.tools.ohif.stack import chromium_path

from .conftest import CASES, FEATURES

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Dialog, Page

CHROMIUM = chromium_path()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package chromium)")

EVIL = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
CASE = "quick/binary-3-disjoint"
MAX_PAGE = 2_000_000
PASS_BG = (0xDA, 0xFB, 0xE1)
FAIL_BG = (0xFF, 0xEB, 0xE9)


# --------------------------------------------------------------------------- documents and sites


@pytest.fixture(scope="session")
def real_doc(tmp_path_factory: pytest.TempPathFactory) -> ResultsDocument:
    tmp = tmp_path_factory.mktemp("site-run")
    cfg = RunConfig(
        corpus=CASES,
        features=FEATURES,
        build=tmp / "build",
        results=tmp / "results",
        cases=[CASE],
        producers=["highdicom"],
        consumers=["reference", "highdicom"],
        workers=1,
        timeout_s=120,
    )
    return ResultsDocument.load(run(cfg).path)


def _earlier(doc: ResultsDocument) -> ResultsDocument:
    old = doc.model_copy(deep=True)
    old.run.run_id = "20200101T000000Z-early0"
    old.run.started = "2020-01-01T00:00:00+00:00"
    old.run.finished = "2020-01-01T00:01:00+00:00"
    return old


def _current(doc: ResultsDocument) -> ResultsDocument:
    now = doc.model_copy(deep=True)
    ref = next(r for r in now.records if r.consumer == "reference")
    ref.status = Status.FAIL
    ref.message = f"voxels: segment 2 {EVIL}: 12 voxel(s) differ"
    ref.checks.append(Check(name="voxels", status=CheckStatus.FAIL, message=EVIL))
    ref.notes.append(EVIL)
    val = next(r for r in now.records if r.step == "validate")
    val.findings.append(Finding(severity="warning", message=EVIL, path="/SegmentSequence(0062,0002)[1]"))
    tool = next(t for t in now.tools if t.name == "reference" and t.role == "consumer")
    tool.version = EVIL
    now.records.append(
        Record(
            case=f"external/{EVIL}",
            producer="external",
            consumer="reference",
            step="read",
            status=Status.FAIL,
            message=EVIL,
            tier="external",
            features=["binary"],
            notes=[f"written by {EVIL}"],
        )
    )
    return now


@pytest.fixture(scope="session")
def docs(real_doc: ResultsDocument, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("site-docs")
    early, now = tmp / "early.json", tmp / "now.json"
    early.write_text(_earlier(real_doc).model_dump_json(), encoding="utf-8")
    now.write_text(_current(real_doc).model_dump_json(), encoding="utf-8")
    return early, now


@pytest.fixture(scope="session")
def site(docs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site as `dicom4qi report` writes it: the earlier run in a history folder, a benchmark beside it."""
    early, now = docs
    tmp = tmp_path_factory.mktemp("site")
    history = tmp / "history"
    history.mkdir()
    (history / early.name).write_text(early.read_text())
    bench = tmp / "bench"
    bench.mkdir()
    bench_doc = ResultsDocument.load(now)
    bench_doc.run.kind = "bench"
    bench_doc.run.run_id = "20200101T000000Z-bench0"
    (bench / "bench-full.json").write_text(bench_doc.model_dump_json())
    out = tmp / "site"
    assert main(["report", str(now), "--out", str(out), "--history", str(history), "--bench", str(bench)]) == 0
    return out


@pytest.fixture(scope="session")
def paged_site(real_doc: ResultsDocument, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A grid too big for one page (a tiny page budget): 40 copies of the real rows, every fourth one failing."""
    doc = _current(real_doc)
    base = [r for r in doc.records if r.case == CASE]
    for i in range(40):
        for r in base:
            copy = r.model_copy(deep=True)
            copy.case = f"quick/synth-{i:02d}"
            if i % 4 == 0 and r.consumer == "highdicom":
                copy.status, copy.message = Status.FAIL, "voxels: synthesized failure"
            doc.records.append(copy)
    out = tmp_path_factory.mktemp("paged") / "site"
    budget = pages.GRID_PAGE_BUDGET
    pages.GRID_PAGE_BUDGET = 12_000
    try:
        render_site([doc], out, options=SiteOptions(pictures=False))
    finally:
        pages.GRID_PAGE_BUDGET = budget
    return out


# --------------------------------------------------------------------------- chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        yield b
        b.close()


class Watched:
    """A page with every console error, page error, failed request and dialog recorded."""

    def __init__(self, browser: Browser, width: int = 1400, height: int = 900) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on(
            "console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
        )
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        # A lazy image still loading when the crawl moves on is aborted (net::ERR_ABORTED): not a missing file.
        self.page.on(
            "requestfailed",
            lambda r: None
            if r.failure == "net::ERR_ABORTED"
            else self.problems.append(f"request failed: {r.url} {r.failure}"),
        )

        def dialog(d: Dialog) -> None:
            self.problems.append(f"dialog (script ran!): {d.message}")
            d.dismiss()

        self.page.on("dialog", dialog)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    w = Watched(browser)
    yield w
    w.close()


def _visible_rows(page: Page) -> list[str]:
    return page.eval_on_selector_all(
        "#grid tbody tr.r",
        "rows => rows.filter(r => !r.hidden).map(r => r.querySelector('td.case').textContent + ' | ' + r.dataset.p)",
    )


# --------------------------------------------------------------------------- static checks


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"] or "")
        for key in ("href", "src"):
            if a.get(key) and tag in ("a", "img", "script", "link"):
                self.refs.append(a[key] or "")


def _check_links(site: Path) -> int:
    """Every href and src of every page resolves to a file of the site (and an #id of a page exists)."""
    pages = sorted(site.rglob("*.html"))
    parsed = {}
    for p in pages:
        parser = _Links()
        parser.feed(p.read_text(encoding="utf-8"))
        parsed[p.resolve()] = parser
    broken = []
    count = 0
    for p, parser in parsed.items():
        for ref in parser.refs:
            u = urlparse(ref)
            if u.scheme in ("http", "https"):
                assert u.hostname and re.search(r"(github\.com|shields\.io|dclunie\.com)$", u.hostname), ref
                continue
            if u.scheme == "data":
                continue
            assert not u.scheme, f"{p}: unexpected link {ref}"
            target = (p.parent / unquote(u.path)).resolve() if u.path else p
            count += 1
            if not target.is_file() or not target.is_relative_to(site.resolve()):
                broken.append(f"{p.relative_to(site.resolve())}: {ref}")
            elif (
                u.fragment
                and target.suffix == ".html"
                and not re.match(r"^grid-\d+\.html$|^index\.html$", target.name)
                and u.fragment not in parsed[target].ids
            ):
                broken.append(f"{p.relative_to(site.resolve())}: {ref} (no such id)")
    assert broken == []
    return count


def test_every_link_of_every_page_resolves(site: Path, paged_site: Path) -> None:
    assert _check_links(site) > 50
    assert _check_links(paged_site) > 500


def test_no_page_is_over_2_mb_and_the_big_grid_is_paginated(site: Path, paged_site: Path) -> None:
    for root in (site, paged_site):
        sizes = {p.name: p.stat().st_size for p in root.rglob("*.html")}
        assert max(sizes.values()) < MAX_PAGE
    grid_pages = sorted(p.name for p in paged_site.glob("grid-*.html"))
    assert len(grid_pages) >= 3
    recorded = json.loads((paged_site / "data" / "pages.json").read_text())
    assert recorded["pages"]["index.html"] == (paged_site / "index.html").stat().st_size


def test_copies_small_files_and_says_when_not(real_doc: ResultsDocument, site: Path, tmp_path: Path) -> None:
    cell = next(site.glob("cell/quick_binary-3-disjoint.highdicom.reference.*.html")).read_text()
    assert "download>the SEG object</a>" in cell and "source images" in cell and "truth.npz" in cell
    out = tmp_path / "tiny"
    render_site([real_doc], out, options=SiteOptions(copy_max_bytes=100, pictures=False))
    cell = next(out.glob("cell/quick_binary-3-disjoint.highdicom.reference.*.html")).read_text()
    assert "not copied into the site" in cell and "over the 100 B cap per file" in cell
    assert not (out / "files" / "runs").exists()


def test_markup_in_results_is_escaped_everywhere(site: Path) -> None:
    raw = [
        p.name
        for p in site.rglob("*.html")
        if "<script>alert" in p.read_text(encoding="utf-8") or "<img src=x" in p.read_text(encoding="utf-8")
    ]
    assert raw == []
    assert any(
        "&lt;script&gt;alert(1)&lt;/script&gt;" in p.read_text(encoding="utf-8") for p in site.glob("cell/*.html")
    )
    assert all(re.fullmatch(r"[A-Za-z0-9._@+-]+", p.name) for p in site.rglob("*") if p.is_file())


def test_badges_are_shields_endpoints(site: Path) -> None:
    badges = {p.name: json.loads(p.read_text()) for p in (site / "badges").glob("*.json")}
    assert len(badges) == 3  # highdicom writes; reference and highdicom read
    for b in badges.values():
        assert set(b) == {"schemaVersion", "label", "message", "color"} and b["schemaVersion"] == 1
        assert re.fullmatch(r"\d{1,3}% \(\d+/\d+\)|no data", b["message"])
        assert b["color"] in {"brightgreen", "green", "yellowgreen", "yellow", "orange", "red", "lightgrey"}
    ref = next(b for name, b in badges.items() if name.startswith("consumer.reference."))
    assert ref["message"] == "0% (0/1)" and ref["color"] == "red"
    writer = next(b for name, b in badges.items() if name.startswith("producer.highdicom."))
    assert writer == {
        "schemaVersion": 1,
        "label": "highdicom SEG write",
        "message": "100% (1/1)",
        "color": "brightgreen",
    }


# --------------------------------------------------------------------------- in chromium


def test_every_page_renders_without_errors(site: Path, watched: Watched) -> None:
    """Crawl from the grid, following every link of the site: each page loads, draws, and logs no error."""
    seen: set[str] = set()
    queue = [(site / "index.html").resolve().as_uri()]
    page = watched.page
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        page.goto(url)
        assert page.locator("h1").count() == 1, url
        assert page.evaluate("document.body.scrollHeight") > 200, url
        for ref in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
            u = urlparse(ref)
            if u.scheme == "file" and u.path.endswith(".html"):
                queue.append(f"file://{u.path}")
    assert len(seen) >= 15
    assert any(u.endswith("format-study.html") for u in seen)
    assert watched.problems == []


def test_filters_filter_and_the_url_keeps_them(site: Path, watched: Watched) -> None:
    page = watched.page
    page.goto((site / "index.html").as_uri())
    everything = _visible_rows(page)
    assert len(everything) == 2  # the case written by highdicom, and the object from the wild
    page.select_option("select[name=status]", "FAIL")
    assert "status=FAIL" in page.url
    assert len(_visible_rows(page)) == 2  # the reference reader fails both
    page.select_option("select[name=tier]", "external")
    assert "tier=external" in page.url
    rows = _visible_rows(page)
    assert len(rows) == 1 and rows[0].startswith("external/<script>")
    page.reload()
    assert page.input_value("select[name=tier]") == "external" and page.input_value("select[name=status]") == "FAIL"
    assert _visible_rows(page) == rows
    page.select_option("select[name=tier]", "")
    page.select_option("select[name=status]", "")
    page.select_option("select[name=tool]", "consumer:highdicom")
    headers = page.eval_on_selector_all(
        "#grid thead th", "ths => ths.filter(t => !t.hidden).map(t => t.textContent.trim())"
    )
    assert headers == ["case", "producer", "write", "highdicom"]
    assert _visible_rows(page) == [f"{CASE} | highdicom"]  # the external row has no highdicom cell
    page.goto((site / "index.html").as_uri() + "#feature=ts-rle")
    assert _visible_rows(page) == []
    assert "0 of 2 rows" in page.inner_text("#shown")
    page.click("button[type=reset]")
    assert len(_visible_rows(page)) == 2 and "#" not in page.url
    assert watched.problems == []


def test_history_highlights_the_regression(site: Path, watched: Watched) -> None:
    history = (site / "history.html").read_text()
    assert "Regressions since the previous run (1)" in history and "20200101T000000Z-early0" in history
    page = watched.page
    page.goto((site / "index.html").as_uri() + "#status=regressed")
    assert _visible_rows(page) == [f"{CASE} | highdicom"]
    cell = page.locator("#grid td.cell.regressed")
    assert cell.count() == 1 and "▼ regressed" in cell.inner_text() and "FAIL" in cell.inner_text()
    cell.locator("a.st").click()
    assert "/cell/" in page.url and "previous run" in page.inner_text("main")
    assert watched.problems == []


def test_screenshot_of_the_grid_has_content(site: Path, watched: Watched, tmp_path: Path) -> None:
    from PIL import Image

    page = watched.page
    page.goto((site / "index.html").as_uri())
    shot = tmp_path / "grid.png"
    page.locator("#grid").screenshot(path=str(shot))
    img = Image.open(shot).convert("RGB")
    assert img.width > 600 and img.height > 100
    colors = img.getcolors(maxcolors=1 << 20) or []
    counts = {c: n for n, c in colors}
    assert len(counts) > 50  # text, borders, colours: not a blank image
    assert counts.get(PASS_BG, 0) > 2000 and counts.get(FAIL_BG, 0) > 500
    assert watched.problems == []


def test_the_paged_grid_counts_matches_on_other_pages(paged_site: Path, watched: Watched) -> None:
    page = watched.page
    page.goto((paged_site / "index.html").as_uri() + "#status=FAIL&tool=consumer:highdicom")
    matches = page.inner_text("#pages-match")
    counts = [int(n) for n in re.findall(r": (\d+) rows?", matches)]
    assert sum(counts) == 10  # synth-00, -04, ... -36
    links = page.locator("#pages-match a")
    target = next(i for i in range(links.count()) if not links.nth(i).inner_text().endswith(": 0 rows"))
    links.nth(target).click()
    assert "status=FAIL" in page.url and "tool=consumer%3Ahighdicom" in page.url
    # The link opens another page: its script applies the filter from the URL once loaded, so wait for it.
    page.wait_for_load_state("load")
    page.wait_for_function(
        "() => document.querySelector('select[name=tool]').value === 'consumer:highdicom'", timeout=10_000
    )
    rows = _visible_rows(page)
    assert rows and all(r.startswith("quick/synth-") for r in rows)
    assert watched.problems == []


def test_overview_tool_and_case_pages(site: Path, watched: Watched) -> None:
    page = watched.page
    page.goto((site / "overview.html").as_uri())
    text = page.inner_text("main")
    assert "Readers: pass rate by feature" in text and "interop score" in text and "0.28.2" in text
    assert "Objects from the wild" in text
    from dicom4qi.judge.pixelmed import pixelmed_available

    if pixelmed_available()[0]:
        # highdicom's object: dciodvfy finds no error, PixelMed its Laterality rule (its own known fault)
        assert "valid per pixelmed" in text and "Where the validators disagree" in text
        assert "the validator's own fault" in text
    page.goto(next(site.glob("tool/reference.*.html")).as_uri())
    text = page.inner_text("main")
    assert "Where it fails most" in text and "As a reader" in text and EVIL in text  # shown as text, not run
    page.goto(next(site.glob("tool/highdicom.*.html")).as_uri())
    assert page.locator("a[href='https://github.com/ImagingDataCommons/highdicom/issues']").count() == 1
    page.goto(next(site.glob("case/quick_binary-3-disjoint.*.html")).as_uri())
    img = page.locator("img.truth")
    assert img.count() == 1 and img.evaluate("i => i.complete && i.naturalWidth > 200")
    assert "PS3.3" in page.inner_text("main")
    assert watched.problems == []
