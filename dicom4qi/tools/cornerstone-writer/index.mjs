#!/usr/bin/env node
// dicom4qi producer adapter for cornerstone3D's SEG writer (npm @cornerstonejs/adapters), protocol 1
// (see docs/protocol.md).
//
// One JSON request on stdin -> one JSON response on stdout; logs go to stderr only.
// `write` encodes the truth with the call an application (OHIF's cornerstone-dicom-seg extension, the
// cornerstone3D examples) makes to export a labelmap, headless in Node:
//   adaptersSEG.Cornerstone3D.Segmentation.generateSegmentation(images, labelmap3D, metaData, options)
//   dcmjs.data.datasetToBuffer(segmentation.dataset)    // what downloadDICOMData's datasetToBlob wraps
// where `metaData` is @cornerstonejs/core's registry with @cornerstonejs/metadata's default providers
// (registerDefaultProviders) fed with each source file (utilities.addDicomPart10Instance), and `images` are
// cornerstone images in the cache (imageLoader.createAndCacheLocalImage, from each source frame's Pixel Data and
// the plane the metadata providers give; the plane entries it registers of its own are cleared, so that the library
// reads the files' metadata, as after an image loader). The labelmap is { labelmaps2D, metadata }: one labelmap2D per image,
// its voxels the truth's segment numbers, and one Segment Sequence item per segment. The options pick the SOP
// class (sopClassUID: Label Map Segmentation Storage for LABELMAP) and the transfer syntax (transferSyntaxUid);
// the identification the library leaves to the application (equipment, series description) goes in the same
// options and is listed in the notes. Nothing here edits what the library writes.
//
// Two releases are installed side by side (releases/<version>/package.json, each with the exact @cornerstonejs
// core, tools and metadata it pins as peers); the request's `variant` picks one (default 5.14.0).
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PROTOCOL = 1;
const TOOL = "@cornerstonejs/adapters";
const HOMEPAGE = "https://github.com/cornerstonejs/cornerstone3D";
const DEFAULT_RELEASE = "5.14.0";

const SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4";
const LABEL_MAP_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7";
// What generateSegmentation encodes (encodePixelData.js encodeFramesToTransferSyntax: Explicit VR Little Endian
// uncompressed, or RLE Lossless; any other transfer syntax throws "Unsupported compressed transfer syntax").
const TRANSFER_SYNTAXES = {
  ExplicitVRLittleEndian: "1.2.840.10008.1.2.1",
  RLELossless: "1.2.840.10008.1.2.5",
};

