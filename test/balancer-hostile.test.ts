// The balancer under hostile conditions (issues 15 and 22), against real PostgreSQL servers built by the
// CLI: a replica whose postmaster is SIGSTOPped, a flood of cancel requests with random keys, 500
// half-open clients, 2,000 startups at once, thousands of slow HTTP clients on the stats port with a low
// open-files limit, a stats address that accepts and closes. Every load loop is bounded in count and
// time; every process, socket and signal is undone in `finally`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { execa } from 'execa';
import { fetchBalancerStats } from '../src/commands/balancer.js';
import type { BalancerRecord } from '../src/lab/state.js';
import { pollUntil } from '../src/common/poll.js';
import { queryRows } from '../src/postgres/client.js';
import { freePorts, lab, labBin, labJson, runLab, withTempLab } from './helpers/lab.js';
import { staticBalancerConfig } from './helpers/balancer-fakes.js';
import { answerBound } from '../src/balancer/client-session.js';
import { createChecker } from '../src/balancer/health-check.js';
import { LAB_CHECK_DEFAULTS } from '../src/balancer/config.js';
import { CANCEL_REQUEST } from '../src/balancer/protocol.js';
import { CANCEL_LIMITS } from '../src/balancer/cancel-limit.js';
import { cancelFlood } from '../benchmarks/hostile.js';
import { fdCount } from '../benchmarks/idle-clients.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One real psql through the balancer (TLS preferred, the lab's CA and pgpass from the environment). */
async function psqlOnce(port: number): Promise<string | null> {
  const result = await execa('psql', [`host=127.0.0.1 port=${port} user=postgres dbname=postgres connect_timeout=15`, '-Atc', 'SELECT 1'], {
    timeout: 20_000, reject: false, all: true,
  });
  return result.exitCode === 0 && String(result.stdout).trim() === '1' ? null : `exit ${result.exitCode}: ${String(result.all).trim()}`;
}

/** A new psql every `everyMs` while `running()` (at most `max`), each on its own: their failures. */
async function psqlLoop(port: number, running: () => boolean, options: { everyMs: number; max: number }): Promise<{ started: number; failures: string[] }> {
  const runs: Promise<string | null>[] = [];
  while (running() && runs.length < options.max) {
    runs.push(psqlOnce(port));
    await sleep(options.everyMs);
  }
  const failures = (await Promise.all(runs)).filter((f): f is string => f !== null);
  return { started: runs.length, failures };
}

/** A session through the balancer, and the port of the server it landed on. */
async function sessionOn(port: number): Promise<{ client: pg.Client; serverPort: number; errors: string[] }> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 10_000 });
  const errors: string[] = [];
  client.on('error', (error) => errors.push(error.message));
  await client.connect();
  const serverPort = Number((await client.query<{ port: string }>("SELECT current_setting('port') AS port")).rows[0]!.port);
  return { client, serverPort, errors };
}

/** Established TCP connections to `port` on loopback (from anyone: the balancer, checks). */
async function connectionsTo(port: number): Promise<number> {
  const { stdout } = await execa('ss', ['-Htn', 'state', 'established', `( dport = :${port} )`]);
  return String(stdout).split('\n').filter((line) => line.trim()).length;
}

async function serverStatus(record: BalancerRecord, name: string): Promise<string | undefined> {
  return (await fetchBalancerStats(record, 2000).catch(() => null))?.servers.find((s) => s.name === name)?.status;
}

/** The end of a load loop: its sockets destroyed, its balancer stopped. */
async function releaseLoad(labDir: string, name: string, sockets: Set<net.Socket>): Promise<void> {
  for (const socket of sockets) socket.destroy();
  await runLab(labDir, ['balancer', 'stop', '--name', name]);
}

async function startBalancer(labDir: string, name: string, listen: number, stats: number, extra: string[] = []): Promise<BalancerRecord> {
  const record = await labJson<BalancerRecord>(labDir, 'balancer', 'start', '--name', name, '--listen', `127.0.0.1:${listen}`, '--stats', `127.0.0.1:${stats}`, ...extra);
  await pollUntil(async () => ((await fetchBalancerStats(record)).servers.filter((s) => s.status === 'UP').length === 2 ? true : undefined), {
    timeoutMs: 10_000, what: `both replicas UP behind ${name}`,
  });
  return record;
}

