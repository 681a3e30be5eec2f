// `lab stat xact` against a real lab: the seed's columns, a killed replica keeping its row with the
// reason while the others keep counting, the row coming back after `replica add`, tps and JSON.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { execa } from 'execa';
import { freePorts, lab, labBin, labJson, runLab, withTempLab } from './helpers/lab.js';
import { parseBlock, parseBlocks, spawnLab, stopWatcher } from './helpers/stat-output.js';
import { pollUntil } from '../src/common/poll.js';
import type { XactSample } from '../src/stats/xact-sample.js';

const SEED_HEADER = ['port', 'datname', 'numbackends', 'xact_commit', 'xact_rollback'];
const BANNER = /^\*{6} \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \S+ \d{4} \*{6}$/;

test('lab stat xact: seed columns, a killed replica keeps its row with the reason, others keep updating, it comes back', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1, r2] = await freePorts(3);
    await lab(labDir, 'master', 'start', '--port', String(m));
    await lab(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1));
    await lab(labDir, 'replica', 'add', 'replica2', path.join(labDir, 'replica2'), String(r2));

    const once = parseBlock(await lab(labDir, 'stat', 'xact'));
    assert.match(once.banner, BANNER);
    assert.deepEqual(once.header.slice(0, 5), SEED_HEADER, 'the seed\'s columns first, in its order');
    assert.deepEqual(once.header.slice(5), ['node', 'status'], 'no tps column without --watch');
    assert.deepEqual(once.rows.map((r) => Number(r.port)), [m, r1, r2].sort((a, b) => a - b), 'one row per node, in port order');
    for (const row of once.rows) {
      assert.equal(row.datname, 'postgres');
      assert.equal(row.status, 'up');
      assert.ok(Number(row.numbackends) >= 1 && Number(row.xact_commit) > 0);
    }

    const watcher = spawnLab(labDir, ['stat', 'xact', '--watch', '0.5', '--count', '240']);
    try {
      const blocks = () => parseBlocks(watcher.output());
      const row = (block: ReturnType<typeof parseBlock>, name: string) => block.rows.find((r) => r.node === name);
      await pollUntil(async () => (blocks().length >= 2 ? true : undefined), { timeoutMs: 15_000, what: 'two samples from the watcher' });
      assert.deepEqual(blocks()[1]!.header, [...SEED_HEADER, 'tps', 'node', 'status'], 'tps appears in --watch mode');
      assert.match(row(blocks()[1]!, 'replica1')!.tps!, /^\d+\.\d$/);

      await lab(labDir, 'node', 'kill', 'replica2');
      const downAt = await pollUntil(
        async () => {
          const index = blocks().findIndex((b) => row(b, 'replica2')?.status.startsWith('DOWN'));
          return index >= 0 ? index : undefined;
        },
        { timeoutMs: 15_000, what: 'replica2 marked DOWN in the watch' },
      );
      const down = row(blocks()[downAt]!, 'replica2')!;
      assert.equal(down.status, 'DOWN: connection refused (crashed)');
      assert.equal(Number(down.port), r2, 'the down row keeps its port');
      assert.equal(down.xact_commit, '');
      // Other rows keep updating while replica2 is down.
      await pollUntil(async () => (blocks().length >= downAt + 3 ? true : undefined), { timeoutMs: 15_000, what: 'two more samples after the kill' });
      const later = blocks()[downAt + 2]!;
      assert.equal(row(later, 'replica2')!.status, 'DOWN: connection refused (crashed)');
      assert.ok(Number(row(later, 'replica1')!.xact_commit) > Number(row(blocks()[downAt]!, 'replica1')!.xact_commit), 'replica1 keeps counting');
      assert.equal(row(later, 'master1')!.status, 'up');

      await lab(labDir, 'replica', 'add', 'replica2', path.join(labDir, 'replica2'), String(r2));
      await pollUntil(async () => (row(blocks().at(-1)!, 'replica2')?.status === 'up' ? true : undefined), {
        timeoutMs: 15_000,
        what: 'replica2 back up in the watch',
      });
      assert.equal(row(blocks().at(-1)!, 'replica2')!.datname, 'postgres');

      // Ctrl-C ends the watch cleanly.
      watcher.child.kill('SIGINT');
      const result = await watcher.child;
      assert.equal(result.exitCode, 0, `exit after SIGINT: ${result.exitCode} ${String(result.stderr)}`);
      assert.equal(String(result.stderr), '');
    } finally {
      await stopWatcher(watcher);
    }

    // JSON: one document; with --watch one line per sample; --count stops the watch.
    const sample = await labJson<XactSample>(labDir, 'stat', 'xact');
    assert.equal(sample.dbname, 'postgres');
    assert.ok(!Number.isNaN(Date.parse(sample.at)));
    assert.deepEqual(Object.keys(sample.rows[0]!).sort(), ['datname', 'faults', 'labState', 'node', 'numbackends', 'port', 'reason', 'role', 'tps', 'up', 'xactCommit', 'xactRollback']);
    await lab(labDir, 'node', 'stop', 'replica1');
    const lines = (await lab(labDir, 'stat', 'xact', '--watch', '0.3', '--count', '3', '--json')).trim().split('\n');
    assert.equal(lines.length, 3);
    const samples = lines.map((line) => JSON.parse(line) as XactSample);
    assert.equal(samples[0]!.rows.find((r) => r.node === 'master1')!.tps, null, 'no rate on the first sample');
    assert.equal(typeof samples[2]!.rows.find((r) => r.node === 'master1')!.tps, 'number');
    const stopped = samples[2]!.rows.find((r) => r.node === 'replica1')!;
    assert.deepEqual([stopped.up, stopped.reason, stopped.labState], [false, 'connection refused (stopped)', 'stopped']);

    // On a terminal (script(1) gives the CLI a pty): redraw in place, DOWN in red unless NO_COLOR.
    const onTty = async (env: Record<string, string>) => {
      const command = `node ${labBin} --lab-dir ${labDir} stat xact --watch 0.2 --count 2`;
      const result = await execa('script', ['-qec', command, '/dev/null'], { env, extendEnv: false, reject: false, timeout: 30_000 });
      assert.equal(result.exitCode, 0, String(result.stderr));
      return String(result.stdout);
    };
    const coloured = await onTty({ PATH: process.env.PATH ?? '' });
    assert.equal(coloured.split('\x1b[H\x1b[2J').length - 1, 2, 'each sample clears the screen and homes the cursor');
    assert.ok(coloured.includes('\x1b[31mDOWN: connection refused (stopped)\x1b[39m'), 'DOWN in red on a terminal');
    const plain = await onTty({ PATH: process.env.PATH ?? '', NO_COLOR: '1' });
    assert.ok(plain.includes('DOWN: connection refused (stopped)') && !plain.includes('\x1b[31m'), 'NO_COLOR: no colour');
    const piped = await runLab(labDir, ['stat', 'xact'], { env: {} });
    assert.ok(!piped.stdout.includes('\x1b['), 'no escape codes when piped');

    // A frozen postmaster (SIGSTOP) accepts TCP but never answers: its row says so within the bound,
    // and the other nodes' rows are not held up.
    const status = await labJson<{ nodes: { name: string; pid: number | null }[] }>(labDir, 'status');
    const frozenPid = status.nodes.find((n) => n.name === 'replica2')!.pid!;
    process.kill(frozenPid, 'SIGSTOP');
    try {
      const started = Date.now();
      const frozen = await labJson<XactSample>(labDir, 'stat', 'xact');
      const elapsed = Date.now() - started;
      const row = frozen.rows.find((r) => r.node === 'replica2')!;
      assert.deepEqual([row.up, row.reason, row.labState], [false, 'not answering: no answer within 1s', 'running']);
      assert.equal(frozen.rows.find((r) => r.node === 'master1')!.up, true);
      assert.ok(elapsed < 4000, `one frozen node costs about the 1 s bound, took ${elapsed} ms`);
    } finally {
      process.kill(frozenPid, 'SIGCONT');
    }

    const other = await runLab(labDir, ['stat', 'xact', '--dbname', 'nosuchdb']);
    assert.equal(other.exitCode, 0);
    assert.match(parseBlock(other.stdout).rows.find((r) => r.node === 'master1')!.status, /DOWN: database "nosuchdb" does not exist/);
  });
});
