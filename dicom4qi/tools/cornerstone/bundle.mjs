#!/usr/bin/env node
// Setup step (run by `npm ci` as the package's `prepare` script): bundle each installed release's
// @cornerstonejs/core, @cornerstonejs/adapters and dcmjs, exactly as the release resolves them, into one ES module
// per release (node_modules/.dicom4qi-bundle-<release>.mjs) with esbuild. Loading the libraries' thousands of ESM
// files (with cornerstone tools and vtk.js) took about 3 s per read; the bundle loads in about 0.5 s. The code
// is the libraries' own, unminified; index.mjs falls back to the unbundled entry points when a bundle is missing.
// Then a startup snapshot per release (see snapshot() below).
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { spawnSync } from "node:child_process";
import crypto from "node:crypto";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const esbuild = require("esbuild");

// Node's lookup of node_modules folders upwards, by hand: adapters 4.x "exports" only "import", which
// require.resolve cannot find.
function packageDir(fromDir, name) {
  for (let dir = fromDir; ; dir = path.dirname(dir)) {
    const file = path.join(dir, "node_modules", name, "package.json");
    if (fs.existsSync(file)) return path.dirname(file);
    if (path.dirname(dir) === dir) throw new Error(`no ${name} in a node_modules folder above ${fromDir}`);
  }
}

function esmEntry(dir) {
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
  return path.join(dir, pkg.module || "dist/esm/index.js");
}

for (const release of fs.readdirSync(path.join(HERE, "releases"))) {
  const from = path.join(HERE, "releases", release);
  const adapters = packageDir(from, "@cornerstonejs/adapters");
  const core = packageDir(adapters, "@cornerstonejs/core");
  const dcmjs = packageDir(adapters, "dcmjs");
  const entry = [
    `export * as core from ${JSON.stringify(esmEntry(core))};`,
    `export * as adapters from ${JSON.stringify(esmEntry(adapters))};`,
    `import * as dcmjsModule from ${JSON.stringify(esmEntry(dcmjs))};`,
    "export const dcmjs = dcmjsModule;",
  ].join("\n");
  const outfile = path.join(HERE, "node_modules", `.dicom4qi-bundle-${release}.mjs`);
  const t0 = Date.now();
  esbuild.buildSync({
    stdin: { contents: entry, resolveDir: from, sourcefile: `entry-${release}.mjs` },
    bundle: true,
    platform: "node",
    format: "esm",
    outfile,
    logLevel: "error",
    // CommonJS dependencies call require(): give the bundle a real one
    banner: { js: "import { createRequire as __dicom4qiRequire } from 'node:module'; const require = __dicom4qiRequire(import.meta.url);" },
  });
  const kb = Math.round(fs.statSync(outfile).size / 1024);
  process.stderr.write(`bundled @cornerstonejs/adapters ${release} into ${path.relative(HERE, outfile)} (${kb} KiB, ${Date.now() - t0} ms)\n`);
  snapshot(release, { core, adapters, dcmjs });
}
defaultSnapshot();

// A V8 startup snapshot per release (node_modules/.dicom4qi-snapshot-<release>.blob): the release's libraries and
// index.mjs in one script, evaluated once here, so that a read starts with them loaded (node --snapshot-blob) instead
// of evaluating 8 MB of JavaScript (0.5 s of every read). Each read is still its own node process. launch.sh uses a
// snapshot only while its key (this folder, index.mjs's sha256) is the current one, and index.mjs otherwise.
function snapshot(release, dirs) {
  const base = path.join(HERE, "node_modules", `.dicom4qi-snapshot-${release}`);
  for (const f of [`${base}.blob`, `${base}.key`]) fs.rmSync(f, { force: true });
  const setup = [
    `import * as core from ${JSON.stringify(esmEntry(dirs.core))};`,
    `import * as adapters from ${JSON.stringify(esmEntry(dirs.adapters))};`,
    `import * as dcmjsModule from ${JSON.stringify(esmEntry(dirs.dcmjs))};`,
    `import v8 from "node:v8";`,
    `const dcmjs = dcmjsModule.default && dcmjsModule.default.data ? dcmjsModule.default : dcmjsModule;`,
    `globalThis.__dicom4qiPreloaded = { here: ${JSON.stringify(HERE)}, release: ${JSON.stringify(release)}, libs: { core, adapters, dcmjs, bundled: true } };`,
    `globalThis.__dicom4qiSnapshot = (main) => v8.startupSnapshot.setDeserializeMainFunction(() => main());`,
  ].join("\n");
  const setupFile = `${base}-setup.mjs`;
  fs.writeFileSync(setupFile, setup);
  const script = `${base}.cjs`;
  const t0 = Date.now();
  esbuild.buildSync({
    // the libraries first (ES modules run in import order), then the reader, whose main() the snapshot keeps
    stdin: { contents: `import ${JSON.stringify(setupFile)};\nimport ${JSON.stringify(path.join(HERE, "index.mjs"))};\n`, resolveDir: HERE, sourcefile: `snapshot-${release}.mjs` },
    bundle: true,
    platform: "node",
    format: "iife",
    outfile: script,
    logLevel: "error",
  });
  const built = spawnSync(process.execPath, ["--snapshot-blob", `${base}.blob`, "--build-snapshot", script], { cwd: HERE, encoding: "utf8" });
  fs.rmSync(setupFile, { force: true });
  fs.rmSync(script, { force: true });
  if (built.status !== 0 || !fs.existsSync(`${base}.blob`)) {
    // not fatal: the reads then load the bundle, as before
    const why = (built.stderr || "").split("\n").filter((l) => l && !/Warning|may still|issue tracker|trace-warnings/.test(l)).slice(0, 3).join(" / ");
    process.stderr.write(`no startup snapshot of ${release} (reads load the bundle): ${why || `exit ${built.status}`}\n`);
    fs.rmSync(`${base}.blob`, { force: true });
    return;
  }
  fs.writeFileSync(`${base}.key`, snapshotKey());
  const mb = (fs.statSync(`${base}.blob`).size / 2 ** 20).toFixed(0);
  process.stderr.write(`startup snapshot of ${release}: ${path.relative(HERE, base)}.blob (${mb} MiB, ${Date.now() - t0} ms)\n`);
}

// What launch.sh compares before using a snapshot: the folder the snapshot was built in and index.mjs's sha256.
function snapshotKey() {
  const sha = crypto.createHash("sha256").update(fs.readFileSync(path.join(HERE, "index.mjs"))).digest("hex");
  return `${HERE} ${sha}\n`;
}

// The release a request without a variant reads with (index.mjs's DEFAULT_RELEASE): its snapshot under "default".
function defaultSnapshot() {
  const m = /const DEFAULT_RELEASE = "([^"]+)";/.exec(fs.readFileSync(path.join(HERE, "index.mjs"), "utf8"));
  if (!m) throw new Error("index.mjs has no DEFAULT_RELEASE: launch.sh could not choose a snapshot");
  for (const ext of ["blob", "key"]) {
    const link = path.join(HERE, "node_modules", `.dicom4qi-snapshot-default.${ext}`);
    fs.rmSync(link, { force: true });
    if (fs.existsSync(path.join(HERE, "node_modules", `.dicom4qi-snapshot-${m[1]}.${ext}`))) fs.symlinkSync(`.dicom4qi-snapshot-${m[1]}.${ext}`, link);
  }
}
