#!/usr/bin/env node
// Checks the shape of src/: no import cycles, and no import from a lower layer up to a higher one.
// Reads every src/**/*.ts, resolves its relative imports (`import ... from`, `import '...'`,
// `export ... from`, dynamic `import('...')`) and prints one line per violation, exit 1; or
// `imports ok: N files, M relative imports`, exit 0. Plain Node, no dependency: run it as
// `npm run check:imports` or `node scripts/check-imports.mjs [root]` (root: the checkout, default
// this script's parent folder).
import { readdirSync, readFileSync, existsSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

// The layers, lowest first. A file may import from its own layer or any layer below it, never from
// one above. The order follows what each folder needs to know about:
//   0 common                    helpers that know nothing of PostgreSQL, labs or the CLI
//   1 postgres, network         one server (binaries, data dirs, config, clients); the host's
//                               network (addresses, bridge, namespaces, iptables, relays)
//   2 lab                       a lab on disk: its state, names, access, the faults it records
//   3 runtime                   where nodes run: processes on this host or Docker containers
//   4 balancer, haproxy, stats, workload, bench, report
//                               things that run against a lab's nodes
//   5 commands                  one function per CLI verb, returning data (no printing)
//   6 api                       the library (import { Lab } from 'pglab'), built on commands
//   7 drills                    the drills, which narrate and drive labs through the library
//   8 cli, children, entry      the CLI program; child-process entry points (`node <file>`);
//                               src/index.ts, main.ts, bundle-entry.ts, node-compat.ts
const LAYERS = [
  ['common'],
  ['postgres', 'network'],
  ['lab'],
  ['runtime'],
  ['balancer', 'haproxy', 'stats', 'workload', 'bench', 'report'],
  ['commands'],
  ['api'],
  ['drills'],
  ['cli', 'children', '.'],
];

// Layers that must skip one below them: the drills drive labs through the library (src/api), as a
// user's program does, never through the commands under it.
const SKIPS = [{ from: 'drills', not: 'commands', why: 'the drills drive labs through the library (src/api/)' }];

// Type-only imports (`import type`, `export type ... from`, `import { type A }` with every name
// typed, `typeof import('...')`) leave no trace in the JavaScript, so they cannot make a load-order
// cycle. Still, a lower layer that names a higher layer's types depends on it; we allow none.
const ALLOW_TYPE_ONLY_UPWARD = false;
const ALLOW_TYPE_ONLY_CYCLES = false;
// No exceptions: the library's LabNode and Balancer depend on the LabCore interface (src/api/core.ts), not
// on the Lab class that makes them.
const TYPE_ONLY_CYCLE_EXCEPTIONS = [];

const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..'));
const srcDir = join(root, 'src');

function listTs(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listTs(path));
    else if (entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

// Blanks out comments, keeping strings (import specifiers are strings) and line numbers.
function stripComments(text) {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    const next = text[i + 1];
    if (c === '/' && next === '/') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (c === '/' && next === '*') {
      const end = text.indexOf('*/', i + 2);
      const stop = end < 0 ? text.length : end + 2;
      out += text.slice(i, stop).replace(/[^\n]/g, ' ');
      i = stop;
    } else if (c === "'" || c === '"' || c === '`') {
      let j = i + 1;
      while (j < text.length && text[j] !== c) {
        if (text[j] === '\\') j++;
        else if (c !== '`' && text[j] === '\n') break;
        j++;
      }
      out += text.slice(i, j + 1);
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

function lineOf(text, index) {
  let line = 1;
  for (let k = 0; k < index; k++) if (text.charCodeAt(k) === 10) line++;
  return line;
}

// Every import-like specifier of a file: { spec, line, typeOnly, kind }.
function importsOf(text) {
  const code = stripComments(text);
  const found = [];
  const staticRe = /(?:^|[;\n}])\s*(import|export)\s+(type\s+)?([\w*{}\s,$]*?)\s*from\s*(['"])([^'"\n]+)\4/g;
  for (const m of code.matchAll(staticRe)) {
    const clause = m[3] ?? '';
    let typeOnly = Boolean(m[2]);
    const braces = clause.match(/^\s*\{([^}]*)\}\s*$/);
    if (!typeOnly && braces) {
      const names = braces[1].split(',').map((s) => s.trim()).filter(Boolean);
      typeOnly = names.length > 0 && names.every((n) => n.startsWith('type '));
    }
    found.push({ spec: m[5], index: m.index + m[0].indexOf(m[1]), typeOnly, kind: m[1] });
  }
  const bareRe = /(?:^|[;\n}])\s*import\s*(['"])([^'"\n]+)\1/g;
  for (const m of code.matchAll(bareRe)) found.push({ spec: m[2], index: m.index + m[0].indexOf('import'), typeOnly: false, kind: 'import' });
  const dynamicRe = /(typeof\s+)?\bimport\s*\(\s*(['"`])([^'"`\n]+)\2\s*\)/g;
  for (const m of code.matchAll(dynamicRe)) found.push({ spec: m[3], index: m.index, typeOnly: Boolean(m[1]), kind: 'import()' });
  return found.map((f) => ({ ...f, line: lineOf(code, f.index) }));
}

function resolveSpec(fromFile, spec) {
  const base = resolve(dirname(fromFile), spec);
  const candidates = [base, base.replace(/\.(m|c)?js$/, '.$1ts'), base + '.ts', join(base, 'index.ts')];
  for (const c of candidates) if (c.endsWith('.ts') && existsSync(c) && statSync(c).isFile()) return c;
  return undefined;
}

const rel = (file) => relative(root, file).split(sep).join('/');

function layerOf(file) {
  const parts = relative(srcDir, file).split(sep);
  const top = parts.length === 1 ? '.' : parts[0];
  const rank = LAYERS.findIndex((names) => names.includes(top));
  return { top, rank };
}

const files = existsSync(srcDir) ? listTs(srcDir).sort() : [];
const problems = [];
const edges = new Map(); // file -> [{ to, typeOnly, line }]
let relativeCount = 0;

for (const file of files) {
  const list = [];
  for (const imp of importsOf(readFileSync(file, 'utf8'))) {
    if (!imp.spec.startsWith('.')) continue;
    relativeCount++;
    const to = resolveSpec(file, imp.spec);
    if (!to) {
      problems.push(`unresolved: ${rel(file)}:${imp.line} imports '${imp.spec}'`);
      continue;
    }
    if (!to.startsWith(srcDir + sep)) {
      problems.push(`outside src: ${rel(file)}:${imp.line} imports ${rel(to)}`);
      continue;
    }
    list.push({ to, typeOnly: imp.typeOnly, line: imp.line, kind: imp.kind });
  }
  edges.set(file, list);
}

// (b) upward imports, and files in no layer.
for (const file of files) {
  const from = layerOf(file);
  if (from.rank < 0) problems.push(`no layer: ${rel(file)} (folder src/${from.top}/ is not in LAYERS of scripts/check-imports.mjs)`);
  for (const e of edges.get(file)) {
    const to = layerOf(e.to);
    if (from.rank < 0 || to.rank < 0 || to.rank <= from.rank) continue;
    if (e.typeOnly && ALLOW_TYPE_ONLY_UPWARD) continue;
    problems.push(
      `upward: ${rel(file)}:${e.line} (${from.top}, layer ${from.rank}) imports ${rel(e.to)} (${to.top}, layer ${to.rank})` +
        (e.typeOnly ? ' [type only]' : e.kind === 'import()' ? ' [dynamic]' : ''),
    );
  }
}

// (c) imports a layer must skip.
for (const file of files) {
  const from = layerOf(file);
  for (const e of edges.get(file)) {
    const skip = SKIPS.find((s) => s.from === from.top && s.not === layerOf(e.to).top);
    if (skip) problems.push(`skipped layer: ${rel(file)}:${e.line} imports ${rel(e.to)}: ${skip.why}`);
  }
}

// (a) cycles: self-imports, and strongly connected components of more than one file (Tarjan).
const graph = new Map();
for (const [file, list] of edges) {
  const excepted = (e) => e.typeOnly && TYPE_ONLY_CYCLE_EXCEPTIONS.includes(rel(file)) && TYPE_ONLY_CYCLE_EXCEPTIONS.includes(rel(e.to));
  graph.set(file, [...new Set(list.filter((e) => !(e.typeOnly && ALLOW_TYPE_ONLY_CYCLES) && !excepted(e)).map((e) => e.to))]);
}
for (const [file, tos] of graph) if (tos.includes(file)) problems.push(`cycle: ${rel(file)} imports itself`);

let counter = 0;
const index = new Map();
const low = new Map();
const onStack = new Set();
const stack = [];
const components = [];
function strongConnect(v) {
  // Iterative Tarjan, so a deep import chain cannot overflow the call stack.
  const work = [[v, 0]];
  index.set(v, counter);
  low.set(v, counter);
  counter++;
  stack.push(v);
  onStack.add(v);
  while (work.length > 0) {
    const frame = work[work.length - 1];
    const [node, i] = frame;
    const succ = graph.get(node) ?? [];
    if (i < succ.length) {
      frame[1]++;
      const w = succ[i];
      if (!index.has(w)) {
        index.set(w, counter);
        low.set(w, counter);
        counter++;
        stack.push(w);
        onStack.add(w);
        work.push([w, 0]);
      } else if (onStack.has(w)) {
        low.set(node, Math.min(low.get(node), index.get(w)));
      }
      continue;
    }
    work.pop();
    if (work.length > 0) {
      const parent = work[work.length - 1][0];
      low.set(parent, Math.min(low.get(parent), low.get(node)));
    }
    if (low.get(node) === index.get(node)) {
      const component = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        component.push(w);
      } while (w !== node);
      if (component.length > 1) components.push(component);
    }
  }
}
for (const file of graph.keys()) if (!index.has(file)) strongConnect(file);
for (const component of components) {
  const members = new Set(component);
  const inside = component
    .sort()
    .flatMap((f) => edges.get(f).filter((e) => members.has(e.to)).map((e) => `${rel(f)}:${e.line} -> ${rel(e.to)}${e.kind === 'import()' ? ' [dynamic]' : ''}${e.typeOnly ? ' [type only]' : ''}`));
  problems.push(`cycle: ${component.length} files: ${inside.join('; ')}`);
}

if (problems.length > 0) {
  for (const p of problems) console.log(p);
  process.exit(1);
}
console.log(`imports ok: ${files.length} files, ${relativeCount} relative imports`);