// Feature names of corpus/features.txt that the writer is told and writes, so claimed: a claimed feature written
// wrong is a FAIL in the grid, charged to this producer (the faults found are in corpus/known-issues/
// cornerstone-writer-*.toml). Not claimed, so UNSUPPORTED (see README.md):
// - fractional (and -occupancy, -max-value): generateSegmentation writes BINARY or LABELMAP from a labelmap, which
//   holds a segment number per voxel, not a probability;
// - ts-implicit-le, ts-explicit-be, ts-deflate, ts-jpeg2000, ts-jpegls: encodeFramesToTransferSyntax writes
//   Explicit VR Little Endian and RLE Lossless only ("Unsupported compressed transfer syntax" otherwise);
// - labelmap-palette: the LABELMAP export writes MONOCHROME2 and has no palette option;
// - multi-instance: one call writes one instance (and the protocol's write has one output);
// - frames-shuffled, segments-interleaved: the frame order is the library's (BINARY: segment by segment, dcmjs
//   addSegmentFromLabelmap; LABELMAP: one frame per image, in the stack's order);
// - frames-position-only: every frame gets a Derivation Image (applyPerFrameFunctionalGroups), and the
//   Referenced Series Sequence is always written;
// - projection-source: tried, not claimed: @cornerstonejs/metadata's imagePlaneModule gives a CR or DX image
//   position [0,0,0] and orientation [1,0,0,0,1,0] with no usingDefaultValues flag, so both exports write that
//   made-up plane (and an empty Frame of Reference UID); the content check cannot see an invented plane;
// - slide-source: one labelmap2D per imageId is a stack of frames; there is no total pixel matrix.
const FEATURES = [
  "binary",
  "binary-unaligned-frames",
  "labelmap",
  "labelmap-8bit",
  "labelmap-16bit", // the library picks 16 bits when a segment number is above 255 (maxSegmentValue)
  "labelmap-sparse-numbers",
  "partial-references", // LABELMAP: the library lists only the instances of written frames
  "disjoint",
  "overlap", // BINARY: one labelmap3D per layer of non-overlapping segments, as cornerstone holds them
  "empty-segment",
  "empty-frames",
  "oblique",
  "many-segments",
  "single-frame-source",
  "multiframe-source",
  "temporal",
  "source-default-charset",
  "source-no-slice-thickness",
  "source-two-series", // producers get the referenced series only; readers get both
  "uneven-spacing",
  "segment-metadata",
  "non-ascii-text",
  "long-text",
  "anatomic-region",
  "multiple-algorithms",
  "ts-explicit-le",
  "ts-rle",
];
// Combinations not claimed:
// - LABELMAP + overlap: one value per voxel (fillLabelmapSegmentation: "the later labelmap wins");
// - BINARY + partial-references: the BINARY export lists every image it is given in the Referenced Series
//   Sequence (dcmjs Segmentation.derive), and the images must be the whole stack that the labelmaps2D index;
// - BINARY + anatomic-region: dcmjs Segmentation._addSegmentMetadata copies 8 attributes of each segment
//   (number, label, description, algorithm type and name, colour, category and type codes, the type's modifier
//   inside it) and drops the rest: Anatomic Region Sequence (with its modifier), Tracking ID and UID, Segmentation
//   Algorithm Identification (the algorithm version). Tracking identifiers and versions are part of
//   segment-metadata and multiple-algorithms, which stay claimed (the library claims them): the write's notes
//   list what was dropped, and the write step's check decoders find the dropped tracking identifiers missing
//   (known issue cornerstone-writer-binary-drops-tracking).
const UNSUPPORTED_COMBINATIONS = [
  ["labelmap", "overlap"],
  ["binary", "partial-references"],
  ["binary", "anatomic-region"],
];
const RELEASES = {
  "5.14.0": { dir: "releases/5.14.0", features: FEATURES },
  "5.6.8": { dir: "releases/5.6.8", features: FEATURES },
};

const log = (...args) => process.stderr.write(args.map((a) => (a && a.stack ? a.stack : String(a))).join(" ") + "\n");

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on("data", (c) => chunks.push(c));
    process.stdin.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    process.stdin.on("error", reject);
  });
}

// ---------------------------------------------------------------- the release

