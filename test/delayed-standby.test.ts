// Delayed standbys (PostgreSQL's src/test/recovery/t/005_replay_delay.pl): recovery_min_apply_delay set by
// `lab replica add --apply-delay` / addReplica({ applyDelayMs }). Rows committed on the primary appear on
// the delayed standby no sooner than the delay, on a standby without one at once; the delay survives a
// follow and a re-add (which may change it); the watchers tell it apart from a paused replay (`lab fault
// lag`); a promote of a delayed standby applies what it held back and says so. On 15, 17 and 11 (recovery.conf).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Lab, LabError, type LabNode } from '../src/index.js';
import { pollUntil } from '../src/common/poll.js';
import { formatApplyDelay, parseApplyDelay } from '../src/lab/apply-delay.js';
import { ensureMajor, freePorts, lab as labCli, refused } from './helpers/lab.js';

const DELAY_MS = 2000;

const count = async (node: LabNode, table = 't'): Promise<number> => (await node.query<{ n: number }>(`select count(*)::int as n from ${table}`))[0]!.n;
/** The node's recovery_min_apply_delay in ms, as the server has it: a GUC from 12, a line of recovery.conf before (0 once it is gone). */
async function setting(node: LabNode, major = 15): Promise<number> {
  if (major >= 12) return (await node.query<{ ms: number }>("select setting::int as ms from pg_settings where name = 'recovery_min_apply_delay'"))[0]!.ms;
  const conf = await readFile(path.join(node.datadir, 'recovery.conf'), 'utf8').catch(() => '');
  return Number(/^recovery_min_apply_delay = '(\d+)ms'$/m.exec(conf)?.[1] ?? 0);
}
const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/** "0/5003660" as bytes. */
const lsnBytes = (lsn: string): bigint => {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
};

interface Arrival {
  /** ms from just before the INSERT was sent (a lower bound of the commit's timestamp) to the row being seen. */
  fromSend: number;
  /** ms from the INSERT's return (an upper bound of the commit's timestamp) to the row being seen. */
  fromCommit: number;
}

/**
 * Commits row `id` into t on `primary` and polls each of `standbys` every 10 ms (bounded: delay + 5 s)
 * until it has the row; returns when each saw it, measured on this machine's wall clock (the servers'
 * clock: recovery_min_apply_delay counts from the commit record's timestamp).
 */
async function commitAndWatch(primary: LabNode, standbys: LabNode[], id: number, boundMs = DELAY_MS + 5000): Promise<Arrival[]> {
  const sent = Date.now();
  await primary.query('insert into t values ($1)', [id]);
  const committed = Date.now();
  return Promise.all(
    standbys.map(async (standby) => {
      const seenAt = await pollUntil(
        async () => ((await standby.query<{ n: number }>('select count(*)::int as n from t where id = $1', [id]))[0]!.n === 1 ? Date.now() : undefined),
        { timeoutMs: boundMs, intervalMs: 10, what: `row ${id} on ${standby.name}` },
      );
      return { fromSend: seenAt - sent, fromCommit: seenAt - committed };
    }),
  );
}

/** `rows` rows, one at a time: each on `delayed` no sooner than DELAY_MS and within DELAY_MS + 1 s, on `prompt` at once. */
async function measureDelay(primary: LabNode, delayed: LabNode, prompt: LabNode, first: number, rows: number): Promise<number[]> {
  const applied: number[] = [];
  for (let id = first; id < first + rows; id += 1) {
    const [late, now] = await commitAndWatch(primary, [delayed, prompt], id);
    assert.ok(late!.fromSend >= DELAY_MS, `row ${id} appeared on ${delayed.name} ${late!.fromSend} ms after it was sent: sooner than the delay`);
    assert.ok(late!.fromCommit <= DELAY_MS + 1000, `row ${id} appeared on ${delayed.name} ${late!.fromCommit} ms after its commit: more than the delay + 1 s`);
    assert.ok(now!.fromCommit < 1000, `row ${id} took ${now!.fromCommit} ms to reach ${prompt.name}, a standby without a delay`);
    applied.push((late!.fromSend + late!.fromCommit) / 2);
  }
  return applied;
}

