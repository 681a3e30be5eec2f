// The balancer bench: the built-in balancer against HAProxy 2.6 (Debian) with the same pool, on a
// throwaway lab (master + 3 replicas, like the seed). Run from the repository root:
//
//   npx tsc -p tsconfig.json && node dist/benchmarks/balancer.js
//
// Environment: BENCH_SECONDS (each throughput run, default 10), BENCH_FAILURE_SECONDS (the seed's
// failure run, default 20), BENCH_ROUNDS (alternating rounds, default 1), BENCH_IDLE_CLIENTS (default
// 1000), BENCH_JSON=1 (also print every figure as JSON), BENCH_ONLY (a comma list of the parts to run:
// plain, tls (the two halves of 1), single (2), idle (3), detection (4), failure (5), hostile (6, 7 and 8),
// stall (9); default all, e.g. BENCH_ONLY=tls for the TLS rows alone). With the defaults it takes about 8 minutes.
//
// The lab is made with the defaults (scram-sha-256 and TLS, its own CA): the bench uses the lab's
// pgpass file and CA as `lab env` gives them, and every pgbench run chooses its sslmode explicitly.
//
// It measures, through each balancer:
//  1. throughput, alternating engines: `pgbench -S -c 16 -j 2 -T N` (persistent sessions) and
//     `pgbench -S -C -c 16 -T N` (a new connection per transaction); ratios built-in/HAProxy, for the
//     built-in balancer as started by default (kernel relay where it can) and with `--relay node`.
//     These rows are plaintext (sslmode=disable), comparable with the README's figures from before
//     labs had TLS; their -C rows now include a SCRAM exchange per connection on every proxy (the
//     "-C with scram" row). Then the same two with sslmode=require: TLS end to end through both
//     proxies (HAProxy's mode tcp passes it; the -C row costs a TLS handshake per transaction), and
//     through the built-in balancer with `--tls terminate` (its own TLS to the client and to the server);
//  2. a pool of one replica against a direct connection to that replica (plaintext); ratio built-in/direct;
//     with -C, each proxy's CPU per connection (its process, all threads), a bare Node pipe proxy
//     (benchmarks/bare-node-proxy.ts) included, to show what Node itself costs per connection;
//  3. memory: VmRSS and open fds of the balancer process with 1,000 idle clients, fds after they close;
//  4. detection and re-admission, BENCH_ROUNDS rounds of `lab node kill replica2` then `lab node start
//     replica2`: time from the SIGKILL to DOWN in the stats, and from `lab node start` returning to UP,
//     the built-in balancer beside HAProxy with the lab's check knobs (HAProxy with the seed's settings in
//     round 1 only); medians, each round, ratios (BENCH_ONLY=detection runs it alone);
//  5. the seed's failure: `pgbench -S -C -c 16 -T 20` with one replica killed mid-run; aborted clients;
//  6. a hung server (issue 15): replica1's postmaster SIGSTOPped 20 s while a new psql starts every
//     200 ms for 30 s: time to DOWN and clients failed, for the built-in balancer and HAProxy with the
//     lab's check knobs plus redispatch (its best: inter 1000 fastinter 100 fall 3, timeout check 1s);
//  7. 2,000 clients starting at once: p99 time to the first answer, clients left without one;
//  8. a cancel flood (issue 22): 10,000 CancelRequests with random keys in 10 s while 4 TLS sessions run
//     pg_sleep and a new psql starts every 100 ms: servers seen DOWN, clients failed, long sessions cut,
//     cancels dropped (built-in), for the same two balancers as 6, one after the other;
//  9. stalled TLS handshakes (issue 22): 300 clients that stop after their SSLRequest, then 300 that stop
//     after their ClientHello, while 30 real psql clients (verify-full) connect, one every 100 ms: clients
//     served, the slowest, and the most server connections the stalled ones held, for the built-in
//     balancer (passthrough, and --tls terminate) and HAProxy (seed settings).
// BENCH_ONLY=hostile runs sections 6, 7 and 8 only (their knobs: BENCH_HUNG_SECONDS, BENCH_HUNG_STOP_SECONDS,
// BENCH_FLOOD_CLIENTS, BENCH_CANCEL_COUNT, BENCH_CANCEL_SECONDS: 30, 20, 2000, 10000, 10).
// HAProxy runs with the seed's settings (pgsql-check, which needs no password: any `R` is up; inter 10000, rise 2, fall 3, retries 3, no
// redispatch, the seed's timeouts), rendered by src/haproxy from the lab's pool; for detection, a second
// HAProxy with the lab's check knobs (`haproxy-lab` of src/drills/fault-runs.ts) shows what HAProxy does
// when tuned like the built-in balancer.
// The built-in balancer is started with the CLI (`lab balancer start`); if that fails the bench says
// "built-in balancer not available" and measures HAProxy and direct connections only.
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { execa } from 'execa';
import { LAB_CHECK_DEFAULTS, type BalancerConfig, type CheckSettings, type ServerConfig } from '../src/balancer/config.js';
import type { BalancerStats, ServerState } from '../src/balancer/stats-types.js';
import { findFreePort } from '../src/common/ports.js';
import { pollUntil } from '../src/common/poll.js';
import { messageOf } from '../src/common/errors.js';
import { queryRows } from '../src/postgres/client.js';
import { startHaproxy, stopHaproxy, type HaproxyInstance } from '../src/haproxy/engine.js';
import { fetchHaproxyStats } from '../src/haproxy/fetch-stats.js';
import { labPoolServers } from '../src/haproxy/lab-pool.js';
import { renderHaproxyConfig } from '../src/haproxy/render-config.js';
import { useLabAccess } from '../src/lab/access.js';
import { requireState } from '../src/lab/state.js';
import type { NodeActionResult } from '../src/commands/node.js';
import { engineLabel } from '../src/drills/fault-runs.js';
import { runPgbench, type PgbenchResult } from './pgbench.js';
import { measureIdleClients, startSink, type IdleFootprint } from './idle-clients.js';
import { cpuNs } from './process-cpu.js';
import { cancelFloodRun, flood, hungServer, type CancelFloodResult, type HostileTarget } from './hostile.js';
import { median } from './median.js';
import { captureClientHello, connectionsTo, realClientsUnderStall, stalledHandshakes, type StallRun } from './tls-stall.js';

