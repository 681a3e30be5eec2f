// Cascading standbys (PostgreSQL's src/test/recovery/t/001_stream_rep.pl and 004_timeline_switch.pl):
// a standby of a standby, two levels deep, each streaming through its own slot on its upstream; a
// promotion re-points only the former primary's own standbys, and the cascades follow the new timeline
// through their upstreams. Driven in-process through the library; the CLI's --upstream once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { Lab, LabError } from '../src/index.js';
import { ensureMajor, labBin } from './helpers/lab.js';
import { findFreePorts } from '../src/common/ports.js';

const names = (rows: { application_name: string }[]) => rows.map((r) => r.application_name).sort();
const STANDBYS = 'select application_name from pg_stat_replication order by 1';

test('cascading standbys: two levels deep through their own slots; refusals; a promotion keeps each cascade on its upstream, on the new timeline', async () => {
  await using lab = await Lab.start({ replicas: 2 });
  const replica3 = await lab.addReplica({ name: 'replica3', upstream: 'replica1' });
  const replica4 = await lab.addReplica({ name: 'replica4', upstream: 'replica3' });
  assert.equal(replica3.upstream, 'replica1');
  assert.equal(replica4.upstream, 'replica3');
  assert.deepEqual(names(await lab.primary.query(STANDBYS)), ['replica1', 'replica2'], 'the master sends to its own standbys only');
  assert.deepEqual(names(await lab.node('replica1').query(STANDBYS)), ['replica3']);
  assert.deepEqual(names(await lab.node('replica3').query(STANDBYS)), ['replica4']);
  const slots = async (node: string) => (await lab.node(node).query<{ slot_name: string; active: boolean }>('select slot_name, active from pg_replication_slots order by 1')).map((r) => `${r.slot_name} ${r.active}`);
  assert.deepEqual(await slots('replica1'), ['pglab_replica3 true']);
  assert.deepEqual(await slots('replica3'), ['pglab_replica4 true']);
  assert.deepEqual(await slots('master1'), ['pglab_replica1 true', 'pglab_replica2 true']);

  await lab.primary.query('create table t as select generate_series(1, 50) as id');
  await lab.waitForCatchup();
  assert.equal((await replica4.query<{ n: number }>('select count(*)::int as n from t'))[0]!.n, 50, 'two levels down');

  // The CLI: --upstream, and `lab status` naming each node's upstream.
  const [port5] = await findFreePorts(1);
  const added = await execa('node', [labBin, '--lab-dir', lab.dir, 'replica', 'add', 'replica5', `${lab.dir}/replica5`, String(port5), '--upstream', 'replica2'], { reject: false, env: { NO_COLOR: '1' } });
  assert.equal(added.exitCode, 0, added.stderr);
  assert.match(added.stdout, /^replica replica5 added: streaming from replica2/m);
  const status = JSON.parse((await execa('node', [labBin, '--lab-dir', lab.dir, 'status', '--json'], { env: { NO_COLOR: '1' } })).stdout) as { nodes: { name: string; upstream: string | null }[] };
  assert.deepEqual(status.nodes.map((n) => `${n.name}<-${n.upstream}`), ['master1<-null', 'replica1<-master1', 'replica2<-master1', 'replica3<-replica1', 'replica4<-replica3', 'replica5<-replica2']);

  // The watcher: the master's standbys, then each cascade with the standby it streams from, lag measured against the master.
  const sample = await lab.stat.replication();
  assert.deepEqual(sample.rows.map((r) => `${r.name ?? 'master'} ${r.state} ${r.upstream ?? '-'}`), [
    'master local -', 'replica1 streaming -', 'replica2 streaming -', 'replica3 streaming replica1', 'replica5 streaming replica2', 'replica4 streaming replica3',
  ]);
  assert.ok(sample.rows.every((r) => r.state === 'local' || typeof r.lagBytes === 'number'), JSON.stringify(sample.rows));
  const table = await execa('node', [labBin, '--lab-dir', lab.dir, 'stat', 'replication'], { env: { NO_COLOR: '1' } });
  assert.match(table.stdout, /\| upstream\s*$/m, 'a last column names the upstream');
  assert.match(table.stdout, /replica4 .*\| replica3\s*$/m);

  // Refusals, each before anything is made.
  const refused = (code: string, pattern: RegExp) => (e: unknown) => e instanceof LabError && e.code === code && pattern.test(e.message);
  await assert.rejects(lab.addReplica({ name: 'replica1', upstream: 'replica4' }), refused('USAGE', /"replica4" streams from "replica1" \(through its upstreams\)/));
  await assert.rejects(lab.addReplica({ name: 'replica6', upstream: 'replica6' }), refused('NOT_FOUND', /Unknown upstream "replica6"/));
  await assert.rejects(lab.addReplica({ name: 'replica6', upstream: 'replica1', sync: true }), refused('USAGE', /cannot be one/));
  await assert.rejects(lab.removeReplica('replica3'), refused('STATE', /replica4 streams from "replica3": remove it first/));

  // The master goes; replica1 is promoted: replica2 (the master's standby) follows it; replica3 stays on
  // replica1 and replica4 on replica3, both on the new timeline; replica5 stays on replica2.
  const promotion = await lab.promote('replica1');
  assert.deepEqual(promotion.followed, ['replica2']);
  await lab.primary.query('insert into t select generate_series(51, 60)');
  await lab.waitForCatchup();
  for (const name of ['replica2', 'replica3', 'replica4', 'replica5']) {
    assert.equal((await lab.node(name).query<{ n: number }>('select count(*)::int as n from t'))[0]!.n, 60, `${name} has the new primary's rows`);
    const [receiver] = await lab.node(name).query<{ tli: number }>('select received_tli as tli from pg_stat_wal_receiver');
    assert.equal(receiver?.tli, promotion.timeline, `${name} streams on timeline ${promotion.timeline}`);
  }
  assert.deepEqual(names(await lab.primary.query(STANDBYS)), ['replica2', 'replica3']);
  assert.equal(lab.node('replica4').upstream, 'replica3');
});

