// benchmarks/faults.ts in its short form (one round, a paused replica, short holds): the JSON has figures for
// the three engines, the built-in balancer's DOWN and UP are within issue 17's goals, and nothing of the
// bench's lab is left (its own check, and no namespace of its lab's index: other labs may come and go).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { repoRoot, tempDir } from './helpers/lab.js';

const namespaces = async (): Promise<string[]> => String((await execa('ip', ['netns', 'list'])).stdout).split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith('pglab-'));

test('benchmarks/faults.js --short: three engines measured, the built-in meets every goal on a paused replica (DOWN 1.5 s, wait 1.9 s, 0 savable errors, UP 2 s), nothing left', { timeout: 120_000 }, async () => {
  const dir = await tempDir('pglab-test-bench-faults-');
  const file = path.join(dir, 'faults.json');
  const run = await execa('node', [path.join(repoRoot, 'dist', 'benchmarks', 'faults.js'), '--short', '--json', file], { reject: false, timeout: 110_000, env: { NO_COLOR: '1' } });
  const output = `${run.stdout}\n${run.stderr}`;
  assert.equal(run.exitCode, 0, output);
  const figures = JSON.parse(await readFile(file, 'utf8'));
  assert.deepEqual(figures.faults, ['pause'], output);
  assert.equal(figures.rounds, 1);
  const pause = figures.results.pause;
  for (const engine of ['builtin', 'haproxy-seed', 'haproxy-lab']) {
    assert.equal(pause[engine]?.rounds?.length, 1, `${engine} measured: ${output}`);
    const r = pause[engine].rounds[0];
    assert.ok(r.reads > 20, `${engine} readers read: ${output}`);
    assert.ok(typeof r.max_wait_ms === 'number' && typeof r.savable_errors === 'number', `${engine} figures: ${output}`);
  }
  const builtin = pause.builtin.rounds[0];
  assert.ok(builtin.down_ms !== null && builtin.down_ms <= figures.goals.down_ms, `built-in DOWN within 1.5 s: ${output}`);
  assert.ok(builtin.up_ms !== null && builtin.up_ms <= figures.goals.up_ms, `built-in UP within 2 s: ${output}`);
  // A paused replica's sessions with a query in flight end one check timeout after DOWN (the check finds its backends silent).
  assert.ok(builtin.max_wait_ms <= figures.goals.wait_ms, `built-in: no reader waited over DOWN goal + one check timeout: ${output}`);
  assert.equal(builtin.savable_errors, 0, `built-in: no error another replica could have saved: ${output}`);
  assert.equal(pause.builtin.goals.down && pause.builtin.goals.up && pause.builtin.goals.wait && pause.builtin.goals.savable, true, output);
  assert.deepEqual(figures.leftovers, [], output);
  assert.match(run.stdout, /\| builtin \|/);
  assert.ok(Number.isInteger(figures.hosts_index), output);
  assert.deepEqual((await namespaces()).filter((n) => n.startsWith(`pglab-${figures.hosts_index}-`)), [], 'no namespace of the bench\'s lab left');
  await execa('rm', ['-rf', dir]);
});
