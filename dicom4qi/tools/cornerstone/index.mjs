#!/usr/bin/env node
// dicom4qi consumer adapter for cornerstone3D's SEG adapters (npm @cornerstonejs/adapters), protocol 1
// (see docs/protocol.md).
//
// One JSON request on stdin -> one JSON response on stdout; logs go to stderr only.
// `read` decodes the SEG with the call OHIF's cornerstone-dicom-seg extension makes:
//   adaptersSEG.Cornerstone3D.Segmentation.createFromDICOMSegBuffer(referencedImageIds, arrayBuffer,
//                                                                  { metadataProvider: metaData, tolerance })
// where `metaData` is @cornerstonejs/core's metadata registry, with a provider registered here that answers from
// the source images (parsed with the dcmjs the release depends on). The labelmap images the library returns are
// written out as they are: nothing here corrects or completes the library's pixel output.
//
// Three releases are installed side by side (releases/<version>/package.json, each with the exact @cornerstonejs
// core and tools it pins as peers); the request's `variant` picks one (default 5.14.0).
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { fileURLToPath, pathToFileURL } from "node:url";

// In a startup snapshot (bundle.mjs) this module runs inside one bundled script that has the release's libraries
// loaded already: its folder, release and libraries are then in globalThis.__dicom4qiPreloaded.
const PRELOADED = globalThis.__dicom4qiPreloaded || null;
const HERE = PRELOADED ? PRELOADED.here : path.dirname(fileURLToPath(import.meta.url));
const PROTOCOL = 1;
const TOOL = "@cornerstonejs/adapters";
const HOMEPAGE = "https://github.com/cornerstonejs/cornerstone3D";
const DEFAULT_RELEASE = "5.14.0";
const TOLERANCE = 1e-3; // OHIF's default (and the library's)