const env = (name: string, fallback: number): number => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got "${process.env[name]}"`);
  return value;
};
const SECONDS = env('BENCH_SECONDS', 10);
const FAILURE_SECONDS = env('BENCH_FAILURE_SECONDS', 20);
const ROUNDS = env('BENCH_ROUNDS', 1);
const IDLE_CLIENTS = env('BENCH_IDLE_CLIENTS', 1000);
const HUNG_SECONDS = env('BENCH_HUNG_SECONDS', 30);
const HUNG_STOP_SECONDS = env('BENCH_HUNG_STOP_SECONDS', 20);
const FLOOD_CLIENTS = env('BENCH_FLOOD_CLIENTS', 2000);
const CANCEL_COUNT = env('BENCH_CANCEL_COUNT', 10_000);
const CANCEL_SECONDS = env('BENCH_CANCEL_SECONDS', 10);
const PARTS = ['plain', 'tls', 'single', 'idle', 'detection', 'failure', 'hostile', 'stall'] as const;
type Part = (typeof PARTS)[number];
const ONLY = new Set((process.env.BENCH_ONLY ?? PARTS.join(',')).split(',').map((part) => part.trim()).filter(Boolean));
for (const part of ONLY) if (!(PARTS as readonly string[]).includes(part)) throw new Error(`BENCH_ONLY: unknown part "${part}" (parts: ${PARTS.join(', ')})`);
const runs = (part: Part): boolean => ONLY.has(part);

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const labBin = path.join(repoRoot, 'bin', 'lab.js');

/** The seed's haproxy.cfg knobs (REFERENCE.md 1). */
const SEED_CHECK: CheckSettings = {
  ...LAB_CHECK_DEFAULTS, type: 'pgsql', interMs: 10_000, fastinterMs: 10_000, downinterMs: 10_000, rise: 2, fall: 3, timeoutMs: 5000,
};
const SEED_TIMEOUTS = { connectMs: 10_000, clientMs: 60_000, serverMs: 60_000 };

interface Builtin {
  name: string;
  pid: number;
  port: number;
  statsUrl: string;
}

/** Everything started, stopped in reverse order in `finally` (and on Ctrl-C). */
const cleanups: (() => Promise<unknown>)[] = [];
async function cleanupAll(): Promise<void> {
  while (cleanups.length > 0) {
    const step = cleanups.pop()!;
    await step().catch((error: unknown) => console.error(`cleanup: ${messageOf(error)}`));
  }
}

function log(line = ''): void {
  console.log(line);
}

async function labCli(labDir: string, args: string[], timeoutMs = 120_000) {
  const result = await execa('node', [labBin, '--lab-dir', labDir, ...args], { reject: false, timeout: timeoutMs, env: { NO_COLOR: '1' } });
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

async function labOk(labDir: string, ...args: string[]): Promise<string> {
  const result = await labCli(labDir, args);
  if (result.exitCode !== 0) throw new Error(`lab ${args.join(' ')} failed (exit ${result.exitCode}): ${result.stderr.trim() || result.stdout.trim()}`);
  return result.stdout;
}

async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await findFreePort());
  return [...ports];
}

/** `lab balancer start ... --json`; the reason as a string when the built-in balancer cannot start. */
async function startBuiltin(labDir: string, name: string, args: string[], port: number, statsPort: number): Promise<Builtin | string> {
  const result = await labCli(labDir, ['balancer', 'start', '--name', name, ...args, '--json'], 60_000);
  if (result.exitCode !== 0) return (result.stderr.trim() || result.stdout.trim()).split('\n')[0] ?? `exit ${result.exitCode}`;
  cleanups.push(() => labCli(labDir, ['balancer', 'stop', '--name', name], 30_000));
  let pid: number;
  try {
    pid = Number((JSON.parse(result.stdout) as { pid: number }).pid);
  } catch {
    return `unexpected output of lab balancer start --json: ${result.stdout.slice(0, 200)}`;
  }
  return { name, pid, port, statsUrl: `http://127.0.0.1:${statsPort}/` };
}

async function builtinStats(b: Builtin): Promise<BalancerStats> {
  const response = await fetch(`${b.statsUrl}?format=json`, { signal: AbortSignal.timeout(2000) });
  if (!response.ok) throw new Error(`HTTP ${response.status} from ${b.statsUrl}?format=json`);
  return (await response.json()) as BalancerStats;
}

function haproxyConfig(name: string, port: number, statsPort: number, check: CheckSettings, extra: Partial<BalancerConfig> = {}): BalancerConfig {
  return {
    name,
    listen: { host: '127.0.0.1', port },
    stats: { host: '127.0.0.1', port: statsPort, uri: '/' },
    algorithm: 'roundrobin',
    pool: { source: 'static', servers: [] },
    check,
    retries: 3,
    redispatch: false,
    timeouts: SEED_TIMEOUTS,
    relay: 'auto',
    warnings: [],
    ...extra,
  };
}

async function launchHaproxy(labDir: string, name: string, servers: ServerConfig[], check: CheckSettings, extra: Partial<BalancerConfig> = {}): Promise<HaproxyInstance & { port: number }> {
  const [port, statsPort] = await freePorts(2);
  const instance = await startHaproxy({ labDir, config: haproxyConfig(name, port!, statsPort!, check, extra), servers });
  cleanups.push(() => stopHaproxy(instance.pid));
  return { ...instance, port: port! };
}

/** benchmarks/bare-node-proxy.ts in front of `targetPort`; null (and why, printed) if it does not listen within 10 s. */
async function startBareNodeProxy(targetPort: number): Promise<{ pid: number; port: number } | null> {
  const [port] = await freePorts(1);
  const child = execa('node', [path.join(path.dirname(fileURLToPath(import.meta.url)), 'bare-node-proxy.js'), String(port), String(targetPort)], { reject: false });
  cleanups.push(async () => {
    child.kill('SIGTERM');
    await child;
  });
  const listening = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 10_000);
    child.stdout?.on('data', (chunk: Buffer) => chunk.toString().includes('listening') && (clearTimeout(timer), resolve(true)));
    void child.then(() => (clearTimeout(timer), resolve(false)));
  });
  if (!listening || child.pid === undefined) {
    child.kill('SIGTERM');
    log(`bare Node proxy not available: ${String((await child).stderr).trim() || 'it did not listen within 10 s'}`);
    return null;
  }
  return { pid: child.pid, port: port! };
}

