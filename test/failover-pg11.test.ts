// The recovery.conf path: on PostgreSQL 11 promote (pg_ctl promote) and follow (recovery.conf with
// recovery_target_timeline = 'latest') work; pg_rewind does not exist for 11 here, so `lab node rewind`
// rebuilds the node from a new base backup and says so in one line; a re-add does the same.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { queryRows } from '../src/postgres/client.js';
import { freePorts, lab, labJson, runLab, withTempLab } from './helpers/lab.js';

test('PostgreSQL 11: promote and follow; rewind rebuilds, said in one line; the old master comes back rebuilt', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1, r2] = await freePorts(3);
    await lab(labDir, '--pg', '11', 'master', 'start', '--port', String(m));
    await lab(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1));
    await lab(labDir, 'replica', 'add', 'replica2', path.join(labDir, 'replica2'), String(r2));
    await lab(labDir, 'node', 'stop', 'master1'); // a planned switchover: both replicas have every record
    const promoted = await labJson(labDir, 'promote', 'replica1');
    assert.equal(promoted.timeline, 2);
    assert.equal((await queryRows<{ r: boolean }>({ port: r1! }, 'SELECT pg_is_in_recovery() AS r'))[0]!.r, false);

    await labJson(labDir, 'replica', 'follow', 'replica2');
    const recoveryConf = await readFile(path.join(labDir, 'replica2', 'recovery.conf'), 'utf8');
    assert.match(recoveryConf, new RegExp(`primary_conninfo = 'host=127.0.0.1 port=${r1} user=postgres application_name=replica2 password=''[A-Za-z0-9_-]{24}'''`));
    assert.match(recoveryConf, /recovery_target_timeline = 'latest'/);

    const rewind = await runLab(labDir, ['node', 'rewind', 'master1']);
    assert.equal(rewind.exitCode, 0, rewind.stderr);
    assert.match(rewind.stdout.trim(), /^master1 rebuilt from a new base backup \(no pg_rewind for PostgreSQL 11 here \(.* is version 1\d, and pg_rewind only rewinds its own version\)\) and streaming from replica1, pid \d+/);
    assert.equal(rewind.stdout.trim().split('\n').length, 1);

    await lab(labDir, 'replica', 'add', 'master1', path.join(labDir, 'master1'), String(m));
    const status = await labJson(labDir, 'status');
    assert.deepEqual(
      status.nodes.map((n: { name: string; role: string; replication: string; timeline: number }) => [n.name, n.role, n.replication, n.timeline]),
      [['master1', 'replica', 'streaming', 2], ['replica1', 'primary', 'primary', 2], ['replica2', 'replica', 'streaming', 2]],
    );
  });
});