// Feature names of corpus/features.txt that the release's SEG reading path implements, so claimed: a claimed
// feature that decodes wrong is a FAIL in the grid. Not claimed, so UNSUPPORTED (see README.md):
// - fractional, fractional-occupancy, fractional-max-value: createLabelmapsFromSegImageIds throws "Fractional
//   segmentations are not yet supported" unless every value is 0 or MaximumFractionalValue;
// - ts-jpeg2000, ts-jpegls: the buffer path decodes uncompressed and RLE Lossless only
//   (encodePixelData.js decodeSegFramesFromMultiframe); there is no JPEG 2000 or JPEG-LS codec in it;
// - slide-source: the labelmaps are one image per referenced source imageId (a stack); there is no code for
//   TILED_FULL or a total pixel matrix (OHIF shows slide SEGs with dicom-microscopy-viewer, not cornerstone).
const COMMON_FEATURES = [
  "binary",
  "binary-unaligned-frames",
  "labelmap",
  "labelmap-8bit",
  "labelmap-16bit",
  "labelmap-sparse-numbers",
  "labelmap-palette",
  "frames-shuffled",
  "frames-position-only",
  "partial-references",
  "multi-instance", // the harness gives it one instance per call; graded on the union
  "source-default-charset",
  "source-no-slice-thickness",
  "source-two-series",
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
  "ts-explicit-be",
  "ts-deflate",
  "ts-rle",
  "uneven-spacing",
  "segments-interleaved",
  "non-ascii-text",
  "long-text",
  "anatomic-region",
  "multiple-algorithms",
];
// The releases have the same reading code paths and entry point (createFromDICOMSegBuffer in
// generateToolState.js, labelmapImagesFromBuffer.js, encodePixelData.js): they claim the same features; where one
// decodes wrong (see README.md) the grid says FAIL.
const RELEASES = {
  "5.14.0": { dir: "releases/5.14.0", features: COMMON_FEATURES },
  "5.6.8": { dir: "releases/5.6.8", features: COMMON_FEATURES },
  "4.19.0": { dir: "releases/4.19.0", features: COMMON_FEATURES },
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

// The package folder of `name` as the release resolves it (and its package.json): Node's lookup of node_modules
// folders upwards from `fromDir`, done by hand, because a package whose "exports" offer only "import" (adapters
// 4.x) cannot be found by require.resolve.
function packageOf(fromDir, name) {
  for (let dir = fromDir; ; dir = path.dirname(dir)) {
    const file = path.join(dir, "node_modules", name, "package.json");
    if (fs.existsSync(file)) return { dir: path.dirname(file), pkg: JSON.parse(fs.readFileSync(file, "utf8")) };
    if (path.dirname(dir) === dir) throw new Error(`no ${name} in a node_modules folder above ${fromDir}`);
  }
}

function locateRelease(variant) {
  const release = variant === undefined || variant === null || variant === "" ? DEFAULT_RELEASE : String(variant);
  const spec = RELEASES[release];
  if (!spec) return { release, spec: null, error: `unknown variant ${JSON.stringify(variant)}: this adapter installs ${Object.keys(RELEASES).join(", ")}` };
  const dir = path.join(HERE, spec.dir);
  try {
    const adapters = packageOf(dir, TOOL);
    // The library's own dependencies, as it resolves them (its peers sit beside it, its dcmjs below or beside it).
    const core = packageOf(adapters.dir, "@cornerstonejs/core");
    const tools = packageOf(adapters.dir, "@cornerstonejs/tools");
    const dcmjs = packageOf(adapters.dir, "dcmjs");
    return { release, spec, dir, adapters, core, tools, dcmjs, error: null };
  } catch (e) {
    return { release, spec, dir, error: `cannot find ${TOOL} ${release} (run npm ci in ${HERE}): ${String(e.message || e).split("\n")[0]}` };
  }
}

async function importRelease(rel) {
  if (PRELOADED) {
    // launch.sh starts the snapshot of the release asked for: any other is a fault of the launcher, said as one
    if (PRELOADED.release !== rel.release) throw new Error(`the startup snapshot holds release ${PRELOADED.release}, not ${rel.release}`);
    return PRELOADED.libs;
  }
  // The ESM entry points, each resolved from the library itself so that the library and this adapter share one
  // @cornerstonejs/core instance (its metadata registry and cache) and one dcmjs.
  const url = (p) => pathToFileURL(p).href;
  // The release bundled by the setup step (bundle.mjs: the same code in one file, loaded in a fraction of the time).
  const bundle = path.join(HERE, "node_modules", `.dicom4qi-bundle-${rel.release}.mjs`);
  if (fs.existsSync(bundle)) {
    const b = await import(url(bundle));
    const dcmjsB = b.dcmjs.default && b.dcmjs.default.data ? b.dcmjs.default : b.dcmjs;
    return { core: b.core, adapters: b.adapters, dcmjs: dcmjsB, bundled: true };
  }
  const core = await import(url(path.join(rel.core.dir, rel.core.pkg.module || "dist/esm/index.js")));
  const adapters = await import(url(path.join(rel.adapters.dir, rel.adapters.pkg.module || "dist/esm/index.js")));
  const dcmjsMod = await import(url(path.join(rel.dcmjs.dir, rel.dcmjs.pkg.module || rel.dcmjs.pkg.main)));
  const dcmjs = dcmjsMod.default && dcmjsMod.default.data ? dcmjsMod.default : dcmjsMod;
  return { core, adapters, dcmjs };
}

function info(rel) {
  const ok = !rel.error;
  return {
    protocol: PROTOCOL,
    ok: true,
    name: rel.release === DEFAULT_RELEASE ? "cornerstone" : `cornerstone-${rel.release}`, // a safe name: no "@"
    tool: TOOL,
    version: ok ? rel.adapters.pkg.version : rel.release,
    role: "consumer",
    available: ok,
    reason: ok ? "" : rel.error,
    features: rel.spec.features,
    unsupported_combinations: [],
    homepage: HOMEPAGE,
    family: "cornerstone",
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
  const v = first(x);
  return v === undefined || v === null || v === "" ? undefined : Number(v);
}

function arr(x) {
  if (x === undefined || x === null) return undefined;
  const a = (Array.isArray(x) ? x : [x]).map(Number);
  return a.every((v) => Number.isFinite(v)) ? a : undefined;
}

function str(x) {
  const v = first(x);
  return v === undefined || v === null ? undefined : String(v);
}

function parseFile(dcmjs, file) {
  const { DicomMessage, DicomMetaDictionary } = dcmjs.data;
  const options = { ignoreErrors: false, untilTag: "7FE00010", includeUntilTagValue: false, noCopy: false };
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

// One entry per source frame: what the metadata provider answers for its imageId. The imageIds are shaped like
// OHIF's DICOMweb ones (wadors:.../instances/<SOP Instance UID>/frames/<n>, n from 1), the form the library's
// reference lookup (getImageIdOfSourceImageBySourceImageSequence) handles for multi-frame sources.
function sourceFrames(dcmjs, files) {
  const frames = [];
  files.forEach((file, fileIndex) => {
    const ds = parseFile(dcmjs, file);
    const uid = String(ds.SOPInstanceUID);
    const nFrames = Number(ds.NumberOfFrames || 1);
    const shared = first(ds.SharedFunctionalGroupsSequence) || {};
    const perFrame = ds.PerFrameFunctionalGroupsSequence;
    const enhanced = Array.isArray(perFrame) ? perFrame.length > 0 : !!perFrame;
    const multi = nFrames > 1 || enhanced;
    for (let n = 1; n <= nFrames; n++) {
      const pf = enhanced ? (Array.isArray(perFrame) ? perFrame[n - 1] : perFrame) || {} : {};
      const group = (name) => first(pf[name]) || first(shared[name]) || undefined;
      const pos = enhanced ? group("PlanePositionSequence") : undefined;
      const ori = enhanced ? group("PlaneOrientationSequence") : undefined;
      const meas = enhanced ? group("PixelMeasuresSequence") : undefined;
      const ipp = arr(pos ? pos.ImagePositionPatient : ds.ImagePositionPatient);
      const iop = arr(ori ? ori.ImageOrientationPatient : ds.ImageOrientationPatient);
      const spacing = arr((meas && meas.PixelSpacing) || ds.PixelSpacing);
      const thickness = num((meas && meas.SliceThickness) || ds.SliceThickness);
      const key = multi ? `${uid}#${n}` : uid;
      // 'instance' as OHIF's metadata gives it: the instance's attributes, per frame for a multi-frame image
      // (the frame's plane attributes at the top level, as dicom-image-loader's combineFrameInstance does).
      const instance = { ...ds };
      delete instance._meta;
      if (multi) {
        if (ipp) instance.ImagePositionPatient = ipp;
        if (iop) instance.ImageOrientationPatient = iop;
        if (meas && meas.PixelSpacing) instance.PixelSpacing = arr(meas.PixelSpacing);
      }
      frames.push({
        key,
        imageId: `wadors:d4qi/studies/${ds.StudyInstanceUID}/series/${ds.SeriesInstanceUID}/instances/${uid}/frames/${n}`,
        fileIndex,
        frameNumber: multi ? n : undefined,
        sopInstanceUID: uid,
        sopClassUID: str(ds.SOPClassUID),
        studyInstanceUID: str(ds.StudyInstanceUID),
        seriesInstanceUID: str(ds.SeriesInstanceUID),
        frameOfReferenceUID: str(ds.FrameOfReferenceUID),
        modality: str(ds.Modality),
        seriesNumber: num(ds.SeriesNumber),
        instanceNumber: num(ds.InstanceNumber),
        rows: num(ds.Rows),
        columns: num(ds.Columns),
        ipp: ipp && ipp.length === 3 ? ipp : undefined,
        iop: iop && iop.length === 6 ? iop : undefined,
        spacing: spacing && spacing.length === 2 ? spacing : undefined,
        thickness,
        pixel: {
          samplesPerPixel: num(ds.SamplesPerPixel),
          photometricInterpretation: str(ds.PhotometricInterpretation),
          rows: num(ds.Rows),
          columns: num(ds.Columns),
          bitsAllocated: num(ds.BitsAllocated),
          bitsStored: num(ds.BitsStored),
          highBit: num(ds.HighBit),
          pixelRepresentation: num(ds.PixelRepresentation),
        },
        instance,
      });
    }
  });
  return frames;
}

// The image stack OHIF would hand over: the display set of the series the SEG references (Referenced Series
// Sequence), in a viewer's order: single-frame images by position along the normal (then Instance Number),
// a multi-frame image in frame order. When no source is in a referenced series, all of them.
function referencedStack(frames, seg) {
  const refSeries = new Set(
    (Array.isArray(seg.ReferencedSeriesSequence) ? seg.ReferencedSeriesSequence : seg.ReferencedSeriesSequence ? [seg.ReferencedSeriesSequence] : [])
      .map((s) => s && s.SeriesInstanceUID)
      .filter(Boolean)
      .map(String),
  );
  const inRef = frames.filter((f) => refSeries.has(f.seriesInstanceUID));
  const stack = inRef.length ? inRef : frames;
  const allSingle = stack.every((f) => f.frameNumber === undefined);
  const geo = stack.every((f) => f.ipp && f.iop);
  const indexed = stack.map((f, i) => ({ f, i }));
  if (allSingle && geo) {
    const normal = cross(stack[0].iop.slice(0, 3), stack[0].iop.slice(3));
    indexed.sort((a, b) => dot(a.f.ipp, normal) - dot(b.f.ipp, normal) || (a.f.instanceNumber || 0) - (b.f.instanceNumber || 0) || a.i - b.i);
  } else if (allSingle) {
    indexed.sort((a, b) => (a.f.instanceNumber || 0) - (b.f.instanceNumber || 0) || a.i - b.i);
  } else {
    indexed.sort((a, b) => a.f.fileIndex - b.f.fileIndex || (a.f.frameNumber || 0) - (b.f.frameNumber || 0));
  }
  return { stack: indexed.map((x) => x.f), bySeries: inRef.length > 0 };
}

// The metadata modules, as @cornerstonejs/dicom-image-loader's wadors metaDataProvider (5.14.0) answers them;
// imagePlaneModule with its defaults where the image has no orientation, position or spacing.
function metadataProvider(frames) {
  const byId = new Map(frames.map((f) => [f.imageId, f]));
  return (type, imageId) => {
    const f = byId.get(imageId);
    if (!f) return undefined;
    switch (type) {
      case "generalSeriesModule":
        return { modality: f.modality, seriesInstanceUID: f.seriesInstanceUID, seriesNumber: f.seriesNumber, studyInstanceUID: f.studyInstanceUID };
      case "generalStudyModule":
        return {};
      case "generalImageModule":
        return { sopInstanceUID: f.sopInstanceUID, instanceNumber: f.instanceNumber };
      case "patientModule":
        return {};
      case "imagePlaneModule": {
        let usingDefaultValues = false;
        let rowPixelSpacing = 1;
        let columnPixelSpacing = 1;
        if (f.spacing) [rowPixelSpacing, columnPixelSpacing] = f.spacing;
        else usingDefaultValues = true;
        const iop = f.iop || [1, 0, 0, 0, 1, 0];
        const ipp = f.ipp || [0, 0, 0];
        if (!f.iop || !f.ipp) usingDefaultValues = true;
        return {
          frameOfReferenceUID: f.frameOfReferenceUID,
          rows: f.rows,
          columns: f.columns,
          imageOrientationPatient: iop.slice(),
          rowCosines: iop.slice(0, 3),
          columnCosines: iop.slice(3, 6),
          imagePositionPatient: ipp.slice(),
          sliceThickness: f.thickness,
          pixelSpacing: f.spacing ? f.spacing.slice() : undefined,
          rowPixelSpacing,
          columnPixelSpacing,
          usingDefaultValues,
        };
      }
      case "imagePixelModule":
        return { ...f.pixel };
      case "sopCommonModule":
        return { sopInstanceUID: f.sopInstanceUID, sopClassUID: f.sopClassUID };
      case "instance":
        return f.instance;
      default:
        return undefined;
    }
  };
}

// ---------------------------------------------------------------- segment metadata

function code(seq) {
  const item = first(seq);
  if (!item || (item.CodeValue === undefined && item.LongCodeValue === undefined && item.URNCodeValue === undefined)) return undefined;
  const value = item.CodeValue !== undefined ? item.CodeValue : item.LongCodeValue !== undefined ? item.LongCodeValue : item.URNCodeValue;
  return { value: String(value), scheme: String(item.CodingSchemeDesignator || ""), meaning: String(item.CodeMeaning || "") };
}

// One segment of what the library returns: the segment with voxel value `number` is segMetadata.data[number]
// (that is how OHIF reads it), described by that SegmentSequence item.
function segmentJson(dcmjs, number, s, notes) {
  const out = { number };
  if (!s) return out;
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
    // OHIF's conversion (cornerstone-dicom-seg): dcmjs.data.Colors.dicomlab2RGB, scaled to 0..255.
    const Colors = dcmjs.data.Colors;
    if (Colors && typeof Colors.dicomlab2RGB === "function") {
      out.color_rgb = Array.from(Colors.dicomlab2RGB(lab)).map((v) => Math.max(0, Math.min(255, Math.round(v * 255))));
    } else {
      notes.add("dcmjs has no Colors.dicomlab2RGB: colours not decoded");
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

// Image Position (Patient) of each slice when the NRRD grid (origin + k * slice step) cannot say it.
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

// The voxels of one labelmap image the library made (a cornerstone IImage): its voxel manager's scalar data, or
// its pixel data.
function imageVoxels(image) {
  const vm = image && image.voxelManager;
  if (vm && typeof vm.getScalarData === "function") {
    try {
      const data = vm.getScalarData();
      if (data) return data;
    } catch (e) {
      // an RLE voxel manager has no flat array: read it voxel by voxel below
    }
  }
  if (image && typeof image.getPixelData === "function") {
    const data = image.getPixelData();
    if (data) return data;
  }
  if (vm && typeof vm.getAtIndex === "function") {
    const n = image.rows * image.columns;
    const out = new Uint16Array(n);
    for (let i = 0; i < n; i++) out[i] = vm.getAtIndex(i) || 0;
    return out;
  }
  throw new Error("a labelmap image from the library has no voxel data");
}

// ---------------------------------------------------------------- read

async function read(rel, req) {
  const notes = new Set();
  const calls = [];
  if (typeof req.seg !== "string" || !Array.isArray(req.sources) || typeof req.output !== "string") {
    throw new Error("read needs seg, sources and output");
  }
  const { core, adapters, dcmjs } = await importRelease(rel);
  if (PRELOADED) notes.add("node started from the setup step's startup snapshot of the release (its libraries' code, evaluated once when the snapshot was built)");
  const Segmentation = adapters.adaptersSEG && adapters.adaptersSEG.Cornerstone3D && adapters.adaptersSEG.Cornerstone3D.Segmentation;
  if (!Segmentation || typeof Segmentation.createFromDICOMSegBuffer !== "function") {
    throw new Error(`${TOOL} ${rel.adapters.pkg.version} has no adaptersSEG.Cornerstone3D.Segmentation.createFromDICOMSegBuffer`);
  }

  const frames = sourceFrames(dcmjs, req.sources);
  calls.push(`dcmjs ${rel.dcmjs.pkg.version} DicomMessage.readFile + DicomMetaDictionary.naturalizeDataset (sources, up to Pixel Data)`);
  if (!frames.length) throw new Error("no source frames");
  const seg = parseFile(dcmjs, req.seg);
  const segType = str(seg.SegmentationType);
  const ts = seg._meta && seg._meta.TransferSyntaxUID ? first(seg._meta.TransferSyntaxUID.Value) : undefined;
  notes.add(`SEG: SOP class ${seg.SOPClassUID}, SegmentationType ${segType}, BitsAllocated ${seg.BitsAllocated}, transfer syntax ${ts}`);
  const { stack, bySeries } = referencedStack(frames, seg);
  notes.add(
    bySeries
      ? `image stack: the ${stack.length} source frame(s) of the referenced series, as OHIF's referenced display set`
      : `image stack: all ${stack.length} source frame(s) (no source in the SEG's Referenced Series Sequence)`,
  );
  const imageIds = stack.map((f) => f.imageId);

  // OHIF registers its metadata providers with @cornerstonejs/core and passes `metaData` itself as the provider.
  core.metaData.addProvider(metadataProvider(stack), 10000);
  const segBuffer = toArrayBuffer(fs.readFileSync(req.seg));
  const t0 = Date.now();
  const result = await Segmentation.createFromDICOMSegBuffer(imageIds, segBuffer, { metadataProvider: core.metaData, tolerance: TOLERANCE });
  calls.push(
    `${TOOL} ${rel.adapters.pkg.version}: adaptersSEG.Cornerstone3D.Segmentation.createFromDICOMSegBuffer(referencedImageIds, segArrayBuffer, ` +
      `{ metadataProvider: @cornerstonejs/core metaData, tolerance: ${TOLERANCE} }) in ${Date.now() - t0} ms`,
  );
  if (!result || !Array.isArray(result.labelMapImages)) throw new Error("createFromDICOMSegBuffer returned no labelMapImages");

  const columns = stack[0].columns;
  const rows = stack[0].rows;
  const sliceLength = columns * rows;
  const nSlices = stack.length;
  // One volume per layer (the library makes more than one when segments overlap), slice k = imageIds[k].
  const layers = result.labelMapImages.map((images, m) => {
    if (!Array.isArray(images) || images.length !== nSlices) {
      throw new Error(`labelmap layer ${m} has ${Array.isArray(images) ? images.length : "no"} images for ${nSlices} referenced imageIds`);
    }
    let wide = false;
    const slices = images.map((image, k) => {
      const data = imageVoxels(image);
      if (data.length !== sliceLength) throw new Error(`labelmap layer ${m} image ${k} has ${data.length} voxels, expected ${sliceLength}`);
      if (image.referencedImageId && image.referencedImageId !== imageIds[k]) {
        throw new Error(`labelmap layer ${m} image ${k} references ${image.referencedImageId}, not ${imageIds[k]}`);
      }
      if (!(data instanceof Uint8Array || data instanceof Uint8ClampedArray)) wide = true;
      return data;
    });
    const volume = new Uint16Array(sliceLength * nSlices);
    slices.forEach((data, k) => volume.set(data, k * sliceLength));
    return { volume, type: slices[0] ? slices[0].constructor.name : "?", wide };
  });
  notes.add(
    `the library returned ${layers.length} labelmap layer(s) of ${nSlices} image(s) (${[...new Set(layers.map((l) => l.type))].join(", ")}), ` +
      `overlappingSegments=${!!result.overlappingSegments}`,
  );

  // Segments: the library's segMetadata.data, indexed by the voxel value it gives the segment.
  const data = (result.segMetadata && result.segMetadata.data) || [];
  const where = new Map(); // voxel value -> Set(layer index)
  layers.forEach(({ volume }, m) => {
    for (let i = 0; i < volume.length; i++) {
      const v = volume[i];
      if (v) {
        let s = where.get(v);
        if (!s) where.set(v, (s = new Set()));
        s.add(m);
      }
    }
  });
  const numbers = new Set();
  data.forEach((s, i) => {
    if (s && i >= 1) numbers.add(i);
  });
  const orphans = [...where.keys()].filter((v) => !numbers.has(v)).sort((a, b) => a - b);
  if (orphans.length) notes.add(`voxel values with no entry in the library's segMetadata.data: ${orphans.slice(0, 20).join(", ")}`);
  for (const v of orphans) numbers.add(v);
  const mismatched = [...numbers].filter((i) => data[i] && num(data[i].SegmentNumber) !== i);
  if (mismatched.length) {
    notes.add(`segMetadata.data[i] describes SegmentNumber != i for i = ${mismatched.slice(0, 20).join(", ")} (written as the library indexes it)`);
  }
  const segments = [...numbers].sort((a, b) => a - b).map((i) => segmentJson(dcmjs, i, data[i], notes));

  const geometry = nrrdGeometry(stack);
  const out = req.output;
  const separate = [...where.entries()].filter(([, s]) => s.size > 1 || !s.has(0)).map(([v]) => v);
  const sep = new Set(separate);
  const base = layers.length ? new Uint16Array(layers[0].volume) : new Uint16Array(sliceLength * nSlices);
  if (sep.size) for (let i = 0; i < base.length; i++) if (sep.has(base[i])) base[i] = 0;
  writeNrrd(path.join(out, "labelmap.nrrd"), base, "uint16", columns, rows, nSlices, geometry);
  if (separate.length) {
    const mask = new Uint8Array(sliceLength * nSlices);
    for (const v of separate) {
      mask.fill(0);
      for (const { volume } of layers) for (let i = 0; i < volume.length; i++) if (volume[i] === v) mask[i] = 1;
      writeNrrd(path.join(out, `segment-${v}.nrrd`), mask, "uint8", columns, rows, nSlices, geometry);
    }
  }
  if (segType === "FRACTIONAL") notes.add("FRACTIONAL SEG: the library accepts it only when every value is 0 or MaximumFractionalValue, and then reads it as BINARY");

  const exchange = {
    format: "dicom4qi-exchange/1",
    frames: stack.map((f) => f.key),
    fractional: false,
    segments,
    notes: [...notes].slice(0, 200).map((n) => n.slice(0, 4000)),
  };
  const positions = irregularPositions(stack);
  if (positions) exchange.positions = positions;
  fs.writeFileSync(path.join(out, "segments.json"), JSON.stringify(exchange, null, 1));
  return { protocol: PROTOCOL, ok: true, notes: [`${TOOL} ${rel.adapters.pkg.version} (@cornerstonejs/core ${rel.core.pkg.version}, dcmjs ${rel.dcmjs.pkg.version})`, ...calls, ...notes].slice(0, 200) };
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
    } else if (req.op === "read") {
      if (rel.error) throw new Error(rel.error);
      response = await read(rel, req);
    } else {
      response = { protocol: PROTOCOL, ok: false, error: `unsupported op ${JSON.stringify(req.op)} (a consumer answers info and read)` };
    }
  } catch (e) {
    log(e);
    response = { protocol: PROTOCOL, ok: false, error: e && e.message ? e.message : String(e) };
  }
  process.stdout.write(JSON.stringify(response) + "\n", () => process.exit(0));
}

// The library logs through loglevel/console: keep stdout for the one JSON answer.
console.log = console.info = console.warn = console.debug = console.error = (...args) => log(...args);

// Building a startup snapshot, main runs when the snapshot starts, not now.
if (globalThis.__dicom4qiSnapshot) globalThis.__dicom4qiSnapshot(main);
else main();
