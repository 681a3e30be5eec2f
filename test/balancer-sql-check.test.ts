// The sql check against real servers: a replica whose replay lag is over the limit leaves the pool
// (DRAIN) until it catches up, and a replica promoted behind the lab's back (now a primary) is kept
// out of the replica pool with a message saying why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { runBalancer } from '../src/balancer/balancer.js';
import { labBalancerConfig } from './helpers/balancer-fakes.js';
import { pollUntil } from '../src/common/poll.js';
import { queryRows } from '../src/postgres/client.js';
import { freePorts, lab, withTempLab } from './helpers/lab.js';

async function portsThrough(port: number, count: number): Promise<Set<number>> {
  const seen = new Set<number>();
  for (let i = 0; i < count; i += 1) {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 5000 });
    await client.connect();
    try {
      seen.add(Number((await client.query<{ p: string }>('SELECT current_setting(\'port\') AS p')).rows[0]!.p));
    } finally {
      await client.end();
    }
  }
  return seen;
}

test('sql check: lag over --max-lag drains a replica until it catches up; a primary never enters the replica pool; the pool follows the lab', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1, r2, r3] = await freePorts(4);
    await lab(labDir, 'master', 'start', '--port', String(m));
    await lab(labDir, 'replica', 'add', 'replica1', `${labDir}/replica1`, String(r1));
    await lab(labDir, 'replica', 'add', 'replica2', `${labDir}/replica2`, String(r2));
    const balancer = await runBalancer(labBalancerConfig(labDir, { interMs: 200, maxLagBytes: 256 * 1024 }, { name: 'lbsql' }));
    // The same pool with a limit in seconds instead of bytes.
    const bySeconds = await runBalancer(labBalancerConfig(labDir, { interMs: 200, maxLagSeconds: 1 }, { name: 'lbsql-seconds' }));
    const server = (name: string) => balancer.stats().servers.find((s) => s.name === name)!;
    try {
      await pollUntil(async () => (balancer.stats().servers.length === 2 && balancer.stats().servers.every((s) => s.status === 'UP') ? true : undefined), { timeoutMs: 5000, what: 'both replicas UP' });
      const port = balancer.address().port;

      // Lag: replay paused on replica1 while the master writes a few MB. A commit replayed first gives
      // the replica a last-replay timestamp to measure lag in seconds from.
      await queryRows({ port: m! }, 'CREATE TABLE replayed_before_pause ()');
      await pollUntil(async () => ((await queryRows({ port: r1! }, 'SELECT pg_last_xact_replay_timestamp() IS NOT NULL AS ok'))[0]?.ok ? true : undefined), { timeoutMs: 5000, what: 'a replayed commit on replica1' });
      await queryRows({ port: r1! }, 'SELECT pg_wal_replay_pause()');
      await queryRows({ port: m! }, 'CREATE TABLE lag_test AS SELECT g, repeat(\'x\', 100) AS pad FROM generate_series(1, 20000) g');
      await pollUntil(async () => (server('replica1').status === 'DRAIN' ? true : undefined), { timeoutMs: 5000, what: 'replica1 DRAIN' });
      // The lab names its primary: the lag is measured against the primary's pg_current_wal_lsn() too,
      // and the message says which reference gave the figure.
      assert.match(server('replica1').checkMessage, /replay lag \d+ bytes \(\d+\.\d MB\) behind (the primary \w+|the WAL end the replica heard of \(the primary \w+'s sample: [^)]*\)+), over the maximum 262144/);
      assert.ok((server('replica1').lagBytes ?? 0) > 256 * 1024);
      const secondsView = () => bySeconds.stats().servers.find((s) => s.name === 'replica1')!;
      await pollUntil(async () => (secondsView().status === 'DRAIN' ? true : undefined), { timeoutMs: 5000, what: 'replica1 DRAIN by seconds' });
      assert.match(secondsView().checkMessage, /replay lag \d+\.\d s( \([^)]*\))?, over the maximum 1 s/);
      assert.deepEqual(await portsThrough(port, 4), new Set([r2]), 'a lagging replica takes no new session');
      await queryRows({ port: r1! }, 'SELECT pg_wal_replay_resume()');
      await pollUntil(async () => (server('replica1').status === 'UP' ? true : undefined), { timeoutMs: 5000, what: 'replica1 back UP after catching up' });
      await pollUntil(async () => (secondsView().status === 'UP' ? true : undefined), { timeoutMs: 5000, what: 'replica1 back UP by seconds' });
      assert.deepEqual(await portsThrough(port, 4), new Set([r1, r2]));

      // A replica promoted behind the lab's back is a primary: out of the replica pool.
      await queryRows({ port: r2! }, 'SELECT pg_promote()');
      await pollUntil(async () => (server('replica2').status === 'DOWN' ? true : undefined), { timeoutMs: 10_000, what: 'promoted replica2 out of the pool' });
      assert.equal(server('replica2').role, 'primary');
      assert.match(server('replica2').checkMessage, /is a primary \(not in recovery\): not eligible for the replica pool/);
      assert.deepEqual(await portsThrough(port, 4), new Set([r1]));

      // The pool follows the lab: a replica added while the balancer runs joins it, no restart.
      await lab(labDir, 'replica', 'add', 'replica3', `${labDir}/replica3`, String(r3));
      await pollUntil(async () => (balancer.stats().servers.find((s) => s.name === 'replica3')?.status === 'UP' ? true : undefined), { timeoutMs: 5000, what: 'replica3 in the pool' });
      assert.deepEqual(await portsThrough(port, 4), new Set([r1, r3]));

      // Re-admission (issue 22): killed and started again, replica3 is UP after rise (2) sql checks
      // run back to back, each a login and the role query: with fastinter 10 s, checks spaced by
      // fastinter would take over 10 s.
      const rising = await runBalancer(labBalancerConfig(labDir, { downinterMs: 250, fastinterMs: 10_000 }, { name: 'lbrise' }));
      try {
        const third = () => rising.stats().servers.find((s) => s.name === 'replica3');
        await pollUntil(async () => (third()?.status === 'UP' ? true : undefined), { timeoutMs: 5000, what: 'replica3 UP in lbrise' });
        await lab(labDir, 'node', 'kill', 'replica3');
        await pollUntil(async () => (third()?.status === 'DOWN' ? true : undefined), { timeoutMs: 5000, what: 'replica3 DOWN after kill -9' });
        await lab(labDir, 'node', 'start', 'replica3');
        const started = Date.now();
        await pollUntil(async () => (third()?.status === 'UP' ? true : undefined), { timeoutMs: 5000, intervalMs: 10, what: 'replica3 UP again' });
        const upMs = Date.now() - started;
        console.log(`# replica3 UP ${upMs} ms after lab node start returned (downinter 250, fastinter 10000, rise 2)`);
        assert.ok(upMs < 3000, `replica3 UP ${upMs} ms after lab node start returned`);
        assert.equal(third()!.role, 'replica', 'admitted by the sql check, which saw its role');
      } finally {
        await rising.stop();
      }
    } finally {
      await balancer.stop();
      await bySeconds.stop();
    }
  });
});

