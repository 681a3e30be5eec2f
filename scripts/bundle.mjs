#!/usr/bin/env node
// Makes dist/lab.cjs (the CLI in one file) and dist/lab.cjs.cache (V8's compiled code for it), which
// bin/lab.js loads instead of ~50 separate modules: a new `lab` process starts ~50 ms sooner (measured
// by benchmarks/stat-xact.ts). Runs after tsc, from the compiled dist/src, so the bundle is the same code.
//   node scripts/bundle.mjs
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { build } from 'esbuild';
// The compiled modules tsc just wrote: the bundle is made from them anyway.
import { findFreePort } from '../dist/src/common/ports.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outfile = path.join(root, 'dist', 'lab.cjs');

await rm(`${outfile}.cache`, { force: true });
const result = await build({
  entryPoints: [path.join(root, 'dist', 'src', 'bundle-entry.js')],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // testcontainers (dockerode, ssh2 and their optional native parts) is loaded from node_modules when a
  // docker command needs it; pg-native is pg's optional native driver, which we do not use.
  external: ['testcontainers', 'pg-native'],
  // import.meta.url is the bundle's own URL; src/common/package-root.ts walks up from there.
  define: { 'import.meta.url': '__bundle_url' },
  banner: { js: 'const __bundle_url = require("node:url").pathToFileURL(__filename).href;' },
  // Whitespace and syntax only: names stay, so an internal error's stack trace still reads.
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
});
if (result.errors.length > 0 || result.warnings.length > 0) process.exit(1);

// V8's cache holds the functions compiled while the bundle ran, so let it run a typical command: one
// sample of `lab stat xact` on a throwaway lab whose one node is down (a closed port, no data dir).
const warmLab = await mkdtemp(path.join(tmpdir(), 'pglab-bundle-'));
try {
  const closedPort = await findFreePort();
  const now = new Date().toISOString();
  await writeFile(path.join(warmLab, 'lab.json'), JSON.stringify({
    format: 1, labId: 'bundle-warm-up', createdAt: now, labDirCreated: false,
    pg: { bindir: '/nonexistent', version: '15', major: 15 }, dbUser: 'postgres', balancers: [],
    nodes: [{ name: 'master1', role: 'primary', port: closedPort, datadir: path.join(warmLab, 'master1'), datadirCreated: false, phase: 'ready', expected: 'running', createdAt: now }],
  }));
  execFileSync(process.execPath, [path.join(root, 'bin', 'lab.js'), '--lab-dir', warmLab, 'stat', 'xact'], {
    env: { ...process.env, PGLAB_WRITE_CODE_CACHE: '1' },
    stdio: 'ignore',
  });
} finally {
  await rm(warmLab, { recursive: true, force: true });
}
console.log(`bundled ${path.relative(root, outfile)} (+ .cache)`);
