// Write downtime of a planned switchover (`lab switchover`) through a `--pool primary` balancer, beside a
// crash failover of the same lab in the same run (kill -9 of the primary's every process, then at once
// `lab promote` of a standby, the others following: an operator who needs no detection time at all).
// Writers commit through the primary pool and reconnect at once on an error; readers read through the
// replicas pool. Per round: write downtime = the longest gap between two acknowledged commits in the
// round's window, acknowledged commits missing on the new primary afterwards, reader errors. Medians.
//   node dist/benchmarks/switchover.js           (BENCH_ROUNDS=8 switchovers, BENCH_CRASHES=3 by default)
import { Lab, type BalancerProcess } from '../src/index.js';
import { median } from './median.js';
import { downtime, lostSql, startLoad as startWriteLoad, waitAcks, type Load } from './write-load.js';
import { lsnToNumber } from '../src/postgres/recovery.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 8);
const crashes = Number(process.env.BENCH_CRASHES ?? 3);
const WRITERS = 2;
const READERS = 2;

function startLoad(rw: BalancerProcess, ro: BalancerProcess): Load {
  return startWriteLoad({ writer: () => rw.connectionConfig(), writers: WRITERS, reader: () => ro.connectionConfig(), readers: READERS });
}

async function lost(lab: Lab, load: Load): Promise<number> {
  const [row] = await lab.primary.query<{ n: number }>(lostSql(), [load.acked.map((a) => a.id)]);
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