test('--apply-delay values: units, bounds, and how the watchers print them', () => {
  assert.equal(parseApplyDelay('500ms'), 500);
  assert.equal(parseApplyDelay('1.5s'), 1500);
  assert.equal(parseApplyDelay('2m'), 120_000);
  assert.equal(parseApplyDelay('2min'), 120_000);
  assert.equal(parseApplyDelay('24h'), 86_400_000);
  for (const bad of ['0s', '0.5ms', '-1s', '30', 'soon', '1d', '24.001h']) assert.throws(() => parseApplyDelay(bad), LabError, bad);
  assert.deepEqual([500, 2000, 30_000, 90_000, 120_000, 5_400_000, 86_400_000].map(formatApplyDelay), ['500ms', '2s', '30s', '1min30s', '2min', '1h30min', '24h']);
});

test('delayed standby (PG 15): rows no sooner than the delay; a cascade of it gets WAL at once; watchers tell it from a paused replay; refusals; the delay survives a follow, a rewind and a re-add; a promote applies what it held back', async (t) => {
  await using lab = await Lab.start({ replicas: 1 });
  const primary = lab.primary;
  const replica1 = lab.node('replica1');
  const delayed = await lab.addReplica({ name: 'delayed', applyDelayMs: DELAY_MS });
  assert.equal(delayed.applyDelayMs, DELAY_MS);
  assert.equal(replica1.applyDelayMs, undefined);
  assert.equal(await setting(delayed), 2000);
  assert.equal(await setting(replica1), 0);
  await primary.query('create table t (id int primary key)');
  await pollUntil(async () => (await delayed.query<{ n: number }>("select count(*)::int as n from pg_tables where tablename = 't'"))[0]!.n === 1 || undefined, { timeoutMs: DELAY_MS + 5000, intervalMs: 50, what: 'table t on delayed' });

  // The figure: ten rows, each seen on the delayed standby no sooner than 2 s and within 3 s of its commit.
  const applied = await measureDelay(primary, delayed, replica1, 1, 10);
  const figure = median(applied);
  t.diagnostic(`applied delay, median of ${applied.length} rows: ${figure.toFixed(0)} ms for a setting of ${DELAY_MS} ms (each: ${applied.map((a) => a.toFixed(0)).join(', ')})`);
  assert.ok(Math.abs(figure - DELAY_MS) <= 200, `median applied delay ${figure} ms is not within 200 ms of ${DELAY_MS} ms`);

  // A cascade of the delayed standby has no delay of its own (its copy's postgresql.auto.conf carried
  // the upstream's: not written again) and gets the WAL as soon as the delayed standby receives it.
  const cascade = await lab.addReplica({ name: 'cascade', upstream: 'delayed' });
  assert.equal(cascade.applyDelayMs, undefined);
  assert.equal(await setting(cascade), 0);
  const [onDelayed, onCascade] = await commitAndWatch(primary, [delayed, cascade], 100);
  assert.ok(onCascade!.fromCommit < 1000, `the cascade had the row ${onCascade!.fromCommit} ms after its commit: not at once`);
  assert.ok(onDelayed!.fromSend >= DELAY_MS, 'its upstream still applied it late');

  // Watchers: the delay is the node's setting (expected lag), a paused replay is a fault.
  await using lag = await replica1.lag();
  await primary.query('insert into t values (200)');
  const sample = await lab.stat.replication();
  const row = (name: string) => sample.rows.find((r) => r.name === name)!;
  assert.equal(row('delayed').applyDelayMs, DELAY_MS);
  assert.equal(row('replica1').applyDelayMs, undefined);
  assert.deepEqual(sample.faults, [{ node: 'replica1', fault: 'lag' }]);
  const json = JSON.parse(await labCli(lab.dir, 'stat', 'replication', '--json')) as { rows: { name: string | null; applyDelayMs?: number }[]; faults: { node: string; fault: string }[] };
  assert.equal(json.rows.find((r) => r.name === 'delayed')?.applyDelayMs, DELAY_MS);
  assert.equal(json.rows.find((r) => r.name === 'replica1')?.applyDelayMs, undefined);
  assert.deepEqual(json.faults, [{ node: 'replica1', fault: 'lag' }]);
  const table = await labCli(lab.dir, 'stat', 'replication');
  t.diagnostic(table);
  assert.match(table, /\|\s+delay\s+\| upstream\s*$/m, 'a delay column before the upstream column');
  assert.match(table, /\| delayed .*\| 2s\s+\| master1\s*$/m, 'the delayed standby shows its delay');
  assert.match(table, /\| replica1 .*\| replay paused \| master1\s*$/m, 'the paused one says so');
  assert.match(table, /^faults: replica1 lag$/m);
  const status = JSON.parse(await labCli(lab.dir, 'status', '--json')) as { nodes: { name: string; applyDelayMs: number | null; faultWords: string[] }[] };
  assert.deepEqual(status.nodes.map((n) => `${n.name} ${n.applyDelayMs} ${n.faultWords.join(',')}`), ['master1 null ', 'replica1 null lag', 'delayed 2000 ', 'cascade null ']);
  const statusTable = await labCli(lab.dir, 'status');
  assert.match(statusTable, /^ delayed .*\| 2s\s+\| master1\s*$/m);
  assert.match(statusTable, /^ replica1 .*running \(lag\)/m);
  await lag.heal();

  // Refusals, one line each, nothing made: no record, no data dir, no slot.
  const [port] = await freePorts(1);
  const dir = path.join(lab.dir, 'refused');
  const add = (...more: string[]) => ['replica', 'add', 'refused', dir, String(port), ...more];
  await refused(lab.dir, add('--apply-delay', '2s', '--sync'), 2, /--sync with --apply-delay is refused: under synchronous_commit = remote_apply every COMMIT would wait out the delay/);
  await refused(lab.dir, add('--apply-delay', '0s'), 2, /--apply-delay.*more than 0, got 0s/);
  await refused(lab.dir, add('--apply-delay', '-1s'), 2, /--apply-delay.*expected a delay with its unit.*got "-1s"/);
  await refused(lab.dir, add('--apply-delay', 'soon'), 2, /--apply-delay.*expected a delay with its unit.*got "soon"/);
  await refused(lab.dir, add('--apply-delay', '30'), 2, /--apply-delay.*expected a delay with its unit.*got "30"/);
  await refused(lab.dir, add('--apply-delay', '25h'), 2, /--apply-delay.*at most 24h, got 25h/);
  const usage = (pattern: RegExp) => (e: unknown) => e instanceof LabError && e.code === 'USAGE' && pattern.test(e.message);
  await assert.rejects(lab.addReplica({ name: 'refused', applyDelayMs: 0 }), usage(/^lab\.addReplica: applyDelayMs: the delay must be more than 0/));
  await assert.rejects(lab.addReplica({ name: 'refused', applyDelayMs: -5 }), usage(/more than 0/));
  await assert.rejects(lab.addReplica({ name: 'refused', applyDelayMs: 1.5 }), usage(/whole number of ms/));
  await assert.rejects(lab.addReplica({ name: 'refused', applyDelayMs: '2s' as unknown as number }), usage(/expected a delay in ms, got "2s"/));
  await assert.rejects(lab.addReplica({ name: 'refused', applyDelayMs: 86_400_001 }), usage(/at most 24h/));
  await assert.rejects(lab.addReplica({ name: 'refused', applyDelayMs: 1000, sync: true }), usage(/--sync with --apply-delay is refused/));
  assert.equal(existsSync(dir), false, 'no data dir');
  assert.deepEqual((await lab.status()).nodes.map((n) => n.name), ['master1', 'replica1', 'delayed', 'cascade'], 'no record');
  assert.deepEqual((await primary.query<{ s: string }>('select slot_name as s from pg_replication_slots order by 1')).map((r) => r.s), ['pglab_delayed', 'pglab_replica1'], 'no slot');

  // A rewind (pg_rewind 15 from the primary it streams from: nothing to rewind) writes its standby
  // configuration again: still 2 s.
  const rewound = await delayed.rewind();
  assert.doesNotMatch(rewound.rewind, /rebuilt/, `pg_rewind 15 ran: ${rewound.rewind}`);
  assert.equal(await setting(delayed), 2000);
  assert.equal(lab.node('delayed').applyDelayMs, DELAY_MS);

  // A follow keeps the delay: replica1 is promoted, the delayed standby follows it, still 2 s late.
  const promotion = await lab.promote('replica1');
  assert.ok(promotion.followed.includes('delayed'), JSON.stringify(promotion.followed));
  assert.equal(lab.node('delayed').applyDelayMs, DELAY_MS);
  assert.equal(await setting(delayed), 2000);
  // The cascade reconnects to its restarted upstream (wal_retrieve_retry_interval, 5 s) before it is the prompt one again.
  await pollUntil(async () => (await delayed.query<{ n: number }>("select count(*)::int as n from pg_stat_replication where application_name = 'cascade' and state = 'streaming'"))[0]!.n === 1 || undefined, { timeoutMs: 15_000, intervalMs: 50, what: 'cascade streaming from delayed again' });
  const afterFollow = await measureDelay(lab.primary, delayed, cascade, 300, 2);
  t.diagnostic(`after the follow: ${afterFollow.map((a) => a.toFixed(0)).join(', ')} ms`);

  // A re-add keeps it unless given a new one: 30 s, for the promote below.
  const readded = await labCli(lab.dir, 'replica', 'add', 'delayed', delayed.datadir, String(delayed.port), '--apply-delay', '30s');
  assert.match(readded, /^replica delayed rebuilt: streaming from replica1, applying WAL 30s late \(recovery_min_apply_delay\)/m);
  await lab.status();
  assert.equal(lab.node('delayed').applyDelayMs, 30_000);
  assert.equal(await setting(delayed), 30_000);

  // A promote of the delayed standby: WAL it received and held back is applied at once (PostgreSQL ends
  // the delay when promoted), and the promote says how much.
  await lab.primary.query('insert into t select generate_series(1000, 1099)');
  const [{ lsn }] = await lab.primary.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn');
  await pollUntil(async () => (await delayed.query<{ ok: boolean }>('select pg_last_wal_receive_lsn() >= $1::pg_lsn as ok', [lsn]))[0]!.ok || undefined, { timeoutMs: 10_000, intervalMs: 20, what: 'delayed to receive the rows' });
  assert.equal((await delayed.query<{ n: number }>('select count(*)::int as n from t where id >= 1000'))[0]!.n, 0, 'received, not applied yet');
  await labCli(lab.dir, 'node', 'stop', 'replica1');
  const started = Date.now();
  const promoted = await labCli(lab.dir, 'promote', 'delayed');
  const promoteMs = Date.now() - started;
  t.diagnostic(promoted);
  assert.ok(promoteMs < 15_000, `the promote took ${promoteMs} ms: it waited out the 30 s delay?`);
  const held = /delayed standby \(apply delay 30s, gone now that it is the primary\): it applied the (\d+) bytes of WAL it had received but held back \(replayed up to [0-9A-F/]+, received up to ([0-9A-F/]+)\); its new timeline begins at ([0-9A-F/]+); WAL its upstream had not sent it is not there/.exec(promoted);
  assert.ok(held && Number(held[1]) > 0, promoted);
  assert.ok(lsnBytes(held[3]!) >= lsnBytes(held[2]!), `the new timeline begins at or past the received WAL: ${promoted}`);
  assert.equal((await delayed.query<{ n: number }>('select count(*)::int as n from t where id >= 1000'))[0]!.n, 100, 'every row it had received');
  await lab.status();
  assert.equal(lab.node('delayed').role, 'primary');
  assert.equal(lab.node('delayed').applyDelayMs, undefined, 'a primary has no delay');
  assert.equal(await setting(delayed), 0);
});

