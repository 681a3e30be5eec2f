// A planned switchover (`lab switchover NAME`, lab.switchover()): the pattern of PostgreSQL's
// src/test/recovery/t/009_twophase.pl, two nodes swapping roles. Acknowledged writes through a
// `--pool primary` balancer during the switch: none lost, the old primary back as a standby of the new
// one with no rewind, its other standbys and a cascade on the new timeline. Refusals before anything
// is touched. On 15, 11 (recovery.conf, pg_ctl promote) and 17.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import pg from 'pg';
import { Lab, LabError, type Balancer } from '../src/index.js';
import { ensureMajor, labBin } from './helpers/lab.js';

const refused = (code: string, pattern: RegExp) => (e: unknown) => e instanceof LabError && e.code === code && pattern.test(e.message);
const count = async (lab: Lab, node: string) => (await lab.node(node).query<{ n: number }>('select count(*)::int as n from acked'))[0]!.n;

/** Writes through the balancer until stopped: each acknowledged id, and the longest time without an acknowledged write. */
function ackedWriter(balancer: Balancer) {
  const acked: number[] = [];
  let stop = false;
  let longestGapMs = 0;
  let errors = 0;
  const done = (async () => {
    let last = Date.now();
    let client: pg.Client | undefined;
    for (let id = 1; !stop && id <= 100_000; id += 1) {
      try {
        if (!client) {
          client = new pg.Client({ ...balancer.connectionConfig(), connectionTimeoutMillis: 2000, query_timeout: 2000 });
          client.on('error', () => undefined);
          await client.connect();
        }
        await client.query('insert into acked(id) values ($1)', [id]);
        acked.push(id);
        const now = Date.now();
        longestGapMs = Math.max(longestGapMs, now - last);
        last = now;
      } catch {
        errors += 1;
        await client?.end().catch(() => undefined);
        client = undefined;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
    await client?.end().catch(() => undefined);
  })();
  return {
    acked,
    stop: async () => {
      stop = true;
      await done;
      return { longestGapMs, errors };
    },
  };
}

test('switchover on 15: acknowledged writes through a primary-pool balancer all kept; the old primary streams from the new one with no rewind; standbys and a cascade follow; and back', async () => {
  await using lab = await Lab.start({ replicas: 2 });
  await lab.addReplica({ name: 'replica3', upstream: 'replica2' });
  await lab.primary.query('create table acked (id int primary key)');
  const rw = await lab.balancer({ pool: 'primary' });
  await rw.waitFor('master1', 'UP');
  const writer = ackedWriter(rw);
  // A reader's session on replica2, which follows the new primary by a reload (13+): it is kept.
  const reader = new pg.Client(lab.node('replica2').connectionConfig());
  reader.on('error', () => undefined);
  try {
    await reader.connect();
    const pidBefore = (await reader.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
    await pollAcked(writer.acked, 20);
    const result = await lab.switchover('replica1');
    assert.equal((await reader.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid, pidBefore, "replica2's sessions survive its follow");
    const before = writer.acked.length;
    await pollAcked(writer.acked, before + 20);
    const { longestGapMs, errors } = await writer.stop();
    console.log(`# switchover to replica1: no primary for ${result.noPrimaryMs} ms; longest gap between acknowledged writes through the balancer ${longestGapMs} ms, ${errors} failed writes; steps ${result.steps.map((s) => `${s.step} ${s.ms} ms`).join(', ')}`);
    assert.deepEqual(result.steps.map((s) => s.step), ['checks', 'checkpoint', 'stop', 'catch up', 'promote', 'old primary streams', 'standbys follow']);
    assert.equal(result.previousPrimary, 'master1');
    assert.equal(result.timeline, 2);
    assert.deepEqual(result.followed, ['replica2']);
    // Nothing acknowledged is lost: every id is on the new primary.
    const [{ missing }] = await lab.primary.query<{ missing: number }>('select count(*)::int as missing from unnest($1::int[]) as a(id) where id not in (select id from acked)', [writer.acked]);
    assert.equal(missing, 0, `${missing} acknowledged writes lost`);
    assert.equal(lab.primary.name, 'replica1');
    const client = new pg.Client(rw.connectionConfig());
    try {
      await client.connect();
      const { rows } = await client.query<{ port: number }>('select inet_server_port() as port');
      assert.equal(rows[0]?.port, lab.node('replica1').port, 'the primary pool sends writes to the new primary');
    } finally {
      await client.end().catch(() => undefined);
    }
  } finally {
    await writer.stop();
    await reader.end().catch(() => undefined);
  }

  // The old primary is replica1's standby, on the new timeline, not waiting for a rewind.
  const master1 = lab.node('master1');
  assert.equal(master1.role, 'replica');
  assert.equal(master1.upstream, 'replica1');
  const status = await lab.status();
  assert.ok(status.nodes.every((n) => !n.rewindNeeded), JSON.stringify(status.nodes));
  await lab.waitForCatchup();
  const total = await count(lab, 'replica1');
  for (const name of ['master1', 'replica2', 'replica3']) {
    assert.equal(await count(lab, name), total, `${name} has every row`);
    const [receiver] = await lab.node(name).query<{ tli: number }>('select received_tli as tli from pg_stat_wal_receiver');
    assert.equal(receiver?.tli, 2, `${name} streams on timeline 2`);
  }
  assert.equal(lab.node('replica3').upstream, 'replica2', 'the cascade stays on its upstream');
  // No slot left behind: the new primary has one per standby, the old primary none for replica1 (a slot on a standby keeps WAL forever).
  const slots = async (node: string) => (await lab.node(node).query<{ slot_name: string }>('select slot_name from pg_replication_slots order by 1')).map((r) => r.slot_name);
  assert.deepEqual(await slots('replica1'), ['pglab_master1', 'pglab_replica2']);
  assert.deepEqual(await slots('master1'), []);

  // Refusals, each before anything is touched (the primary keeps running).
  await assert.rejects(lab.switchover('replica1'), refused('USAGE', /already the lab's primary/));
  await assert.rejects(lab.switchover('replica3'), refused('STATE', /streams from "replica2", not from the primary "replica1": switch over to "replica2"/));
  await lab.node('replica2').query('select pg_wal_replay_pause()');
  await assert.rejects(lab.switchover('replica2'), refused('STATE', /replay paused: resume it/));
  await lab.primary.query('insert into acked select generate_series(200001, 210000)');
  await assert.rejects(lab.switchover('replica2', { maxLagBytes: 1024 }), refused('STATE', /bytes behind "replica1" \(more than --max-lag 1024\)/));
  await lab.node('replica2').query('select pg_wal_replay_resume()');
  await lab.node('replica2').query("alter system set recovery_min_apply_delay = '1min'");
  await lab.node('replica2').query('select pg_reload_conf()');
  await pollSetting(lab, 'replica2', 'recovery_min_apply_delay', '60000');
  await assert.rejects(lab.switchover('replica2'), refused('STATE', /applies WAL 60000 ms late/));
  await lab.node('replica2').query('alter system reset recovery_min_apply_delay');
  await lab.node('replica2').query('select pg_reload_conf()');
  const lagged = await lab.node('replica2').lag();
  await assert.rejects(lab.switchover('replica2'), refused('STATE', /has a fault in force \(lag\): heal it first/));
  await lagged.heal();
  assert.equal(lab.primary.name, 'replica1');
  assert.equal((await lab.primary.query<{ r: boolean }>('select pg_is_in_recovery() as r'))[0]!.r, false);
  await assert.rejects(lab.switchover('replica2', { maxLagBytes: -1 }), refused('USAGE', /maxLagBytes/));

  // And back, from the CLI: the table of steps, then --json.
  const back = await execa('node', [labBin, '--lab-dir', lab.dir, 'switchover', 'master1'], { reject: false, env: { NO_COLOR: '1' } });
  assert.equal(back.exitCode, 0, back.stderr);
  assert.match(back.stdout, /^switchover to master1 done in [\d.]+ s: primary on timeline 3, no primary for \d+ ms; replica1 streams from it \(no rewind\)$/m);
  assert.match(back.stdout, /^ catch up\s+\|\s+\d+ \| master1 replayed past [0-9A-F]+\/[0-9A-F]+$/m);
  const bad = await execa('node', [labBin, '--lab-dir', lab.dir, 'switchover', 'replica1', '--max-lag', '5s'], { reject: false, env: { NO_COLOR: '1' } });
  assert.equal(bad.exitCode, 2, bad.stderr);
  assert.match(bad.stderr, /--max-lag takes bytes/);
  await lab.waitForCatchup();
  assert.equal(await count(lab, 'replica1'), await count(lab, 'master1'));
});

for (const major of [11, 17]) {
  test(`switchover on ${major}: there and back, no rewind, no row lost`, async () => {
    await ensureMajor(major);
    await using lab = await Lab.start({ pg: major, replicas: 2 });
    await lab.primary.query('create table acked as select generate_series(1, 1000) as id');
    const there = await lab.switchover('replica2');
    assert.equal(there.timeline, 2);
    assert.deepEqual(there.followed, ['replica1']);
    await lab.primary.query('insert into acked select generate_series(1001, 1100)');
    const back = await lab.switchover('master1');
    assert.equal(back.timeline, 3);
    assert.deepEqual(back.followed, ['replica1']);
    await lab.primary.query('insert into acked select generate_series(1101, 1200)');
    await lab.waitForCatchup();
    for (const name of ['master1', 'replica1', 'replica2']) assert.equal(await count(lab, name), 1200, `${name} has every row`);
    assert.equal(lab.node('replica2').upstream, 'master1');
    console.log(`# PostgreSQL ${major}: no primary for ${there.noPrimaryMs} ms, then ${back.noPrimaryMs} ms`);
  });
}

async function pollAcked(acked: number[], atLeast: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (acked.length < atLeast) {
    if (Date.now() > deadline) throw new Error(`only ${acked.length} acknowledged writes, wanted ${atLeast}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function pollSetting(lab: Lab, node: string, name: string, value: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const [row] = await lab.node(node).query<{ setting: string }>('select setting from pg_settings where name = $1', [name]);
    if (row?.setting === value) return;
    if (Date.now() > deadline) throw new Error(`${node}: ${name} is ${row?.setting}, not ${value}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
