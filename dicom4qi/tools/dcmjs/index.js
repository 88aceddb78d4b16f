#!/usr/bin/env node
// dicom4qi consumer adapter for dcmjs (npm), protocol 1 (see docs/protocol.md).
//
// One JSON request on stdin -> one JSON response on stdout; logs go to stderr only.
// `read` decodes the SEG with dcmjs's own segmentation decoder, the one behind the
// Cornerstone (OHIF v2-era) SEG support: dcmjs.adapters.Cornerstone.Segmentation.generateToolState.
// The metadata provider it needs is built here from the source images parsed by dcmjs
// (DicomMessage.readFile + DicomMetaDictionary.naturalizeDataset). What dcmjs decodes is
// written out as is: nothing here corrects or completes dcmjs's pixel output.
"use strict";

const fs = require("fs");
const path = require("path");
const zlib = require("zlib");

const PROTOCOL = 1;
const HOMEPAGE = "https://github.com/dcmjs-org/dcmjs";

// Feature names of corpus/features.txt that dcmjs 0.52.2 implements, so claimed: a claimed feature that decodes
// wrong is a FAIL in the grid (non-ASCII text inside sequences and overlapping interleaved frames do: dcmjs bugs,
// see README.md). What dcmjs cannot decode at all (LABELMAP, FRACTIONAL, JPEG 2000, JPEG-LS, RLE of 1-bit frames,
// TILED_FULL slides) is not claimed: UNSUPPORTED.
const FEATURES = [
  "binary",
  "binary-unaligned-frames",
  "frames-shuffled",
  "frames-position-only",
  "partial-references",
  "multi-instance", // the harness gives it one instance per call; graded on the union
  "source-default-charset",
  "source-no-slice-thickness",
  "source-two-series", // readers get a second series of the study the SEG does not reference
  "disjoint",
  "overlap",
  "empty-segment",
  "empty-frames",
  "oblique",
  "many-segments",
  "single-frame-source",
  "multiframe-source",
  "segment-metadata",
  "projection-source",
  "temporal",
  "ts-implicit-le",
  "ts-explicit-le",
  "ts-explicit-be", // checked: reads the retired big-endian SEG (BINARY) byte for byte
  "ts-deflate",
  "uneven-spacing",
  "segments-interleaved",
  "non-ascii-text",
  "long-text",
  "anatomic-region",
  "multiple-algorithms",
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

function loadDcmjs() {
  try {
    const dcmjs = require("dcmjs");
    const pkg = JSON.parse(fs.readFileSync(path.join(path.dirname(require.resolve("dcmjs")), "..", "package.json"), "utf8"));
    return { dcmjs, version: pkg.version, error: null };
  } catch (e) {
    return { dcmjs: null, version: null, error: e && e.message ? e.message : String(e) };
  }
}

function info(lib) {
  return {
    protocol: PROTOCOL,
    ok: true,
    name: "dcmjs",
    tool: "dcmjs",
    version: lib.version,
    role: "consumer",
    available: !!lib.dcmjs,
    reason: lib.dcmjs ? "" : `cannot load dcmjs (run npm ci in ${__dirname}): ${String(lib.error).split("\n")[0]}`,
    features: FEATURES,
    unsupported_combinations: UNSUPPORTED_COMBINATIONS,
    homepage: HOMEPAGE,
  };
}

// ---------------------------------------------------------------- DICOM helpers

function toArrayBuffer(buf) {
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

function first(x) {
  return Array.isArray(x) ? x[0] : x;
}

function num(x) {
  return x === undefined || x === null ? undefined : Number(x);
}

function arr(x) {
  if (x === undefined || x === null) return undefined;
  return (Array.isArray(x) ? x : [x]).map(Number);
}

function parseFile(dcmjs, file, { pixels }) {
  const { DicomMessage, DicomMetaDictionary } = dcmjs.data;
  const options = pixels ? undefined : { ignoreErrors: false, untilTag: "7FE00010", includeUntilTagValue: false, noCopy: false };
  const dicomData = DicomMessage.readFile(toArrayBuffer(fs.readFileSync(file)), options);
  const ds = DicomMetaDictionary.naturalizeDataset(dicomData.dict);
  ds._meta = DicomMetaDictionary.namifyDataset(dicomData.meta);
  return ds;
}

const norm3 = (v) => {
  const n = Math.hypot(v[0], v[1], v[2]);
  return n > 0 ? v.map((x) => x / n) : v;
};
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];

// One entry per source frame: what the metadata provider answers for its imageId.
function sourceFrames(dcmjs, files) {
  const frames = [];
  files.forEach((file, fileIndex) => {
    const ds = parseFile(dcmjs, file, { pixels: false });
    const uid = String(ds.SOPInstanceUID);
    const nFrames = Number(ds.NumberOfFrames || 1);
    const shared = first(ds.SharedFunctionalGroupsSequence) || {};
    const perFrame = ds.PerFrameFunctionalGroupsSequence;
    const enhanced = Array.isArray(perFrame) && perFrame.length > 0;
    const multi = nFrames > 1 || enhanced;
    for (let n = 1; n <= nFrames; n++) {
      const pf = enhanced ? perFrame[n - 1] || {} : {};
      const group = (name) => first(pf[name]) || first(shared[name]) || undefined;
      const pos = enhanced ? group("PlanePositionSequence") : undefined;
      const ori = enhanced ? group("PlaneOrientationSequence") : undefined;
      const meas = enhanced ? group("PixelMeasuresSequence") : undefined;
      const ipp = arr(pos ? pos.ImagePositionPatient : ds.ImagePositionPatient);
      const iop = arr(ori ? ori.ImageOrientationPatient : ds.ImageOrientationPatient);
      const spacing = arr((meas && meas.PixelSpacing) || ds.PixelSpacing || ds.ImagerPixelSpacing);
      const key = multi ? `${uid}#${n}` : uid;
      frames.push({
        key,
        // cornerstone-style imageIds: multi-frame references are matched by dcmjs on "frame=<n-1>"
        imageId: multi ? `d4qi:${uid}?frame=${n - 1}` : `d4qi:${uid}`,
        fileIndex,
        frameNumber: multi ? n : undefined,
        sopInstanceUID: uid,
        sopClassUID: ds.SOPClassUID,
        seriesInstanceUID: ds.SeriesInstanceUID,
        frameOfReferenceUID: ds.FrameOfReferenceUID,
        instanceNumber: num(ds.InstanceNumber),
        rows: num(ds.Rows),
        columns: num(ds.Columns),
        ipp: ipp && ipp.length === 3 ? ipp : undefined,
        iop: iop && iop.length === 6 ? iop : undefined,
        spacing: spacing && spacing.length === 2 ? spacing : undefined,
      });
    }
  });
  return frames;
}

// Slices in a sensible order: single-frame series by position along the normal (then Instance Number),
// multi-frame sources in frame order.
function orderFrames(frames) {
  const allSingle = frames.every((f) => f.frameNumber === undefined);
  const geo = frames.every((f) => f.ipp && f.iop);
  const indexed = frames.map((f, i) => ({ f, i }));
  if (allSingle && geo) {
    const normal = cross(frames[0].iop.slice(0, 3), frames[0].iop.slice(3));
    indexed.sort((a, b) => dot(a.f.ipp, normal) - dot(b.f.ipp, normal) || (a.f.instanceNumber || 0) - (b.f.instanceNumber || 0) || a.i - b.i);
  } else if (allSingle) {
    indexed.sort((a, b) => (a.f.instanceNumber || 0) - (b.f.instanceNumber || 0) || a.i - b.i);
  } else {
    indexed.sort((a, b) => a.f.fileIndex - b.f.fileIndex || (a.f.frameNumber || 0) - (b.f.frameNumber || 0));
  }
  return indexed.map((x) => x.f);
}

// A cornerstone metadata provider over the parsed sources (the modules dcmjs's decoder asks for).
function metadataProvider(frames) {
  const byId = new Map(frames.map((f) => [f.imageId, f]));
  return {
    get(type, imageId) {
      const f = byId.get(imageId);
      if (!f) return undefined;
      switch (type) {
        case "imagePlaneModule":
          // like cornerstone's loaders: null cosines when the image has no orientation
          return {
            rows: f.rows,
            columns: f.columns,
            rowCosines: f.iop ? f.iop.slice(0, 3) : null,
            columnCosines: f.iop ? f.iop.slice(3, 6) : null,
            imagePositionPatient: f.ipp || null,
            imageOrientationPatient: f.iop || null,
            rowPixelSpacing: f.spacing ? f.spacing[0] : null,
            columnPixelSpacing: f.spacing ? f.spacing[1] : null,
            pixelSpacing: f.spacing || null,
            frameOfReferenceUID: f.frameOfReferenceUID,
          };
        case "generalSeriesModule":
          return { seriesInstanceUID: f.seriesInstanceUID };
        case "sopCommonModule":
          return { sopInstanceUID: f.sopInstanceUID, sopClassUID: f.sopClassUID };
        case "imagePixelModule":
          return { rows: f.rows, columns: f.columns };
        case "instance":
          return {
            SOPInstanceUID: f.sopInstanceUID,
            SeriesInstanceUID: f.seriesInstanceUID,
            FrameOfReferenceUID: f.frameOfReferenceUID,
            ImagePositionPatient: f.ipp,
            ImageOrientationPatient: f.iop,
            Rows: f.rows,
            Columns: f.columns,
          };
        default:
          return undefined;
      }
    },
  };
}

// ---------------------------------------------------------------- segment metadata

function code(seq) {
  const item = first(seq);
  if (!item || item.CodeValue === undefined && item.LongCodeValue === undefined && item.URNCodeValue === undefined) return undefined;
  const value = item.CodeValue !== undefined ? item.CodeValue : item.LongCodeValue !== undefined ? item.LongCodeValue : item.URNCodeValue;
  return { value: String(value), scheme: String(item.CodingSchemeDesignator || ""), meaning: String(item.CodeMeaning || "") };
}

function str(x) {
  const v = first(x);
  return v === undefined || v === null ? undefined : String(v);
}

function segmentJson(dcmjs, s, notes) {
  const out = { number: Number(s.SegmentNumber) };
  const put = (k, v) => {
    if (v !== undefined && v !== null) out[k] = v;
  };
  put("label", str(s.SegmentLabel));
  put("description", str(s.SegmentDescription));
  put("category", code(s.SegmentedPropertyCategoryCodeSequence));
  put("type", code(s.SegmentedPropertyTypeCodeSequence));
  const typeItem = first(s.SegmentedPropertyTypeCodeSequence) || {};
  put("type_modifier", code(typeItem.SegmentedPropertyTypeModifierCodeSequence || s.SegmentedPropertyTypeModifierCodeSequence));
  const region = first(s.AnatomicRegionSequence) || {};
  put("anatomic_region", code(s.AnatomicRegionSequence));
  put("anatomic_region_modifier", code(region.AnatomicRegionModifierSequence || s.AnatomicRegionModifierSequence));
  put("tracking_id", str(s.TrackingID));
  put("tracking_uid", str(s.TrackingUID));
  put("algorithm_type", str(s.SegmentAlgorithmType));
  put("algorithm_name", str(s.SegmentAlgorithmName));
  const alg = first(s.SegmentationAlgorithmIdentificationSequence);
  if (alg) put("algorithm_version", str(alg.AlgorithmVersion));
  const lab = arr(s.RecommendedDisplayCIELabValue);
  if (lab && lab.length === 3) {
    const Colors = dcmjs.data.Colors;
    if (Colors && typeof Colors.dicomlab2RGB8 === "function") {
      out.color_rgb = Array.from(Colors.dicomlab2RGB8(lab)).map((v) => Math.round(v));
    } else if (Colors && typeof Colors.dicomlab2RGB === "function") {
      out.color_rgb = Array.from(Colors.dicomlab2RGB(lab)).map((v) => Math.max(0, Math.min(255, Math.round(v * 255))));
    } else {
      notes.add("dcmjs has no dicomlab2RGB: colours not decoded");
    }
  }
  return out;
}

// ---------------------------------------------------------------- NRRD

function nrrdGeometry(frames) {
  const f0 = frames[0];
  const geo = frames.every((f) => f.ipp && f.iop && f.spacing);
  if (!geo) return { directions: "(1,0,0) (0,1,0) (0,0,1)", origin: "(0,0,0)" };
  const rowDir = norm3(f0.iop.slice(0, 3));
  const colDir = norm3(f0.iop.slice(3, 6));
  // PixelSpacing is [row spacing (between rows), column spacing (between columns)]
  const colStep = rowDir.map((v) => v * f0.spacing[1]);
  const rowStep = colDir.map((v) => v * f0.spacing[0]);
  let sliceStep;
  if (frames.length > 1) {
    sliceStep = [0, 1, 2].map((i) => frames[1].ipp[i] - frames[0].ipp[i]);
    if (Math.hypot(...sliceStep) < 1e-6) sliceStep = cross(rowDir, colDir); // same plane (cine): unit normal
  } else {
    sliceStep = cross(rowDir, colDir);
  }
  const vec = (v) => "(" + v.map((x) => Number(x.toPrecision(10))).join(",") + ")";
  return { directions: [colStep, rowStep, sliceStep].map(vec).join(" "), origin: vec(f0.ipp) };
}

// Image Position (Patient) of each slice when the NRRD grid (origin + k * slice step) cannot say it:
// unevenly spaced series, cine (one plane at several times).
function irregularPositions(frames) {
  if (!frames.every((f) => f.ipp && f.iop && f.spacing) || frames.length < 2) return undefined;
  const step = [0, 1, 2].map((i) => frames[1].ipp[i] - frames[0].ipp[i]);
  const regular = Math.hypot(...step) > 1e-6 && frames.every((f, k) => [0, 1, 2].every((i) => Math.abs(frames[0].ipp[i] + k * step[i] - f.ipp[i]) < 1e-3));
  return regular ? undefined : frames.map((f) => f.ipp.slice());
}

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

// ---------------------------------------------------------------- read

function read(dcmjs, version, req) {
  const notes = new Set();
  const calls = [];
  if (typeof req.seg !== "string" || !Array.isArray(req.sources) || typeof req.output !== "string") {
    throw new Error("read needs seg, sources and output");
  }
  const frames = orderFrames(sourceFrames(dcmjs, req.sources));
  calls.push("dcmjs.data.DicomMessage.readFile + DicomMetaDictionary.naturalizeDataset (sources, up to Pixel Data)");
  if (!frames.length) throw new Error("no source frames");
  const imageIds = frames.map((f) => f.imageId);
  const provider = metadataProvider(frames);

  // The SEG's own attributes (for the segment list and the notes), parsed by dcmjs.
  const segBuffer = toArrayBuffer(fs.readFileSync(req.seg));
  const seg = parseFile(dcmjs, req.seg, { pixels: false });
  calls.push("dcmjs.data.DicomMessage.readFile + DicomMetaDictionary.naturalizeDataset (SEG)");
  const segType = str(seg.SegmentationType);
  const ts = seg._meta && seg._meta.TransferSyntaxUID ? first(seg._meta.TransferSyntaxUID.Value) : undefined;
  notes.add(`SEG: SOP class ${seg.SOPClassUID}, SegmentationType ${segType}, BitsAllocated ${seg.BitsAllocated}, transfer syntax ${ts}`);

  const Segmentation = dcmjs.adapters && dcmjs.adapters.Cornerstone && dcmjs.adapters.Cornerstone.Segmentation;
  if (!Segmentation || typeof Segmentation.generateToolState !== "function") {
    throw new Error(`dcmjs ${version} has no adapters.Cornerstone.Segmentation.generateToolState`);
  }
  const tolerance = 1e-3;
  // (imageIds, arrayBuffer, metadataProvider, skipOverlapping=false, tolerance, cornerstoneToolsVersion=4)
  const result = Segmentation.generateToolState(imageIds, segBuffer, provider, false, tolerance, 4);
  calls.push("dcmjs.adapters.Cornerstone.Segmentation.generateToolState(imageIds, segArrayBuffer, metadataProvider, skipOverlapping=false, tolerance=1e-3, cornerstoneToolsVersion=4)");
  if (!result) throw new Error("dcmjs generateToolState returned nothing (it logs 'No implementation for rle + bitbacking.' for RLE 1-bit SEGs)");
  const { labelmapBufferArray, segMetadata } = result;
  if (!labelmapBufferArray || !labelmapBufferArray.length) throw new Error("dcmjs generateToolState returned no labelmap buffer");

  const columns = frames[0].columns;
  const rows = frames[0].rows;
  const sliceLength = columns * rows;
  const nSlices = frames.length;
  const labelmaps = labelmapBufferArray.map((b) => new Uint16Array(b));
  for (const lm of labelmaps) {
    if (lm.length !== sliceLength * nSlices) throw new Error(`dcmjs labelmap has ${lm.length} voxels, expected ${sliceLength * nSlices}`);
  }

  // Segments: dcmjs's segMetadata.data is [undefined, ...SegmentSequence].
  const segItems = ((segMetadata && segMetadata.data) || []).filter(Boolean);
  const segments = segItems.map((s) => segmentJson(dcmjs, s, notes));

  // Where each segment value sits: which of dcmjs's labelmaps (dcmjs puts overlapping segments on extra labelmaps).
  const where = new Map(); // value -> Set(labelmap index)
  labelmaps.forEach((lm, m) => {
    for (let i = 0; i < lm.length; i++) {
      const v = lm[i];
      if (v) {
        let s = where.get(v);
        if (!s) where.set(v, (s = new Set()));
        s.add(m);
      }
    }
  });
  const geometry = nrrdGeometry(frames);
  const out = req.output;
  const separate = [...where.entries()].filter(([, s]) => s.size > 1 || !s.has(0)).map(([v]) => v);
  if (separate.length === 0) {
    writeNrrd(path.join(out, "labelmap.nrrd"), labelmaps[0], "uint16", columns, rows, nSlices, geometry);
  } else {
    const sep = new Set(separate);
    const base = new Uint16Array(labelmaps[0]);
    for (let i = 0; i < base.length; i++) if (sep.has(base[i])) base[i] = 0;
    writeNrrd(path.join(out, "labelmap.nrrd"), base, "uint16", columns, rows, nSlices, geometry);
    const mask = new Uint8Array(sliceLength * nSlices);
    for (const v of separate) {
      mask.fill(0);
      for (const lm of labelmaps) for (let i = 0; i < lm.length; i++) if (lm[i] === v) mask[i] = 1;
      writeNrrd(path.join(out, `segment-${v}.nrrd`), mask, "uint8", columns, rows, nSlices, geometry);
    }
  }
  notes.add(`dcmjs returned ${labelmaps.length} labelmap(s) (uint16, one per set of non-overlapping segments)`);
  const listed = new Set(segments.map((s) => s.number));
  const unknown = [...where.keys()].filter((v) => !listed.has(v));
  if (unknown.length) notes.add(`dcmjs labelmap values not in SegmentSequence: ${unknown.slice(0, 20).join(", ")}`);
  if (segType === "FRACTIONAL") notes.add("FRACTIONAL SEG: dcmjs only accepts it when all values are 0 or MaximumFractionalValue, and then reads it as BINARY");

  const exchange = {
    format: "dicom4qi-exchange/1",
    frames: frames.map((f) => f.key),
    fractional: false,
    segments,
    notes: [...notes],
  };
  const positions = irregularPositions(frames);
  if (positions) exchange.positions = positions;
  fs.writeFileSync(path.join(out, "segments.json"), JSON.stringify(exchange, null, 1));
  return { protocol: PROTOCOL, ok: true, notes: [`dcmjs ${version}`, ...calls, ...notes] };
}

// ---------------------------------------------------------------- main

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
    const lib = loadDcmjs();
    if (req.op === "info") {
      response = info(lib);
    } else if (req.protocol !== PROTOCOL) {
      response = { protocol: PROTOCOL, ok: false, error: `unsupported protocol ${JSON.stringify(req.protocol)} (this adapter speaks ${PROTOCOL})` };
    } else if (req.op === "read") {
      if (!lib.dcmjs) throw new Error(`cannot load dcmjs: ${lib.error}`);
      response = read(lib.dcmjs, lib.version, req);
    } else {
      response = { protocol: PROTOCOL, ok: false, error: `unsupported op ${JSON.stringify(req.op)} (a consumer answers info and read)` };
    }
  } catch (e) {
    log(e && e.stack ? e.stack : String(e));
    response = { protocol: PROTOCOL, ok: false, error: e && e.message ? e.message : String(e) };
  }
  process.stdout.write(JSON.stringify(response) + "\n", () => process.exit(0));
}

// dcmjs logs through loglevel/console: keep stdout for the one JSON answer.
console.log = console.info = console.warn = console.debug = (...args) => log(...args);

main();
