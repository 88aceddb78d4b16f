#!/usr/bin/env node
// dicom4qi producer adapter for dwv (DICOM Web Viewer, npm `dwv`), protocol 1 (see docs/protocol.md).
//
// One JSON request on stdin -> one JSON response on stdout; logs go to stderr only.
// `write` encodes the truth with dwv's own SEG writer, headless in Node: the source series is loaded by a dwv.App
// with no views (App.loadImageObject), a mask Image is made over its geometry the way dwv's brush tool makes one
// (one value per voxel: the segment number, PALETTE COLOR, getDefaultDicomSegJson() as its meta), and
// new dwv.MaskFactory().toDicom(mask, segments, sourceImage, extraTags) gives the DICOM elements that
// new dwv.DicomWriter().getBuffer(elements) serialises. dwv makes no UID and no identification attribute of
// its own: the application gives them through toDicom's extraTags, and so does this adapter (listed in its notes).
// Nothing here edits what dwv writes.
"use strict";

const fs = require("fs");
const path = require("path");
const zlib = require("zlib");

const PROTOCOL = 1;
const HOMEPAGE = "https://github.com/ivmartel/dwv";

// What dwv 0.36.4's writer can encode, so claimed (a claimed feature written wrong is a FAIL).
// Not claimed: overlap (the mask holds one value per voxel), FRACTIONAL and LABELMAP (toDicom writes BINARY
// only: getDefaultDicomSegJson), compressed or deflated transfer syntaxes (DicomWriter writes uncompressed data
// elements only), multi-frame, projection, temporal and slide sources (the mask geometry is the volume of a
// single-frame series), interleaved or shuffled frame orders (toDicom writes segment by segment), position-only
// references and partial references (toDicom always writes one Derivation Image per frame and lists only the
// instances of written frames), multiple instances, anatomic regions, modifiers, descriptions and algorithm
// versions (MaskSegment has none).
const FEATURES = [
  "binary",
  "binary-unaligned-frames",
  "disjoint",
  "empty-segment",
  "empty-frames",
  "oblique",
  "many-segments",
  "single-frame-source",
  "source-default-charset",
  "source-no-slice-thickness",
  "segment-metadata",
  "multiple-algorithms",
  "ts-implicit-le",
  "ts-explicit-le",
  "ts-explicit-be",
];
const TRANSFER_SYNTAXES = {
  ImplicitVRLittleEndian: "1.2.840.10008.1.2",
  ExplicitVRLittleEndian: "1.2.840.10008.1.2.1",
  ExplicitVRBigEndian: "1.2.840.10008.1.2.2",
};

const log = (...args) => process.stderr.write(args.map(String).join(" ") + "\n");

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on("data", (c) => chunks.push(c));
    process.stdin.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    process.stdin.on("error", reject);
  });
}

async function loadDwv() {
  let version = null;
  try {
    version = JSON.parse(fs.readFileSync(path.join(__dirname, "node_modules", "dwv", "package.json"), "utf8")).version;
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
    name: "dwv-writer",
    tool: "dwv",
    version: lib.version || "unknown",
    role: "producer",
    available: !!lib.dwv,
    reason: lib.dwv ? "" : `cannot load dwv (run npm ci in ${__dirname}): ${String(lib.error).split("\n")[0]}`,
    features: FEATURES,
    unsupported_combinations: [],
    homepage: HOMEPAGE,
  };
}