test('delayed standby: a synchronous standby re-added with a delay is refused, and left as it was', async () => {
  await using lab = await Lab.start({ replicas: 1, sync: true });
  const replica1 = lab.node('replica1');
  await assert.rejects(
    lab.addReplica({ name: 'replica1', applyDelayMs: 1000 }),
    (e: unknown) => e instanceof LabError && e.code === 'USAGE' && /^"replica1" is a synchronous standby: an apply delay on it is refused/.test(e.message),
  );
  const [row] = await lab.primary.query<{ sync_state: string }>("select sync_state from pg_stat_replication where application_name = 'replica1'");
  assert.equal(row?.sync_state, 'quorum', 'still streaming as a synchronous standby');
  assert.equal(replica1.applyDelayMs, undefined);
  assert.equal(await setting(replica1), 0);
});

for (const major of [17, 11]) {
  test(`delayed standby (PG ${major}${major < 12 ? ', recovery.conf' : ''}): rows no sooner than the delay, no switchover to it, a follow keeps it, a promote applies what it held back`, async (t) => {
    await ensureMajor(major);
    await using lab = await Lab.start({ pg: major, replicas: 1 });
    const delayed = await lab.addReplica({ name: 'delayed', applyDelayMs: DELAY_MS });
    await lab.primary.query('create table t (id int primary key)');
    await pollUntil(async () => (await delayed.query<{ n: number }>("select count(*)::int as n from pg_tables where tablename = 't'"))[0]!.n === 1 || undefined, { timeoutMs: DELAY_MS + 5000, intervalMs: 50, what: 'table t on delayed' });
    assert.equal(await setting(delayed, major), 2000);
    // A planned switchover to it is refused (on 11 from lab.json: recovery_min_apply_delay is no GUC there).
    await assert.rejects(lab.switchover('delayed'), (e: unknown) => e instanceof LabError && e.code === 'STATE' && /^Node "delayed" applies WAL 2000 ms late/.test(e.message));
    const applied = await measureDelay(lab.primary, delayed, lab.node('replica1'), 1, 5);
    t.diagnostic(`PG ${major}: applied delay median ${median(applied).toFixed(0)} ms (${applied.map((a) => a.toFixed(0)).join(', ')})`);

    await lab.promote('replica1');
    assert.equal(await setting(delayed, major), 2000, 'the follow kept it');
    await measureDelay(lab.primary, delayed, lab.node('replica1'), 10, 1);

    // A re-add with a longer delay, rows held back, then the delayed standby promoted over a stopped primary.
    await lab.addReplica({ name: 'delayed', applyDelayMs: 30_000 });
    assert.equal(await setting(delayed, major), 30_000);
    await lab.primary.query('insert into t select generate_series(1000, 1049)');
    const [{ lsn }] = await lab.primary.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn');
    await pollUntil(async () => (await delayed.query<{ ok: boolean }>('select pg_last_wal_receive_lsn() >= $1::pg_lsn as ok', [lsn]))[0]!.ok || undefined, { timeoutMs: 10_000, intervalMs: 20, what: 'delayed to receive the rows' });
    const promotion = await lab.promote('delayed');
    const wal = promotion.walAtPromote;
    t.diagnostic(JSON.stringify(wal));
    assert.equal(wal.applyDelayMs, 30_000);
    assert.equal(wal.appliedAllReceived, true);
    assert.ok(lsnBytes(wal.timelineStartLsn!) >= lsnBytes(wal.receivedLsn!), `the new timeline begins at or past the received WAL: ${JSON.stringify(wal)}`);
    assert.ok((wal.unappliedBytes ?? 0) > 0, JSON.stringify(wal));
    assert.ok(promotion.elapsedMs < 15_000, `the promote took ${promotion.elapsedMs} ms`);
    assert.equal(await count(delayed), 56, 'every row it had received');
    assert.equal(lab.node('delayed').applyDelayMs, undefined);
    assert.equal(await setting(delayed, major), 0, 'a primary has no delay');
  });
}
