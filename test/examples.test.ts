// The package as a stranger's project installs it: `npm pack`, then examples/app-tests (node:test in plain
// JavaScript, vitest in TypeScript with `await using`, tsc against the shipped declarations) installs the
// tarball and runs against real servers (scripts/test-examples.sh). Also what the tarball holds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { repoRoot } from './helpers/lab.js';

test('npm pack: built code, declarations, templates, the native relay; no tests, sources or benches', async () => {
  const { stdout } = await execa('npm', ['pack', '--ignore-scripts', '--dry-run', '--json'], { cwd: repoRoot });
  const [pack] = JSON.parse(stdout) as { size: number; files: { path: string }[] }[];
  const files = pack!.files.map((f) => f.path);
  for (const wanted of ['package.json', 'bin/lab.js', 'dist/src/index.js', 'dist/index.d.ts', 'dist/lab.cjs', 'lab/postgresql.conf', 'lab/pg_hba.conf', 'dist/src/children/delay-relay.js', 'dist/src/children/datadir-copy-child.js']) {
    assert.ok(files.includes(wanted), `${wanted} is in the tarball`);
  }
  const unwanted = files.filter((f) => /^(src|test|bench|benchmarks|examples)\/|^dist\/(test|bench)\/|\.ts$(?<!\.d\.ts)|\.test\.js$/.test(f));
  assert.deepEqual(unwanted, [], 'no tests, TypeScript sources or benches');
  assert.ok(pack!.size < 1_500_000, `tarball ${pack!.size} bytes`);
  console.log(`# tarball: ${pack!.size} bytes, ${files.length} files`);
});

test('examples/app-tests passes from the packed tarball: node:test, vitest, tsc', async () => {
  const result = await execa('bash', ['scripts/test-examples.sh'], { cwd: repoRoot, reject: false, timeout: 900_000, all: true });
  assert.equal(result.exitCode, 0, String(result.all).slice(-4000));
  assert.match(String(result.all), /# pass 1/);
  assert.match(String(result.all), /Tests\s+.*1 passed/);
});
