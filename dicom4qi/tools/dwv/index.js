#!/usr/bin/env node
// dicom4qi consumer adapter for dwv (DICOM Web Viewer, npm `dwv`), protocol 1 (see docs/protocol.md).
//
// One JSON request on stdin -> one JSON response on stdout; logs go to stderr only.
// `read` decodes the SEG the way the dwv viewer does, headless in Node: a dwv.App with no views
// (nothing is rendered) loads the source series and then the SEG with App.loadImageObject, dwv's own
// in-memory loader. That runs dwv's whole SEG path: DicomParser.parse -> DicomBufferToData ->
// DataController (finds the referenced series by the SEG's ReferencedSeriesSequence) ->
// MaskFactory.create(elements, pixelBuffer, referenceImage). The mask image it returns (one value per voxel,
// the segment number or the grayscale display value, with its own geometry) and its segments
// (meta.custom.segments, dwv's MaskSegment objects) are written out as they are: nothing here corrects or
// completes what dwv decodes. dwv's node build needs no window/document for this path (no shim is installed).
"use strict";

const fs = require("fs");
const path = require("path");
const zlib = require("zlib");

const PROTOCOL = 1;
const HOMEPAGE = "https://github.com/ivmartel/dwv";

// Feature names of dicom4qi/model/features.txt that dwv 0.36.4 implements, so claimed: a claimed feature that
// decodes wrong is a FAIL (or an ERROR when dwv throws) in the grid; see README.md for what the grid found.
// Left out, because dwv's code refuses them with an explicit message or does not model them at all:
// - fractional, labelmap*, labelmap-palette: MaskFactory's RequiredDicomTags accept only SegmentationType BINARY,
//   SOP class 1.2.840.10008.5.1.4.1.1.66.4 and BitsAllocated 1 ("Unsupported SegmentationType value: ...");
// - ts-rle, ts-jpeg2000, ts-jpegls: RequiredDicomTags accept only Implicit VR LE, Explicit VR LE and BE
//   ("Unsupported TransferSyntaxUID value: ...");
// - ts-deflate: DicomParser refuses it ("Unsupported DICOM transfer syntax");
// - slide-source: TILED_FULL has no Per-Frame Functional Groups ("Missing or empty per frame functional
//   sequence") and DimensionOrganizationType may only be 3D;
// - projection-source: getDimensionOrganization wants a Dimension Index Sequence of two items ending with Image
//   Position (Patient) ("Unsupported dimension index sequence length", "Unsupported non image position as last
//   index") and getSegmentFrameInfo reads every frame's Plane Position Sequence: a projection has no position;
// - temporal: RequiredDicomTags accept DimensionOrganizationType 3D only ("Unsupported DimensionOrganizationType
//   value: 3D_TEMPORAL"), and frames at one position are one slice of the mask;
// - frames-position-only: DataController needs the SEG's Referenced Series Sequence to find the source
//   ("Cannot create mask image: the DICOM seg does not have a referenced series UID");
// - anatomic-region, long-text: dwv's MaskSegment has no anatomic region, modifier or description fields.
const FEATURES = [
  "binary",
  "binary-unaligned-frames", // DataReader.readBinaryArray unpacks one bit stream over all frames
  "frames-shuffled", // MaskFactory places each frame by its Image Position (Patient)
  "partial-references",
  "multi-instance", // the harness gives it one instance per call; graded on the union
  "source-default-charset",
  "source-no-slice-thickness",
  "source-two-series", // each source series is loaded as its own dwv data, as a viewer user opens a series
  "disjoint",
  "overlap", // one value per voxel: see README.md
  "empty-segment",
  "empty-frames",
  "oblique",
  "many-segments", // the mask buffer has the SEG pixel buffer's type (Uint8Array): see README.md
  "single-frame-source",
  "multiframe-source", // not refused by dwv, but its ImageFactory makes frames a 4th dimension: see README.md
  "segment-metadata", // label, category, type, tracking ID/UID, algorithm type/name, colour
  "ts-implicit-le",
  "ts-explicit-le",
  "ts-explicit-be",
  "uneven-spacing",
  "segments-interleaved",
  "non-ascii-text",
  "multiple-algorithms", // algorithm type and name (dwv does not read the algorithm version)
];
const UNSUPPORTED_COMBINATIONS = [];

