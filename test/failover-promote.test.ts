// Primary failover on PostgreSQL 15: kill -9 the master, promote a replica, re-point the other one,
// pg_rewind the old master back as a standby; and every refusal PostgreSQL would make, as one line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { queryRows } from '../src/postgres/client.js';
import { pollUntil } from '../src/common/poll.js';
import { freePorts, lab, labJson, runLab, withTempLab, type CliResult } from './helpers/lab.js';

interface StatusJson {
  nodes: { name: string; role: string; status: string; replication: string | null; serverRole: string | null; timeline: number | null; rewindNeeded: boolean }[];
  warnings: string[];
}

function assertRefused(result: CliResult, pattern: RegExp, exitCode = 6): void {
  assert.equal(result.exitCode, exitCode, `expected exit ${exitCode}, got ${result.exitCode}: ${result.stderr}`);
  const lines = result.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${result.stderr}`);
  assert.match(lines[0]!, pattern);
}

const count = async (port: number) => Number((await queryRows<{ n: string }>({ port }, 'SELECT count(*) AS n FROM t'))[0]!.n);

test('PostgreSQL 15: kill -9 the master, promote, follow, rewind; refusals in one line', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1, r2] = await freePorts(3);
    await lab(labDir, 'master', 'start', '--port', String(m));
    await lab(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1));
    await lab(labDir, 'replica', 'add', 'replica2', path.join(labDir, 'replica2'), String(r2));
    await queryRows({ port: m! }, 'CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 1000)');

    assertRefused(await runLab(labDir, ['promote', 'replica1']), /primary "master1" is still running.*two primaries.*lab node stop master1/);
    assertRefused(await runLab(labDir, ['promote', 'master1']), /already the lab's primary/);
    assertRefused(await runLab(labDir, ['node', 'rewind', 'master1']), /lab's current primary: pg_rewind would throw its data away/);
    assertRefused(await runLab(labDir, ['replica', 'follow', 'replica2', '--primary', 'replica1']), /"replica1" is not a primary \(it is in recovery\)/);

    await lab(labDir, 'node', 'kill', 'master1');
    // Promote the replica that received the most WAL (the other may be a few records ahead otherwise,
    // and could then not follow without a rewind).
    const received = async (port: number) =>
      (await queryRows<{ b: string }>({ port }, "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint AS b"))[0]!.b;
    const ahead = BigInt(await received(r2!)) > BigInt(await received(r1!));
    const [winner, other] = ahead ? ['replica2', 'replica1'] : ['replica1', 'replica2'];
    const [winnerPort, otherPort] = ahead ? [r2!, r1!] : [r1!, r2!];

    const promoted = await labJson(labDir, 'promote', winner);
    assert.equal(promoted.previousPrimary, 'master1');
    assert.equal(promoted.timeline, 2);
    assert.equal((await queryRows<{ r: boolean }>({ port: winnerPort }, 'SELECT pg_is_in_recovery() AS r'))[0]!.r, false);

    let status = await labJson<StatusJson>(labDir, 'status');
    const byName = (name: string) => status.nodes.find((n) => n.name === name)!;
    assert.equal(byName(winner).role, 'primary');
    assert.equal(byName(winner).serverRole, 'primary');
    assert.equal(byName('master1').role, 'replica');
    assert.equal(byName('master1').rewindNeeded, true);
    assert.equal(byName('master1').replication, 'needs rewind');

    assertRefused(await runLab(labDir, ['promote', winner]), /already the lab's primary/);
    assertRefused(await runLab(labDir, ['promote', 'master1']), /former primary.*lab node rewind master1/);
    assertRefused(await runLab(labDir, ['replica', 'follow', 'master1']), /was a primary and may have diverged: rewind it/);
    assertRefused(await runLab(labDir, ['node', 'rewind', winner]), /lab's current primary/);

    const followed = await labJson(labDir, 'replica', 'follow', other);
    assert.equal(followed.primary, winner);
    await queryRows({ port: winnerPort }, 'INSERT INTO t VALUES (1001)');

    const rewound = await labJson(labDir, 'node', 'rewind', 'master1');
    assert.equal(rewound.primary, winner);

    status = await labJson<StatusJson>(labDir, 'status');
    assert.deepEqual(
      status.nodes.map((n) => [n.name, n.role, n.status, n.replication, n.serverRole, n.timeline]),
      [
        ['master1', 'replica', 'running', 'streaming', 'standby', 2],
        ['replica1', winner === 'replica1' ? 'primary' : 'replica', 'running', winner === 'replica1' ? 'primary' : 'streaming', winner === 'replica1' ? 'primary' : 'standby', 2],
        ['replica2', winner === 'replica2' ? 'primary' : 'replica', 'running', winner === 'replica2' ? 'primary' : 'streaming', winner === 'replica2' ? 'primary' : 'standby', 2],
      ],
    );
    assert.deepEqual(status.warnings, []);
    // The rewound node has the new primary's rows, and keeps its own port and name.
    await queryRows({ port: winnerPort }, 'INSERT INTO t VALUES (1002)');
    for (const port of [m!, otherPort]) {
      await pollUntil(async () => ((await count(port)) === 1002 ? true : undefined), { timeoutMs: 10_000, what: `1002 rows on port ${port}` });
    }
    assert.equal((await queryRows<{ cluster_name: string }>({ port: m! }, 'SHOW cluster_name'))[0]!.cluster_name, 'master1');
  });
});