test('kill -9 of a middle node: its cascade keeps answering stale reads and `lab status` says why; it follows the primary, then a standby again once the middle is back', async () => {
  await using lab = await Lab.start({ replicas: 1 });
  const cascade = await lab.addReplica({ name: 'replica2', upstream: 'replica1' });
  await lab.primary.query('create table t as select generate_series(1, 10) as id');
  await lab.waitForCatchup();
  await lab.node('replica1').kill();
  await lab.primary.query('insert into t select generate_series(11, 20)');
  // The cascade still answers, from the WAL it had: the 10 new rows never reach it.
  assert.equal((await cascade.query<{ n: number }>('select count(*)::int as n from t'))[0]!.n, 10);
  const status = await lab.status();
  assert.equal(status.nodes.find((n) => n.name === 'replica2')?.replication, 'upstream crashed');
  assert.ok(status.warnings.some((w) => /replica2 streams from replica1, which is crashed: .*`lab replica follow replica2 --upstream master1`/.test(w)), status.warnings.join('\n'));
  const table = await execa('node', [labBin, '--lab-dir', lab.dir, 'status'], { env: { NO_COLOR: '1' }, reject: false });
  assert.match(table.stdout + table.stderr, /replica2 streams from replica1, which is crashed/);

  // Re-pointed at the primary from the CLI (a reload on 15: its sessions are kept).
  const follow = await execa('node', [labBin, '--lab-dir', lab.dir, 'replica', 'follow', 'replica2', '--upstream', 'master1'], { env: { NO_COLOR: '1' }, reject: false });
  assert.equal(follow.exitCode, 0, follow.stderr);
  assert.match(follow.stdout, /^replica2 follows master1: streaming \(async\), pid \d+, re-pointed by a reload, its sessions kept/m);
  // (waitForCatchup would wait for the crashed replica1 too: the lab still expects it running.)
  await rowsOn(cascade, 20);
  // Refusals: a dead upstream, a cycle, both options at once.
  await assert.rejects(cascade.follow('replica1'), (e: unknown) => e instanceof LabError && /Upstream "replica1" is not running/.test(e.message));
  const both = await execa('node', [labBin, '--lab-dir', lab.dir, 'replica', 'follow', 'replica2', '--upstream', 'master1', '--primary', 'master1'], { env: { NO_COLOR: '1' }, reject: false });
  assert.notEqual(both.exitCode, 0);
  assert.match(both.stderr, /Give --primary or --upstream, not both/);

  // The middle node re-added, the cascade back under it: follow to a standby.
  await lab.addReplica({ name: 'replica1' });
  const back = await cascade.follow('replica1');
  assert.equal(back.upstream, 'replica1');
  assert.equal(lab.node('replica2').upstream, 'replica1');
  assert.deepEqual(names(await lab.node('replica1').query(STANDBYS)), ['replica2']);
  assert.deepEqual(names(await lab.primary.query(STANDBYS)), ['replica1'], 'its slot and walsender on the primary are gone');
  assert.deepEqual((await lab.primary.query<{ slot_name: string }>('select slot_name from pg_replication_slots order by 1')).map((r) => r.slot_name), ['pglab_replica1']);
  await assert.rejects(lab.node('replica1').follow('replica2'), (e: unknown) => e instanceof LabError && /"replica2" streams from "replica1"/.test(e.message));
  await lab.primary.query('insert into t select generate_series(21, 30)');
  await lab.waitForCatchup();
  assert.equal((await cascade.query<{ n: number }>('select count(*)::int as n from t'))[0]!.n, 30);
});

/** Until `node` has `n` rows in t (10 s at most). */
async function rowsOn(node: { query: Lab['primary']['query'] }, n: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const [row] = await node.query<{ n: number }>('select count(*)::int as n from t');
    if (row?.n === n) return;
    if (Date.now() > deadline) assert.fail(`${row?.n} rows in t, not ${n}, after 10 s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test('cascading standbys on 12: two levels deep; a switchover and a promotion keep each cascade on its upstream, on the new timeline', async () => {
  await ensureMajor(12);
  await using lab = await Lab.start({ pg: 12, replicas: 2 });
  await lab.addReplica({ name: 'replica3', upstream: 'replica2' });
  await lab.addReplica({ name: 'replica4', upstream: 'replica3' });
  await lab.primary.query('create table t as select generate_series(1, 10) as id');
  const switched = await lab.switchover('replica1');
  assert.deepEqual(switched.followed, ['replica2'], 'on 12 a follow restarts the standby');
  await lab.primary.query('insert into t select generate_series(11, 20)');
  await rowsOn(lab.node('replica4'), 20);
  await lab.node('replica1').stop();
  const promotion = await lab.promote('master1');
  await lab.primary.query('insert into t select generate_series(21, 30)');
  for (const name of ['replica2', 'replica3', 'replica4']) {
    await rowsOn(lab.node(name), 30);
    const [receiver] = await lab.node(name).query<{ tli: number }>('select received_tli as tli from pg_stat_wal_receiver');
    assert.equal(receiver?.tli, promotion.timeline, `${name} streams on timeline ${promotion.timeline}`);
  }
  assert.equal(lab.node('replica4').upstream, 'replica3');
  assert.equal(lab.node('replica3').upstream, 'replica2');
});