test('sql check: a replica back from a pause (SIGSTOP) is not UP with --max-lag 1MB until its replay is within 1MB of the primary', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1] = await freePorts(2);
    await lab(labDir, 'master', 'start', '--port', String(m));
    await lab(labDir, 'replica', 'add', 'replica1', `${labDir}/replica1`, String(r1));
    const maxLag = 1024 * 1024;
    // The lab's check timings (inter 1000, fastinter 100, rise 2, timeout 400 ms).
    const balancer = await runBalancer(labBalancerConfig(labDir, { maxLagBytes: maxLag }, { name: 'lbpause' }));
    const replica = () => balancer.stats().servers.find((s) => s.name === 'replica1');
    let paused = false;
    try {
      await pollUntil(async () => (replica()?.status === 'UP' ? true : undefined), { timeoutMs: 5000, what: 'replica1 UP' });
      await lab(labDir, 'fault', 'pause', 'replica1');
      paused = true;
      await pollUntil(async () => (replica()?.status === 'DOWN' ? true : undefined), { timeoutMs: 5000, what: 'paused replica1 DOWN' });
      const lsn = async () => (await queryRows<{ l: string }>({ port: m! }, 'SELECT pg_current_wal_lsn()::text AS l'))[0]!.l;
      const before = await lsn();
      await queryRows({ port: m! }, 'CREATE TABLE written_while_paused AS SELECT g, repeat(\'x\', 100) AS pad FROM generate_series(1, 35000) g');
      const written = Number((await queryRows<{ d: string }>({ port: m! }, 'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::bigint::text AS d', [before]))[0]!.d);
      assert.ok(written > 4 * maxLag, `the primary wrote ${written} bytes while replica1 was paused`);
      await new Promise((resolve) => setTimeout(resolve, 2000));
      await lab(labDir, 'fault', 'heal', 'replica1');
      paused = false;
      // Every 50 ms: the balancer's view, then how far replica1's replay is behind the primary. The
      // primary writes nothing now, so the gap measured after a look at the balancer is no larger than
      // it was at that look: UP with a gap over 1MB means the check let it in too early.
      const seen: string[] = [];
      let upGap: number | null = null;
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline) {
        const status = replica()?.status ?? 'gone';
        const gap = Number((await queryRows<{ d: string }>({ port: m! }, 'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::bigint::text AS d',
          [(await queryRows<{ l: string }>({ port: r1!, connectTimeoutMs: 1000 }, 'SELECT pg_last_wal_replay_lsn()::text AS l'))[0]!.l]))[0]!.d);
        seen.push(`${status}:${gap}${status === 'DOWN' ? '' : ` (${replica()?.checkMessage})`}`);
        assert.ok(status !== 'UP' || gap <= maxLag, `replica1 UP while ${gap} bytes behind the primary: ${seen.join(' ')}`);
        if (status === 'UP') {
          upGap = gap;
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.ok(upGap !== null, `replica1 back UP: ${seen.join(' ')}`);
      console.log(`# after heal (status:bytes behind, every 50 ms): ${seen.join(' ')}`);
    } finally {
      if (paused) await lab(labDir, 'fault', 'heal', 'replica1').catch(() => undefined);
      await balancer.stop();
    }
  });
});

