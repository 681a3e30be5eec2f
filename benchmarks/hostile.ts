// Issue 15's hostile cases for the balancer bench (benchmarks/balancer.ts sections 6 and 7), each run
// against every balancer given, in the same run:
//  6. a hung server: replica1's postmaster SIGSTOPped while a new psql starts every 200 ms: time to
//     DOWN, clients failed, the slowest client;
//  7. a flood: FLOOD clients open a connection and send a startup message at once: the p99 time to
//     the first answer (the server's authentication request, or a FATAL), clients left without one;
//  8. a cancel flood (issue 22): CancelRequests with random keys while 4 TLS sessions run pg_sleep and
//     a new psql starts every 100 ms: servers seen DOWN, clients failed, long sessions cut, cancels
//     dropped. HAProxy sends each cancel connection to one server, round robin; the built-in balancer
//     sends an unknown key to every server with an encrypted session, within its bounds (cancel-limit.ts).
import net from 'node:net';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { execa } from 'execa';
import { startupMessage } from '../src/balancer/protocol.js';
import { pgpassPath, tlsPaths } from '../src/lab/access.js';

export interface HostileTarget {
  label: string;
  port: number;
  state(server: string): Promise<string | undefined>;
  /** Built-in engine: its cancel counters. */
  cancels?(): Promise<{ forwarded: number; dropped: Record<string, number> }>;
}

export interface HungResult {
  downMs: number | null;
  clients: number;
  failed: number;
  /** Clients that took longer than 5 s: they fail where an application's connect timeout is 5 s. */
  over5s: number;
  slowestMs: number;
  firstFailure: string | null;
}

/** psql as a user of the lab runs it: its pgpass and CA, TLS preferred. */
function psqlEnv(labDir: string): Record<string, string> {
  const env: Record<string, string> = { PGCONNECT_TIMEOUT: '30' };
  if (existsSync(pgpassPath(labDir))) env.PGPASSFILE = pgpassPath(labDir);
  if (existsSync(tlsPaths(labDir).caCert)) env.PGSSLROOTCERT = tlsPaths(labDir).caCert;
  return env;
}

async function psqlClient(port: number, env: Record<string, string>): Promise<{ ok: boolean; ms: number; why: string }> {
  const started = Date.now();
  const result = await execa('psql', [`host=127.0.0.1 port=${port} user=postgres dbname=postgres`, '-Atc', 'SELECT 1'], { reject: false, timeout: 60_000, env, all: true });
  return { ok: result.exitCode === 0, ms: Date.now() - started, why: String(result.all).trim().split('\n')[0] ?? '' };
}

/**
 * Section 6: replica1's postmaster (pid `postmaster`) stopped `stopS` seconds, 2 s into a run of
 * `totalS` seconds during which every target gets a new psql every 200 ms. SIGCONT in any case.
 */
export async function hungServer(labDir: string, postmaster: number, targets: HostileTarget[], totalS: number, stopS: number): Promise<Record<string, HungResult>> {
  const env = psqlEnv(labDir);
  const runs: Record<string, Promise<{ ok: boolean; ms: number; why: string }>[]> = Object.fromEntries(targets.map((t) => [t.label, []]));
  const downMs: Record<string, number | null> = Object.fromEntries(targets.map((t) => [t.label, null]));
  const started = Date.now();
  let stoppedAt = 0;
  let stopped = false;
  try {
    const loop = (async () => {
      while (Date.now() - started < totalS * 1000) {
        for (const t of targets) runs[t.label]!.push(psqlClient(t.port, env));
        await delay(200);
      }
    })();
    await delay(2000);
    process.kill(postmaster, 'SIGSTOP');
    stopped = true;
    stoppedAt = Date.now();
    while (Date.now() - stoppedAt < stopS * 1000) {
      await Promise.all(targets.filter((t) => downMs[t.label] === null).map(async (t) => {
        if ((await t.state('replica1').catch(() => undefined)) === 'DOWN' && downMs[t.label] === null) downMs[t.label] = Date.now() - stoppedAt;
      }));
      await delay(50);
    }
    process.kill(postmaster, 'SIGCONT');
    stopped = false;
    await loop;
  } finally {
    if (stopped) process.kill(postmaster, 'SIGCONT');
  }
  const results: Record<string, HungResult> = {};
  for (const t of targets) {
    const done = await Promise.all(runs[t.label]!);
    const failures = done.filter((d) => !d.ok);
    results[t.label] = {
      downMs: downMs[t.label] ?? null,
      clients: done.length,
      failed: failures.length,
      over5s: done.filter((d) => d.ms > 5000).length,
      slowestMs: Math.max(0, ...done.map((d) => d.ms)),
      firstFailure: failures[0]?.why ?? null,
    };
  }
  return results;
}

export interface FloodResult {
  clients: number;
  p99FirstAnswerMs: number | null;
  fatal: number;
  noAnswer: number;
}

