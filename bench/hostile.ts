// Issue 15's hostile cases for the balancer bench (bench/balancer.ts sections 6 and 7), each run
// against every balancer given, in the same run:
//  6. a hung server: replica1's postmaster SIGSTOPped while a new psql starts every 200 ms: time to
//     DOWN, clients failed, the slowest client;
//  7. a flood: FLOOD clients open a connection and send a startup message at once: the p99 time to
//     the first answer (the server's authentication request, or a FATAL), clients left without one.
import net from 'node:net';
import { existsSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { execa } from 'execa';
import { startupMessage } from '../src/balancer/protocol.js';
import { pgpassPath, tlsPaths } from '../src/lab/access.js';

export interface HostileTarget {
  label: string;
  port: number;
  state(server: string): Promise<string | undefined>;
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