test('sql check: a query in flight on a paused replica ends one check timeout after DOWN; with only its postmaster frozen it gets its answer', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1] = await freePorts(2);
    await lab(labDir, 'master', 'start', '--port', String(m));
    await lab(labDir, 'replica', 'add', 'replica1', `${labDir}/replica1`, String(r1));
    // The lab's check timings (inter 1000, fastinter 100, downinter 250, timeout 400 ms), no `timeout server`.
    const balancer = await runBalancer(labBalancerConfig(labDir, {}, { name: 'lbfrozen' }));
    const replica = () => balancer.stats().servers.find((s) => s.name === 'replica1');
    const client = () => new pg.Client({ host: '127.0.0.1', port: balancer.address().port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 5000, query_timeout: 20_000 });
    let postmaster: number | null = null;
    let paused = false;
    try {
      await pollUntil(async () => (replica()?.status === 'UP' ? true : undefined), { timeoutMs: 5000, what: 'replica1 UP' });

      // 1. Only the postmaster frozen (new connections hang, its backends run): the check's own session
      //    still answers, so a query in flight keeps the long grace and gets its answer.
      postmaster = Number((await readFile(`${labDir}/replica1/postmaster.pid`, 'utf8')).split('\n')[0]);
      const alive = client();
      // After its answer the session is closed with a FATAL saying why (its server is DOWN): expected.
      alive.on('error', () => undefined);
      await alive.connect();
      try {
        const sleeping = alive.query('SELECT pg_sleep(2.5) AS slept, 42 AS answer');
        process.kill(postmaster, 'SIGSTOP');
        await pollUntil(async () => (replica()?.status === 'DOWN' ? true : undefined), { timeoutMs: 5000, what: 'replica1 DOWN (postmaster frozen)' });
        assert.equal((await sleeping).rows[0].answer, 42, 'the query in flight got its answer');
      } finally {
        process.kill(postmaster, 'SIGCONT');
        postmaster = null;
        await alive.end().catch(() => undefined);
      }
      await pollUntil(async () => (replica()?.status === 'UP' ? true : undefined), { timeoutMs: 5000, what: 'replica1 UP again' });

      // 2. The whole node paused (`lab fault pause`: a frozen host): the check's session is silent too,
      //    so the query in flight ends one check timeout (400 ms) after DOWN instead of hanging.
      const frozen = client();
      frozen.on('error', () => undefined);
      await frozen.connect();
      try {
        await lab(labDir, 'fault', 'pause', 'replica1');
        paused = true;
        const started = Date.now();
        const outcome = await frozen.query('SELECT 1').then(() => 'answered', (error: Error) => error.message);
        const waited = Date.now() - started;
        const down = replica();
        console.log(`# paused replica1: the query in flight ended after ${waited} ms (${outcome}); check ${down?.checkStatus} ${down?.checkMessage}`);
        assert.notEqual(outcome, 'answered');
        assert.equal(down?.status, 'DOWN');
        // Detection (at most one interval plus one check timeout, 1.4 s) plus the grace of one check timeout, plus slack for a loaded machine.
        assert.ok(waited <= 1400 + 400 + 1000, `the query in flight waited ${waited} ms`);
      } finally {
        await frozen.end().catch(() => undefined);
      }
    } finally {
      if (postmaster) process.kill(postmaster, 'SIGCONT');
      if (paused) await lab(labDir, 'fault', 'heal', 'replica1').catch(() => undefined);
      await balancer.stop();
    }
  });
});
