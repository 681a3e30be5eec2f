// Cascading standbys (PostgreSQL's src/test/recovery/t/001_stream_rep.pl and 004_timeline_switch.pl):
// a standby of a standby, two levels deep, each streaming through its own slot on its upstream; a
// promotion re-points only the former primary's own standbys, and the cascades follow the new timeline
// through their upstreams. Driven in-process through the library; the CLI's --upstream once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { Lab, LabError } from '../src/index.js';
import { labBin } from './helpers/lab.js';
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