const log = (...args) => process.stderr.write(args.map(String).join(" ") + "\n");

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on("data", (c) => chunks.push(c));
    process.stdin.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    process.stdin.on("error", reject);
  });
}

// dwv is ESM only ("type": "module"; exports.node -> dist/dwv.node.min.js): loaded with import().
async function loadDwv() {
  let version = null;
  try {
    const pkgFile = path.join(__dirname, "node_modules", "dwv", "package.json");
    version = JSON.parse(fs.readFileSync(pkgFile, "utf8")).version;
    const dwv = await import("dwv");
    return { dwv, version, error: null };
  } catch (e) {
    return { dwv: null, version, error: e && e.message ? e.message : String(e) };
  }
}

function info(lib) {
  return {
    protocol: PROTOCOL,
    ok: true,
    name: "dwv",
    tool: "dwv",
    version: lib.version || "unknown",
    role: "consumer",
    available: !!lib.dwv,
    reason: lib.dwv ? "" : `cannot load dwv (run npm ci in ${__dirname}): ${String(lib.error).split("\n")[0]}`,
    features: FEATURES,
    unsupported_combinations: UNSUPPORTED_COMBINATIONS,
    homepage: HOMEPAGE,
  };
}

// ---------------------------------------------------------------- DICOM helpers (dwv's parser)

function toArrayBuffer(buf) {
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

// First value of a dwv DataElement (dwv keeps values as arrays; strings are already split on '\').
function value(elements, key) {
  const el = elements ? elements[key] : undefined;
  if (!el || el.value === undefined || el.value === null) return undefined;
  return Array.isArray(el.value) || ArrayBuffer.isView(el.value) ? el.value[0] : el.value;
}

const TAG = {
  SeriesInstanceUID: "0020000E",
  SOPInstanceUID: "00080018",
  NumberOfFrames: "00280008",
  SegmentSequence: "00620002",
  SegmentNumber: "00620004",
  RecommendedDisplayCIELabValue: "0062000D",
  SegmentationType: "00620001",
  TransferSyntaxUID: "00020010",
  SOPClassUID: "00080016",
  BitsAllocated: "00280100",
};

// The sources grouped by series, in the order given: each group is one dwv data (one loadImageObject call).
function sourceSeries(dwv, files) {
  const groups = new Map();
  for (const file of files) {
    const data = toArrayBuffer(fs.readFileSync(file));
    const parser = new dwv.DicomParser();
    parser.parse(data);
    const elements = parser.getDicomElements();
    const series = String(value(elements, TAG.SeriesInstanceUID));
    const frames = Number(value(elements, TAG.NumberOfFrames) || 1);
    if (!groups.has(series)) groups.set(series, { series, items: [], multiframe: false });
    const g = groups.get(series);
    g.items.push({ name: path.basename(file), filename: path.basename(file), data });
    if (frames > 1) g.multiframe = true;
  }
  return [...groups.values()];
}

// ---------------------------------------------------------------- dwv App, headless

// Load buffers into the app as one data; resolve with its data id once dwv's loader has ended.
// dwv's memory loader runs synchronously for uncompressed data: events arrive before loadImageObject returns.
function load(app, items) {
  return new Promise((resolve, reject) => {
    const seen = [];
    let id = null;
    let settled = false;
    const types = ["loadend", "error", "abort"];
    const settle = () => {
      if (settled || id === null) return;
      const mine = seen.filter((e) => e.dataid === id);
      if (!mine.some((e) => e.type === "loadend")) return;
      settled = true;
      for (const t of types) app.removeEventListener(t, on);
      const bad = mine.find((e) => e.type === "error" || e.type === "abort");
      if (bad) {
        const err = bad.error instanceof Error ? bad.error : new Error(bad.error ? String(bad.error) : bad.type);
        reject(err);
      } else {
        resolve(id);
      }
    };
    const on = (e) => {
      seen.push({ type: e.type, dataid: e.dataid, error: e.error });
      settle();
    };
    for (const t of types) app.addEventListener(t, on);
    try {
      id = app.loadImageObject(items);
    } catch (e) {
      for (const t of types) app.removeEventListener(t, on);
      reject(e);
      return;
    }
    settle();
  });
}

// ---------------------------------------------------------------- NRRD

const vec = (v) => "(" + v.map((x) => Number(Number(x).toPrecision(12))).join(",") + ")";

function writeNrrd(file, typed, type, columns, rows, slices, geometry) {
  const header =
    "NRRD0004\n" +
    `type: ${type}\n` +
    "dimension: 3\n" +
    "space: left-posterior-superior\n" +
    `sizes: ${columns} ${rows} ${slices}\n` +
    `space directions: ${geometry.directions}\n` +
    "kinds: domain domain domain\n" +
    "endian: little\n" +
    "encoding: gzip\n" +
    `space origin: ${geometry.origin}\n\n`;
  const raw = Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength); // x86/arm: little endian
  fs.writeFileSync(file, Buffer.concat([Buffer.from(header, "ascii"), zlib.gzipSync(raw, { level: 1 })]));
}