// The package folder of `name` as `fromDir` resolves it (and its package.json).
function packageOf(fromDir, name) {
  const entry = createRequire(path.join(fromDir, "package.json")).resolve(name);
  let dir = path.dirname(entry);
  for (;;) {
    const file = path.join(dir, "package.json");
    if (fs.existsSync(file)) {
      const pkg = JSON.parse(fs.readFileSync(file, "utf8"));
      if (pkg.name === name) return { dir, pkg, entry };
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no package.json for ${name} above ${entry}`);
    dir = up;
  }
}

function locateRelease(variant) {
  const release = variant === undefined || variant === null || variant === "" ? DEFAULT_RELEASE : String(variant);
  const spec = RELEASES[release];
  if (!spec) return { release, spec: null, error: `unknown variant ${JSON.stringify(variant)}: this adapter installs ${Object.keys(RELEASES).join(", ")}` };
  const dir = path.join(HERE, spec.dir);
  try {
    const adapters = packageOf(dir, TOOL);
    // The library's own dependencies, as it resolves them: its peers beside it, its dcmjs below or beside it, and
    // @cornerstonejs/metadata as core resolves it (core's metaData is metadata's registry).
    const core = packageOf(adapters.dir, "@cornerstonejs/core");
    const metadata = packageOf(core.dir, "@cornerstonejs/metadata");
    const dcmjs = packageOf(adapters.dir, "dcmjs");
    return { release, spec, dir, adapters, core, metadata, dcmjs, error: null };
  } catch (e) {
    return { release, spec, dir, error: `cannot find ${TOOL} ${release} (run npm ci in ${HERE}): ${String(e.message || e).split("\n")[0]}` };
  }
}

async function importRelease(rel) {
  // The ESM entry points, each resolved from the library itself, so that the library and this adapter share one
  // @cornerstonejs/core (its metadata registry and cache), one @cornerstonejs/metadata and one dcmjs.
  const url = (p) => pathToFileURL(p).href;
  const esm = (p) => url(path.join(p.dir, p.pkg.module || "dist/esm/index.js"));
  const core = await import(esm(rel.core));
  const metadata = await import(esm(rel.metadata));
  const adapters = await import(esm(rel.adapters));
  const dcmjsMod = await import(url(path.join(rel.dcmjs.dir, rel.dcmjs.pkg.module || rel.dcmjs.pkg.main)));
  const dcmjs = dcmjsMod.default && dcmjsMod.default.data ? dcmjsMod.default : dcmjsMod;
  return { core, metadata, adapters, dcmjs };
}

function info(rel) {
  const ok = !rel.error;
  return {
    protocol: PROTOCOL,
    ok: true,
    name: rel.release === DEFAULT_RELEASE ? "cornerstone" : `cornerstone-${rel.release}`, // a safe name: no "@"
    tool: TOOL,
    version: ok ? rel.adapters.pkg.version : rel.release,
    role: "producer",
    available: ok,
    reason: ok ? "" : rel.error,
    features: rel.spec.features,
    unsupported_combinations: UNSUPPORTED_COMBINATIONS,
    homepage: HOMEPAGE,
  };
}

// ---------------------------------------------------------------- the sources

function toArrayBuffer(buf) {
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

function first(x) {
  return Array.isArray(x) ? x[0] : x;
}

// Each source file parsed with the release's dcmjs: the identifiers and the pixels of each frame, which the
// cornerstone image of the frame holds (a viewer's loaded image). The plane comes from the metadata providers.
function parseSource(dcmjs, file) {
  const { DicomMessage, DicomMetaDictionary } = dcmjs.data;
  const buffer = fs.readFileSync(file);
  const dicomData = DicomMessage.readFile(toArrayBuffer(buffer), { ignoreErrors: false });
  const ds = DicomMetaDictionary.naturalizeDataset(dicomData.dict);
  const meta = DicomMetaDictionary.namifyDataset(dicomData.meta);
  const ts = meta.TransferSyntaxUID && first(meta.TransferSyntaxUID.Value);
  if (!["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"].includes(ts)) throw new Error(`${path.basename(file)}: source transfer syntax ${ts} is not uncompressed little endian`);
  const rows = Number(ds.Rows);
  const columns = Number(ds.Columns);
  const nFrames = Number(ds.NumberOfFrames || 1);
  const bits = Number(ds.BitsAllocated);
  const signed = Number(ds.PixelRepresentation) === 1;
  const raw = first(ds.PixelData);
  if (!raw) throw new Error(`${path.basename(file)}: no Pixel Data`);
  const Typed = bits === 8 ? Uint8Array : bits === 16 ? (signed ? Int16Array : Uint16Array) : null;
  if (!Typed || Number(ds.SamplesPerPixel || 1) !== 1) throw new Error(`${path.basename(file)}: ${bits}-bit, ${ds.SamplesPerPixel}-sample pixels are no grey image`);
  const n = rows * columns;
  const all = new Typed(raw.slice(0, n * nFrames * Typed.BYTES_PER_ELEMENT));
  const frames = [];
  for (let k = 0; k < nFrames; k++) frames.push(all.slice(k * n, (k + 1) * n));
  return { buffer, ds, rows, columns, nFrames, frames, multi: nFrames > 1 || !!ds.PerFrameFunctionalGroupsSequence };
}

const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];

// The image stack a viewer hands to the writer: the source frames with their cornerstone images, single-frame
// images ascending along the normal (then by Instance Number), the order core's sortImageIdsAndGetSpacing gives a
// volume, and a multi-frame image in frame order. An imageId names
// the instance (d4qi:.../instances/<SOP Instance UID>) and, for a frame of a multi-frame image, the frame
// (.../frames/<n>): the library writes the Referenced Frame Number it reads from the imageId
// (getReferencedSourceImageSequenceItem: core FrameRange), whether or not the image is multi-frame; with OHIF's
// DICOMweb imageIds (/frames/1 on every single-frame image too) it would reference frame 1 of single-frame images.
async function loadStack(lib, files) {
  const { core, metadata, dcmjs } = lib;
  const frames = [];
  for (const file of files) {
    const src = parseSource(dcmjs, file);
    const { ds } = src;
    const base = `d4qi:studies/${ds.StudyInstanceUID}/series/${ds.SeriesInstanceUID}/instances/${ds.SOPInstanceUID}`;
    await metadata.utilities.addDicomPart10Instance(base, toArrayBuffer(src.buffer));
    for (let n = 1; n <= src.nFrames; n++) {
      frames.push({
        imageId: src.multi ? `${base}/frames/${n}` : base,
        key: src.multi ? `${ds.SOPInstanceUID}#${n}` : String(ds.SOPInstanceUID),
        file,
        frameNumber: n,
        multi: src.multi,
        instanceNumber: Number(ds.InstanceNumber || 0),
        rows: src.rows,
        columns: src.columns,
        pixels: src.frames[n - 1],
      });
    }
  }
  for (const f of frames) f.plane = core.metaData.get("imagePlaneModule", f.imageId) || {};
  const single = frames.every((f) => !f.multi);
  if (single && frames.every((f) => f.plane.imagePositionPatient && f.plane.imageOrientationPatient)) {
    const iop = frames[0].plane.imageOrientationPatient.map(Number);
    const normal = cross(iop.slice(0, 3), iop.slice(3, 6));
    const along = (f) => dot(normal, f.plane.imagePositionPatient.map(Number));
    frames.sort((a, b) => along(a) - along(b) || a.instanceNumber - b.instanceNumber);
  }
  const images = frames.map((f) => {
    const p = f.plane;
    // spacing is [column spacing, row spacing]: createAndCacheLocalImage makes pixelSpacing [spacing[1], spacing[0]]
    const columnSpacing = Number(p.columnPixelSpacing || (p.pixelSpacing && p.pixelSpacing[1]) || 1);
    const rowSpacing = Number(p.rowPixelSpacing || (p.pixelSpacing && p.pixelSpacing[0]) || 1);
    return core.imageLoader.createAndCacheLocalImage(f.imageId, {
      scalarData: f.pixels,
      dimensions: [f.columns, f.rows],
      spacing: [columnSpacing, rowSpacing],
      origin: p.imagePositionPatient ? p.imagePositionPatient.map(Number) : undefined,
      direction: p.imageOrientationPatient ? p.imageOrientationPatient.map(Number) : undefined,
      frameOfReferenceUID: p.frameOfReferenceUID,
    });
  });
  // createAndCacheLocalImage also registers an imagePlaneModule and imagePixelModule of its own (core's
  // genericMetadataProvider, which answers before @cornerstonejs/metadata's providers): a plane with no Slice
  // Thickness, and made-up defaults where the file has no plane. An image loaded by an application's image loader
  // leaves no such entries, and the writer reads the plane from the metadata providers: so they are cleared, and
  // the library sees the files' own metadata (and the images stay in the cache).
  core.utilities.genericMetadataProvider.clear();
  return { frames, images };
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