test('the startup-answer bound stays under the connect timeout and half the connection phase', () => {
  const bound = (connectMs: number, answerMs?: number) => answerBound(staticBalancerConfig([], {}, { timeouts: { connectMs, clientMs: 0, serverMs: 0, ...(answerMs ? { answerMs } : {}) } }));
  assert.equal(bound(3000), 1000, 'lab defaults: 1 s of a 3 s phase');
  assert.equal(bound(10_000), 1000, "the seed's timeout connect 10s");
  assert.equal(bound(300), 300, 'never over the connect timeout');
  assert.equal(bound(0), 500, 'a file without timeout connect: a 1 s phase, so 500 ms');
  assert.equal(bound(3000, 2500), 1500, 'an --answer-timeout too long for the phase is cut to half of it');
});

test('hostile clients and a hung server against a lab of a master and two replicas', async (t) => {
  await withTempLab(async (labDir) => {
    const [m, r1, r2, ...ports] = await freePorts(15);
    await lab(labDir, 'master', 'start', '--port', String(m));
    await lab(labDir, 'replica', 'add', 'replica1', `${labDir}/replica1`, String(r1));
    await lab(labDir, 'replica', 'add', 'replica2', `${labDir}/replica2`, String(r2));
    const nodes = (await labJson<{ nodes: { name: string; pid: number }[] }>(labDir, 'status')).nodes;
    const postmaster1 = nodes.find((n) => n.name === 'replica1')!.pid;
    assert.ok(postmaster1 > 0);

    await t.test('a SIGSTOPped replica: DOWN within 1.5 s, no client fails, sessions on it closed when idle, answered when busy', async () => {
      const [listen, stats] = [ports[0]!, ports[1]!];
      const record = await startBalancer(labDir, 'hung', listen, stats);
      const sessions: Awaited<ReturnType<typeof sessionOn>>[] = [];
      let stopped = false;
      try {
        // Two sessions on replica1, opened before the freeze: one will be busy, one idle.
        for (let i = 0; i < 8 && sessions.filter((s) => s.serverPort === r1).length < 2; i += 1) sessions.push(await sessionOn(listen));
        const [busy, idle] = sessions.filter((s) => s.serverPort === r1);
        assert.ok(busy && idle, 'two sessions landed on replica1');
        let running = true;
        const loop = psqlLoop(listen, () => running, { everyMs: 200, max: 60 });
        await sleep(1000);
        const answer = busy.client.query<{ one: number }>('SELECT 1 AS one FROM pg_sleep(1.5)');
        await sleep(100);
        process.kill(postmaster1, 'SIGSTOP');
        stopped = true;
        const stoppedAt = Date.now();
        await pollUntil(async () => ((await serverStatus(record, 'replica1')) === 'DOWN' ? true : undefined), { timeoutMs: 5000, intervalMs: 20, what: 'replica1 DOWN' });
        const downMs = Date.now() - stoppedAt;
        // The busy session gets its answer: the frozen postmaster's backends still run.
        assert.deepEqual((await answer).rows, [{ one: 1 }], 'the query in flight on a server marked down is answered');
        // The idle one is closed: its next query fails at once instead of hanging.
        await assert.rejects(idle.client.query('SELECT 1'), 'the idle session of a server marked down is closed');
        // `lab status` bounds its probe and says so.
        const statusStarted = Date.now();
        const status = await labJson<{ nodes: { name: string; status: string; serverProblem?: string }[] }>(labDir, 'status');
        const statusMs = Date.now() - statusStarted;
        const frozen = status.nodes.find((n) => n.name === 'replica1')!;
        assert.equal(frozen.serverProblem, 'not answering', JSON.stringify(frozen));
        assert.ok(statusMs < 3000, `lab status took ${statusMs} ms`);
        await sleep(Math.max(0, 4000 - statusMs));
        process.kill(postmaster1, 'SIGCONT');
        stopped = false;
        await pollUntil(async () => ((await serverStatus(record, 'replica1')) === 'UP' ? true : undefined), { timeoutMs: 5000, what: 'replica1 back UP' });
        await sleep(1000);
        running = false;
        const { started, failures } = await loop;
        const message = (await fetchBalancerStats(record)).servers.find((s) => s.name === 'replica1')!;
        console.log(`SIGSTOP: DOWN after ${downMs} ms; ${started} psql clients, ${failures.length} failed; replica1 ${message.downTransitions} down transition(s)`);
        assert.ok(downMs <= 1500, `replica1 DOWN ${downMs} ms after SIGSTOP`);
        assert.deepEqual(failures, [], 'no client fails while a replica hangs');
        assert.ok(started >= 30);
      } finally {
        if (stopped) process.kill(postmaster1, 'SIGCONT');
        for (const s of sessions) await s.client.end().catch(() => undefined);
        await runLab(labDir, ['balancer', 'stop', '--name', 'hung']);
      }
    });

    await t.test('the sql check: a frozen postmaster is hung, unless it answered our cancel connections meanwhile (busy, not DOWN)', async () => {
      // A timeout of 1 s rather than 400 ms: this is about what the check concludes, not how fast.
      const settings = { ...LAB_CHECK_DEFAULTS, timeoutMs: 1000 };
      const options = { expectedRole: 'replica' as const, onLost: () => undefined };
      const plain = createChecker({ host: '127.0.0.1', port: r1! }, settings, options);
      const busy = createChecker({ host: '127.0.0.1', port: r1! }, settings, { ...options, busySince: () => 'its postmaster answered a cancel connection of ours 3 ms ago (4 open): busy, not hung' });
      let stopped = false;
      try {
        // Each logs in while the postmaster runs: its role query then runs on a kept backend.
        for (const checker of [plain, busy]) await pollUntil(async () => ((await checker.run()).ok ? true : undefined), { timeoutMs: 10_000, what: 'the check to log in' });
        process.kill(postmaster1, 'SIGSTOP');
        stopped = true;
        const [hung, notHung] = [await plain.run(), await busy.run()];
        assert.deepEqual([hung.ok, hung.hung, hung.backendsSilent], [false, true, false], `a frozen postmaster is hung: ${hung.message}`);
        assert.deepEqual([notHung.ok, notHung.hung ?? false, notHung.role], [true, false, 'replica'], notHung.message);
        assert.match(notHung.message, /^replica, replay lag .*; not answering: a new connection got no answer within 1000 ms, but its postmaster answered a cancel connection of ours/);
      } finally {
        if (stopped) process.kill(postmaster1, 'SIGCONT');
        plain.close();
        busy.close();
      }
    });

    await t.test('10,000 random-key cancels in 10 s beside 4 TLS sessions: every server UP, every client served, the sessions kept, a real cancel lands', async () => {
      const [listen, stats] = [ports[10]!, ports[11]!];
      const record = await startBalancer(labDir, 'cancels', listen, stats);
      // Four TLS sessions (the balancer cannot read their keys: an unknown key goes to their servers).
      const long = Array.from({ length: 4 }, () => execa('psql', [`host=127.0.0.1 port=${listen} user=postgres dbname=postgres sslmode=require`, '-Atc',
        'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()', '-c', 'SELECT pg_sleep(60)'], { reject: false, all: true, timeout: 90_000 }));
      let plain: Awaited<ReturnType<typeof sessionOn>> | null = null;
      let running = true;
      try {
        const sleeping = async (port: number) => (await queryRows<{ n: number }>({ port }, "SELECT count(*)::int AS n FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE s.ssl AND a.query = 'SELECT pg_sleep(60)' AND a.state = 'active'"))[0]!.n;
        // A session that ends before it sleeps fails the test at once, with what psql said.
        let starting = true;
        const endedEarly = Promise.race(long.map(async (child) => String((await child).all).trim())).then((all) => {
          if (starting) throw new Error(`a TLS session ended before the flood: ${all}`);
        });
        try {
          await Promise.race([pollUntil(async () => ((await sleeping(r1!)) + (await sleeping(r2!)) === 4 ? true : undefined), { timeoutMs: 15_000, what: 'the 4 TLS sessions in pg_sleep' }), endedEarly]);
        } finally {
          starting = false;
        }
        // A plaintext session (its key is known to the balancer) whose query will be cancelled mid-flood.
        plain = await sessionOn(listen);
        const { processID, secretKey } = plain.client as unknown as { processID: number; secretKey: number };
        const query = plain.client.query('SELECT pg_sleep(30)').then(() => null, (error: { code?: string }) => error.code ?? 'no code');
        const fdsBefore = await fdCount(record.pid);
        const before = await fetchBalancerStats(record);

        const notUp: string[] = [];
        let slowestStatsMs = 0;
        const watch = (async () => {
          while (running) {
            const asked = Date.now();
            const now = await fetchBalancerStats(record, 2000).catch(() => null);
            slowestStatsMs = Math.max(slowestStatsMs, Date.now() - asked);
            for (const server of now?.servers ?? []) if (server.status !== 'UP') notUp.push(`${server.name} ${server.status}: ${server.checkMessage}`);
            await sleep(100);
          }
        })();
        const clients = psqlLoop(listen, () => running, { everyMs: 100, max: 200 });
        const flood = cancelFlood(listen, 10_000, 10);
        // Mid-flood, the plaintext session's own cancel, in plaintext through the balancer.
        await sleep(5000);
        const cancel = Buffer.alloc(16);
        cancel.writeInt32BE(16, 0);
        cancel.writeInt32BE(CANCEL_REQUEST, 4);
        cancel.writeInt32BE(processID, 8);
        cancel.writeInt32BE(secretKey, 12);
        const cancelledAt = Date.now();
        const socket = net.connect({ host: '127.0.0.1', port: listen });
        socket.on('error', () => undefined);
        socket.end(cancel);
        socket.resume();
        const cancelled = await query;
        const cancelMs = Date.now() - cancelledAt;
        const { sent, ms } = await flood;
        const floodOver = Date.now();
        running = false;
        const [{ started, failures }] = await Promise.all([clients, watch]);
        const after = await fetchBalancerStats(record);
        const dropped = after.cancelsDropped!;
        const droppedTotal = Object.values(dropped).reduce((total, n) => total + n, 0);
        // The same counters in every format the stats listener serves.
        const [metrics, csv, html] = await Promise.all(['/metrics', '/;csv', '/'].map(async (uri) => (await fetch(`http://127.0.0.1:${stats}${uri}`)).text()));
        assert.match(metrics!, new RegExp(`\\nlab_balancer_cancels_forwarded_total\\{balancer="cancels"\\} ${after.cancelsForwarded}\\n`));
        for (const [reason, n] of Object.entries(dropped)) assert.match(metrics!, new RegExp(`\\nlab_balancer_cancels_dropped_total\\{balancer="cancels",reason="${reason}"\\} ${n}\\n`));
        for (const server of after.servers) assert.match(metrics!, new RegExp(`\\nlab_balancer_server_cancels_total\\{balancer="cancels",server="${server.name}"\\} ${server.cancelsSent}\\n`));
        const frontend = csv!.split('\n').find((line) => line.startsWith('cancels,FRONTEND,'))!.split(',');
        assert.equal(frontend[10], String(droppedTotal), 'dreq: the cancels dropped');
        assert.match(html!, new RegExp(`<span id="cancels">${after.cancelsForwarded}</span> forwarded, <span id="cancels-dropped">${droppedTotal}</span> dropped`));
        const stillRunning = long.filter((child) => child.exitCode === null).length;
        // The flood's connections are gone: the balancer's descriptors come back to what they were.
        const fdsAfter = await pollUntil(async () => {
          const fds = await fdCount(record.pid);
          return fds <= fdsBefore ? fds : undefined;
        }, { timeoutMs: 10_000, what: `the balancer's descriptors back to ${fdsBefore}` });
        console.log(`cancel flood: ${sent} sent in ${ms} ms; ${after.cancelsForwarded! - before.cancelsForwarded!} relayed, dropped ${JSON.stringify(dropped)}; ` +
          `${started} psql clients, ${failures.length} failed; real cancel landed ${cancelMs} ms after it was sent; ` +
          `servers ${after.servers.map((s) => `${s.name} ${s.status} ${s.cancelsSent} sent, ${s.cancelsDropped} not sent`).join(', ')}; fds ${fdsBefore} -> ${fdsAfter}; slowest stats ${slowestStatsMs} ms`);
        assert.deepEqual(notUp, [], 'every server stays UP through the flood');
        assert.deepEqual(after.servers.map((s) => s.downTransitions), before.servers.map((s) => s.downTransitions), 'no DOWN transition');
        assert.deepEqual(failures, [], 'every real client is served');
        assert.ok(started >= Math.floor(ms / 1000), `${started} real clients during a flood of ${ms} ms: at least one a second`);
        assert.equal(cancelled, '57014', 'the plaintext session\'s own cancel lands during the flood');
        assert.ok(cancelMs < 3000, `the real cancel took ${cancelMs} ms`);
        assert.equal(stillRunning, 4, 'the 4 TLS sessions are not cut');
        assert.ok(dropped.clientRate > 0, 'cancels past the flood\'s per-address bound are dropped and counted');
        assert.ok(after.cancelsForwarded! > before.cancelsForwarded!, 'cancels within the bounds are relayed');
        // The TLS sessions' own cancels (psql on SIGINT, in plaintext with a key the balancer never saw)
        // reach their servers once the flood is over and this address's bucket has filled again.
        await sleep(Math.max(0, floodOver + (CANCEL_LIMITS.perClientBurst / CANCEL_LIMITS.perClientPerSecond) * 1000 - Date.now()));
        for (const child of long) child.kill('SIGINT');
        const ended = await Promise.all(long);
        for (const result of ended) {
          assert.match(String(result.all), /^t\n[\s\S]*canceling statement due to user request/, `a TLS session cancelled by its own psql: ${String(result.all)}`);
        }
      } finally {
        running = false;
        for (const child of long) child.kill('SIGKILL');
        await Promise.all(long);
        await plain?.client.end().catch(() => undefined);
        await runLab(labDir, ['balancer', 'stop', '--name', 'cancels']);
      }
    });

    await t.test('500 half-open clients: the replicas\' connections stay bounded, real clients never fail', async () => {
      const [listen, stats] = [ports[2]!, ports[3]!];
      await startBalancer(labDir, 'halfopen', listen, stats);
      const sockets = new Set<net.Socket>();
      let running = true;
      let opened = 0;
      // The first 8 bytes of a 80-byte startup message (length, protocol 3.0), then nothing.
      const partial = Buffer.alloc(8);
      partial.writeInt32BE(80, 0);
      partial.writeInt32BE(196608, 4);
      // 50 of them send a whole SSLRequest instead, then nothing: it must reach a server (TLS is passed
      // through), and the server connection must not outlive the connection phase.
      const sslRequest = Buffer.alloc(8);
      sslRequest.writeInt32BE(8, 0);
      sslRequest.writeInt32BE(80877103, 4);
      let sslOpened = 0;
      const open = (ssl = false): void => {
        if (!running || opened >= 5000) return;
        opened += 1;
        if (ssl) sslOpened += 1;
        const socket = net.connect({ host: '127.0.0.1', port: listen });
        sockets.add(socket);
        socket.on('error', () => undefined);
        socket.once('connect', () => socket.write(ssl ? sslRequest : partial));
        // Reads what it is sent (the balancer's FATAL), so it notices being dropped and comes back.
        socket.resume();
        socket.once('close', () => {
          sockets.delete(socket);
          open(ssl);
        });
      };
      let most = 0;
      try {
        for (let i = 0; i < 500; i += 1) open(i < 50);
        await pollUntil(async () => (sockets.size >= 500 ? true : undefined), { timeoutMs: 5000, what: '500 half-open clients' });
        const sampler = (async () => {
          while (running) {
            most = Math.max(most, await connectionsTo(r1!), await connectionsTo(r2!));
            await sleep(200);
          }
        })();
        const { started, failures } = await psqlLoop(listen, () => running, { everyMs: 200, max: 40 }).finally(() => undefined);
        running = false;
        await sampler;
        console.log(`half-open: ${opened} half-open connects (${sslOpened} SSLRequest only); ${started} psql clients, ${failures.length} failed; at most ${most} connections to one replica`);
        assert.deepEqual(failures, [], 'real clients do not fail');
        assert.ok(opened > 1000, 'the half-open clients were dropped and came back');
        assert.ok(sslOpened > 100, 'the SSLRequest-only clients were dropped after the connection phase too');
        // 32 early connects at most, 25 SSLRequest-only clients per replica, the checks, real clients, replication.
        assert.ok(most <= 80, `at most ${most} connections to one replica (max_connections 100)`);
      } finally {
        running = false;
        await releaseLoad(labDir, 'halfopen', sockets);
      }
    });

    await t.test('2,000 startups at once: each client gets a session or a FATAL, none is closed silently', async () => {
      const [listen, stats] = [ports[4]!, ports[5]!];
      const record = await startBalancer(labDir, 'flood', listen, stats);
      const clients: pg.Client[] = [];
      try {
        const started = Date.now();
        const outcomes = await Promise.all(Array.from({ length: 2000 }, async () => {
          const client = new pg.Client({ host: '127.0.0.1', port: listen, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 60_000 });
          clients.push(client);
          // A FATAL that reaches the client between its login and its query comes as an 'error' event;
          // the query then fails with "not queryable", without the FATAL's code: keep the FATAL.
          let fatal: (Error & { code?: string }) | null = null;
          client.on('error', (error: Error & { code?: string }) => (fatal ??= error));
          try {
            await client.connect();
            await client.query('SELECT 1');
            return { ok: true, ms: Date.now() - started };
          } catch (error) {
            const e = (fatal ?? error) as Error & { code?: string };
            return { ok: false, code: e.code ?? '', message: e.message, ms: Date.now() - started };
          } finally {
            await client.end().catch(() => undefined);
          }
        }));
        const sessions = outcomes.filter((o) => o.ok).length;
        const fatal = outcomes.filter((o) => !o.ok && /^[0-9A-Z]{5}$/.test(o.code ?? ''));
        const silent = outcomes.filter((o) => !o.ok && !/^[0-9A-Z]{5}$/.test(o.code ?? ''));
        const times = outcomes.map((o) => o.ms).sort((a, b) => a - b);
        const stats2 = await fetchBalancerStats(record);
        console.log(`2,000 at once: ${sessions} sessions, ${fatal.length} FATAL (${[...new Set(fatal.map((f) => `${f.code} ${f.message}`))].slice(0, 3).join(' | ')}), ${silent.length} without a word; p99 ${times[Math.floor(times.length * 0.99)]} ms; queue max ${stats2.queueMax}, servers' maxconn ${stats2.servers.map((s) => s.maxconn).join('/')}`);
        assert.deepEqual(silent.map((s) => s.message).slice(0, 5), [], 'no client is closed without a message');
        assert.ok(sessions > 0);
        assert.ok(stats2.servers.every((s) => typeof s.maxconn === 'number' && s.maxconn > 0 && s.maxconn < 100), 'per-server maxconn from max_connections');
        assert.ok(stats2.servers.every((s) => s.sessionsMax <= s.maxconn!), 'never more sessions on a server than its maxconn');
        const csv = await (await fetch(`http://127.0.0.1:${stats}/;csv`)).text();
        assert.match(csv, new RegExp(`\\nflood,BACKEND,0,${stats2.queueMax},`), 'qcur / qmax in the CSV');
      } finally {
        for (const client of clients) await client.end().catch(() => undefined);
        await runLab(labDir, ['balancer', 'stop', '--name', 'flood']);
      }
    });

    await t.test('3,000 slow HTTP clients on the stats port under a low open-files limit: clients through the balancer never fail', async () => {
      const [listen, stats] = [ports[6]!, ports[7]!];
      // The balancer (a child of this CLI) starts with 1024 descriptors: 3,000 held stats connections would starve it.
      const started = await execa('prlimit', ['--nofile=1024:1024', 'node', labBin, '--lab-dir', labDir, 'balancer', 'start', '--name', 'slowstats', '--listen', `127.0.0.1:${listen}`, '--stats', `127.0.0.1:${stats}`, '--json'], { reject: false });
      assert.equal(started.exitCode, 0, started.stderr);
      const record = JSON.parse(String(started.stdout)) as BalancerRecord;
      const sockets = new Set<net.Socket>();
      let running = true;
      let opened = 0;
      const open = (): void => {
        if (!running || opened >= 20_000) return;
        opened += 1;
        const socket = net.connect({ host: '127.0.0.1', port: stats });
        sockets.add(socket);
        socket.on('error', () => undefined);
        socket.once('connect', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\n'));
        socket.once('close', () => {
          sockets.delete(socket);
          setTimeout(open, 50);
        });
      };
      try {
        await pollUntil(async () => ((await fetchBalancerStats(record)).servers.filter((s) => s.status === 'UP').length === 2 ? true : undefined), { timeoutMs: 10_000, what: 'both UP' });
        const limits = await readFile(`/proc/${record.pid}/limits`, 'utf8');
        assert.match(limits, /Max open files\s+1024\s+1024/);
        for (let i = 0; i < 3000; i += 1) open();
        await sleep(1000);
        const { started: count, failures } = await psqlLoop(listen, () => running, { everyMs: 200, max: 30 });
        const status = await runLab(labDir, ['balancer', 'status', '--name', 'slowstats'], { timeout: 20_000 });
        running = false;
        console.log(`slow stats clients: ${opened} opened; ${count} psql clients, ${failures.length} failed; status exit ${status.exitCode}`);
        assert.deepEqual(failures, [], 'clients through the balancer do not fail');
        assert.ok(opened >= 3000);
      } finally {
        running = false;
        await releaseLoad(labDir, 'slowstats', sockets);
      }
    });

    await t.test('a stats address that accepts and closes: `lab balancer status` says so in one line, non-zero', async () => {
      const [listen, stats] = [ports[8]!, ports[9]!];
      const record = await startBalancer(labDir, 'mute', listen, stats);
      const closer = net.createServer((socket) => socket.destroy());
      await new Promise<void>((resolve) => closer.listen({ host: '127.0.0.1', port: 0 }, resolve));
      const file = path.join(labDir, 'lab.json');
      try {
        // The record points at an address that accepts and closes every connection.
        const state = JSON.parse(await readFile(file, 'utf8')) as { balancers: BalancerRecord[] };
        state.balancers.find((b) => b.name === 'mute')!.stats = `127.0.0.1:${(closer.address() as net.AddressInfo).port}`;
        await writeFile(file, JSON.stringify(state, null, 2));
        for (const args of [['balancer', 'status', '--name', 'mute'], ['stat', 'balancer', '--name', 'mute']]) {
          const started = Date.now();
          const result = await runLab(labDir, args, { timeout: 20_000 });
          console.log(`lab ${args.join(' ')}: exit ${result.exitCode} in ${Date.now() - started} ms: ${result.stderr.trim() || result.stdout.trim()}`);
          assert.ok(Date.now() - started < 10_000);
          assert.ok(`${result.stdout}${result.stderr}`.trim().length > 0, 'never silent');
          if (args[0] === 'balancer') {
            assert.notEqual(result.exitCode, 0);
            assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
            assert.match(result.stderr, /^lab: Cannot read the stats of balancer mute at http:\S+: the connection closed without an answer \(balancer mute runs, pid \d+\)$/);
          } else {
            assert.match(result.stdout, /DOWN: .*closed without an answer/);
          }
        }
      } finally {
        closer.close();
        // Stopped by pid from the record this test kept (the state now names the fake address).
        process.kill(record.pid, 'SIGTERM');
        await pollUntil(async () => (await execa('kill', ['-0', String(record.pid)], { reject: false })).exitCode !== 0 ? true : undefined, { timeoutMs: 10_000, what: 'mute to stop' });
        await runLab(labDir, ['balancer', 'stop', '--name', 'mute']);
      }
    });
  });
});