/** Section 7: `count` clients at once, each until the first byte it is sent (30 s at most). */
export async function flood(port: number, count: number): Promise<FloodResult> {
  const startup = startupMessage({ user: 'postgres', database: 'postgres' });
  const started = Date.now();
  const outcomes = await Promise.all(Array.from({ length: count }, () => new Promise<{ ms: number | null; fatal: boolean }>((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (ms: number | null, fatal = false) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ ms, fatal });
    };
    const timer = setTimeout(() => done(null), 30_000);
    socket.on('error', () => done(null));
    socket.once('connect', () => socket.write(startup));
    socket.once('data', (chunk: Buffer) => done(Date.now() - started, chunk[0] === 0x45));
    socket.once('close', () => done(null));
  })));
  const answered = outcomes.filter((o) => o.ms !== null).map((o) => o.ms!).sort((a, b) => a - b);
  return {
    clients: count,
    p99FirstAnswerMs: answered.length ? answered[Math.min(answered.length - 1, Math.floor(count * 0.99))] ?? null : null,
    fatal: outcomes.filter((o) => o.fatal).length,
    noAnswer: outcomes.filter((o) => o.ms === null).length,
  };
}

/** benchmarks/cancel-flood.ts in a process of its own: `count` random-key cancels to `port` over `seconds`. */
export async function cancelFlood(port: number, count: number, seconds: number): Promise<{ sent: number; ms: number }> {
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'cancel-flood.js');
  // Twice `seconds` of sending at most, then 5 s for the last connections to close.
  const result = await execa('node', [script, String(port), String(count), String(seconds)], { timeout: (2 * seconds + 30) * 1000 });
  return JSON.parse(String(result.stdout).trim()) as { sent: number; ms: number };
}

export interface CancelFloodResult {
  sent: number;
  floodMs: number;
  /** Servers seen DOWN during the flood: ms after it began that each was first seen so. */
  down: Record<string, number>;
  clients: number;
  failed: number;
  firstFailure: string | null;
  /** TLS sessions running pg_sleep through the flood, and those cut before their query ended. */
  longSessions: number;
  longCut: number;
  firstCut: string | null;
  /** Built-in engine: cancels relayed and dropped (by reason) during the run; null for HAProxy. */
  forwarded: number | null;
  dropped: Record<string, number> | null;
}

/**
 * Section 8 against one balancer: 4 TLS sessions (sslmode=require) run pg_sleep through it for the
 * whole run; then `count` random-key cancels over `seconds` while a new psql starts every 100 ms and
 * each server's state is read every 100 ms; the long sessions must end with their query's answer.
 */
export async function cancelFloodRun(labDir: string, target: HostileTarget, servers: string[], count: number, seconds: number): Promise<CancelFloodResult> {
  const env = psqlEnv(labDir);
  // Longer than the flood can last (twice `seconds`), so that every cancel finds their servers.
  const sleepS = seconds * 2 + 15;
  const long = Array.from({ length: 4 }, () => execa('psql', [`host=127.0.0.1 port=${target.port} user=postgres dbname=postgres sslmode=require`, '-Atc', `SELECT pg_sleep(${sleepS})`], {
    reject: false, timeout: (sleepS + 30) * 1000, env, all: true,
  }));
  const before = await target.cancels?.();
  try {
    await delay(1500);
    const started = Date.now();
    const down: Record<string, number> = {};
    const clients: Promise<{ ok: boolean; ms: number; why: string }>[] = [];
    let flooding = true;
    const watch = (async () => {
      while (flooding) {
        await Promise.all(servers.map(async (server) => {
          if ((await target.state(server).catch(() => undefined)) === 'DOWN' && down[server] === undefined) down[server] = Date.now() - started;
        }));
        await delay(100);
      }
    })();
    const real = (async () => {
      while (flooding) {
        clients.push(psqlClient(target.port, env));
        await delay(100);
      }
    })();
    const flood = await cancelFlood(target.port, count, seconds).finally(() => (flooding = false));
    await Promise.all([watch, real]);
    const done = await Promise.all(clients);
    const failures = done.filter((d) => !d.ok);
    const after = await target.cancels?.();
    const ended = await Promise.all(long);
    const cut = ended.filter((r) => r.exitCode !== 0);
    return {
      sent: flood.sent,
      floodMs: flood.ms,
      down,
      clients: done.length,
      failed: failures.length,
      firstFailure: failures[0]?.why ?? null,
      longSessions: long.length,
      longCut: cut.length,
      firstCut: cut[0] ? String(cut[0].all).trim().split('\n')[0] ?? '' : null,
      forwarded: before && after ? after.forwarded - before.forwarded : null,
      dropped: before && after ? Object.fromEntries(Object.entries(after.dropped).map(([reason, n]) => [reason, n - (before.dropped[reason] ?? 0)])) : null,
    };
  } finally {
    for (const child of long) child.kill('SIGTERM');
    await Promise.all(long);
  }
}
