// Synchronous standbys: `replica add --sync` lists the node in the primary's synchronous_standby_names
// (quorum: ANY 1) and returns once pg_stat_replication shows it synchronous; a promotion carries the
// list over to the new primary without naming itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { queryRows } from '../src/postgres/client.js';
import { freePorts, lab, labJson, withTempLab } from './helpers/lab.js';

const show = async (port: number) => (await queryRows<{ s: string }>({ port }, 'SELECT current_setting(\'synchronous_standby_names\') AS s'))[0]!.s;
const syncStates = async (port: number) =>
  (await queryRows<{ application_name: string; sync_state: string }>({ port }, 'SELECT application_name, sync_state FROM pg_stat_replication ORDER BY 1'))
    .map((r) => [r.application_name, r.sync_state]);

test('replica add --sync: quorum synchronous standbys, carried over by a promotion', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1, r2] = await freePorts(3);
    await lab(labDir, 'master', 'start', '--port', String(m));
    const first = await labJson(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1), '--sync');
    assert.equal(first.synchronousStandbyNames, 'ANY 1 ("replica1")');
    assert.equal(first.syncState, 'quorum');
    const second = await labJson(labDir, 'replica', 'add', 'replica2', path.join(labDir, 'replica2'), String(r2), '--sync');
    assert.equal(second.synchronousStandbyNames, 'ANY 1 ("replica1", "replica2")');
    assert.equal(await show(m!), 'ANY 1 ("replica1", "replica2")');
    assert.deepEqual(await syncStates(m!), [['replica1', 'quorum'], ['replica2', 'quorum']]);
    await queryRows({ port: m! }, 'CREATE TABLE t (x int); INSERT INTO t VALUES (1)');

    // A clean stop sends every record to both standbys, so either can be promoted and the other follow
    // (after a kill -9 only the most advanced one can: the demo does that).
    await lab(labDir, 'node', 'stop', 'master1');
    const promoted = await labJson(labDir, 'promote', 'replica1');
    assert.equal(promoted.synchronousStandbyNames, 'ANY 1 ("replica2")');
    assert.equal(await show(r1!), 'ANY 1 ("replica2")');
    assert.equal((await queryRows<{ n: string }>({ port: r1! }, 'SELECT count(*) AS n FROM t'))[0]!.n, '1');
    await labJson(labDir, 'replica', 'follow', 'replica2');
    assert.deepEqual(await syncStates(r1!), [['replica2', 'quorum']]);
    await queryRows({ port: r1! }, 'INSERT INTO t VALUES (2)'); // would block without a synchronous standby
  });
});
