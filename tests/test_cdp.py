"""The OHIF read's DevTools client: console words as Playwright gave them (known issues match on them), and a real
page of Debian's chromium driven through it (load, evaluate, wait, double-click, a crash ended at once)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicom4qi.tools.ohif import cdp
from dicom4qi.tools.ohif.stack import chromium_path, free_port


def test_console_arguments_read_as_playwright_renders_them() -> None:
    assert cdp.preview({"type": "string", "value": "request failed:"}) == "request failed:"
    assert cdp.preview({"type": "number", "value": 3}) == "3"
    assert cdp.preview({"type": "number", "value": 2.0}) == "2"
    assert cdp.preview({"type": "boolean", "value": False}) == "false"
    assert cdp.preview({"type": "undefined"}) == "undefined"
    assert cdp.preview({"type": "number", "unserializableValue": "NaN"}) == "NaN"
    assert (
        cdp.preview({"type": "object", "subtype": "arraybuffer", "description": "ArrayBuffer(471)"})
        == "ArrayBuffer(471)"
    )
    assert (
        cdp.preview({"type": "object", "className": "XMLHttpRequest", "description": "XMLHttpRequest"})
        == "XMLHttpRequest"
    )
    obj = {"type": "object", "description": "Object", "preview": {"properties": [{"name": "a", "value": "1"}]}}
    assert cdp.preview(obj) == "{a: 1}"
    arr = {
        "type": "object",
        "subtype": "array",
        "description": "Array(2)",
        "preview": {"properties": [{"name": "1", "value": "y"}, {"name": "0", "value": "x"}]},
    }
    assert cdp.preview(arr) == "x,y"


def test_an_uncaught_exception_reads_as_its_message() -> None:
    details = {"exception": {"description": "RangeError: Invalid typed array length: 4\n    at f (x.js:1:2)"}}
    assert cdp.exception_message(details) == "Invalid typed array length: 4"
    assert cdp.exception_message({"exception": {"value": "thrown string"}}) == "thrown string"
    assert cdp.exception_message({"text": "Uncaught"}) == "Uncaught"


PAGE = """<!doctype html><html><body style="margin:0">
<div id="cover" style="position:fixed;left:0;top:0;width:300px;height:300px;z-index:2"></div>
<button id="b" style="position:absolute;left:50px;top:50px;width:100px;height:40px"
  ondblclick="window.clicked=(window.clicked||0)+1">b</button>
<script>
  console.error('request failed:', new ArrayBuffer(7));
  setTimeout(() => { throw new TypeError('thrown late'); }, 0);
  setTimeout(() => { document.getElementById('cover').remove(); window.ready = true; }, 300);
</script></body></html>"""


@pytest.fixture(scope="module")
def chromium() -> Iterator[str]:
    exe = chromium_path()
    if exe is None:
        pytest.skip("chromium (Debian package chromium) is not installed")
    profile = Path(tempfile.mkdtemp(prefix="d4qi-cdp-"))
    (profile / "page.html").write_text(PAGE, encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            f"--user-data-dir={profile / 'p'}",
            "--remote-debugging-address=127.0.0.1",
            f"--remote-debugging-port={port}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(endpoint + "/json/version", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield endpoint + "|" + (profile / "page.html").as_uri()
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def test_a_real_page_through_devtools(chromium: str) -> None:
    endpoint, url = chromium.split("|")
    with cdp.Browser(endpoint) as browser:
        page = browser.new_page()
        page.start("window.__init = 'ran';", (640, 480))
        page.goto(url, timeout_s=30)
        assert page.evaluate("window.__init") == "ran", "the init script runs before the page's own"
        assert page.evaluate("(x) => x.a + 1", {"a": 41}, function=True) == 42
        assert page.evaluate("Promise.resolve([innerWidth, innerHeight])") == [640, 480]
        page.wait_for("window.ready === true", timeout_s=10)
        # the cover is gone by now: the click lands on the button, twice, as one double-click
        page.dblclick("#b", timeout_s=10)
        page.wait_for("window.clicked === 1", timeout_s=5)
        with pytest.raises(cdp.PageError, match="nope"):
            page.evaluate("(() => { throw new Error('nope'); })()")
        with pytest.raises(cdp.PageTimeout):
            page.wait_for("window.never", timeout_s=0.3)
        with pytest.raises(cdp.PageTimeout, match="not attached"):
            page.dblclick("#missing", timeout_s=0.3)
        assert page.screenshot_png()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "error: request failed: ArrayBuffer(7)" in page.console
        assert "pageerror: thrown late" in page.console
        page.close()
        # closed without waiting; the next read waits until it is gone
        browser.close_stale_pages(wait_s=5)
        assert all(p.get("url") != url for p in browser.pages())


def test_a_crashed_page_ends_the_wait_at_once(chromium: str) -> None:
    endpoint, _ = chromium.split("|")
    with cdp.Browser(endpoint) as browser:
        page = browser.new_page()
        page.start("", (320, 240))
        started = time.monotonic()
        with pytest.raises(cdp.PageCrashed, match="crashed"):
            page.send("Page.navigate", {"url": "chrome://crash"}, timeout_s=30)
            page.wait_for("false", timeout_s=20)
        assert time.monotonic() - started < 15
        page.close()


def test_a_large_answer_comes_back_whole(chromium: str) -> None:
    """A read back of many MB (base64 slices in JSON) arrives whole, non-ASCII included."""
    endpoint, _ = chromium.split("|")
    with cdp.Browser(endpoint) as browser:
        page = browser.new_page()
        page.start("", (320, 240))
        text = page.evaluate("'é'.repeat(10) + 'A'.repeat(8 * 1024 * 1024)")
        assert text[:10] == "é" * 10 and len(text) == 10 + 8 * 1024 * 1024
        page.close()
