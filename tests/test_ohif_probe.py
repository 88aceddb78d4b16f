"""The OHIF read's wait for the SEG (``probe.js`` ``waitLoaded``) in Debian's chromium, on a page that stands in for
the viewer's services: a load that died after the page threw ends once the page is idle, not at the time limit; a
slow load that threw keeps its time; a logged error alone never shortens the wait."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dicom4qi.tools.ohif import cdp
from dicom4qi.tools.ohif.consumer import INIT_SCRIPT, PROBE

from .test_cdp import chromium  # noqa: F401  (the fixture: a headless chromium of this machine)

#: The viewer's services as far as waitLoaded uses them. ``window.start(scenario)`` begins a load: ``threw`` (the
#: page throws 0.2 s in, load() never settles); ``busy``, ``chunks``, ``worker`` (it throws, then works for 7 s in
#: 80 ms tasks, in 5 ms timer callbacks, in a worker, and the segmentation is there); ``logged`` (it only logs an
#: error, load() never settles); ``noload`` (a display set without a load() of its own).
FAKE_VIEWER = """
window.segReady = false;
window.services = {
  displaySetService: { getDisplaySetByUID: () => window.noLoad ? {} : { load: () => window.loadPromise } },
  segmentationService: { getSegmentation: () => window.segReady
    ? { representationData: { Labelmap: { imageIds: ['img:1'] } } } : null },
};
window.cornerstone = { cache: { getImage: () => ({}) } };
window.start = (scenario) => {
  let finish;
  window.loadPromise = new Promise((resolve) => { finish = () => { window.segReady = true; resolve(); }; });
  if (scenario === 'noload') { window.noLoad = true; return; }
  if (scenario === 'logged') { setTimeout(() => console.error('a thumbnail failed'), 200); return; }
  setTimeout(() => { throw new Error('Invalid typed array length: 4096'); }, 200);
  if (scenario === 'threw') return;
  const until = Date.now() + 7000;
  if (scenario === 'busy') {  // 80 ms tasks every 300 ms
    const work = () => { const t = Date.now(); while (Date.now() - t < 80) {} if (Date.now() < until) setTimeout(work, 300); else finish(); };
    setTimeout(work, 300);
  } else if (scenario === 'chunks') {  // 5 ms of work every 100 ms, in timer callbacks
    const chunk = () => { const t = Date.now(); while (Date.now() - t < 5) {} if (Date.now() < until) setTimeout(chunk, 100); else finish(); };
    setTimeout(chunk, 100);
  } else if (scenario === 'worker') {  // a worker's answer every 300 ms, the main thread idle between
    const w = new Worker(URL.createObjectURL(new Blob(["onmessage = () => setTimeout(() => postMessage(1), 300);"])));
    w.onmessage = () => { if (Date.now() < until) w.postMessage(0); else finish(); };
    w.postMessage(0);
  }
};
"""


def _wait(endpoint: str, scenario: str, timeout_ms: int, folder: Path) -> tuple[dict, float]:
    page_file = folder / "viewer.html"  # a file, not a data: URL (whose storage the init script's first line needs)
    page_file.write_text("<title>viewer</title>", encoding="utf-8")
    with cdp.Browser(endpoint) as browser:
        page = browser.new_page()
        try:
            page.start(INIT_SCRIPT, (320, 240))
            page.goto(page_file.as_uri(), timeout_s=30)
            page.evaluate(FAKE_VIEWER)
            thrown = page.evaluate("window.__d4qiThrown")
            page.evaluate(f"window.start({scenario!r})")
            started = time.monotonic()
            state = page.evaluate(
                PROBE,
                {"op": "waitLoaded", "segId": "seg", "timeoutMs": timeout_ms, "thrownBefore": thrown},
                function=True,
                timeout_s=timeout_ms / 1000 + 30,
            )
            return state, time.monotonic() - started
        finally:
            page.close()


@pytest.mark.slow
def test_a_load_that_died_after_the_page_threw_ends_when_the_page_is_idle(chromium: str, tmp_path: Path) -> None:  # noqa: F811
    state, seconds = _wait(chromium.split("|")[0], "threw", 30_000, tmp_path)
    assert state["ok"] is False
    assert state["error"].startswith("load() rejected: did not settle: the page threw, then did nothing for 5 s")
    assert 5 <= seconds < 12, seconds  # not the 30 s limit


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["busy", "chunks", "worker"])
def test_a_slow_load_that_threw_but_kept_working_is_waited_for(
    chromium: str,  # noqa: F811
    tmp_path: Path,
    scenario: str,
) -> None:
    """Long tasks, short timer callbacks, a worker's messages: each is work the wait sees."""
    state, seconds = _wait(chromium.split("|")[0], scenario, 30_000, tmp_path)
    assert state["ok"] is True, state
    assert state["path"] == "load()"
    assert seconds >= 7


@pytest.mark.slow
def test_a_logged_error_alone_keeps_the_whole_time_limit(chromium: str, tmp_path: Path) -> None:  # noqa: F811
    state, seconds = _wait(chromium.split("|")[0], "logged", 9_000, tmp_path)
    assert state["ok"] is False
    assert "did not settle within" in state["error"], state
    assert seconds >= 8.5


@pytest.mark.slow
def test_a_display_set_without_a_load_of_its_own_is_asked_after_5_s(chromium: str, tmp_path: Path) -> None:  # noqa: F811
    state, seconds = _wait(chromium.split("|")[0], "noload", 30_000, tmp_path)
    assert state == {"ok": False, "error": "load() rejected: ds.load is not a function", "firstError": None}
    assert 5 <= seconds < 10, seconds
