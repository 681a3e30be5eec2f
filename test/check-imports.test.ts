// The source tree's shape: scripts/check-imports.mjs finds no import cycle and no import from a lower
// layer up to a higher one in src/ (the layers are listed in the script). Also checks the checker
// on a small made-up tree, so a passing run means something.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// dist/test/check-imports.test.js -> the checkout.
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const script = join(root, 'scripts', 'check-imports.mjs');

test('src/ has no import cycle and no upward import', () => {
  const run = spawnSync(process.execPath, [script], { cwd: root, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /^imports ok: \d+ files, \d+ relative imports\n$/);
});

test('the checker reports a cycle, a dynamic-import cycle, an upward import and a drill that skips the library', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pglab-check-imports-'));
  try {
    const put = (path: string, text: string) => {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    };
    put('src/common/a.ts', "import { b } from './b.js';\nexport const a = () => b;\n");
    put('src/common/b.ts', "// import { nothing } from './gone.js';\nexport const b = async () => (await import('./a.js')).a;\n");
    put('src/postgres/run.ts', "import {\n  x,\n} from '../lab/x.js';\nexport const y = x;\n");
    put('src/lab/x.ts', "export const x = 1;\n");
    put('src/commands/kill.ts', "export const kill = 1;\n");
    put('src/api/lab.ts', "import { kill } from '../commands/kill.js';\nexport const lab = kill;\n");
    put('src/drills/failover.ts', "import { lab } from '../api/lab.js';\nimport { kill } from '../commands/kill.js';\nexport const drill = lab + kill;\n");
    const run = spawnSync(process.execPath, [script, dir], { encoding: 'utf8' });
    assert.equal(run.status, 1, run.stdout + run.stderr);
    const lines = run.stdout.trim().split('\n');
    assert.equal(lines.length, 3, run.stdout);
    assert.match(run.stdout, /^skipped layer: src\/drills\/failover\.ts:2 imports src\/commands\/kill\.ts: the drills drive labs through the library \(src\/api\/\)$/m);
    assert.match(run.stdout, /^upward: src\/postgres\/run\.ts:1 \(postgres, layer 1\) imports src\/lab\/x\.ts \(lab, layer 2\)$/m);
    assert.match(run.stdout, /^cycle: 2 files: src\/common\/a\.ts:1 -> src\/common\/b\.ts; src\/common\/b\.ts:2 -> src\/common\/a\.ts \[dynamic\]$/m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