// The NRRD grid of dwv's mask geometry: its orientation matrix (columns: row cosines, column cosines, normal),
// its spacing (x: between columns, y: between rows) and its slice origins.
function maskGeometry(geo) {
  const m = geo.getOrientation();
  const sp = geo.getSpacing();
  const origins = geo.getOrigins().map((p) => [p.getX(), p.getY(), p.getZ()]);
  const col = (c) => [m.get(0, c), m.get(1, c), m.get(2, c)];
  const xStep = col(0).map((v) => v * sp.get(0));
  const yStep = col(1).map((v) => v * sp.get(1));
  let zStep;
  if (origins.length > 1) zStep = [0, 1, 2].map((i) => origins[1][i] - origins[0][i]);
  if (!zStep || Math.hypot(...zStep) < 1e-9) zStep = col(2).map((v) => v * (sp.get(2) || 1));
  return { directions: [xStep, yStep, zStep].map(vec).join(" "), origin: vec(origins[0]), origins };
}

// ---------------------------------------------------------------- segment metadata

function code(c) {
  if (!c) return undefined;
  const v = c.value !== undefined ? c.value : c.longValue !== undefined ? c.longValue : c.urnValue;
  if (v === undefined) return undefined;
  return { value: String(v), scheme: String(c.schemeDesignator || ""), meaning: String(c.meaning || "") };
}

// What dwv's MaskSegment holds, in the exchange format. The colour is reported only where the SEG has a
// Recommended Display CIELab Value: otherwise dwv makes one up (getDefaultColour), which is not a decoding.
function segmentJson(s, hasLab) {
  const out = { number: Number(s.number) };
  const put = (k, v) => {
    if (v !== undefined && v !== null) out[k] = v;
  };
  put("label", s.label === undefined ? undefined : String(s.label));
  put("category", code(s.propertyCategoryCode));
  put("type", code(s.propertyTypeCode));
  put("tracking_id", s.trackingId === undefined ? undefined : String(s.trackingId));
  put("tracking_uid", s.trackingUid === undefined ? undefined : String(s.trackingUid));
  put("algorithm_type", s.algorithmType === undefined ? undefined : String(s.algorithmType));
  put("algorithm_name", s.algorithmName === undefined ? undefined : String(s.algorithmName));
  if (hasLab && s.displayRGBValue) {
    out.color_rgb = [s.displayRGBValue.r, s.displayRGBValue.g, s.displayRGBValue.b].map((v) => Math.round(Number(v)));
  }
  return out;
}

// ---------------------------------------------------------------- read

