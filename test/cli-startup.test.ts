// bin/lab.js starts the CLI from the one-file bundle (dist/lab.cjs) that `npm run build` makes, and
// falls back to the compiled modules when the bundle is older than them. Both must be the same program:
// same help, same errors, same exit codes, and the bundle must find the lab/ templates and bin/.
import assert from 'node:assert/strict';
import { cp, mkdir, rm, stat, symlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { execa } from 'execa';
import { labBin, repoRoot, tempDir } from './helpers/lab.js';

const compiledEntry = path.join(repoRoot, 'dist', 'src', 'main.js');
const bundle = path.join(repoRoot, 'dist', 'lab.cjs');

async function run(entry: string, args: string[]) {
  const result = await execa('node', [entry, ...args], { reject: false, env: { NO_COLOR: '1' } });
  return { exitCode: result.exitCode, stdout: result.stdout, stderr: result.stderr };
}

test('the build leaves a bundle and its code cache newer than the compiled modules', async () => {
  const [bundled, cache, compiled] = await Promise.all([stat(bundle), stat(`${bundle}.cache`), stat(compiledEntry)]);
  assert.ok(bundled.mtimeMs >= compiled.mtimeMs, 'dist/lab.cjs is older than dist/src/main.js: bin/lab.js would not use it');
  assert.ok(cache.size > 100_000, `the code cache is only ${cache.size} bytes`);
});

test('bin/lab.js (bundle) and dist/src/main.js (modules) answer alike: help, usage errors, lab errors', async () => {
  const labDir = await tempDir('pglab-test-startup-');
  try {
    for (const args of [
      ['--help'],
      ['stat', 'xact', '--help'],
      ['--lab-dir', labDir, 'status'],
      ['--lab-dir', labDir, 'master', 'start', '--port', 'seventy'],
      ['no-such-command'],
    ]) {
      const [fromBundle, fromModules] = await Promise.all([run(labBin, args), run(compiledEntry, args)]);
      assert.deepEqual(fromBundle, fromModules, `lab ${args.join(' ')}`);
    }
    const missing = await run(labBin, ['--lab-dir', labDir, 'status']);
    assert.equal(missing.exitCode, 5);
    assert.match(missing.stderr, /^lab: .*lab master start/m);
  } finally {
    await rm(labDir, { recursive: true, force: true });
  }
});

test('a bundle older than the compiled modules is not used (a bare tsc after an edit)', async () => {
  const root = await tempDir('pglab-test-stale-');
  try {
    // A copy of the package whose bundle throws when loaded: only the fallback can answer.
    await mkdir(path.join(root, 'dist'));
    await cp(path.join(repoRoot, 'dist', 'src'), path.join(root, 'dist', 'src'), { recursive: true });
    await cp(path.join(repoRoot, 'bin'), path.join(root, 'bin'), { recursive: true });
    await cp(path.join(repoRoot, 'package.json'), path.join(root, 'package.json'));
    await symlink(path.join(repoRoot, 'node_modules'), path.join(root, 'node_modules'));
    const staleBundle = path.join(root, 'dist', 'lab.cjs');
    await cp(path.join(repoRoot, 'test', 'fixtures', 'broken-bundle.cjs'), staleBundle);
    const past = new Date(Date.now() - 60_000);
    await utimes(staleBundle, past, past);
    const fallback = await run(path.join(root, 'bin', 'lab.js'), ['--help']);
    assert.equal(fallback.exitCode, 0, fallback.stderr);
    assert.match(fallback.stdout, /Usage: lab/);

    // The same broken bundle, newer than the modules, is used: proof that the age decides.
    const future = new Date(Date.now() + 60_000);
    await utimes(staleBundle, future, future);
    const used = await run(path.join(root, 'bin', 'lab.js'), ['--help']);
    assert.notEqual(used.exitCode, 0);
    assert.match(used.stderr, /broken bundle loaded/);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