/** A reader of one server's state, whichever the engine. */
interface Watched {
  label: string;
  state(server: string): Promise<ServerState | undefined>;
}

function watchHaproxy(label: string, h: HaproxyInstance): Watched {
  return { label, state: async (server) => (await fetchHaproxyStats(h.statsUrl!)).servers.find((s) => s.name === server)?.status };
}

function watchBuiltin(label: string, b: Builtin): Watched {
  return { label, state: async (server) => (await builtinStats(b)).servers.find((s) => s.name === server)?.status };
}

/**
 * When (Date.now()) each watched balancer first reports `server` in `want`, reading its stats every
 * `intervalMs` until `until` (null: not seen by then). Started before an action, it sees what the
 * balancer shows during it too.
 */
async function firstSeen(watched: Watched[], server: string, want: ServerState, until: number, intervalMs: number): Promise<Record<string, number | null>> {
  const seen: Record<string, number | null> = Object.fromEntries(watched.map((w) => [w.label, null]));
  while (Date.now() < until && watched.some((w) => seen[w.label] === null)) {
    await Promise.all(watched.filter((w) => seen[w.label] === null).map(async (w) => {
      const state = await w.state(server).catch(() => undefined);
      if (state === want && seen[w.label] === null) seen[w.label] = Date.now();
    }));
    await delay(intervalMs);
  }
  return seen;
}

/** Milliseconds from `since` until each watched balancer reports `server` in `want` (null: not within timeoutMs). */
async function timeUntil(watched: Watched[], server: string, want: ServerState, since: number, timeoutMs: number): Promise<Record<string, number | null>> {
  const seen = await firstSeen(watched, server, want, since + timeoutMs, 50);
  return Object.fromEntries(Object.entries(seen).map(([label, at]) => [label, at === null ? null : at - since]));
}

// Two cores shared by pgbench, four servers and a proxy: anything else running skews every figure.
const loadavg = async (): Promise<string> => (await readFile('/proc/loadavg', 'utf8').catch(() => '?')).split(' ').slice(0, 3).join(' ');
const fmt = (n: number | null | undefined, digits = 0): string => (n === null || n === undefined || Number.isNaN(n) ? 'n/a' : n.toFixed(digits));
const ratio = (a: number | null | undefined, b: number | null | undefined): string => (a && b ? (a / b).toFixed(2) : 'n/a');
/** Each round's ratio, when there were several: how far one pair of runs is from the next. */
const perRound = (a: number[] | undefined, b: number[] | undefined): string =>
  a && b && a.length > 1 && a.length === b.length ? ` (rounds: ${a.map((x, i) => ratio(x, b[i])).join(', ')})` : '';
const mean = (values: number[]): number | null => (values.length ? values.reduce((x, y) => x + y, 0) / values.length : null);

