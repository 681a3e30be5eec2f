// Write downtime of a planned switchover (`lab switchover`) through a `--pool primary` balancer, beside a
// crash failover of the same lab in the same run (kill -9 of the primary's every process, then at once
// `lab promote` of a standby, the others following: an operator who needs no detection time at all).
// Writers commit through the primary pool and reconnect at once on an error; readers read through the
// replicas pool. Per round: write downtime = the longest gap between two acknowledged commits in the
// round's window, acknowledged commits missing on the new primary afterwards, reader errors. Medians.
//   node dist/benchmarks/switchover.js           (BENCH_ROUNDS=8 switchovers, BENCH_CRASHES=3 by default)
import pg from 'pg';
import { Lab, type BalancerProcess } from '../src/index.js';
import { median } from './median.js';
import { lsnToNumber } from '../src/postgres/recovery.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 8);
const crashes = Number(process.env.BENCH_CRASHES ?? 3);
const WRITERS = 2;
const READERS = 2;

interface Load {
  acked: { id: number; at: number }[];
  readerErrors: { at: number; message: string }[];
  writerErrors: number;
  stop(): Promise<void>;
}

/** Writers and readers until stopped, each bounded to 1,000,000 statements. */
function startLoad(rw: BalancerProcess, ro: BalancerProcess): Load {
  const load: Load = { acked: [], readerErrors: [], writerErrors: 0, stop: async () => undefined };
  let stopped = false;
  let next = 1;
  const loop = async (target: BalancerProcess, step: (client: pg.Client) => Promise<void>, onError: (error: unknown) => void) => {
    let client: pg.Client | undefined;
    for (let i = 0; !stopped && i < 1_000_000; i += 1) {
      try {
        if (!client) {
          client = new pg.Client({ ...target.connectionConfig(), connectionTimeoutMillis: 2000, query_timeout: 2000 });
          client.on('error', () => undefined);
          await client.connect();
        }
        await step(client);
      } catch (error) {
        onError(error);
        await client?.end().catch(() => undefined);
        client = undefined;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
    await client?.end().catch(() => undefined);
  };
  const loops = [
    ...Array.from({ length: WRITERS }, () =>
      loop(rw, async (client) => {
        const id = next++;
        await client.query('insert into acked(id) values ($1)', [id]);
        load.acked.push({ id, at: Date.now() });
      }, () => (load.writerErrors += 1)),
    ),
    ...Array.from({ length: READERS }, () =>
      loop(ro, async (client) => {
        await client.query('select count(*) from pg_class');
      }, (error) => load.readerErrors.push({ at: Date.now(), message: error instanceof Error ? error.message : String(error) })),
    ),
  ];
  load.stop = async () => {
    stopped = true;
    await Promise.all(loops);
  };
  return load;
}

/** The longest gap between acknowledged commits from `from` until the first commit 1 s after `until`. */
function downtime(load: Load, from: number, until: number): number {
  const times = load.acked.map((a) => a.at).filter((t) => t >= from - 1000);
  let longest = 0;
  for (let i = 1; i < times.length; i += 1) if (times[i - 1]! <= until + 1000) longest = Math.max(longest, times[i]! - times[i - 1]!);
  return longest;
}

async function waitAcks(load: Load, after: number, count: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (load.acked.filter((a) => a.at > after).length < count) {
    if (Date.now() > deadline) throw new Error(`no acknowledged write within 30 s after ${new Date(after).toISOString()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function lost(lab: Lab, load: Load): Promise<number> {
  const ids = load.acked.map((a) => a.id);
  const [row] = await lab.primary.query<{ n: number }>('select count(*)::int as n from unnest($1::int[]) as a(id) where id not in (select id from acked)', [ids]);
  return row!.n;
}

const lab = await Lab.start({ replicas: 2 });
const rw = await lab.balancerProcess({ name: 'rw', pool: 'primary' });
const ro = await lab.balancerProcess({ name: 'ro', pool: 'replicas' });
try {
  await lab.primary.query('create table acked (id int primary key)');
  const load = startLoad(rw, ro);
  const switchovers: { downtime: number; noPrimary: number; readerErrors: number }[] = [];
  const failovers: { downtime: number; readerErrors: number }[] = [];
  let lostBySwitchovers = 0;
  try {
    await waitAcks(load, 0, 200);
    for (let round = 0; round < rounds; round += 1) {
      const target = lab.primary.name === 'master1' ? 'replica1' : 'master1';
      const errorsBefore = load.readerErrors.length;
      const from = Date.now();
      const result = await lab.switchover(target);
      const until = Date.now();
      await waitAcks(load, until + 1000, 50);
      const row = { downtime: downtime(load, from, until), noPrimary: result.noPrimaryMs, readerErrors: load.readerErrors.length - errorsBefore };
      switchovers.push(row);
      console.error(`switchover ${round + 1}/${rounds} to ${target}: write downtime ${row.downtime} ms (no primary ${row.noPrimary} ms), reader errors ${row.readerErrors}`);
    }
    // Acknowledged commits lost by the switchovers (the writers still run: counted up to now).
    await lab.waitForCatchup();
    lostBySwitchovers = await lost(lab, { ...load, acked: [...load.acked] });
    for (let round = 0; round < crashes; round += 1) {
      const old = lab.primary.name;
      const errorsBefore = load.readerErrors.length;
      const from = Date.now();
      await lab.primary.crash();
      // The standby that received the most WAL, as an operator (and lab demo primary-failover) picks it: the others can follow it.
      const positions = await Promise.all(lab.replicas.filter((r) => r.name !== old).map(async (r) => ({ name: r.name, lsn: (await r.lsn('receive')) ?? (await r.lsn('replay')) ?? '0/0' })));
      positions.sort((a, b) => lsnToNumber(b.lsn) - lsnToNumber(a.lsn));
      const target = positions[0]!.name;
      await lab.promote(target, { formerPrimary: 'rewind' });
      const until = Date.now();
      await waitAcks(load, until + 1000, 50);
      const row = { downtime: downtime(load, from, until), readerErrors: load.readerErrors.length - errorsBefore };
      failovers.push(row);
      console.error(`crash failover ${round + 1}/${crashes} to ${target}: write downtime ${row.downtime} ms, reader errors ${row.readerErrors}`);
    }
  } finally {
    await load.stop();
  }
  await lab.waitForCatchup();
  const missing = await lost(lab, load);
  const s = median(switchovers.map((r) => r.downtime))!;
  const f = median(failovers.map((r) => r.downtime));
  console.log(`PostgreSQL ${lab.version.version}, ${WRITERS} writers through a --pool primary built-in balancer, ${READERS} readers through a --pool replicas one; medians:`);
  console.log(`  switchover (${rounds} rounds)      write downtime ${s.toFixed(0).padStart(5)} ms   no primary ${median(switchovers.map((r) => r.noPrimary))!.toFixed(0)} ms   reader errors ${switchovers.reduce((a, r) => a + r.readerErrors, 0)} in all`);
  if (f !== null) console.log(`  crash failover (${crashes} rounds)  write downtime ${f.toFixed(0).padStart(5)} ms   reader errors ${failovers.reduce((a, r) => a + r.readerErrors, 0)} in all   (${(s / f).toFixed(2)} x: switchover / crash)`);
  console.log(`  acknowledged commits ${load.acked.length}; lost by the switchovers ${lostBySwitchovers}, by the crash failovers ${missing - lostBySwitchovers} (asynchronous standbys); failed writes ${load.writerErrors}`);
  const kinds = new Map<string, number>();
  for (const e of load.readerErrors) kinds.set(e.message, (kinds.get(e.message) ?? 0) + 1);
  for (const [message, n] of kinds) console.log(`  reader error x${n}: ${message}`);
} finally {
  await rw.stop().catch(() => undefined);
  await ro.stop().catch(() => undefined);
  await lab.close();
}