// The truth's masks as layers of non-overlapping segments, each a label volume in truth slice order: one layer
// for a label map; segments that overlap go to further layers (a labelmap3D each, as cornerstone holds them).
function truthLayers(dir, doc, columns, rows) {
  const names = fs.readdirSync(dir);
  const slice = columns * rows;
  const nSlices = doc.frames.length;
  const check = (name, dims) => {
    if (dims[0] !== columns || dims[1] !== rows || dims[2] !== nSlices) {
      throw new Error(`truth ${name} is ${dims.join("x")}, not the source grid ${columns}x${rows}x${nSlices}`);
    }
  };
  const layers = [];
  const lm = names.find((n) => /^labelmap\.nii(\.gz)?$/.test(n));
  if (lm) {
    const { dims, data } = readNifti(path.join(dir, lm));
    check(lm, dims);
    layers.push(data);
  }
  const separate = names
    .map((n) => /^segment-(\d+)\.nii(\.gz)?$/.exec(n))
    .filter(Boolean)
    .sort((a, b) => Number(a[1]) - Number(b[1]));
  for (const m of separate) {
    const number = Number(m[1]);
    const { dims, data } = readNifti(path.join(dir, m[0]));
    check(m[0], dims);
    let layer = layers.find((l) => !data.some((v, i) => v && l[i]));
    if (!layer) layers.push((layer = new Uint16Array(slice * nSlices)));
    for (let i = 0; i < data.length; i++) if (data[i]) layer[i] = number;
  }
  return layers;
}