async function main(): Promise<void> {
  const started = Date.now();
  const root = await mkdtemp(path.join(tmpdir(), 'pglab-bench-'));
  await chmod(root, 0o755);
  const labDir = path.join(root, 'lab');
  cleanups.push(() => rm(root, { recursive: true, force: true }));
  cleanups.push(() => labCli(labDir, ['destroy', '--yes'], 120_000));
  const figures: Record<string, unknown> = { seconds: SECONDS, failureSeconds: FAILURE_SECONDS, rounds: ROUNDS, parts: [...ONLY] };

  // The lab: master + 3 replicas, pgbench tables replicated.
  const [m, r1, r2, r3] = await freePorts(4);
  const replicas = [['replica1', r1!], ['replica2', r2!], ['replica3', r3!]] as const;
  log(`load average before the bench: ${await loadavg()} (${cpus().length} CPUs; other work on this machine skews the figures)`);
  log(`lab in ${labDir}: master :${m}, replicas :${r1} :${r2} :${r3}`);
  await labOk(labDir, 'master', 'start', '--port', String(m));
  // As `eval "$(lab env)"`: the lab's pgpass file and CA for this process's clients and the pgbench it
  // starts (runPgbench sets PGSSLMODE per run).
  const state = await requireState(labDir);
  useLabAccess(labDir, state);
  log(`lab access: ${state.access?.auth ?? 'trust'}, TLS ${state.access?.tls ?? 'off'}`);
  for (const [name, port] of replicas) await labOk(labDir, 'replica', 'add', name, path.join(labDir, name), String(port));
  await execa('pgbench', ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(m), '-U', 'postgres', 'postgres'], { timeout: 120_000 });
  for (const [, port] of replicas) {
    await pollUntil(
      async () => ((await queryRows({ port }, 'select count(*) as n from pgbench_branches'))[0] ? true : undefined),
      { timeoutMs: 30_000, what: `pgbench tables on the replica on port ${port}` },
    );
  }
  const pool = await labPoolServers(labDir, 'replicas');
  const replica1Only = pool.filter((s) => s.name === 'replica1');

  // The balancers.
  const hs = await launchHaproxy(labDir, 'hs', pool, SEED_CHECK);
  const h1 = await launchHaproxy(labDir, 'h1', replica1Only, SEED_CHECK);
  const hl = await launchHaproxy(labDir, 'hl', pool, { ...LAB_CHECK_DEFAULTS, type: 'pgsql' });
  const [bp, bs] = await freePorts(2);
  const builtinOrWhy = await startBuiltin(labDir, 'b', ['--listen', `127.0.0.1:${bp}`, '--stats', `127.0.0.1:${bs}`], bp!, bs!);
  const builtin = typeof builtinOrWhy === 'string' ? null : builtinOrWhy;
  if (!builtin) log(`built-in balancer not available: ${builtinOrWhy}`);
  else log(`built-in balancer b: pid ${builtin.pid}, :${builtin.port}, ${(await builtinStats(builtin)).relay} relay`);
  // The same balancer relaying through Node only, to show what the kernel relay changes in this run.
  let builtinNode: Builtin | null = null;
  if (builtin) {
    const [p, s] = await freePorts(2);
    const started = await startBuiltin(labDir, 'bn', ['--relay', 'node', '--listen', `127.0.0.1:${p}`, '--stats', `127.0.0.1:${s}`], p!, s!);
    if (typeof started === 'string') log(`built-in balancer with --relay node not available: ${started}`);
    else builtinNode = started;
  }
  // The same balancer terminating TLS (--tls terminate): the TLS rows and the stalled handshakes.
  let builtinTerm: Builtin | null = null;
  if (builtin && (runs('tls') || runs('stall'))) {
    const [p, s] = await freePorts(2);
    const started = await startBuiltin(labDir, 'bt', ['--tls', 'terminate', '--listen', `127.0.0.1:${p}`, '--stats', `127.0.0.1:${s}`], p!, s!);
    if (typeof started === 'string') log(`built-in balancer with --tls terminate not available: ${started}`);
    else builtinTerm = started;
  }
  log(`HAProxy hs (seed settings): pid ${hs.pid}, :${hs.port}; h1 (replica1 only): :${h1.port}; hl (lab check knobs): :${hl.port}`);

  // The built-in balancer with a one-replica pool: from a haproxy.cfg naming replica1 (--config), or,
  // if this build cannot read one yet, the primary alone (--pool primary) against a direct connection to it.
  let b1: Builtin | null = null;
  let singleDirectPort = r1!;
  let singleNote = 'replica1 alone';
  if (builtin) {
    const [p, s] = await freePorts(2);
    const file = path.join(labDir, 'bench-single.cfg');
    await writeFile(file, renderHaproxyConfig(haproxyConfig('b1', p!, s!, { ...LAB_CHECK_DEFAULTS, type: 'pgsql' }), replica1Only));
    const viaConfig = await startBuiltin(labDir, 'b1', ['--config', file], p!, s!);
    if (typeof viaConfig !== 'string') {
      b1 = viaConfig;
    } else {
      const [p2, s2] = await freePorts(2);
      const viaPrimary = await startBuiltin(labDir, 'b1', ['--pool', 'primary', '--listen', `127.0.0.1:${p2}`, '--stats', `127.0.0.1:${s2}`], p2!, s2!);
      if (typeof viaPrimary !== 'string') {
        b1 = viaPrimary;
        singleDirectPort = m!;
        singleNote = `the primary alone (--config failed: ${viaConfig})`;
      } else {
        log(`built-in balancer with one server not available: ${viaConfig}; ${viaPrimary}`);
      }
    }
  }
  // Every balancer sees its servers UP before measuring.
  const everyoneUp = async (): Promise<void> => {
    await pollUntil(async () => {
      const lists = await Promise.all([
        fetchHaproxyStats(hs.statsUrl!), fetchHaproxyStats(h1.statsUrl!), fetchHaproxyStats(hl.statsUrl!),
        ...[builtin, builtinNode, builtinTerm, b1].filter((b): b is Builtin => b !== null).map((b) => builtinStats(b)),
      ]);
      return lists.every((l) => l.servers.length > 0 && l.servers.every((s) => s.status === 'UP')) ? true : undefined;
    }, { timeoutMs: 60_000, intervalMs: 100, what: 'every balancer to report its servers UP' });
  };
  await everyoneUp();

  // 1. Throughput, alternating engines.
  log(`\n== 1. throughput through 3 replicas: pgbench -S, 16 clients, ${SECONDS} s per run, ${ROUNDS} round(s)`);
  const allModes = [
    { key: 'persistent', label: 'persistent (-c 16 -j 2)', connect: false, threads: 2, sslmode: 'disable', part: 'plain' },
    { key: 'connect', label: 'new connection per transaction (-C -c 16)', connect: true, threads: 2, sslmode: 'disable', part: 'plain' },
    { key: 'tlsPersistent', label: 'persistent, sslmode=require', connect: false, threads: 2, sslmode: 'require', part: 'tls' },
    { key: 'tlsConnect', label: '-C -c 16, sslmode=require', connect: true, threads: 2, sslmode: 'require', part: 'tls' },
  ] as const;
  const modes = allModes.filter((mode) => runs(mode.part));
  const plainModes = allModes.filter((mode) => mode.part === 'plain');
  const tps: Record<string, number[]> = {};
  /** With -C: microseconds of the proxy process's CPU per connection (pgbench's transactions). */
  const cpuPerConnection: Record<string, number[]> = {};
  const measure = async (key: string, label: string, port: number, mode: (typeof allModes)[number], pid?: number): Promise<void> => {
    const { connect, threads, sslmode } = mode;
    const before = pid !== undefined && connect ? await cpuNs(pid) : null;
    const r = await runPgbench({ port, seconds: SECONDS, clients: 16, threads, connectPerTransaction: connect, sslmode });
    const after = before !== null && r.transactions > 0 ? await cpuNs(pid!) : null;
    const perConnection = before !== null && after !== null ? (after - before) / 1000 / r.transactions : null;
    (tps[key] ??= []).push(r.tps);
    if (perConnection !== null) (cpuPerConnection[key] ??= []).push(perConnection);
    const cpu = perConnection !== null ? `, ${fmt(perConnection).padStart(5)} us CPU per connection` : '';
    log(`  ${label.padEnd(56)} ${fmt(r.tps).padStart(7)} tps${cpu}${r.aborted ? `  (${r.aborted} clients aborted: ${r.stderrTail.split('\n')[0]})` : ''}`);
  };
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of modes) {
      const targets = [
        { key: 'haproxy', label: 'HAProxy', port: hs.port, pid: hs.pid },
        ...(builtin ? [{ key: 'builtin', label: 'built-in', port: builtin.port, pid: builtin.pid }] : []),
        ...(builtinNode ? [{ key: 'builtinNode', label: 'built-in, --relay node', port: builtinNode.port, pid: builtinNode.pid }] : []),
        ...(builtinTerm && mode.part === 'tls' ? [{ key: 'builtinTerm', label: 'built-in, --tls terminate', port: builtinTerm.port, pid: builtinTerm.pid }] : []),
      ];
      if (round % 2 === 1) targets.reverse();
      for (const t of targets) await measure(`${t.key}.${mode.key}`, `${mode.label}, ${t.label}`, t.port, mode, t.pid);
    }
  }

  // 2. One-server pool against a direct connection (plaintext).
  const bare = runs('single') ? await startBareNodeProxy(r1!) : null;
  if (runs('single')) log(`\n== 2. one-server pool (${singleNote}${b1 ? `, built-in: ${(await builtinStats(b1)).relay} relay` : ''}) vs a direct connection, sslmode=disable, ${SECONDS} s per run, ${ROUNDS} round(s)`);
  for (let round = 0; round < ROUNDS && runs('single'); round++) for (const mode of plainModes) {
    const targets: { key: string; label: string; port: number; pid?: number }[] = [
      { key: 'direct1', label: 'direct', port: singleDirectPort },
      { key: 'haproxy1', label: 'HAProxy, replica1 only', port: h1.port, pid: h1.pid },
      ...(b1 ? [{ key: 'builtin1', label: 'built-in, one server', port: b1.port, pid: b1.pid }] : []),
      ...(bare && mode.connect ? [{ key: 'bare1', label: 'bare Node pipe proxy, replica1', port: bare.port, pid: bare.pid }] : []),
    ];
    if (round % 2 === 1) targets.reverse();
    // HAProxy's one-server pool is always replica1; compare it with a direct connection to replica1.
    for (const t of targets) await measure(`${t.key}.${mode.key}`, `${mode.label}, ${t.label}`, t.port, mode, t.pid);
    if (singleDirectPort !== r1) await measure(`directReplica1.${mode.key}`, `${mode.label}, direct to replica1`, r1!, mode);
  }
  figures.tps = tps;
  figures.cpuPerConnectionUs = cpuPerConnection;

  // 3. Footprint with idle clients.
  const footprints: Record<string, IdleFootprint> = {};
  const printFootprint = (label: string, f: IdleFootprint): void => {
    log(`  ${label.padEnd(44)} RSS ${fmt(f.baselineRssKb / 1024, 1)} -> ${fmt(f.loadedRssKb / 1024, 1)} MB, fds ${f.baselineFds} -> ${f.loadedFds} -> ${f.afterFds} (${f.fdsBackToBaseline ? 'back to baseline' : 'NOT back to baseline'}), ${f.stillOpen}/${f.clients} still open at the RSS reading`);
  };
  if (runs('idle')) log(`\n== 3. ${IDLE_CLIENTS} idle client connections (connected, sending nothing)`);
  if (runs('idle')) {
    // HAProxy connects each client to a server at once; a TCP sink stands in for PostgreSQL so that
    // 1,000 clients do not mean 1,000 backend forks.
    const sink = await startSink();
    cleanups.push(() => sink.close());
    const hm = await launchHaproxy(labDir, 'hm', [{ name: 'sink', host: '127.0.0.1', port: sink.port, weight: 1, backup: false, disabled: false, check: false, checkOverrides: {} }], { ...SEED_CHECK, type: 'none' });
    footprints.haproxy = await measureIdleClients(hm.pid, '127.0.0.1', hm.port, IDLE_CLIENTS);
    printFootprint('HAProxy (server: a TCP sink)', footprints.haproxy);
    await stopHaproxy(hm.pid);
  }
  if (builtin && runs('idle')) {
    // A client that sends nothing is closed after --connect-timeout (3 s by default); give it a minute here.
    const [p, s] = await freePorts(2);
    const bm = await startBuiltin(labDir, 'bm', ['--listen', `127.0.0.1:${p}`, '--stats', `127.0.0.1:${s}`, '--connect-timeout', '60000'], p!, s!);
    if (typeof bm === 'string') {
      log(`  built-in: not available: ${bm}`);
    } else {
      footprints.builtin = await measureIdleClients(bm.pid, '127.0.0.1', bm.port, IDLE_CLIENTS);
      printFootprint('built-in (--connect-timeout 60000)', footprints.builtin);
      await labCli(labDir, ['balancer', 'stop', '--name', 'bm'], 30_000);
    }
  }
  figures.idle = footprints;

  // 4. Detection and re-admission, in rounds.
  const watched = [
    watchHaproxy('HAProxy, seed settings (inter 10000)', hs),
    watchHaproxy(engineLabel('haproxy-lab'), hl),
    ...(builtin ? [watchBuiltin('built-in', builtin)] : []),
  ];
  const detection = runs('detection') ? await detectionRounds(labDir, watched) : null;
  if (detection) figures.detection = detection.figures;

  // 5. The seed's failure run.
  const failures: Record<string, PgbenchResult> = {};
  if (runs('failure')) {
    log(`\n== 5. the seed's load, pgbench -S -C -c 16 -T ${FAILURE_SECONDS}, replica2 killed after ${Math.min(5, Math.floor(FAILURE_SECONDS / 4))} s`);
    const failureTargets = [
      { key: 'haproxy', label: 'HAProxy, seed settings', port: hs.port, watch: watched[0]! },
      ...(builtin ? [{ key: 'builtin', label: 'built-in', port: builtin.port, watch: watched[2]! }] : []),
    ];
    for (const [i, t] of failureTargets.entries()) {
      // Only this balancer needs replica2 back (HAProxy with the seed's settings takes 10-20 s for that).
      const back = await timeUntil([t.watch], 'replica2', 'UP', Date.now(), 60_000);
      if (back[t.watch.label] === null) throw new Error(`${t.label} did not report replica2 UP within 60 s`);
      const run = runPgbench({ port: t.port, seconds: FAILURE_SECONDS, clients: 16, threads: 1, connectPerTransaction: true });
      await delay(Math.min(5, Math.floor(FAILURE_SECONDS / 4)) * 1000);
      await labOk(labDir, 'node', 'kill', 'replica2');
      const result = await run;
      failures[t.key] = result;
      log(`  ${t.label.padEnd(44)} ${result.aborted} of 16 clients aborted (${result.abortedConnecting} while establishing a connection), ${fmt(result.tps)} tps, ${result.transactions} transactions`);
      if (i < failureTargets.length - 1) await labOk(labDir, 'replica', 'add', 'replica2', path.join(labDir, 'replica2'), String(r2));
    }
    figures.failure = failures;
  }
  if (runs('hostile')) figures.hostile = await hostileSections(labDir, pool, builtin);
  if (runs('stall')) figures.stall = await stallSection(replicas.map(([, port]) => port), [
    ...(builtin ? [{ label: 'built-in (passthrough)', port: builtin.port }] : []),
    ...(builtinTerm ? [{ label: 'built-in, --tls terminate', port: builtinTerm.port }] : []),
    { label: 'HAProxy (seed settings)', port: hs.port },
  ]);

  // Summary.
  const avg = (key: string): number | null => mean(tps[key] ?? []);
  log('\n== summary');
  for (const mode of allModes) {
    if (runs(mode.part)) log(`  ${mode.label}: HAProxy ${fmt(avg(`haproxy.${mode.key}`))} tps, built-in ${fmt(avg(`builtin.${mode.key}`))} tps, built-in/HAProxy ${ratio(avg(`builtin.${mode.key}`), avg(`haproxy.${mode.key}`))}${perRound(tps[`builtin.${mode.key}`], tps[`haproxy.${mode.key}`])} (target >= ${mode.connect ? '0.95' : '1.0'}); with --relay node ${fmt(avg(`builtinNode.${mode.key}`))} tps, ${ratio(avg(`builtinNode.${mode.key}`), avg(`haproxy.${mode.key}`))}`);
    const cpu = (key: string): string => `${fmt(mean(cpuPerConnection[key] ?? []))} us`;
    if (mode.part === 'tls' && runs('tls') && builtinTerm) {
      log(`  ${mode.label}, --tls terminate: ${fmt(avg(`builtinTerm.${mode.key}`))} tps, ${ratio(avg(`builtinTerm.${mode.key}`), avg(`haproxy.${mode.key}`))} x HAProxy${perRound(tps[`builtinTerm.${mode.key}`], tps[`haproxy.${mode.key}`])}, ${ratio(avg(`builtinTerm.${mode.key}`), avg(`builtin.${mode.key}`))} x passthrough`);
    }
    if (mode.connect && mode.part === 'tls' && runs('tls')) {
      log(`  ${mode.label}, CPU per connection: built-in ${cpu(`builtin.${mode.key}`)}, --relay node ${cpu(`builtinNode.${mode.key}`)}, --tls terminate ${cpu(`builtinTerm.${mode.key}`)}, HAProxy ${cpu(`haproxy.${mode.key}`)}`);
    } else if (mode.connect && mode.part === 'plain' && (runs('plain') || runs('single'))) {
      log(`  ${mode.label}, CPU per connection: built-in ${cpu('builtin.connect')} (one server ${cpu('builtin1.connect')}), HAProxy ${cpu('haproxy.connect')} (one server ${cpu('haproxy1.connect')}), bare Node pipe proxy ${cpu('bare1.connect')}`);
    }
    if (mode.part === 'plain' && runs('single')) log(`  ${mode.label}, one server: direct ${fmt(avg(`direct1.${mode.key}`))} tps, HAProxy/direct(replica1) ${ratio(avg(`haproxy1.${mode.key}`), avg(singleDirectPort === r1 ? `direct1.${mode.key}` : `directReplica1.${mode.key}`))}, built-in/HAProxy ${ratio(avg(`builtin1.${mode.key}`), avg(`haproxy1.${mode.key}`))}, built-in/direct ${ratio(avg(`builtin1.${mode.key}`), avg(`direct1.${mode.key}`))}${perRound(tps[`builtin1.${mode.key}`], tps[`direct1.${mode.key}`])} (target >= 0.9)`);
  }
  for (const [key, f] of Object.entries(footprints)) {
    log(`  ${key}: ${fmt(f.loadedRssKb / 1024, 1)} MB RSS with ${IDLE_CLIENTS} idle clients (target <= 100 MB), fds back to baseline: ${f.fdsBackToBaseline ? 'yes' : 'no'}`);
  }
  for (const line of detection?.summary ?? []) log(`  ${line}`);
  for (const [key, r] of Object.entries(failures)) log(`  ${key}: ${r.abortedConnecting} clients aborted while connecting under the seed's failure (target 0)`);
  log(`  bench took ${((Date.now() - started) / 1000).toFixed(0)} s; load average now ${await loadavg()}`);
  if (process.env.BENCH_JSON === '1') log(JSON.stringify(figures, null, 2));
}

