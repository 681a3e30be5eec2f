// pglab's own base backup (issue 16): on PostgreSQL 15 forced to it (--base-backup pglab), a replica
// taken while a writer inserts and updates rows answers the same queries as its primary once it caught
// up; its replication slot lives on the primary exactly as long as the replica; a re-add makes a new one.
// On PostgreSQL 17 (embedded binaries: no pg_basebackup, no pg_rewind) a replica streams and a former
// primary is rebuilt from a new base backup in place of pg_rewind, said in one line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import pg from 'pg';
import { pollUntil } from '../src/common/poll.js';
import { labClientConfig, queryRows } from '../src/postgres/client.js';
import { ensureMajor, freePorts, lab, labJson, runLab, withTempLab } from './helpers/lab.js';

const PGBENCH = '/usr/lib/postgresql/15/bin/pgbench';

const CHECKS = [
  'SELECT count(*)::text AS n, coalesce(sum(id), 0)::text AS a, coalesce(sum(v), 0)::text AS b FROM during_backup',
  'SELECT count(*)::text AS n, sum(aid)::text AS a, sum(abalance)::text AS b FROM pgbench_accounts',
  'SELECT count(*)::text AS n, sum(bid)::text AS a, sum(bbalance)::text AS b FROM pgbench_branches',
  'SELECT count(*)::text AS n, sum(tid)::text AS a, sum(tbalance)::text AS b FROM pgbench_tellers',
];

async function answers(port: number): Promise<string[]> {
  const out: string[] = [];
  for (const sql of CHECKS) out.push(JSON.stringify((await queryRows({ port, connectTimeoutMs: 3000 }, sql))[0]));
  return out;
}

async function slots(port: number): Promise<{ slot_name: string; active: boolean }[]> {
  return queryRows<{ slot_name: string; active: boolean }>({ port }, 'SELECT slot_name, active FROM pg_replication_slots ORDER BY slot_name');
}