// A Segment Sequence item as an application describes a segment to the library (the naturalized dcmjs form).
function segmentItem(dcmjs, s) {
  const code = (c) => (c ? { CodeValue: c.value, CodingSchemeDesignator: c.scheme, CodeMeaning: c.meaning } : undefined);
  const item = {
    SegmentNumber: String(s.number),
    SegmentLabel: s.label || "",
    SegmentAlgorithmType: s.algorithm_type || "MANUAL",
    SegmentedPropertyCategoryCodeSequence: code(s.category),
    SegmentedPropertyTypeCodeSequence: code(s.type),
  };
  if (s.type_modifier && item.SegmentedPropertyTypeCodeSequence) item.SegmentedPropertyTypeCodeSequence.SegmentedPropertyTypeModifierCodeSequence = code(s.type_modifier);
  if (item.SegmentAlgorithmType !== "MANUAL") {
    // the name, and the Algorithm Identification (its family as the suite's reference writer gives it)
    if (s.algorithm_name) item.SegmentAlgorithmName = s.algorithm_name;
    if (s.algorithm_name && s.algorithm_version) {
      item.SegmentationAlgorithmIdentificationSequence = {
        AlgorithmFamilyCodeSequence: { CodeValue: "123110", CodingSchemeDesignator: "DCM", CodeMeaning: "Artificial Intelligence" },
        AlgorithmName: s.algorithm_name,
        AlgorithmVersion: s.algorithm_version,
      };
    }
  }
  if (s.description) item.SegmentDescription = s.description;
  if (s.anatomic_region) {
    item.AnatomicRegionSequence = code(s.anatomic_region);
    if (s.anatomic_region_modifier) item.AnatomicRegionSequence.AnatomicRegionModifierSequence = code(s.anatomic_region_modifier);
  }
  if (s.tracking_id) item.TrackingID = s.tracking_id;
  if (s.tracking_uid) item.TrackingUID = s.tracking_uid;
  if (s.color_rgb) {
    // as the cornerstone3D examples and OHIF convert a segment colour
    item.RecommendedDisplayCIELabValue = dcmjs.data.Colors.rgb2DICOMLAB(s.color_rgb.map((v) => v / 255)).map((v) => Math.round(v));
  }
  for (const k of Object.keys(item)) if (item[k] === undefined) delete item[k];
  return item;
}

// ---------------------------------------------------------------- write

