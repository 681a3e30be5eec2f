#!/usr/bin/env node
// Builds the balancer's kernel relay (src/balancer/native/*.c) into dist/native/kernel-relay.node, with
// the C compiler and Node's own headers (Node-API and libuv). Two C files need no node-gyp (and no
// python); what it would add here is only its own configuration step. Without a compiler or headers it
// says so and exits 0: the balancer then relays through Node sockets (`lab balancer start` says why).
//   node scripts/build-native.mjs
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sourceDir = path.join(root, 'src', 'balancer', 'native');
const output = path.join(root, 'dist', 'native', 'kernel-relay.node');
const headerDirs = [process.env.npm_config_nodedir, path.resolve(path.dirname(process.execPath), '..')]
  .filter(Boolean)
  .map((dir) => path.join(dir, 'include', 'node'));
const headers = headerDirs.find((dir) => existsSync(path.join(dir, 'node_api.h')) && existsSync(path.join(dir, 'uv.h')));

function skip(why) {
  console.error(`build-native: kernel relay not built: ${why}; the balancer will relay through Node sockets`);
  process.exit(0);
}

if (process.platform !== 'linux') skip('it needs Linux');
if (!headers) skip(`Node's headers (node_api.h, uv.h) are not in ${headerDirs.join(' or ')}`);
const sources = readdirSync(sourceDir).filter((f) => f.endsWith('.c')).map((f) => path.join(sourceDir, f));
mkdirSync(path.dirname(output), { recursive: true });
try {
  execFileSync(process.env.CC || 'cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC', `-I${headers}`, ...sources, '-o', output], { stdio: 'inherit' });
} catch (error) {
  skip(`the C compiler failed (${error.message.split('\n')[0]})`);
}
