// Logical replication (PostgreSQL's src/test/subscription/t/001_rep_changes.pl): a subscriber is a new
// cluster of the lab subscribed to a publication on the primary. Initial sync, changes applied, lag in the
// watchers and status, refusals that leave nothing behind, remove and destroy dropping the slot and
// publication. On 15 (the library and the CLI) and on 12.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { Lab, LabError } from '../src/index.js';
import { labServers } from '../src/balancer/lab-pool.js';
import { pollUntil } from '../src/common/poll.js';
import type { LabNode } from '../src/api/node.js';
import { ensureMajor, freePorts, labJson, refused, runLab } from './helpers/lab.js';

const exists = (file: string) => access(file).then(() => true, () => false);
const slots = async (lab: Lab) => (await lab.primary.query<{ s: string }>("select slot_name || ' ' || slot_type as s from pg_replication_slots order by 1")).map((r) => r.s);
const publications = async (lab: Lab) => (await lab.primary.query<{ pubname: string }>('select pubname from pg_publication order by 1')).map((r) => r.pubname);
const nodeNames = async (lab: Lab) => (JSON.parse(await readFile(path.join(lab.dir, 'lab.json'), 'utf8')) as { nodes: { name: string }[] }).nodes.map((n) => n.name);

/** Polls the subscriber until `sql` returns `expected` (JSON-compared), within 20 s. */
async function until(node: LabNode, sql: string, expected: unknown): Promise<void> {
  let last: unknown;
  await pollUntil(async () => {
    last = await node.query(sql);
    return JSON.stringify(last) === JSON.stringify(expected) ? true : undefined;
  }, { timeoutMs: 20_000, intervalMs: 100, what: `${sql} = ${JSON.stringify(expected)} on ${node.name}`, detail: () => JSON.stringify(last) });
}