async function write(rel, req) {
  const notes = [];
  const enc = (req.case && req.case.encoding) || {};
  const labelmap = enc.type === "LABELMAP";
  if (enc.type !== "BINARY" && !labelmap) throw new Error(`generateSegmentation writes BINARY or LABELMAP, not ${enc.type}`);
  const tsName = enc.transfer_syntax || "ExplicitVRLittleEndian";
  const ts = TRANSFER_SYNTAXES[tsName];
  if (!ts) throw new Error(`generateSegmentation writes no ${tsName} (Explicit VR Little Endian and RLE Lossless only)`);
  if (enc.instances) throw new Error("one generateSegmentation call writes one SEG instance");

  const lib = await importRelease(rel);
  const { core, metadata, adapters, dcmjs } = lib;
  const Segmentation = adapters.adaptersSEG && adapters.adaptersSEG.Cornerstone3D && adapters.adaptersSEG.Cornerstone3D.Segmentation;
  if (!Segmentation || typeof Segmentation.generateSegmentation !== "function") {
    throw new Error(`${TOOL} ${rel.adapters.pkg.version} has no adaptersSEG.Cornerstone3D.Segmentation.generateSegmentation`);
  }
  metadata.registerDefaultProviders();
  const { frames, images } = await loadStack(lib, req.sources);
  notes.push(
    `@cornerstonejs/metadata ${rel.metadata.pkg.version} registerDefaultProviders() + utilities.addDicomPart10Instance(imageId, part10) per source; ` +
      `${images.length} image(s) by core imageLoader.createAndCacheLocalImage(imageId, { scalarData, dimensions, spacing, origin, direction }) ` +
      "with the plane of metaData.get('imagePlaneModule'), then core utilities.genericMetadataProvider.clear() (the plane entries createAndCacheLocalImage makes)",
  );

  // the truth, one labelmap2D per image of the stack (slice k of the truth is source frame doc.frames[k])
  const doc = JSON.parse(fs.readFileSync(path.join(req.truth, "segments.json"), "utf8"));
  if (doc.fractional) throw new Error("the truth is fractional: a labelmap holds segment numbers");
  const { columns, rows } = frames[0];
  const layers = truthLayers(req.truth, doc, columns, rows);
  const sliceOf = new Map(doc.frames.map((key, k) => [String(key), k]));
  const maxNumber = Math.max(0, ...doc.segments.map((s) => s.number));
  const Voxels = maxNumber > 255 ? Uint16Array : Uint8Array;
  const slice = columns * rows;
  const segmentMetadata = [];
  for (const s of doc.segments) segmentMetadata[s.number] = segmentItem(dcmjs, s);
  const labelmaps3D = layers.map((volume) => {
    const labelmaps2D = frames.map((f) => {
      const k = sliceOf.get(f.key);
      if (k === undefined) return undefined; // a source frame the truth does not cover
      const pixelData = Voxels.from(volume.subarray(k * slice, (k + 1) * slice));
      const segmentsOnLabelmap = [...new Set(pixelData)].filter((v) => v !== 0).sort((a, b) => a - b);
      return segmentsOnLabelmap.length ? { segmentsOnLabelmap, pixelData, rows, columns } : undefined;
    });
    const segmentsOnLabelmap = [...new Set(labelmaps2D.flatMap((l) => (l ? l.segmentsOnLabelmap : [])))].sort((a, b) => a - b);
    return { labelmaps2D, metadata: segmentMetadata, segmentsOnLabelmap };
  });
  if (doc.frames.some((key) => !frames.some((f) => f.key === String(key)))) throw new Error("a truth frame is no source frame");
  notes.push(
    `labelmap: ${labelmaps3D.length} labelmap3D(s) { labelmaps2D (${Voxels.name}, one per image, segment numbers), metadata (Segment Sequence items by segment number) }`,
  );

  // identification the library leaves to the application (dcmjs DerivedDataset options; it makes the UIDs itself)
  const identification = {
    Manufacturer: "cornerstone3D",
    ManufacturerModelName: `${TOOL} generateSegmentation`,
    SoftwareVersions: rel.adapters.pkg.version,
    SeriesDescription: "cornerstone3D segmentation",
    ContentDescription: "dicom4qi truth written by cornerstone3D",
    ContentCreatorName: "dicom4qi^cornerstone",
  };
  const options = { ...identification, transferSyntaxUid: ts };
  if (labelmap) options.sopClassUID = LABEL_MAP_SEGMENTATION_STORAGE;
  const input = labelmaps3D.length === 1 ? labelmaps3D[0] : labelmaps3D;
  const t0 = Date.now();
  const segmentation = Segmentation.generateSegmentation(images, input, core.metaData, options);
  const bytes = dcmjs.data.datasetToBuffer(segmentation.dataset);
  const ms = Date.now() - t0;
  fs.writeFileSync(req.output, bytes);
  const optionText = [labelmap ? `sopClassUID: ${LABEL_MAP_SEGMENTATION_STORAGE}` : null, `transferSyntaxUid: ${ts}`].filter(Boolean).join(", ");
  notes.push(
    `${TOOL} ${rel.adapters.pkg.version}: adaptersSEG.Cornerstone3D.Segmentation.generateSegmentation(images, labelmap3D${labelmaps3D.length > 1 ? "[]" : ""}, ` +
      `@cornerstonejs/core metaData, { ${optionText}, ...identification }) + dcmjs ${rel.dcmjs.pkg.version} data.datasetToBuffer(dataset) in ${ms} ms`,
  );
  notes.push(`identification in the options (the library's defaults are "Unspecified"): ${Object.keys(identification).join(", ")}`);
  const ds = segmentation.dataset;
  // What the application described and the library did not write (BINARY: dcmjs Segmentation._addSegmentMetadata
  // copies 8 attributes of each item), said in the cell: the content check cannot see an attribute that is absent.
  const given = new Set(segmentMetadata.filter(Boolean).flatMap((item) => Object.keys(item)));
  const kept = new Set([].concat(ds.SegmentSequence || []).flatMap((item) => Object.keys(item)));
  const dropped = [...given].filter((k) => !kept.has(k));
  if (dropped.length) notes.push(`Segment Sequence attributes given to the library and not written by it: ${dropped.join(", ")}`);
  notes.push(`written: SOP class ${ds.SOPClassUID}, ${ds.SegmentationType}, ${ds.BitsAllocated} bit(s), ${ds.NumberOfFrames} frame(s), ${[].concat(ds.SegmentSequence || []).length} segment(s)`);
  return {
    protocol: PROTOCOL,
    ok: true,
    notes: [`${TOOL} ${rel.adapters.pkg.version} (@cornerstonejs/core ${rel.core.pkg.version}, @cornerstonejs/metadata ${rel.metadata.pkg.version}, dcmjs ${rel.dcmjs.pkg.version})`, ...notes],
  };
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
    const rel = locateRelease(req.variant);
    if (!rel.spec) {
      response = { protocol: PROTOCOL, ok: false, error: rel.error };
    } else if (req.op === "info") {
      response = info(rel);
    } else if (req.protocol !== PROTOCOL) {
      response = { protocol: PROTOCOL, ok: false, error: `unsupported protocol ${JSON.stringify(req.protocol)} (this adapter speaks ${PROTOCOL})` };
    } else if (req.op === "write") {
      if (rel.error) throw new Error(rel.error);
      response = await write(rel, req);
    } else {
      response = { protocol: PROTOCOL, ok: false, error: `unsupported op ${JSON.stringify(req.op)} (a producer answers info and write)` };
    }
  } catch (e) {
    log(e);
    response = { protocol: PROTOCOL, ok: false, error: e && e.message ? e.message : String(e) };
  }
  process.stdout.write(JSON.stringify(response) + "\n", () => process.exit(0));
}

// The library logs through loglevel/console: keep stdout for the one JSON answer.
console.log = console.info = console.warn = console.debug = console.error = (...args) => log(...args);

main();
