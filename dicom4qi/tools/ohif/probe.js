// Evaluated in the OHIF page by the dicom4qi OHIF consumer. Two functions, chosen by `op`:
//   waitLoaded: wait until OHIF has hydrated the SEG display set into a segmentation, or says why not;
//   readBack:   what OHIF holds: segments (index, label, colour, codes) and every non-empty labelmap slice,
//               as one JSON string.
// Nothing here changes OHIF's state beyond what a user's double-click did.
async ({ op, segId, timeoutMs, thrownBefore: thrownSeen }) => {
  const svc = window.services;
  const cs = window.cornerstone;
  // the page's own timer, before the second path's watch below wraps it
  const timer = window.setTimeout.bind(window);
  const sleep = (ms) => new Promise((r) => timer(r, ms));
  const errText = (e) => (e && (e.message || e.toString())) || String(e);

  if (op === 'waitLoaded') {
    const ds = svc.displaySetService.getDisplaySetByUID(segId);
    if (!ds) return { ok: false, error: `no display set ${segId}` };
    const start = Date.now();
    let rejected = null;
    if (ds.loadingPromise && ds.loadingPromise.catch) ds.loadingPromise.catch((e) => { rejected = errText(e); });
    const ready = () => {
      const seg = svc.segmentationService.getSegmentation(segId);
      if (!seg) return false;
      const lm = seg.representationData && seg.representationData.Labelmap;
      if (!lm) return false;
      const lists = lm.labelmaps ? Object.values(lm.labelmaps).map((s) => s.imageIds || []) : [lm.imageIds || []];
      return lists.every((ids) => ids.length > 0 && ids.every((id) => cs.cache.getImage(id)));
    };
    // Errors OHIF logs while loading (caught by the init script) end the wait early:
    // the load() call below then says whether they were about this SEG.
    const errorsBefore = (window.__d4qiErrors || []).length;
    // uncaught exceptions since the double-click (the caller counted those before it)
    const thrownBefore = typeof thrownSeen === 'number' ? thrownSeen : window.__d4qiThrown || 0;
    // A display set without a load() of its own is none OHIF made a segmentation of (seen when it logged
    // 'ReferencedSeriesSequence is missing'): 5 s on the double-click path, not the whole limit, then asked.
    const SECOND_PATH_MS = 5000;
    const firstPathMs = typeof ds.load === 'function' ? timeoutMs : Math.min(timeoutMs, SECOND_PATH_MS);
    while (Date.now() - start < firstPathMs) {
      if (ready()) return { ok: true, path: 'double-click', ms: Date.now() - start };
      if (rejected || (window.__d4qiErrors || []).length > errorsBefore) break;
      await sleep(100);
    }
    // The second path: the display set's own load call, which gives OHIF's error at once.
    // load() itself may never settle (seen with 16-bit label maps of 256 segments, after the page threw 'Invalid
    // typed array length'): bounded by what is left of the time limit, and at least SECOND_PATH_MS (a load() that
    // rejects does so at once); and given up on once the page has thrown since the double-click and then done
    // nothing for IDLE_MS (no XHR in flight or ending, no fetch before its answer, no task over 50 ms, no timer
    // callback of the page's, no message posted to a worker, no change in cornerstone's cache, the probe's own
    // timer on time): nothing is left running that could settle it. A slow load that threw keeps its whole limit.
    const IDLE_MS = 5000;
    const left = Math.max(SECOND_PATH_MS, timeoutMs - (Date.now() - start));
    const secondPath = Date.now();
    let settledOrFailed = false;
    const cacheSize = () => { try { return cs.cache.getCacheSize(); } catch (e) { return 0; } };
    // Watched from here on (and put back as it was when the wait ends): tasks over 50 ms, the page's timer
    // callbacks, messages posted to workers (frames decoded there are answered with the next task).
    const work = window.__d4qiWork || (window.__d4qiWork = { last: 0, inflight: 0 });
    const seen = () => { work.last = Date.now(); };
    const pageTimeout = window.setTimeout;
    const post = window.Worker ? Worker.prototype.postMessage : null;
    let observer = null;
    try {
      observer = new PerformanceObserver(seen);
      observer.observe({ type: 'longtask' });
    } catch (e) { observer = null; }
    window.setTimeout = function (fn, ...rest) {
      return pageTimeout.call(this, typeof fn === 'function' ? function (...a) { seen(); return fn.apply(this, a); } : fn, ...rest);
    };
    if (post) Worker.prototype.postMessage = function (...a) { seen(); return post.apply(this, a); };
    const unwatch = () => {
      window.setTimeout = pageTimeout;
      if (post) Worker.prototype.postMessage = post;
      if (observer) observer.disconnect();
    };
    const idle = async () => {
      let lastLate = secondPath;
      let size = cacheSize();
      while (!settledOrFailed) {
        const before = Date.now();
        await sleep(100);
        const now = Date.now();
        if (now - before > 150) lastLate = now; // the page ran something long enough to hold the timer up
        const sizeNow = cacheSize();
        if (sizeNow !== size) { size = sizeNow; lastLate = now; } // images (labelmap slices) came in
        const quietSince = Math.max(secondPath, lastLate, work.last);
        if ((window.__d4qiThrown || 0) > thrownBefore && !work.inflight && now - quietSince >= IDLE_MS) {
          throw new Error(`did not settle: the page threw, then did nothing for ${IDLE_MS / 1000} s (no request, long task, timer callback, worker message or new image; ${Math.round((now - start) / 1000)} s after the double-click)`);
        }
      }
    };
    try {
      await Promise.race([
        ds.load({ headers: {} }),
        sleep(left).then(() => { throw new Error(`did not settle within ${left} ms (${Math.round((Date.now() - start) / 1000)} s after the double-click)`); }),
        idle(),
      ]);
    } catch (e) {
      return { ok: false, error: `load() rejected: ${errText(e)}`, firstError: rejected };
    } finally {
      settledOrFailed = true;
      unwatch();
    }
    const settled = Date.now();
    while (Date.now() - settled < 5000) {
      if (ready()) return { ok: true, path: 'load()', ms: Date.now() - start, firstError: rejected };
      await sleep(100);
    }
    return { ok: false, error: rejected ? `loading rejected: ${rejected}` : `no segmentation after ${Math.round((Date.now() - start) / 1000)} s`, firstError: rejected };
  }

  if (op === 'readBack') {
    const begun = Date.now();
    const seg = svc.segmentationService.getSegmentation(segId);
    const ds = svc.displaySetService.getDisplaySetByUID(segId);
    const meta = (ds && ds.segMetadata && ds.segMetadata.data) || [];
    const code = (seq) => (seq && seq[0] ? { value: String(seq[0].CodeValue), scheme: String(seq[0].CodingSchemeDesignator), meaning: String(seq[0].CodeMeaning) } : null);
    const segments = Object.values(seg.segments).filter(Boolean).map((s) => {
      const m = meta[s.segmentIndex] || null;
      return {
        index: s.segmentIndex,
        label: s.label === undefined ? null : s.label,
        color: m && m.rgba ? Array.from(m.rgba).slice(0, 3) : null,
        category: m ? code(m.SegmentedPropertyCategoryCodeSequence) : null,
        type: m ? code(m.SegmentedPropertyTypeCodeSequence) : null,
        trackingId: m && m.TrackingID !== undefined ? String(m.TrackingID) : null,
        trackingUid: m && m.TrackingUID !== undefined ? String(m.TrackingUID) : null,
        algorithmType: m && m.SegmentAlgorithmType ? String(m.SegmentAlgorithmType) : null,
      };
    });
    const lm = seg.representationData.Labelmap;
    const storages = lm.labelmaps
      ? Object.values(lm.labelmaps)
      : [{ labelmapId: 'labelmap', labelToSegmentIndex: null, imageIds: lm.imageIds, referencedImageIds: lm.referencedImageIds }];
    const b64 = (arr) => {
      const bytes = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
      let s = '';
      for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
      return btoa(s);
    };
    const out = [];
    let best = { count: -1, ref: null };
    for (const st of storages) {
      const slices = [];
      (st.imageIds || []).forEach((id, i) => {
        const img = cs.cache.getImage(id);
        // Overlapping segments come as extra layers: more labelmap images than source images.
        // Each derived image names its own source image; fall back to the list position.
        const refs = st.referencedImageIds || [];
        const ref = (img && img.referencedImageId) || (refs.length ? refs[i % refs.length] : null);
        if (!img) { slices.push({ ref, missing: true }); return; }
        const data = img.voxelManager ? img.voxelManager.getScalarData() : img.getPixelData();
        let count = 0;
        for (let k = 0; k < data.length; k++) if (data[k]) count++;
        if (count > best.count) best = { count, ref };
        if (!count) return;
        slices.push({ ref, rows: img.rows, columns: img.columns, dtype: data.constructor.name, data: b64(data) });
      });
      out.push({ id: st.labelmapId, labelToSegmentIndex: st.labelToSegmentIndex || null, slices, count: (st.imageIds || []).length });
    }
    const scanned = Date.now();
    // Show the slice with the most segmented pixels for the screenshot.
    try {
      const vp = cs.getRenderingEngines()[0].getViewports()[0];
      const ids = vp.getImageIds ? vp.getImageIds() : [];
      const idx = ids.indexOf(best.ref);
      if (idx >= 0 && vp.setImageIdIndex) { await vp.setImageIdIndex(idx); vp.render(); }
    } catch (e) { /* the screenshot shows whatever slice is current */ }
    // `begun` (the page's clock when this ran) tells the caller how long the page took to run it at all: the
    // viewer still busy with the segmentation it has just loaded.
    return JSON.stringify({ segments, storages: out, label: seg.label || null, ms: { scan: scanned - begun, show: Date.now() - scanned }, begun });
  }
  throw new Error(`unknown op ${op}`);
}