async function read(dwv, version, req) {
  const notes = new Set();
  const calls = [];
  if (typeof req.seg !== "string" || !Array.isArray(req.sources) || typeof req.output !== "string") {
    throw new Error("read needs seg, sources and output");
  }
  // dwv logs through console: keep it quiet but visible on stderr
  if (dwv.logger && dwv.logger.levels) dwv.logger.level = dwv.logger.levels.WARN;

  const app = new dwv.App();
  app.init({ dataViewConfigs: {} }); // no views: nothing is rendered, no DOM is touched
  calls.push("new dwv.App().init({dataViewConfigs: {}}) (headless: no layer group, no render)");

  const groups = sourceSeries(dwv, req.sources);
  calls.push("dwv.DicomParser.parse (sources: grouped by Series Instance UID)");
  const refs = new Map(); // series UID -> data id
  for (const g of groups) {
    try {
      refs.set(g.series, await load(app, g.items));
    } catch (e) {
      // a series dwv cannot load is not necessarily the referenced one: go on, the SEG load says if it was
      notes.add(`dwv could not load source series ${g.series}: ${e.message}`);
      log(`source series ${g.series}: ${e.stack || e}`);
    }
  }
  calls.push(`dwv.App.loadImageObject (sources: ${groups.length} series, ${req.sources.length} files)`);

  const segItems = [{ name: path.basename(req.seg), filename: path.basename(req.seg), data: toArrayBuffer(fs.readFileSync(req.seg)) }];
  const segId = await load(app, segItems); // DicomParser -> DataController -> MaskFactory.create(meta, buffer, refImage)
  calls.push("dwv.App.loadImageObject (SEG) -> DataController: new dwv.MaskFactory().create(elements, pixelBuffer, referencedSeriesImage)");
  const mask = app.getImage(segId);
  if (!mask) throw new Error("dwv loaded the SEG but made no mask image");
  const segMeta = app.getMetaData(segId);
  notes.add(
    `SEG: SOP class ${value(segMeta, TAG.SOPClassUID)}, SegmentationType ${value(segMeta, TAG.SegmentationType)}, ` +
      `BitsAllocated ${value(segMeta, TAG.BitsAllocated)}, transfer syntax ${value(segMeta, TAG.TransferSyntaxUID)}`,
  );

  // The reference image dwv used: the one whose SeriesInstanceUID the SEG's Referenced Series Sequence names
  // (DataController.getDataIdFromSeriesUid). Its slice origins and SOP Instance UIDs name the source frames.
  const refSeries = dwv.getReferencedSeriesUID(segMeta);
  const refId = app.getDataIdFromSeriesUid(refSeries);
  const ref = refId === undefined ? undefined : app.getImage(refId);
  if (!ref) throw new Error(`no loaded source image for the referenced series ${refSeries}`);
  const refGroup = groups.find((g) => g.series === refSeries);
  const refGeo = ref.getGeometry();
  const refOrigins = refGeo.getOrigins();
  const refSize = refGeo.getSize();
  if (refGroup && refGroup.multiframe) {
    notes.add(`dwv made the multi-frame source a ${refSize.toString()} image: its frames are dwv's 4th (time) dimension`);
  }

  const geo = mask.getGeometry();
  const size = geo.getSize();
  const columns = size.get(0);
  const rows = size.get(1);
  const nSlices = size.get(2);
  const sliceLength = columns * rows;
  const buffer = mask.getBuffer();
  if (buffer.length !== sliceLength * nSlices) {
    throw new Error(`dwv mask buffer has ${buffer.length} values, its geometry ${size.toString()} says ${sliceLength * nSlices}`);
  }
  const grid = maskGeometry(geo);

  // Slice k of the mask is the source frame at the same position: dwv built the mask's origins from the
  // reference image's origins (MaskFactory #getGeometryFromReference, Point3D.isSimilar with 1e-4), so the same
  // test names the source frame; the reference image keeps one SOP Instance UID per slice (Image.getImageUid).
  const keys = [];
  for (let k = 0; k < nSlices; ++k) {
    const o = geo.getOrigins()[k];
    const j = refOrigins.findIndex((r) => o.isSimilar(r, 1e-4));
    if (j === -1) throw new Error(`dwv mask slice ${k} at ${o.toString()} is at no source slice position`);
    let uid = ref.getImageUid(new dwv.Index([0, 0, j]));
    if (refGroup && refGroup.multiframe) uid = `${uid}#${j + 1}`;
    keys.push(String(uid));
  }
  if (new Set(keys).size !== keys.length) throw new Error("two dwv mask slices name the same source frame");

  // Segments: dwv's MaskSegment list (meta.custom.segments). Voxel values: with any colour (PALETTE COLOR mask)
  // the segment number, else the segment's Recommended Display Grayscale Value (MaskFactory.create).
  const custom = (mask.getMeta() && mask.getMeta().custom) || {};
  const dwvSegments = custom.segments || [];
  const segSeq = (segMeta[TAG.SegmentSequence] && segMeta[TAG.SegmentSequence].value) || [];
  const labByNumber = new Map(segSeq.map((it) => [Number(value(it, TAG.SegmentNumber)), it[TAG.RecommendedDisplayCIELabValue] !== undefined]));
  const segments = dwvSegments.map((s) => segmentJson(s, labByNumber.get(Number(s.number))));
  const palette = mask.getPhotometricInterpretation() === "PALETTE COLOR";
  const valueToNumber = new Map();
  for (const s of dwvSegments) {
    const v = palette ? Number(s.number) : Number(s.displayValue);
    if (valueToNumber.has(v)) notes.add(`segments ${valueToNumber.get(v)} and ${s.number} share the mask value ${v}`);
    else valueToNumber.set(v, Number(s.number));
  }
  notes.add(
    palette
      ? `dwv mask: ${buffer.constructor.name} ${size.toString()}, PALETTE COLOR, voxel value = segment number`
      : `dwv mask: ${buffer.constructor.name} ${size.toString()}, voxel value = Recommended Display Grayscale Value`,
  );

  const maxNumber = Math.max(0, ...segments.map((s) => s.number));
  const labelmap = maxNumber > 255 ? new Uint16Array(buffer.length) : new Uint8Array(buffer.length);
  const unknown = new Map();
  for (let i = 0; i < buffer.length; ++i) {
    const v = buffer[i];
    if (!v) continue;
    const n = valueToNumber.get(v);
    if (n === undefined) unknown.set(v, (unknown.get(v) || 0) + 1);
    else labelmap[i] = n;
  }
  if (unknown.size) {
    notes.add(`dwv mask values that name no segment, left out: ${[...unknown.entries()].slice(0, 10).map(([v, c]) => `${v} (${c} voxels)`).join(", ")}`);
  }
  writeNrrd(path.join(req.output, "labelmap.nrrd"), labelmap, maxNumber > 255 ? "uint16" : "uint8", columns, rows, nSlices, grid);

  const exchange = {
    format: "dicom4qi-exchange/1",
    frames: keys,
    positions: grid.origins,
    fractional: false,
    segments,
    notes: [...notes],
  };
  for (const w of new Set(dwvWarnings)) notes.add(`dwv warned: ${w}`);
  exchange.notes = [...notes];
  fs.writeFileSync(path.join(req.output, "segments.json"), JSON.stringify(exchange, null, 1));
  return { protocol: PROTOCOL, ok: true, notes: [`dwv ${version}`, ...calls, ...notes] };
}

