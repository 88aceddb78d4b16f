"""Consumer ``ohif``: the real OHIF viewer (npm ``@ohif/app``) in Debian's chromium, read back voxel by voxel.

Per worker, the service (:mod:`dicom4qi.tools.ohif.stack`) runs Orthanc with
DICOMweb, a same-origin server for the viewer build and one chromium with a
DevTools port. Per object, the read call:

1. empties Orthanc and uploads the source series and the SEG;
2. opens the viewer on the study in a new page of the worker's browser, its origin's storage emptied first
   (local storage, IndexedDB, cache storage, service workers, cookies): a clean viewer, whose own files come
   from the browser's cache after the first read (study data is never cached);
3. loads the SEG as a user does, by double-clicking its thumbnail in the study
   browser; if no segmentation appears, the display set's ``load()`` is called
   as the second path, which gives OHIF's own error at once (a ``load()`` that never settles is given up on
   when the page threw and then did nothing for 5 s: no request, long task, timer, worker message; else at the limit);
4. reads back from OHIF's own state (``segmentationService``, the cornerstone
   cache) the segments and every labelmap slice with the source image it
   belongs to, and saves a screenshot of the viewer with the SEG shown.

What OHIF gets wrong is the result: nothing is corrected here. The version is
the adapter's parameter: ``ohif`` is 3.13.2, ``ohif@3.11.1`` another release.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import numpy as np

from dicom4qi.adapters.contract import EVERY_FEATURE, Consumer, ReadRequest, Service
from dicom4qi.model.decoded import DecodedWriter, frame_key
from dicom4qi.model.masks import Crop
from dicom4qi.model.segment import Segment
from dicom4qi.process.usage import TreeSampler
from dicom4qi.tools.ohif import cdp

__all__ = ["OhifConsumer", "DEFAULT_VERSION", "split_read_back"]

DEFAULT_VERSION = "3.13.2"
PROBE = (Path(__file__).with_name("probe.js")).read_text(encoding="utf-8")
PAGE_TIMEOUT_MS = 60_000
#: How often a read samples the browser's memory (seconds). A sample reads every chromium process's smaps_rollup
#: and /proc's process table: 75 to 90 ms of CPU on a loaded 2-core machine, so every 0.25 s it took a third of a core
#: from the viewer it measured and from the other workers; the last sample, once the SEG is shown and read back, is
#: taken whatever the interval.
MEMORY_SAMPLE_S = 1.0
#: The viewer's size: every frame is drawn in software (chromium without a GPU), so pixels cost time in every phase
#: (1024x768 took 0.8 s to capture and 0.3 s to close a page; 800x600, which still shows the study browser and
#: the image whole, 0.45 s and 0.15 s).
VIEWPORT = (800, 600)
#: The read back's own bound: the call's time limit is the real one (the viewer may still be busy with the SEG).
READ_BACK_LIMIT_S = 3600.0
#: How long the SEG may take to load once opened: this, and more for a larger object (see :func:`load_timeout_ms`).
LOAD_TIMEOUT_MS = 30_000
#: Further milliseconds of loading allowed per MiB of the object (a 160 MiB body CT SEG: 80 s more).
LOAD_MS_PER_MIB = 500


def load_timeout_ms(size_bytes: int) -> int:
    """How long OHIF may take to load a SEG of this size before the read fails as not loaded."""
    return LOAD_TIMEOUT_MS + int(LOAD_MS_PER_MIB * size_bytes / 2**20)


def split_read_back(asked: float, begun: float, elapsed: float) -> tuple[float, float]:
    """The read back's seconds as (the viewer still busy, the suite's own): ``asked`` is when the suite asked the page
    to run it and ``begun`` when the page began to (both on the machine's clock, in seconds), ``elapsed`` how long the
    call took in all. The page's delay is at most the whole call (a clock step cannot make it more)."""
    busy = min(max(0.0, begun - asked), elapsed)
    return busy, elapsed - busy


#: Before any page script: skip the onboarding tour (its overlay takes the clicks) and note logged errors.
INIT_SCRIPT = """
localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']));
window.__d4qiErrors = [];
// Uncaught exceptions and rejections, counted apart from logged errors; and the page's last sign of work with its
// requests in flight (from the first request on; a fetch until its answer's headers): the probe tells a load that
// died from a slow one.
window.__d4qiThrown = 0;
window.__d4qiWork = { last: Date.now(), inflight: 0 };
(() => {
  const original = console.error;
  console.error = function (...args) { window.__d4qiErrors.push(args.map(String).join(' ')); return original.apply(this, args); };
  const thrown = (text) => { window.__d4qiThrown += 1; window.__d4qiErrors.push(text); };
  window.addEventListener('unhandledrejection', (e) => thrown(String((e.reason && e.reason.message) || e.reason)));
  // An uncaught exception (DevTools' "pageerror") is an error seen too: without it a load that threw waited out
  // its whole time limit before the second path was tried.
  window.addEventListener('error', (e) => thrown(String((e.error && e.error.message) || e.message)));
  const work = window.__d4qiWork;
  const begin = () => { work.inflight += 1; work.last = Date.now(); };
  const end = () => { work.inflight = Math.max(0, work.inflight - 1); work.last = Date.now(); };
  const send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.send = function (...args) {
    begin();
    this.addEventListener('loadend', end, { once: true });
    return send.apply(this, args);
  };
  const fetch = window.fetch;
  window.fetch = function (...args) { begin(); return fetch.apply(this, args).finally(end); };
  // Long tasks, timer callbacks and workers' messages are watched by the probe only while it waits on a load()
  // after an error (watching them from the start cost 0.4 s of every read's viewer phase).
})();
"""
_DTYPES = {
    "Uint8Array": "<u1",
    "Int8Array": "<i1",
    "Uint16Array": "<u2",
    "Int16Array": "<i2",
    "Uint32Array": "<u4",
    "Int32Array": "<i4",
    "Float32Array": "<f4",
    "Uint8ClampedArray": "<u1",
}
_REF = re.compile(r"/instances/([0-9.]+)/frames/(\d+)")


def _http(method: str, url: str, data: bytes | None = None) -> Any:
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/dicom"} if data else {}
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        body = resp.read()
    return json.loads(body) if body else None


class OhifConsumer(Consumer):
    name = "ohif"
    preload = ("websocket", "pydicom")
    tool = "@ohif/app"
    npm = "@ohif/app"  # any release a column of its own: ohif@3.12.10 (fetched by npm pack)
    homepage = "https://github.com/OHIF/Viewers"
    needs_service = True
    features = EVERY_FEATURE  # it claims to read any SEG

    @property
    def ohif_version(self) -> str:
        return self.variant or DEFAULT_VERSION

    def version(self) -> str | None:
        return self.ohif_version if self.available()[0] else None

    def available(self) -> tuple[bool, str]:
        from dicom4qi.tools.ohif.stack import DICOMWEB_PLUGIN, ORTHANC, chromium_path

        missing = []
        if chromium_path() is None:
            missing.append("chromium (Debian package chromium)")
        if not Path(ORTHANC).exists() or not Path(DICOMWEB_PLUGIN).exists():
            missing.append("Orthanc with DICOMweb (Debian packages orthanc, orthanc-dicomweb)")
        if shutil.which("npm") is None:
            missing.append("npm (to fetch @ohif/app)")
        try:
            metadata.version("websocket-client")
        except metadata.PackageNotFoundError:
            missing.append("websocket-client (PyPI)")
        return (not missing, "missing: " + ", ".join(missing) if missing else "")

    def start_service(self, workdir: Path, cache: Path) -> Service:
        from dicom4qi.tools.ohif.stack import start_stack

        stack = start_stack(self.ohif_version, workdir, cache)
        return Service(endpoints=stack.endpoints(), pids=stack.pids)

    # ------------------------------------------------------------------ one object
    def read(self, request: ReadRequest) -> DecodedWriter:
        t_imports = time.monotonic()
        import pydicom

        if not request.service:
            raise RuntimeError("the OHIF consumer needs its service (viewer, Orthanc, chromium)")
        ep = request.service
        t_headers = time.monotonic()
        seg_hdr = pydicom.dcmread(request.seg, stop_before_pixels=True)
        headers = [
            pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SOPInstanceUID", "NumberOfFrames"])
            for p in request.sources
        ]
        multiframe = {str(h.SOPInstanceUID) for h in headers if int(h.get("NumberOfFrames", 1) or 1) > 1}
        keys = [
            frame_key(str(h.SOPInstanceUID), n)
            if str(h.SOPInstanceUID) in multiframe
            else frame_key(str(h.SOPInstanceUID))
            for h in headers
            for n in (range(1, int(h.NumberOfFrames) + 1) if str(h.SOPInstanceUID) in multiframe else [None])
        ]
        t0 = time.monotonic()
        timings: dict[str, float] = {"imports": t_headers - t_imports, "headers": t0 - t_headers}
        for study in _http("GET", ep["orthanc"] + "/studies") or []:
            _http("DELETE", f"{ep['orthanc']}/studies/{study}")
        for path in [*request.sources, request.seg]:
            _http("POST", ep["orthanc"] + "/instances", path.read_bytes())
        timings["upload"] = time.monotonic() - t0

        workdir = request.workdir or Path(".")
        t_cdp = time.monotonic()
        # DevTools straight over the browser's websocket (see :mod:`dicom4qi.tools.ohif.cdp`): Playwright's Node
        # driver had cost 0.55 s of every read to start and 0.3 s to close the page through.
        browser = cdp.Browser(ep["cdp"], timeout_s=PAGE_TIMEOUT_MS / 1000)
        page: cdp.Page | None = None
        # The browser's memory while the viewer loads and shows the object: every chromium process (browser,
        # GPU, renderers), sampled; counted in the call's peak memory (the call's own process is small).
        sampler = TreeSampler(int(ep.get("browser_pid") or 0), interval_s=MEMORY_SAMPLE_S)
        try:
            # A page an earlier read left open (its call killed at a time limit) would go on running the viewer
            # beside this one, on the same origin's storage: closed first, and gone before the storage is emptied
            # (the browser's blank tab stays).
            browser.close_stale_pages()  # and the page of the read before, closed without waiting
            # A new page in the browser's own context, kept by the worker's chromium between reads: its HTTP
            # cache holds the viewer's files (parsed once, not per read); study data is never cached (the proxy
            # says no-store), and the origin's storage is emptied before each read, so every object gets a clean
            # viewer.
            page = browser.new_page()
            page.start(INIT_SCRIPT, VIEWPORT)
            _clear_storage(page, ep["viewer"])  # before the viewer is loaded
            timings["connect"] = time.monotonic() - t_cdp
            t1 = time.monotonic()
            sampler.start()
            page.goto(f"{ep['viewer']}/viewer?StudyInstanceUIDs={seg_hdr.StudyInstanceUID}", PAGE_TIMEOUT_MS / 1000)
            page.wait_for(
                "window.services && window.cornerstone && window.cornerstone.getRenderingEngines().length > 0"
                " && window.cornerstone.getRenderingEngines()[0].getViewports().some(v => v.getCurrentImageId && v.getCurrentImageId())",
                PAGE_TIMEOUT_MS / 1000,
            )
            timings["viewer"] = time.monotonic() - t1
            # the display set, and how many uncaught exceptions the page has had before the double-click
            seg_ds, thrown = page.evaluate(
                "(series) => { const d = window.services.displaySetService.getActiveDisplaySets()"
                ".find(x => x.SeriesInstanceUID === series); return [d ? d.displaySetInstanceUID : null,"
                " window.__d4qiThrown || 0]; }",
                str(seg_hdr.SeriesInstanceUID),
                function=True,
            )
            if not seg_ds:
                self._screenshot(page, workdir)
                raise RuntimeError("OHIF shows no display set for the SEG series" + _console_tail(page.console))
            t2 = time.monotonic()
            page.dblclick(f"#thumbnail-{seg_ds}", timeout_s=10)
            load_ms = load_timeout_ms(request.seg.stat().st_size)
            state = page.evaluate(
                PROBE,
                {"op": "waitLoaded", "segId": seg_ds, "timeoutMs": load_ms, "thrownBefore": thrown},
                function=True,
                timeout_s=load_ms / 1000 + PAGE_TIMEOUT_MS / 1000,
            )
            timings["seg"] = time.monotonic() - t2
            if not state.get("ok"):
                self._screenshot(page, workdir)
                raise RuntimeError(f"OHIF did not load the SEG: {state.get('error')}" + _console_tail(page.console))
            t3, asked = time.monotonic(), time.time()
            back = json.loads(
                # no limit of its own beyond the call's: a viewer still busy is measured, not cut short
                page.evaluate(PROBE, {"op": "readBack", "segId": seg_ds}, function=True, timeout_s=READ_BACK_LIMIT_S)
            )
            # The segmentation is in OHIF's state before the viewer is done with it (its panel, its rendering):
            # the page runs nothing else until then (7 s on 300 segments, 0.2 s on 3). That wait is the
            # viewer's, counted in its own seconds; the rest of the read back is the suite's.
            timings["viewer busy"], timings["read back"] = split_read_back(
                asked, float(back["begun"]) / 1000, time.monotonic() - t3
            )
            sampler.stop()
            t4 = time.monotonic()
            # The capture waits for a new frame of the compositor, which holds what the viewer drew for the
            # read back (a fixed 300 ms wait before it was 300 ms of every read).
            self._screenshot(page, workdir)
            timings["screenshot"] = time.monotonic() - t4
        finally:
            sampler.stop()
            t5 = time.monotonic()
            console = list(page.console) if page is not None else []
            try:
                if page is not None:
                    page.close()
            except Exception:  # noqa: BLE001  the read's outcome stands; the next read closes the page as stale
                pass
            browser.close()  # disconnects; the worker's chromium and its context stay
            timings["close"] = time.monotonic() - t5
        t7 = time.monotonic()
        writer = self._decoded(back, keys, multiframe, int(seg_hdr.Rows), int(seg_hdr.Columns))
        timings["decode"] = time.monotonic() - t7
        writer.notes.append(f"loaded by {state.get('path')}")
        if state.get("firstError"):
            writer.notes.append(f"loading error seen first: {state['firstError']}")
        writer.notes.append("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
        # What the viewer itself took: from opening the viewer to the segmentation shown and the page answering
        # again (the upload into the archive, the DevTools connection and the suite's read back are not the viewer's).
        writer.tool_s = timings["viewer"] + timings["seg"] + timings["viewer busy"]
        if sampler.peak_mb is not None:
            writer.service_peak_rss_mb = sampler.peak_mb
            writer.notes.append(
                f"browser peak {sampler.peak_mb:.0f} MiB (proportional set size of chromium's processes, "
                f"{sampler.samples} samples every {MEMORY_SAMPLE_S:g} s from page load to read back)"
            )
        writer.notes.extend(console[:10])
        return writer

    @staticmethod
    def _screenshot(page: cdp.Page, workdir: Path) -> None:
        """The viewer as shown, by DevTools' own capture (Playwright's ``page.screenshot`` had first waited for the
        page's web fonts, which never arrive on a machine without the network: about 5 s lost on every read)."""
        try:
            (workdir / "screenshot.png").write_bytes(page.screenshot_png())
        except Exception:  # a missing screenshot must not hide the real outcome
            pass

    @staticmethod
    def _decoded(back: dict[str, Any], keys: list[str], multiframe: set[str], rows: int, columns: int) -> DecodedWriter:
        """OHIF's labelmap storages, mapped to source frames and segment indices, in the canonical form."""
        index = {k: i for i, k in enumerate(keys)}
        writer = DecodedWriter(keys, rows, columns)
        for s in back["segments"]:
            writer.add_segment(
                Segment(
                    number=int(s["index"]),
                    label=s.get("label"),
                    category=s.get("category"),
                    type=s.get("type"),
                    tracking_id=s.get("trackingId"),
                    tracking_uid=s.get("trackingUid"),
                    algorithm_type=s.get("algorithmType"),
                    # OHIF's JSON: its length is not checked here, the tuple is kept as decoded
                    color_rgb=cast("tuple[int, int, int]", tuple(int(v) for v in s["color"]))
                    if s.get("color")
                    else None,
                )
            )
        # Each segment's voxels, as flat indices into the (frames, rows, columns) grid, gathered from every storage
        # and slice OHIF holds them in (a segment in two labelmaps, or two slices on one frame, is their union),
        # then one crop per segment: memory follows the labelled voxels, not the segments (1000 segments as a dense
        # plane per segment and slice had taken the read over 8 GiB, the suite's fault charged to OHIF).
        plane = rows * columns
        flat_type = np.int32 if len(keys) * plane < 2**31 else np.int64
        voxels: dict[int, list[np.ndarray]] = {}
        for storage in back["storages"]:
            mapping = {int(k): int(v) for k, v in (storage.get("labelToSegmentIndex") or {}).items()}
            dtypes = sorted({sl["dtype"] for sl in storage["slices"] if "dtype" in sl})
            writer.notes.append(
                f"OHIF labelmap {storage['id']}: {storage['count']} images, {len(storage['slices'])} non-empty, "
                f"pixel arrays {', '.join(dtypes) or 'none'}"
            )
            for sl in storage["slices"]:
                if sl.get("missing"):
                    writer.notes.append(f"labelmap slice for {sl.get('ref')} was not in OHIF's cache")
                    continue
                m = _REF.search(sl["ref"] or "")
                if not m:
                    raise RuntimeError(f"OHIF labelmap slice refers to an unknown image: {sl['ref']!r}")
                uid, frame = m.group(1), int(m.group(2))
                key = frame_key(uid, frame) if uid in multiframe else frame_key(uid)
                if key not in index:
                    raise RuntimeError(f"OHIF put labelmap pixels on {key}, which is not a source frame")
                if (sl["rows"], sl["columns"]) != (rows, columns):
                    raise RuntimeError(f"OHIF labelmap slice is {sl['rows']}x{sl['columns']}, the SEG {rows}x{columns}")
                values = np.frombuffer(base64.b64decode(sl["data"]), dtype=_DTYPES[sl["dtype"]]).reshape(-1)
                where = np.flatnonzero(values)
                if where.size == 0:
                    continue
                found = values[where]
                order = np.argsort(found, kind="stable")
                found, where = found[order], where[order]
                starts = np.flatnonzero(np.r_[True, found[1:] != found[:-1]])
                base = index[key] * plane
                for value, part in zip(found[starts], np.split(where, starts[1:])):
                    number = mapping.get(int(value), int(value))
                    voxels.setdefault(number, []).append((part + base).astype(flat_type))
        for number, parts in voxels.items():
            flat = np.unique(np.concatenate(parts))
            del parts[:]
            z, rest = np.divmod(flat, plane)
            y, x = np.divmod(rest, columns)
            z0, y0, x0 = int(z.min()), int(y.min()), int(x.min())
            data = np.zeros((int(z.max()) - z0 + 1, int(y.max()) - y0 + 1, int(x.max()) - x0 + 1), dtype=bool)
            data[z - z0, y - y0, x - x0] = True
            writer.set_crop(number, Crop((z0, y0, x0), data))
        return writer


#: What is emptied for the viewer's origin before each read: every storage it can keep between page loads (cookies,
#: local storage, IndexedDB, cache storage, service workers, file systems, ...: DevTools' "all", which is not the
#: browser's HTTP cache; that holds only the viewer's files, the proxy marks study data no-store).
_STORAGE = "all"


def _clear_storage(page: cdp.Page, origin: str) -> None:
    """Empty the origin's storage in the shared context, by DevTools, from the new page's session (the browser's
    own session answers "Internal error"); a new page has its own session storage."""
    page.send("Storage.clearDataForOrigin", {"origin": origin, "storageTypes": _STORAGE})


def _console_tail(console: list[str]) -> str:
    # First line of each distinct error: stack traces name bundle files, not OHIF's words.
    first_lines = list(dict.fromkeys(c.splitlines()[0][:300] for c in console))
    return f" (console: {' | '.join(first_lines[:3])})" if first_lines else ""