function toArrayBuffer(buf) {
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

// ---------------------------------------------------------------- the truth (exchange format, NIfTI-1)

function readNifti(file) {
  let raw = fs.readFileSync(file);
  if (file.endsWith(".gz")) raw = zlib.gunzipSync(raw);
  const le = raw.readInt32LE(0) === 348;
  if (!le && raw.readInt32BE(0) !== 348) throw new Error(`${path.basename(file)}: not NIfTI-1`);
  const i16 = (o) => (le ? raw.readInt16LE(o) : raw.readInt16BE(o));
  const dims = [1, 2, 3].map((k) => i16(40 + 2 * k));
  const datatype = i16(70);
  const voxOffset = Math.round(le ? raw.readFloatLE(108) : raw.readFloatBE(108));
  const n = dims[0] * dims[1] * dims[2];
  const out = new Uint16Array(n);
  const read = {
    2: (i) => raw.readUInt8(voxOffset + i), // uint8
    256: (i) => raw.readInt8(voxOffset + i), // int8
    4: (i) => (le ? raw.readInt16LE(voxOffset + 2 * i) : raw.readInt16BE(voxOffset + 2 * i)),
    512: (i) => (le ? raw.readUInt16LE(voxOffset + 2 * i) : raw.readUInt16BE(voxOffset + 2 * i)),
  }[datatype];
  if (!read) throw new Error(`${path.basename(file)}: NIfTI datatype ${datatype} is not an integer label map`);
  for (let i = 0; i < n; ++i) out[i] = read(i);
  return { dims, data: out }; // column fastest, then row, then slice
}

// ---------------------------------------------------------------- dwv App, headless (as in ../dwv/index.js)

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
      if (bad) reject(bad.error instanceof Error ? bad.error : new Error(bad.error ? String(bad.error) : bad.type));
      else resolve(id);
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

// ---------------------------------------------------------------- write

function dicomCode(dwv, c) {
  if (!c) return undefined;
  const code = new dwv.DicomCode(c.meaning);
  code.value = c.value;
  code.schemeDesignator = c.scheme;
  return code;
}

async function write(dwv, version, req) {
  const notes = [];
  const enc = (req.case && req.case.encoding) || {};
  if (enc.type !== "BINARY") throw new Error(`dwv's MaskFactory.toDicom writes BINARY only, not ${enc.type}`);
  const ts = TRANSFER_SYNTAXES[enc.transfer_syntax || "ExplicitVRLittleEndian"];
  if (!ts) throw new Error(`dwv's DicomWriter writes no ${enc.transfer_syntax}`);
  if (enc.instances) throw new Error("one dwv mask is one SEG instance");

  const app = new dwv.App();
  app.init({ dataViewConfigs: {} });
  const items = req.sources.map((f) => ({ name: path.basename(f), filename: path.basename(f), data: toArrayBuffer(fs.readFileSync(f)) }));
  const srcId = await load(app, items);
  const source = app.getImage(srcId);
  const srcGeo = source.getGeometry();
  const size = srcGeo.getSize();
  if (size.length() !== 3) throw new Error(`dwv made the source a ${size.toString()} image, not a volume`);
  const columns = size.get(0);
  const rows = size.get(1);
  const nSlices = size.get(2);
  const srcOrigins = srcGeo.getOrigins();
  const uidToSlice = new Map();
  for (let k = 0; k < nSlices; ++k) uidToSlice.set(String(source.getImageUid(new dwv.Index([0, 0, k]))), k);
  notes.push(`dwv.App.loadImageObject (sources: ${req.sources.length} files) -> a ${size.toString()} image`);

  // the truth
  const doc = JSON.parse(fs.readFileSync(path.join(req.truth, "segments.json"), "utf8"));
  const names = fs.readdirSync(req.truth);
  if (names.some((n) => /^segment-\d+\./.test(n))) throw new Error("the truth has overlapping segments: dwv's mask holds one segment per voxel");
  const lmName = names.find((n) => /^labelmap\.nii(\.gz)?$/.test(n));
  const maxNumber = Math.max(0, ...doc.segments.map((s) => s.number));
  const buffer = maxNumber > 255 ? new Uint16Array(columns * rows * nSlices) : new Uint8Array(columns * rows * nSlices);
  if (lmName) {
    const lm = readNifti(path.join(req.truth, lmName));
    if (lm.dims[0] !== columns || lm.dims[1] !== rows || lm.dims[2] !== doc.frames.length) {
      throw new Error(`truth label map ${lm.dims.join("x")} is not the source grid ${columns}x${rows}x${doc.frames.length}`);
    }
    const slice = columns * rows;
    doc.frames.forEach((key, k) => {
      const j = uidToSlice.get(String(key));
      if (j === undefined) throw new Error(`truth frame ${key} is no slice of dwv's source image`);
      buffer.set(lm.data.subarray(k * slice, (k + 1) * slice), j * slice);
    });
  }

  // the mask image, as dwv's brush tool makes one (Brush #createMask, #createMaskImage)
  const geometry = new dwv.Geometry([srcOrigins[0]], new dwv.Size([columns, rows, 1]), srcGeo.getSpacing(), srcGeo.getOrientation());
  for (let k = 1; k < nSlices; ++k) geometry.appendOrigin(srcOrigins[k], k);
  const mask = new dwv.Image(geometry, buffer, srcOrigins.map((_, k) => String(source.getImageUid(new dwv.Index([0, 0, k])))));
  const segments = doc.segments.map((s) => {
    const m = new dwv.MaskSegment(s.number, s.label || "", s.algorithm_type || "MANUAL");
    if (s.algorithm_name) m.algorithmName = s.algorithm_name;
    if (s.color_rgb) m.displayRGBValue = { r: s.color_rgb[0], g: s.color_rgb[1], b: s.color_rgb[2] };
    else m.displayValue = s.number;
    m.propertyCategoryCode = dicomCode(dwv, s.category);
    m.propertyTypeCode = dicomCode(dwv, s.type);
    if (s.tracking_id) {
      m.trackingId = s.tracking_id;
      m.trackingUid = s.tracking_uid;
    }
    return m;
  });
  const srcMeta = source.getMeta();
  const organizationUID = dwv.getUID("DimensionOrganizationUID");
  const meta = dwv.getDefaultDicomSegJson();
  Object.assign(meta, {
    TransferSyntaxUID: ts,
    DimensionOrganizationSequence: { value: [{ DimensionOrganizationUID: organizationUID }] },
    DimensionIndexSequence: {
      value: [
        { DimensionOrganizationUID: organizationUID, DimensionDescriptionLabel: "ReferencedSegmentNumber", DimensionIndexPointer: "(0062,000B)", FunctionalGroupPointer: "(0062,000A)" },
        { DimensionOrganizationUID: organizationUID, DimensionDescriptionLabel: "ImagePositionPatient", DimensionIndexPointer: "(0020,0032)", FunctionalGroupPointer: "(0020,9113)" },
      ],
    },
    PixelRepresentation: 0,
    numberOfFiles: nSlices,
    lengthUnit: srcMeta.lengthUnit,
  });
  for (const key of ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyInstanceUID", "StudyID", "ReferringPhysicianName", "FrameOfReferenceUID"]) {
    if (srcMeta[key] !== undefined) meta[key] = srcMeta[key];
  }
  mask.setMeta(meta);
  mask.setPhotometricInterpretation("PALETTE COLOR");

  // what an application gives toDicom: dwv makes no UID and no identification attribute itself
  // (study and frame of reference attributes that dwv's image meta does not keep are copied from the source's
  // elements; the equipment is this adapter's)
  const srcElements = app.getMetaData(srcId);
  const srcValue = (key) => {
    const el = srcElements[key];
    return el && el.value && el.value.length ? String(el.value[0]) : "";
  };
  const sopInstanceUID = dwv.getUID("SOPInstanceUID");
  const extraTags = {
    MediaStorageSOPInstanceUID: sopInstanceUID,
    SOPInstanceUID: sopInstanceUID,
    SeriesInstanceUID: dwv.getUID("SeriesInstanceUID"),
    SeriesNumber: 300,
    InstanceNumber: 1,
    SeriesDescription: "dwv segmentation",
    ContentLabel: "DWV",
    ContentDescription: "dicom4qi truth written by dwv",
    ContentCreatorName: "dicom4qi^dwv",
    AccessionNumber: srcValue("00080050"),
    PositionReferenceIndicator: srcValue("00201040"),
    Manufacturer: "dwv",
    ManufacturerModelName: "dwv MaskFactory.toDicom",
    DeviceSerialNumber: "0",
    SoftwareVersions: version,
  };
  const elements = new dwv.MaskFactory().toDicom(mask, segments, source, extraTags);
  const bytes = new dwv.DicomWriter().getBuffer(elements);
  fs.writeFileSync(req.output, Buffer.from(bytes));
  notes.push("mask: new dwv.Image(source geometry, segment numbers), meta dwv.getDefaultDicomSegJson() as dwv's brush tool makes it");
  notes.push(`new dwv.MaskFactory().toDicom(mask, segments, sourceImage, extraTags) + new dwv.DicomWriter().getBuffer(elements), ${enc.transfer_syntax || "ExplicitVRLittleEndian"}`);
  notes.push(`extraTags (dwv makes none of them): ${Object.keys(extraTags).join(", ")}`);
  return { protocol: PROTOCOL, ok: true, notes: [`dwv ${version}`, ...notes] };
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
    const lib = await loadDwv();
    if (req.op === "info") {
      response = info(lib);
    } else if (req.protocol !== PROTOCOL) {
      response = { protocol: PROTOCOL, ok: false, error: `unsupported protocol ${JSON.stringify(req.protocol)} (this adapter speaks ${PROTOCOL})` };
    } else if (req.op === "write") {
      if (!lib.dwv) throw new Error(`cannot load dwv: ${lib.error}`);
      response = await write(lib.dwv, lib.version, req);
    } else {
      response = { protocol: PROTOCOL, ok: false, error: `unsupported op ${JSON.stringify(req.op)} (a producer answers info and write)` };
    }
  } catch (e) {
    log(e && e.stack ? e.stack : String(e));
    response = { protocol: PROTOCOL, ok: false, error: e && e.message ? e.message : String(e) };
  }
  answer(response);
}

process.on("beforeExit", () => answer({ protocol: PROTOCOL, ok: false, error: "dwv never finished loading (no loadend event)" }));
console.log = console.info = console.warn = console.debug = console.error = (...args) => log(...args);

main();
