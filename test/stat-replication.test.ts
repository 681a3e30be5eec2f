// `lab stat replication` against real labs on PostgreSQL 15 and 11: the seed's columns, the synthetic
// master row, one row per standby with lag, the master-down line, and a watch that outlives the master.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { freePorts, lab, labJson, withTempLab } from './helpers/lab.js';
import { parseBlock, parseBlocks, spawnLab, stopWatcher } from './helpers/stat-output.js';
import { pollUntil } from '../src/common/poll.js';
import type { ReplicationSample } from '../src/stats/replication-sample.js';

const SEED_HEADER = ['pid', 'name', 'addr', 'port', 'state', 'sent', 'write', 'flush', 'replay', 'pri', 'mode'];
const LSN = /^[0-9A-F]+\/[0-9A-F]+$/;

/** psql's look: headers centred in their column, the rule under them dashes joined by `+`. */
function assertPsqlLook(header: string, rule: string, whole: string): void {
  const segments = header.split('|');
  const dashes = rule.split('+');
  // Like psql, the header line carries no trailing spaces, so only the last column may differ.
  assert.deepEqual(dashes.slice(0, -1), segments.slice(0, -1).map((segment) => '-'.repeat(segment.length)), `rule under the header:\n${whole}`);
  assert.match(dashes.at(-1)!, new RegExp(`^-{${segments.at(-1)!.length},}$`));
  for (const segment of segments.slice(0, -1)) {
    const left = segment.length - segment.trimStart().length;
    const right = segment.length - segment.trimEnd().length;
    assert.ok(left >= 1 && Math.abs(left - right) <= 1, `header "${segment}" centred like psql's:\n${whole}`);
  }
}

async function assertReplicationTable(labDir: string, replicas: string[]): Promise<void> {
  const stdout = await lab(labDir, 'stat', 'replication');
  const block = parseBlock(stdout);
  assert.match(block.banner, /^\*{6} .+ \*{6}$/);
  assert.deepEqual(block.header, [...SEED_HEADER, 'lag_bytes', 'lag_time'], 'the seed\'s columns in its order, then lag');
  assertPsqlLook(stdout.split('\n')[1]!, stdout.split('\n')[2]!, stdout);
  const [master, ...standbys] = block.rows;
  assert.equal(master!.state, 'local');
  assert.equal(master!.mode, 'master');
  assert.match(master!.sent!, LSN);
  assert.match(master!.write!, LSN);
  assert.deepEqual([master!.pid, master!.name, master!.flush, master!.replay, master!.pri], ['', '', '', '', '']);
  assert.deepEqual(standbys.map((r) => r.name), replicas);
  for (const row of standbys) {
    assert.match(row.pid!, /^\d+$/);
    assert.equal(row.addr, '127.0.0.1');
    assert.equal(row.state, 'streaming');
    for (const lsn of [row.sent, row.write, row.flush, row.replay]) assert.match(lsn!, LSN);
    assert.equal(row.pri, '0');
    assert.equal(row.mode, 'async');
    assert.match(row.lag_bytes!, /^\d+$/);
  }
}

test('lab stat replication on PostgreSQL 15: seed table, JSON, master down, watch outlives it', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1, r2] = await freePorts(3);
    await lab(labDir, 'master', 'start', '--port', String(m));
    await lab(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1));
    await lab(labDir, 'replica', 'add', 'replica2', path.join(labDir, 'replica2'), String(r2));
    await assertReplicationTable(labDir, ['replica1', 'replica2']);

    const sample = await labJson<ReplicationSample>(labDir, 'stat', 'replication');
    assert.deepEqual([sample.up, sample.reason, sample.master], [true, null, { name: 'master1', port: m }]);
    assert.deepEqual(Object.keys(sample.rows[1]!).sort(), ['addr', 'flush', 'lagBytes', 'lagSeconds', 'mode', 'name', 'pid', 'port', 'pri', 'replay', 'sent', 'state', 'write']);
    assert.equal(typeof sample.rows[1]!.lagBytes, 'number');

    const watcher = spawnLab(labDir, ['stat', 'replication', '--watch', '0.3', '--count', '400']);
    try {
      await pollUntil(async () => (parseBlocks(watcher.output()).length >= 1 ? true : undefined), { timeoutMs: 10_000, what: 'a first sample' });
      await lab(labDir, 'node', 'kill', 'replica2');
      await pollUntil(
        async () => {
          const last = parseBlocks(watcher.output()).at(-1)!;
          return last.rows.map((r) => r.name).join(',') === ',replica1' ? true : undefined;
        },
        { timeoutMs: 30_000, what: 'replica2 gone from pg_stat_replication' },
      );
      await lab(labDir, 'node', 'stop', 'master1');
      const downLine = `master master1 (port ${m}) is DOWN: connection refused (stopped)`;
      await pollUntil(async () => (watcher.output().includes(downLine) ? true : undefined), { timeoutMs: 10_000, what: 'the master-down line' });
      await lab(labDir, 'node', 'start', 'master1');
      await pollUntil(
        async () => {
          const last = parseBlocks(watcher.output()).at(-1)!;
          return last.rows[0]?.mode === 'master' ? true : undefined;
        },
        { timeoutMs: 10_000, what: 'the table again after the master came back' },
      );
      assert.equal(watcher.child.exitCode, null, 'the watch is still running');
      watcher.child.kill('SIGINT');
      assert.equal((await watcher.child).exitCode, 0);
    } finally {
      await stopWatcher(watcher);
    }

    const down = await labJson<ReplicationSample>(labDir, 'stat', 'replication');
    assert.equal(down.up, true);
    await lab(labDir, 'node', 'kill', 'master1');
    const crashed = await labJson<ReplicationSample>(labDir, 'stat', 'replication');
    assert.deepEqual([crashed.up, crashed.reason, crashed.rows], [false, 'connection refused (crashed)', []]);
  });
});

test('lab stat replication on PostgreSQL 11 (pre-12 names, recovery.conf replicas)', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1, r2] = await freePorts(3);
    const started = await labJson(labDir, '--pg', '11', 'master', 'start', '--port', String(m));
    assert.match(started.version, /^11\./);
    await lab(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1));
    await lab(labDir, 'replica', 'add', 'replica2', path.join(labDir, 'replica2'), String(r2));
    await assertReplicationTable(labDir, ['replica1', 'replica2']);
    const xact = parseBlock(await lab(labDir, 'stat', 'xact'));
    assert.deepEqual(xact.rows.map((r) => r.status), ['up', 'up', 'up']);
  });
});