test('logical subscriber on 15: initial sync, changes applied, lag shown, refusals leave nothing, remove and destroy drop the slot and publication', async () => {
  await using lab = await Lab.start({ replicas: 1 });
  await lab.primary.query(`
    create table t1 (id int primary key, v text not null);
    insert into t1 select g, 'row ' || g from generate_series(1, 5000) g;
    create schema app;
    create table app.t2 (id bigint generated always as identity, n numeric(10,2), doubled bigint generated always as (id * 2) stored, primary key (id));
    insert into app.t2 (n) values (1.5), (2.5);
    create table nopk (v int);
    create table ident (a int not null, b text); create unique index ident_a on ident (a); alter table ident replica identity using index ident_a`);

  const sub = await lab.addSubscriber({ name: 'sub1', tables: ['t1', 'app.t2', 'ident'] });
  assert.equal(sub.role, 'subscriber');
  assert.deepEqual(await sub.query('select count(*)::int as n, max(id) as max from t1'), [{ n: 5000, max: 5000 }], 'the initial sync copied the existing rows');
  assert.deepEqual(await sub.query('select id::int, n::text, doubled::int from app.t2 order by id'), [{ id: 1, n: '1.50', doubled: 2 }, { id: 2, n: '2.50', doubled: 4 }]);
  assert.deepEqual(await slots(lab), ['pglab_replica1 physical', 'pglab_sub_sub1 logical']);
  assert.deepEqual(await publications(lab), ['pglab_pub_sub1']);
  assert.deepEqual(lab.subscribers.map((n) => n.name), ['sub1']);
  assert.deepEqual(lab.replicas.map((n) => n.name), ['replica1'], 'a subscriber is no replica');

  // Inserts, updates and deletes on the primary are applied on the subscriber, through each kind of replica identity.
  await lab.primary.query(`
    insert into t1 values (5001, 'new'); update t1 set v = 'changed' where id = 1; delete from t1 where id between 2 and 11;
    update app.t2 set n = 9.99 where id = 2; insert into ident values (1, 'x'), (2, 'y'); update ident set b = 'z' where a = 2; delete from ident where a = 1`);
  await until(sub, 'select count(*)::int as n, max(id) as max from t1', [{ n: 4991, max: 5001 }]);
  await until(sub, "select v from t1 where id in (1, 5001) order by id", [{ v: 'changed' }, { v: 'new' }]);
  await until(sub, 'select n::text from app.t2 where id = 2', [{ n: '9.99' }]);
  await until(sub, 'select a, b from ident', [{ a: 2, b: 'z' }]);

  // Lag: `lab stat replication --json` has a row per subscriber, `lab status --json` the same on its node.
  const [lsn] = await lab.primary.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn');
  const stat = await pollUntil(async () => {
    const sample = await labJson<{ rows: { name: string | null }[]; subscribers: { name: string; state: string; lagBytes: number; received: string; confirmedFlush: string; subscription: string }[] }>(lab.dir, 'stat', 'replication');
    const row = sample.subscribers[0]!;
    const [{ behind }] = await lab.primary.query<{ behind: boolean }>('select $1::pg_lsn > $2::pg_lsn as behind', [lsn!.lsn, row.received]);
    return behind ? undefined : sample;
  }, { timeoutMs: 20_000, intervalMs: 200, what: 'the subscriber to report receiving the changes' });
  const row = stat.subscribers[0]!;
  assert.equal(row.name, 'sub1');
  assert.equal(row.state, 'streaming');
  assert.equal(row.subscription, 'pglab_sub_sub1');
  assert.ok(Number.isInteger(row.lagBytes) && row.lagBytes >= 0, JSON.stringify(row));
  assert.match(row.confirmedFlush, /^[0-9A-F]+\/[0-9A-F]+$/);
  assert.ok(stat.rows.some((r) => r.name === 'pglab_sub_sub1'), 'the walsender of the subscription is in the master\'s pg_stat_replication');
  const table = await runLab(lab.dir, ['stat', 'replication']);
  assert.match(table.stdout, /^ *subscriber +\| port +\| +subscription .*\| lag_bytes \| +tables/m);
  assert.match(table.stdout, /^ *sub1 +\| +\d+ \| pglab_sub_sub1 +\| streaming .*\| public\.t1,app\.t2,public\.ident/m);
  const status = await labJson<{ nodes: { name: string; role: string; replication: string | null; replayLagBytes: number | null; logical?: { publication: string } }[]; warnings: string[] }>(lab.dir, 'status');
  const node = status.nodes.find((n) => n.name === 'sub1')!;
  assert.equal(node.role, 'subscriber');
  assert.equal(node.replication, 'streaming');
  assert.equal(typeof node.replayLagBytes, 'number');
  assert.equal(node.logical?.publication, 'pglab_pub_sub1');
  assert.deepEqual(status.warnings, [], 'a subscriber answering as a primary is no warning');
  assert.match((await runLab(lab.dir, ['status'])).stdout, /^ *sub1 +\| subscriber +\|.*\| streaming/m);

  // No balancer pool and no promotion takes a subscriber.
  const recorded = JSON.parse(await readFile(path.join(lab.dir, 'lab.json'), 'utf8')) as { nodes: { name: string; role: string; port: number }[] };
  assert.deepEqual(labServers(recorded.nodes, 'all', false).map((s) => s.name), ['master1', 'replica1']);
  await assert.rejects(lab.promote('sub1'), (e: unknown) => e instanceof LabError && e.code === 'STATE' && /logical subscriber/.test(e.message));
  await assert.rejects(lab.switchover('sub1'), (e: unknown) => e instanceof LabError && e.code === 'STATE' && /logical subscriber/.test(e.message));

  // Refusals: one line, and nothing made (no slot, publication, data dir or record).
  const [port] = await freePorts(1);
  const datadir = path.join(lab.dir, 'sub2');
  const nothingLeft = async (what: string) => {
    assert.deepEqual(await slots(lab), ['pglab_replica1 physical', 'pglab_sub_sub1 logical'], what);
    assert.deepEqual(await publications(lab), ['pglab_pub_sub1'], what);
    assert.equal(await exists(datadir), false, `${what}: no data dir`);
    assert.deepEqual(await nodeNames(lab), ['master1', 'replica1', 'sub1'], what);
  };
  const add = (...args: string[]) => ['logical', 'add', 'sub2', datadir, String(port), ...args];
  await refused(lab.dir, add('--tables', 't1,nosuch'), 5, /^lab: Table "nosuch" does not exist in the master master1's postgres database/);
  await nothingLeft('a table that does not exist');
  await refused(lab.dir, add('--tables', 'nopk'), 2, /^lab: Table "nopk" has no replica identity \(no primary key\): published, its UPDATE and DELETE would fail on the master; add a primary key .* REPLICA IDENTITY FULL/);
  await nothingLeft('a table without a replica identity');
  await refused(lab.dir, ['logical', 'add', 'sub1', path.join(lab.dir, 'other'), String(port), '--tables', 't1'], 3, /^lab: Node "sub1" already exists in this lab \(a subscriber\): choose another name, or remove it first/);
  await refused(lab.dir, ['logical', 'add', 'replica1', datadir, String(port), '--tables', 't1'], 3, /^lab: Node "replica1" already exists in this lab \(a replica\)/);
  await refused(lab.dir, add('--tables', 't1', '--publication', 'pglab_pub_sub1'), 3, /^lab: Publication pglab_pub_sub1 already exists on the master master1/);
  await refused(lab.dir, add('--tables', 't1', '--publish', 'insert,upsert'), 2, /^lab: Expected --publish with some of insert,update,delete,truncate/);
  await refused(lab.dir, ['replica', 'add', 'replica9', path.join(lab.dir, 'replica9'), String(port), '--upstream', 'sub1'], 2, /^lab: "sub1" is a logical subscriber .*name the primary or a replica as the upstream/);
  await refused(lab.dir, ['replica', 'remove', 'sub1'], 6, /^lab: Node "sub1" is a logical subscriber .*`lab logical remove sub1`/);
  await nothingLeft('bad names and options');

  // Failures once the making began are undone: a table locked on the master (CREATE PUBLICATION waits for
  // its lock: the server's lock_timeout ends it, so it cannot commit later), an initial sync past its bound.
  const undone = async (args: string[], exitCode: number, last: RegExp) => {
    const result = await runLab(lab.dir, args);
    assert.equal(result.exitCode, exitCode, result.stderr);
    // Steps on stderr, then the error's line (then its detail, the subscriber's log tail, after a timeout).
    assert.ok(result.stderr.split('\n').some((line) => last.test(line)), result.stderr);
  };
  await lab.primary.query('create table locked (id int primary key)');
  const held = new pg.Client(lab.primary.connectionConfig());
  await held.connect();
  try {
    await held.query('begin; lock table locked in access exclusive mode');
    await undone(add('--tables', 'locked'), 8, /^lab: the master master1 \(127\.0\.0\.1:\d+\) refused: canceling statement due to lock timeout; undone: server stopped, data dir removed, sub2 removed from lab\.json$/);
  } finally {
    await held.query('rollback').catch(() => undefined);
    await held.end();
  }
  await nothingLeft('a table locked on the master');
  await undone(add('--tables', 't1', '--timeout', '1ms'), 7, /^lab: Timed out after 1ms waiting for the initial sync of sub2 .*; undone: subscription pglab_sub_sub2 on sub2 \(and its slot on the master\), .*publication pglab_pub_sub2 on master1, server stopped, data dir removed, sub2 removed from lab\.json$/);
  await nothingLeft('a failed initial sync');

  // The CLI makes one too, insert-only for a table with no primary key.
  const added = await runLab(lab.dir, add('--tables', 'nopk', '--publish', 'insert'));
  assert.equal(added.exitCode, 0, added.stderr);
  assert.match(added.stdout, /^subscriber sub2 added: subscription pglab_sub_sub2 to publication pglab_pub_sub2 on master1 \(public\.nopk\)/m);
  assert.match(added.stdout, /^initial sync: 0 rows in \d+\.\ds/m);
  await lab.primary.query('insert into nopk values (7)');
  await until(lab.node('sub2'), 'select v from nopk', [{ v: 7 }]);

  // remove: the subscription first (its slot on the master goes with it), the publication, then the node.
  await lab.removeSubscriber('sub1');
  assert.deepEqual(await slots(lab), ['pglab_replica1 physical', 'pglab_sub_sub2 logical']);
  assert.deepEqual(await publications(lab), ['pglab_pub_sub2']);
  assert.equal(await exists(path.join(lab.dir, 'sub1')), false);
  assert.deepEqual(await nodeNames(lab), ['master1', 'replica1', 'sub2']);

  // destroy drops sub2's subscription, slot and publication before the servers stop.
  // (In a clean environment: the CLI finds the lab's password and CA itself, not in the test's PG* variables.)
  const run = await runLab(lab.dir, ['destroy', '--yes', '--json'], { extendEnv: false, env: { PATH: process.env.PATH!, NO_COLOR: '1' } });
  assert.equal(run.exitCode, 0, run.stderr);
  const destroyed = JSON.parse(run.stdout) as { removed: string[]; problems: string[]; stopped: string[] };
  assert.deepEqual(destroyed.problems, []);
  assert.ok(destroyed.stopped.includes('sub2'), JSON.stringify(destroyed.stopped));
  assert.ok(destroyed.removed.includes('subscription pglab_sub_sub2 on sub2 (and its slot on the master)'), JSON.stringify(destroyed.removed));
  assert.ok(destroyed.removed.includes('publication pglab_pub_sub2 on master1'), JSON.stringify(destroyed.removed));
  assert.equal(await exists(datadir), false);
});

test('logical subscriber on 12: changes applied, lag shown, insert-only publishing, a master without wal_level logical refused, remove leaves no slot', async () => {
  await ensureMajor(12);
  await using lab = await Lab.start({ pg: 12, archive: true });
  await lab.primary.query(`
    create table t1 (id int primary key, v text);
    insert into t1 select g, 'row ' || g from generate_series(1, 1000) g;
    create table log (at timestamptz default now(), msg text)`);
  const sub = await lab.addSubscriber({ name: 'sub1', tables: ['t1', 'log'], publish: ['insert'] });
  assert.deepEqual(await sub.query('select count(*)::int as n from t1'), [{ n: 1000 }]);
  // A cluster of its own: it does not archive into the lab's archive (the master does).
  assert.deepEqual(await sub.query('show archive_mode'), [{ archive_mode: 'off' }]);
  assert.deepEqual(await lab.primary.query('show archive_mode'), [{ archive_mode: 'on' }]);
  await lab.primary.query("insert into t1 values (1001, 'new'); insert into log (msg) values ('hello')");
  await until(sub, 'select count(*)::int as n from t1', [{ n: 1001 }]);
  await until(sub, 'select msg from log', [{ msg: 'hello' }]);
  // Only inserts are published: an update on the master stays there.
  await lab.primary.query("update t1 set v = 'changed' where id = 1; insert into t1 values (1002, 'marker')");
  await until(sub, 'select count(*)::int as n from t1', [{ n: 1002 }]);
  assert.deepEqual(await sub.query('select v from t1 where id = 1'), [{ v: 'row 1' }]);

  const sample = await lab.stat.replication();
  assert.equal(sample.subscribers?.[0]?.state, 'streaming');
  assert.equal(typeof sample.subscribers?.[0]?.lagBytes, 'number');

  await lab.removeSubscriber('sub1');
  assert.deepEqual(await slots(lab), []);
  assert.deepEqual(await publications(lab), []);

  // A lab whose master runs with wal_level = replica (made before pglab set logical) is refused, nothing made.
  await lab.primary.query('alter system set wal_level = replica');
  await lab.primary.restart();
  await assert.rejects(lab.addSubscriber({ name: 'sub2', tables: ['t1'] }), (e: unknown) => e instanceof LabError && e.code === 'STATE' && /runs with wal_level = replica .*ALTER SYSTEM SET wal_level = logical/.test(e.message));
  assert.deepEqual(await nodeNames(lab), ['master1']);
  assert.equal(await exists(path.join(lab.dir, 'sub2')), false);

  // lab.json's subscriber fields are checked like every other field: a forged one is refused in one line.
  const stateFile = path.join(lab.dir, 'lab.json');
  const original = await readFile(stateFile, 'utf8');
  const forged = async (logical: unknown, pattern: RegExp) => {
    const state = JSON.parse(original);
    state.nodes.push({ ...state.nodes[0], name: 'sub9', role: 'subscriber', port: 1, datadir: path.join(lab.dir, 'sub9'), logical });
    await writeFile(stateFile, JSON.stringify(state), { mode: 0o600 });
    await refused(lab.dir, ['status'], 6, pattern);
  };
  try {
    await forged(undefined, /^lab: lab\.json: nodes\[1\]\.logical .*is missing on a subscriber/);
    await forged({ publication: 'p', subscription: 's', tables: ['t1; drop table t1'] }, /^lab: lab\.json: nodes\[1\]\.logical\.tables .* is not a list of schema\.table names/);
    await forged({ publication: 'P-1', subscription: 's', tables: ['public.t1'] }, /^lab: lab\.json: nodes\[1\]\.logical\.publication "P-1" is not a publication name/);
  } finally {
    await writeFile(stateFile, original, { mode: 0o600 });
  }
});