/** Inserts and updates until stopped (or 20 s / 20,000 rows): what the backup copies while it changes. */
function startWriter(port: number): { stop: () => Promise<number> } {
  let running = true;
  const done = (async () => {
    const client = new pg.Client(labClientConfig({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', ssl: false }));
    await client.connect();
    const until = Date.now() + 20_000;
    let rows = 0;
    try {
      while (running && rows < 20_000 && Date.now() < until) {
        rows += 1;
        await client.query('INSERT INTO during_backup (id, v) VALUES ($1, $2)', [rows, rows * 7]);
        await client.query('UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2', [rows, ((rows * 7919) % 500_000) + 1]);
      }
    } finally {
      await client.end();
    }
    return rows;
  })();
  return {
    stop: async () => {
      running = false;
      return done;
    },
  };
}

test('PostgreSQL 15, pglab\'s own base backup under writes: same answers on primary and replica; the slot lives as long as the replica', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1, r2] = await freePorts(3);
    await lab(labDir, '--pg', '15', 'master', 'start', '--port', String(m));
    await execa(PGBENCH, ['-i', '-s', '5', '-q', '-h', '127.0.0.1', '-p', String(m), '-U', 'postgres', 'postgres'], { env: { PGSSLMODE: 'disable' } });
    await queryRows({ port: m! }, 'CREATE TABLE during_backup (id int PRIMARY KEY, v int)');

    const writer = startWriter(m!);
    let rows: number;
    try {
      const added = await labJson(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1), '--base-backup', 'pglab');
      assert.equal(added.baseBackup, 'pglab');
      assert.equal(added.slot, 'pglab_replica1');
      assert.ok(added.backupKb > 50_000, `backup of ${added.backupKb} kB`);
    } finally {
      rows = await writer.stop();
    }
    assert.ok(rows > 0, 'the writer wrote during the backup');
    const expected = await answers(m!);
    const seen = await pollUntil(async () => {
      const got = await answers(r1!);
      return JSON.stringify(got) === JSON.stringify(expected) ? got : undefined;
    }, { timeoutMs: 30_000, intervalMs: 200, what: 'replica1 to answer as the primary does' }).catch(() => answers(r1!));
    assert.deepEqual(seen, expected);
    assert.deepEqual(await slots(m!), [{ slot_name: 'pglab_replica1', active: true }]);

    // A re-add rebuilds it through a new slot of the same name.
    const again = await labJson(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1), '--base-backup', 'pglab');
    assert.equal(again.rebuilt, true);
    assert.deepEqual(await slots(m!), [{ slot_name: 'pglab_replica1', active: true }]);
    // pg_basebackup on the same lab streams through the replica's slot as well.
    const other = await labJson(labDir, 'replica', 'add', 'replica2', path.join(labDir, 'replica2'), String(r2), '--base-backup', 'pg_basebackup');
    assert.equal(other.baseBackup, 'pg_basebackup');
    assert.deepEqual(await slots(m!), [{ slot_name: 'pglab_replica1', active: true }, { slot_name: 'pglab_replica2', active: true }]);

    const removed = await lab(labDir, 'replica', 'remove', 'replica1');
    assert.match(removed, /^replica replica1 removed: data dir .*replica1 removed, slot pglab_replica1 dropped$/m);
    assert.deepEqual(await slots(m!), [{ slot_name: 'pglab_replica2', active: true }]);
    await assert.rejects(access(path.join(labDir, 'replica1')));

    // A node of another major than the lab's master: refused in one line.
    const mismatch = await runLab(labDir, ['--pg', '11', 'replica', 'add', 'replica3', path.join(labDir, 'replica3'), String(r1)]);
    assert.equal(mismatch.exitCode, 3);
    assert.match(mismatch.stderr, /^lab: This lab's nodes run PostgreSQL 15 .*PostgreSQL 11 from --pg cannot replicate from them/);
    assert.equal(mismatch.stderr.trim().split('\n').length, 1);
  });
});

test('PostgreSQL 17 without pg_basebackup or pg_rewind: replicas stream, a former primary is rebuilt instead of rewound', async () => {
  await ensureMajor(17);
  await withTempLab(async (labDir) => {
    const [m, r1, r2] = await freePorts(3);
    await lab(labDir, '--pg', '17', 'master', 'start', '--port', String(m));
    await queryRows({ port: m! }, 'CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g');
    const added = await labJson(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1));
    assert.equal(added.baseBackup, 'pglab');
    await labJson(labDir, 'replica', 'add', 'replica2', path.join(labDir, 'replica2'), String(r2));
    assert.equal((await queryRows<{ n: string }>({ port: r1! }, 'SELECT count(*)::text AS n FROM t'))[0]!.n, '1000');

    await lab(labDir, 'node', 'kill', 'master1');
    await labJson(labDir, 'promote', 'replica1');
    await labJson(labDir, 'replica', 'follow', 'replica2'); // its slot is made on replica1 first
    const rewind = await runLab(labDir, ['node', 'rewind', 'master1']);
    assert.equal(rewind.exitCode, 0, rewind.stderr);
    assert.match(rewind.stdout.trim(), /^master1 rebuilt from a new base backup \(no pg_rewind for PostgreSQL 17 here.*\) and streaming from replica1, pid \d+/);
    assert.equal(rewind.stdout.trim().split('\n').length, 1);
    assert.deepEqual(await slots(r1!), [{ slot_name: 'pglab_master1', active: true }, { slot_name: 'pglab_replica2', active: true }]);
    const status = await labJson(labDir, 'status');
    assert.deepEqual(
      status.nodes.map((n: { name: string; replication: string; timeline: number }) => [n.name, n.replication, n.timeline]),
      [['master1', 'streaming', 2], ['replica1', 'primary', 2], ['replica2', 'streaming', 2]],
    );
  });
});