/** The replica section 4 kills and starts again; the balancers' stats are read this often meanwhile. */
const DETECTION_SERVER = 'replica2';
const DETECTION_POLL_MS = 20;
const DETECTION_BOUND_MS = 60_000;

/**
 * When (Date.now()) the postmaster of `datadir` other than `oldPid` says "ready" in postmaster.pid (its
 * line 8): the moment it takes connections, which `pg_ctl -w` waits for by reading the same line every
 * 100 ms. Read every 2 ms, which costs the server nothing (a connection per probe would cost a backend).
 */
async function readyAt(datadir: string, oldPid: number | undefined, until: number): Promise<number | null> {
  while (Date.now() < until) {
    const lines = (await readFile(path.join(datadir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n');
    if (lines[7]?.trim() === 'ready' && Number(lines[0]) !== oldPid) return Date.now();
    await delay(2);
  }
  return null;
}

/**
 * Section 4 (issue 22): `lab node kill` then `lab node start` of replica2, BENCH_ROUNDS times. DOWN is
 * timed from the SIGKILL (the kill's own `killedAtMs`); UP from the moment the new postmaster is ready
 * (postmaster.pid), and, as issue 22 measured it, from when `lab node start` returned (negative: UP before
 * it returned; that command takes 100-300 ms after the server is ready on a loaded machine). Every
 * balancer's stats are read throughout, from before each command. HAProxy with the seed's settings takes
 * 20-30 s to see a kill, so it is in round 1 only.
 */
async function detectionRounds(labDir: string, watched: Watched[]): Promise<{ figures: Record<string, unknown>; summary: string[] }> {
  const [seed, ...lab] = watched;
  log(`\n== 4. ${DETECTION_SERVER} killed (lab node kill: SIGKILL) and started again (lab node start), ${ROUNDS} round(s); stats read every ${DETECTION_POLL_MS} ms; load average ${await loadavg()}`);
  log(`  ${seed!.label}: round 1 only`);
  const down: Record<string, number[]> = {};
  const up: Record<string, number[]> = {};
  const upAfterReturn: Record<string, number[]> = {};
  const shown = (ms: number): string => (Number.isFinite(ms) ? String(Math.round(ms)) : `> ${DETECTION_BOUND_MS}`);
  for (let round = 1; round <= ROUNDS; round++) {
    const inRound = round === 1 ? watched : lab;
    const upBefore = await timeUntil(inRound, DETECTION_SERVER, 'UP', Date.now(), DETECTION_BOUND_MS);
    const notUp = inRound.filter((w) => upBefore[w.label] === null).map((w) => w.label);
    if (notUp.length) throw new Error(`${DETECTION_SERVER} not UP within ${DETECTION_BOUND_MS} ms before round ${round} in: ${notUp.join('; ')}`);
    const downSeen = firstSeen(inRound, DETECTION_SERVER, 'DOWN', Date.now() + DETECTION_BOUND_MS, DETECTION_POLL_MS);
    const killed = JSON.parse(await labOk(labDir, 'node', 'kill', DETECTION_SERVER, '--json')) as NodeActionResult;
    const downAt = await downSeen;
    // A balancer that never showed it DOWN has no re-admission to time.
    const sawDown = inRound.filter((w) => downAt[w.label] !== null);
    const until = Date.now() + DETECTION_BOUND_MS;
    const upSeen = firstSeen(sawDown, DETECTION_SERVER, 'UP', until, DETECTION_POLL_MS);
    const ready = readyAt(path.join(labDir, DETECTION_SERVER), killed.pid, until);
    await labOk(labDir, 'node', 'start', DETECTION_SERVER);
    const returnedAt = Date.now();
    const [upAt, readySince] = await Promise.all([upSeen, ready]);
    if (readySince === null) throw new Error(`${DETECTION_SERVER}'s postmaster.pid did not say ready within ${DETECTION_BOUND_MS} ms`);
    for (const w of inRound) {
      (down[w.label] ??= []).push(downAt[w.label] === null ? Infinity : downAt[w.label]! - killed.killedAtMs!);
      if (downAt[w.label] === null) continue;
      (up[w.label] ??= []).push(upAt[w.label] === null ? Infinity : upAt[w.label]! - readySince);
      (upAfterReturn[w.label] ??= []).push(upAt[w.label] === null ? Infinity : upAt[w.label]! - returnedAt);
    }
    const last = (values: number[] | undefined): string => (values ? shown(values.at(-1)!) : 'n/a');
    log(`  round ${round}: \`lab node start\` returned ${returnedAt - readySince} ms after the server was ready; ${inRound.map((w) => `${w.label.split(' (')[0]} DOWN ${last(down[w.label])} ms, UP ${last(up[w.label])} ms (${last(upAfterReturn[w.label])})`).join('; ')}`);
  }
  const medianOf = (values: number[] | undefined): number | null => median(values ?? []);
  const cell = (values: number[] | undefined): string => {
    const m = medianOf(values);
    return m === null ? 'n/a' : `${shown(m)} ms${values!.length > 1 ? ` (${values!.map(shown).join(', ')})` : ''}`;
  };
  log('  median over the rounds (each round): DOWN after the SIGKILL; UP after the server was ready; UP after `lab node start` returned (negative: before)');
  for (const w of watched) log(`  ${w.label}\n      DOWN ${cell(down[w.label])}; UP ${cell(up[w.label])}; after the command ${cell(upAfterReturn[w.label])}`);
  const summary: string[] = [];
  const builtin = watched.find((w) => w.label === 'built-in');
  const haproxyLab = lab.find((w) => w !== builtin);
  if (builtin && haproxyLab) {
    const versus = (what: string, mine: number[] | undefined, theirs: number[] | undefined, target: string): string => {
      const [a, b] = [medianOf(mine), medianOf(theirs)];
      const ratioOf = (x: number, y: number): string => (x > 0 && y > 0 && Number.isFinite(x) && Number.isFinite(y) ? (x / y).toFixed(2) : 'n/a');
      const rounds = mine && theirs && mine.length > 1 && mine.length === theirs.length ? ` (rounds: ${mine.map((x, i) => ratioOf(x, theirs[i]!)).join(', ')})` : '';
      const difference = a !== null && b !== null && Number.isFinite(a) && Number.isFinite(b) ? `, ${a - b >= 0 ? '+' : ''}${Math.round(a - b)} ms` : '';
      return `${what}: built-in ${a === null ? 'n/a' : shown(a)} ms, HAProxy ${b === null ? 'n/a' : shown(b)} ms, built-in/HAProxy ${a !== null && b !== null ? ratioOf(a, b) : 'n/a'}${rounds}${difference} (target ${target})`;
    };
    summary.push(
      `replica killed, medians of ${ROUNDS} round(s) beside HAProxy with the lab's check knobs: ${versus('DOWN', down[builtin.label], down[haproxyLab.label], '<= 1000 ms')}`,
      `replica started again: ${versus('UP after the server was ready', up[builtin.label], up[haproxyLab.label], '<= HAProxy\'s, issue 22')}`,
      `  ${versus('UP after lab node start returned', upAfterReturn[builtin.label], upAfterReturn[haproxyLab.label], '<= HAProxy\'s')}`,
    );
    log(`  ${summary.join('\n  ')}`);
  }
  return { figures: { downMs: down, upAfterReadyMs: up, upAfterCommandMs: upAfterReturn }, summary };
}

/**
 * Section 9 (benchmarks/tls-stall.ts): 300 stalled handshakes of each kind through each target in turn, 30
 * real psql clients meanwhile; a pause between runs lets the servers close what the last one left.
 */
async function stallSection(serverPorts: number[], targets: { label: string; port: number }[]): Promise<Record<string, Record<string, StallRun>>> {
  const hello = await captureClientHello();
  const kinds = [['SSLRequest, then nothing', null], ['SSLRequest and ClientHello, then nothing', hello]] as const;
  log('\n== 9. 300 stalled TLS handshakes while 30 psql (verify-full) connect, one every 100 ms');
  const results: Record<string, Record<string, StallRun>> = {};
  for (const [kind, clientHello] of kinds) {
    for (const target of targets) {
      const run = await realClientsUnderStall(target.port, serverPorts, () => stalledHandshakes(target.port, 300, clientHello));
      (results[target.label] ??= {})[kind] = run;
      log(`  ${`${kind}, ${target.label}`.padEnd(70)} ${run.served}/${run.clients} served, slowest ${fmt(run.slowestMs)} ms, stalled clients held up to ${run.hostileServerConnections} server connection(s)${run.failed[0] ? `; first failure: ${run.failed[0].split('\n')[0]}` : ''}`);
      // What a server still holds from the last run (HAProxy leaves it to authentication_timeout) goes first.
      await pollUntil(async () => (connectionsTo(serverPorts) <= serverPorts.length * 4 ? true : undefined), { timeoutMs: 70_000, intervalMs: 500, what: 'the stalled connections to close' }).catch(() => undefined);
    }
  }
  return results;
}

/** Sections 6 and 7 (benchmarks/hostile.ts): the built-in balancer beside HAProxy tuned at its best. */
async function hostileSections(labDir: string, pool: ServerConfig[], builtin: Builtin | null): Promise<Record<string, unknown>> {
  const best = await launchHaproxy(labDir, 'hb', pool, { ...LAB_CHECK_DEFAULTS, type: 'pgsql', timeoutMs: 1000 }, {
    redispatch: true, timeouts: { connectMs: 1000, clientMs: 60_000, serverMs: 60_000 },
  });
  const targets: HostileTarget[] = [
    { label: 'HAProxy (inter 1000 fastinter 100 fall 3, timeout check 1s, redispatch)', port: best.port, state: watchHaproxy('hb', best).state },
    ...(builtin ? [{
      label: 'built-in (lab defaults)', port: builtin.port, state: watchBuiltin('b', builtin).state,
      cancels: async () => {
        const stats = await builtinStats(builtin);
        return { forwarded: stats.cancelsForwarded ?? 0, dropped: { ...stats.cancelsDropped } };
      },
    }] : []),
  ];
  await timeUntil(targets.map((t) => ({ label: t.label, state: t.state as Watched['state'] })), 'replica1', 'UP', Date.now(), 30_000);
  const status = JSON.parse(await labOk(labDir, 'status', '--json')) as { nodes: { name: string; pid: number | null }[] };
  const postmaster = status.nodes.find((n) => n.name === 'replica1')?.pid;
  if (!postmaster) throw new Error('replica1 has no postmaster pid in `lab status`');
  log(`\n== 6. replica1's postmaster SIGSTOPped ${HUNG_STOP_SECONDS} s while a new psql starts every 200 ms for ${HUNG_SECONDS} s (each balancer at once)`);
  const hung = await hungServer(labDir, postmaster, targets, HUNG_SECONDS, HUNG_STOP_SECONDS);
  for (const t of targets) {
    const h = hung[t.label]!;
    log(`  ${t.label.padEnd(72)} DOWN after ${h.downMs === null ? `never (${HUNG_STOP_SECONDS} s)` : `${h.downMs} ms`}; ${h.failed} of ${h.clients} clients failed, ${h.over5s} took over 5 s; slowest ${h.slowestMs} ms${h.firstFailure ? ` (${h.firstFailure})` : ''}`);
  }
  log(`\n== 7. ${FLOOD_CLIENTS} clients send a startup message at once (each until its first answer)`);
  const floods: Record<string, unknown> = {};
  for (const t of targets) {
    await timeUntil([{ label: t.label, state: t.state as Watched['state'] }], 'replica1', 'UP', Date.now(), 30_000);
    const f = await flood(t.port, FLOOD_CLIENTS);
    floods[t.label] = f;
    log(`  ${t.label.padEnd(72)} p99 first answer ${fmt(f.p99FirstAnswerMs)} ms; ${f.fatal} FATAL; ${f.noAnswer} without an answer (target 0)`);
  }
  log(`\n== 8. ${CANCEL_COUNT} CancelRequests with random keys in ${CANCEL_SECONDS} s, 4 TLS sessions in pg_sleep, a new psql every 100 ms (each balancer in turn)`);
  const cancelFloods: Record<string, CancelFloodResult> = {};
  for (const t of targets) {
    for (const server of pool) await timeUntil([{ label: t.label, state: t.state as Watched['state'] }], server.name, 'UP', Date.now(), 30_000);
    const c = await cancelFloodRun(labDir, t, pool.map((server) => server.name), CANCEL_COUNT, CANCEL_SECONDS);
    cancelFloods[t.label] = c;
    const down = Object.entries(c.down).map(([server, ms]) => `${server} at ${ms} ms`).join(', ');
    const drops = Object.entries(c.dropped ?? {}).filter(([, n]) => n > 0);
    const cancels = c.dropped === null ? '' : `; cancels relayed ${c.forwarded}, dropped ${drops.reduce((t, [, n]) => t + n, 0)}${drops.length ? ` (${drops.map(([reason, n]) => `${reason} ${n}`).join(', ')})` : ''}`;
    log(`  ${t.label.padEnd(72)} ${c.sent} sent in ${c.floodMs} ms; servers seen DOWN: ${down || 'none'} (target none); ${c.failed} of ${c.clients} clients failed${c.firstFailure ? ` (${c.firstFailure})` : ''}; ${c.longCut} of ${c.longSessions} long sessions cut${c.firstCut ? ` (${c.firstCut})` : ''}${cancels}`);
  }
  return { hung, flood: floods, cancelFlood: cancelFloods };
}

process.once('SIGINT', () => {
  console.error('interrupted: cleaning up');
  void cleanupAll().finally(() => process.exit(130));
});

try {
  await main();
} catch (error) {
  console.error(`bench failed: ${messageOf(error)}`);
  process.exitCode = 1;
} finally {
  await cleanupAll();
}