// ---------------------------------------------------------------- main

let answered = false;
function answer(response) {
  if (answered) return;
  answered = true;
  process.stdout.write(JSON.stringify(response) + "\n", () => process.exit(0));
}

async function main() {
  let response;
  try {
    const text = await readStdin();
    let req;
    try {
      req = JSON.parse(text);
    } catch (e) {
      throw new Error(`request is not JSON: ${e.message}`);
    }
    if (!req || typeof req !== "object") throw new Error("request is not a JSON object");
    const lib = await loadDwv();
    if (req.op === "info") {
      response = info(lib);
    } else if (req.protocol !== PROTOCOL) {
      response = { protocol: PROTOCOL, ok: false, error: `unsupported protocol ${JSON.stringify(req.protocol)} (this adapter speaks ${PROTOCOL})` };
    } else if (req.op === "read") {
      if (!lib.dwv) throw new Error(`cannot load dwv: ${lib.error}`);
      response = await read(lib.dwv, lib.version, req);
    } else {
      response = { protocol: PROTOCOL, ok: false, error: `unsupported op ${JSON.stringify(req.op)} (a consumer answers info and read)` };
    }
  } catch (e) {
    log(e && e.stack ? e.stack : String(e));
    response = { protocol: PROTOCOL, ok: false, error: e && e.message ? e.message : String(e) };
  }
  answer(response);
}

// A load that never ends (dwv waiting on a decoder worker Node does not have) leaves nothing to run:
// answer instead of exiting silently.
process.on("beforeExit", () => {
  answer({ protocol: PROTOCOL, ok: false, error: "dwv never finished loading (no loadend event)" });
});

// dwv logs through console: keep stdout for the one JSON answer.
// Its warnings (logger.warn) are also kept for the read's notes.
const dwvWarnings = [];
console.log = console.info = console.debug = (...args) => log(...args);
console.warn = console.error = (...args) => {
  dwvWarnings.push(args.map(String).join(" "));
  log(...args);
};

main();
