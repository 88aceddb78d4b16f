#!/usr/bin/env node
// Setup step (run by `npm ci` as the package's `prepare` script): bundle each installed release's
// @cornerstonejs/core, @cornerstonejs/adapters and dcmjs, exactly as the release resolves them, into one ES module
// per release (node_modules/.dicom4qi-bundle-<release>.mjs) with esbuild. Loading the libraries' thousands of ESM
// files (with cornerstone tools and vtk.js) took about 3 s per read; the bundle loads in about 0.5 s. The code
// is the libraries' own, unminified; index.mjs falls back to the unbundled entry points when a bundle is missing.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
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
}
