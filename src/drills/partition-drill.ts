// `lab demo partition` (issue 17): what clients see when a node's host is cut off from the network
// without anything being closed (a pulled cable). The drill's lab is made with --hosts (every node in a
// network namespace of its own); readers hold persistent sessions through `lb` (the replicas), writers
// insert acknowledged rows through `rw` (--pool primary). Phase 1 partitions replica2: how long until
// lb marks it DOWN, what happened to the sessions on it, whether a new client was sent there, who hung
// and how long; heal: how long until it is UP again. Phase 2 partitions master1: the writers' hangs and
// errors and what rw did (no promotion in this drill: the partition is healed, as a short outage would
// be). The same phases run with the built-in balancer and with HAProxy at the seed's settings.
import { setTimeout as delay } from 'node:timers/promises';
import type { BalancerProcess } from '../api/balancer-process.js';
import { LAB_CHECK_DEFAULTS } from '../balancer/config.js';
import { findFreePorts } from '../common/ports.js';
import { LabError, messageOf } from '../common/errors.js';
import type { Reporter } from '../common/reporter.js';
import { queryRows } from '../postgres/client.js';
import type { Report, ReportError, ReportEvent, ReportSeries, ReportTable } from '../report/types.js';
import { ACKED_TABLE, CREATE_ACKED_TABLE, runAckedWriter, type WriterResult } from './acked-writer.js';
import type { PartitionDrillOptions } from './defaults.js';
import { alongsideLoad, inDemoLab, publishReport, type DrillOutcome } from './drill-run.js';
import { buildDemoLab, createDatabase, DEMO_DATABASE, waitReplicasCaughtUp, type DemoBase, type DemoLab, waitBalancerUp } from './lab-setup.js';
import { Narrator, type Print } from './narrator.js';
import {
  engineBalancerOptions, engineLabel, FAULT_GOALS, faultWindow, HANG_MS, READ_CONNECT_TIMEOUT_MS, READ_EVERY_MS, READ_QUERY_TIMEOUT_MS,
  replicaFigures, runSessionReaders, type FaultEngine, type FaultTimes, type FaultWindowOptions, type ReadRequest, type ReplicaFigures,
} from './fault-runs.js';

export { PARTITION_DEFAULTS, type PartitionDrillOptions } from './defaults.js';
export { replicaFigures, type ReadRequest, type ReplicaFigures } from './fault-runs.js';

export const PARTITION_ENGINES = ['builtin', 'haproxy'] as const;
export type PartitionEngine = (typeof PARTITION_ENGINES)[number];

/** The replica partitioned in phase 1. */
const REPLICA = 'replica2';
const PRIMARY = 'master1';
const WRITE_QUERY_TIMEOUT_MS = 3000;
const WRITE_CONNECT_TIMEOUT_MS = 3000;

export function parseEngines(text: string): PartitionEngine[] {
  const list = text === 'both' ? [...PARTITION_ENGINES] : text.split(',').map((e) => e.trim()).filter(Boolean);
  if (list.length === 0) throw new LabError('USAGE', '--engine needs builtin, haproxy or both');
  for (const engine of list) {
    if (!(PARTITION_ENGINES as readonly string[]).includes(engine)) throw new LabError('USAGE', `Invalid --engine "${engine}": expected builtin, haproxy or both`);
  }
  return [...new Set(list)] as PartitionEngine[];
}

export function checkPartitionOptions(o: PartitionDrillOptions): PartitionEngine[] {
  if (!(o.phaseMs >= 3000)) throw new LabError('USAGE', `--phase must be at least 3s, got ${o.phaseMs / 1000}s`);
  if (!Number.isInteger(o.readers) || o.readers < 1) throw new LabError('USAGE', `--readers must be 1 or more, got ${o.readers}`);
  if (!Number.isInteger(o.writers) || o.writers < 1) throw new LabError('USAGE', `--writers must be 1 or more, got ${o.writers}`);
  return parseEngines(o.engines);
}

export interface PrimaryFigures {
  rw_detection_ms: number | null;
  rw_readmission_ms: number | null;
  write_errors: number;
  writers_hung: number;
  write_max_hang_ms: number;
  write_downtime_ms: number | null;
  acked_during_partition: number;
}

interface RunResult {
  engine: PartitionEngine;
  label: string;
  reads: ReadRequest[];
  writes: WriterResult;
  replica: ReplicaFigures;
  primary: PrimaryFigures | null;
  times: { partStart: number; healStart: number; end: number; primaryStart?: number; primaryHeal?: number; primaryEnd?: number };
}

/** The drill's `haproxy` is HAProxy with the seed's settings. */
const faultEngine = (engine: PartitionEngine): FaultEngine => (engine === 'builtin' ? 'builtin' : 'haproxy-seed');

export async function runPartitionDrill(
  base: DemoBase,
  options: PartitionDrillOptions,
  hooks: { print: Print; reporter: Reporter; signal: AbortSignal },
): Promise<DrillOutcome> {
  const engines = checkPartitionOptions(options);
  const { signal } = hooks;
  const narrator = new Narrator(hooks.print);
  narrator.say(`lab demo partition: master1 and 2 replicas each on a host of its own; ${options.readers} readers through lb, ${options.writers} writers through rw; ${REPLICA} partitioned for ${options.phaseMs / 1000}s${options.primary ? `, then ${PRIMARY}` : ''}; engines: ${engines.join(', ')}`);
  const lab = await buildDemoLab(base, { replicas: 2, hosts: true, access: options.access, labDir: options.labDir, reporter: hooks.reporter, say: (t) => narrator.say(t) });
  return inDemoLab(lab, narrator, { keep: options.keep, what: 'the balancers' }, async () => {
    signal.throwIfAborted();
    narrator.say(`step 3: database ${DEMO_DATABASE} and table ${ACKED_TABLE} on master1 (${lab.masterHost}:${lab.masterPort})`);
    await createDatabase(lab.masterPort, DEMO_DATABASE, lab.masterHost);
    await queryRows({ host: lab.masterHost, port: lab.masterPort, database: DEMO_DATABASE }, CREATE_ACKED_TABLE);
    await waitReplicasCaughtUp(lab.masterPort, 2, 60_000, lab.masterHost);
    narrator.loadEpochMs = Date.now();
    const results: RunResult[] = [];
    for (const engine of engines) {
      signal.throwIfAborted();
      results.push(await oneRun({ lab, engine, options, narrator, signal }));
    }
    narrator.event('stop', `end: ${results.length} run(s)`);
    const report = buildReport({ results, options, narrator, lab });
    const written = await publishReport(narrator, options.reportDir, report);
    return { report, written, labDir: lab.labDir, kept: options.keep };
  });
}

interface RunInput {
  lab: DemoLab;
  engine: PartitionEngine;
  options: PartitionDrillOptions;
  narrator: Narrator;
  signal: AbortSignal;
}

async function oneRun(d: RunInput): Promise<RunResult> {
  const { lab, engine, options, narrator, signal } = d;
  const label = engineLabel(faultEngine(engine));
  const [lbPort, lbStats, rwPort, rwStats] = await findFreePorts(4);
  const lbName = `lb-${engine}`;
  const rwName = `rw-${engine}`;
  narrator.say(`run ${engine}: balancers ${lbName} (replicas) on 127.0.0.1:${lbPort} and ${rwName} (--pool primary) on 127.0.0.1:${rwPort}: ${label}`);
  const lb = await lab.lab.balancerProcess({ ...engineBalancerOptions(faultEngine(engine), lbName, 'replicas'), port: lbPort, statsPort: lbStats });
  let rw: BalancerProcess | null = null;
  try {
    rw = await lab.lab.balancerProcess({ ...engineBalancerOptions(faultEngine(engine), rwName, 'primary'), port: rwPort, statsPort: rwStats });
    await waitBalancerUp(lb, 2, signal, 40_000);
    await waitBalancerUp(rw, 1, signal, 40_000);
    // Each run's writers number their rows from 1: the previous run's rows go first.
    await queryRows({ host: lab.masterHost, port: lab.masterPort, database: DEMO_DATABASE }, `TRUNCATE ${ACKED_TABLE}`);
    const replicaPort = lab.replicas.find((r) => r.name === REPLICA)!.port;
    const half = options.phaseMs / 2;
    const total = half + options.phaseMs + half + (options.primary ? options.phaseMs + half : 0);
    const started = Date.now();
    let replicaTimes: FaultTimes | undefined;
    let primaryTimes: FaultTimes | undefined;
    let writes: WriterResult | undefined;
    const reads = await alongsideLoad(signal, (loadSignal) => {
      // A node's host cut off for a phase, healed, half a phase after; its DOWN and UP in `balancer`'s stats.
      // DOWN is timed from the return of lab fault partition: its rules in place (the measure the README's Hosts section gives).
      const phase = (balancer: BalancerProcess, node: string, tag: string): Promise<FaultTimes> => {
        let start = 0;
        let down: number | null = null;
        return faultWindow({
          apply: () => lab.lab.node(node).partition(), heal: () => lab.lab.node(node).heal(), balancer, server: node,
          holdMs: options.phaseMs, maxHoldMs: options.phaseMs, afterDownMs: 0, maxUpMs: half, afterMs: half, afterUpMs: 0, signal: loadSignal,
          on: {
            applied: (at) => { start = at; narrator.event(`${engine}-partition${tag}`, `${engine}: lab fault partition ${node}`, at); },
            down: (at) => {
              down = at;
              if (at !== null) narrator.event(`${engine}${tag === '-primary' ? '-rw' : ''}-down`, `${balancer.name}: ${node} DOWN`, at, `run ${engine}: ${balancer.name} marked ${node} DOWN ${at - start} ms after the partition began`);
              else narrator.say(`run ${engine}: ${balancer.name} kept ${node} UP for the whole partition (${options.phaseMs / 1000}s)`);
            },
            healing: (at) => { start = at; narrator.event(`${engine}-heal${tag}`, `${engine}: heal ${node}`, at); },
            up: (at) => { if (at !== null && down !== null) narrator.event(`${engine}${tag === '-primary' ? '-rw' : ''}-up`, `${balancer.name}: ${node} UP`, at, `run ${engine}: ${balancer.name}: ${node} UP again ${at - start} ms after the heal began`); },
          },
        } satisfies FaultWindowOptions);
      };
      return {
        workload: runSessionReaders({ url: `postgresql://postgres@127.0.0.1:${lbPort}/${DEMO_DATABASE}`, clients: options.readers, until: started + total, maxRequests: 500_000 }, loadSignal),
        drill: (async () => {
          const writer = runAckedWriter(
            { url: `postgresql://postgres@127.0.0.1:${rwPort}/${DEMO_DATABASE}`, clients: options.writers, durationMs: total, maxWrites: 2_000_000, queryTimeoutMs: WRITE_QUERY_TIMEOUT_MS, connectTimeoutMs: WRITE_CONNECT_TIMEOUT_MS, retryMs: 20 },
            loadSignal,
          );
          writer.catch(() => undefined);
          narrator.event(`${engine}-start`, `${engine}: baseline`);
          await delay(half, undefined, { signal: loadSignal });
          // Phase 1: the replica's host cut off.
          replicaTimes = await phase(lb, REPLICA, '');
          // Phase 2: the primary's host cut off (no promotion: the partition heals).
          if (options.primary) primaryTimes = await phase(rw!, PRIMARY, '-primary');
          writes = await writer;
        })(),
      };
    });
    if (!writes || !replicaTimes) throw new LabError('STATE', 'the writers did not finish');
    const replica = replicaFigures(reads, replicaPort, replicaTimes);
    const p = primaryTimes;
    const primary = p ? primaryFigures(writes, { start: p.partStart, heal: p.healStart, end: p.end, downAt: p.downAt, upAt: p.upAt }) : null;
    const times: RunResult['times'] = { ...replicaTimes, ...(p ? { primaryStart: p.partStart, primaryHeal: p.healStart, primaryEnd: p.end } : {}) };
    narrator.say(`run ${engine}: ${REPLICA}: ${replica.detection_ms === null ? 'never DOWN' : `DOWN after ${replica.detection_ms} ms, UP ${fmtMs(replica.readmission_ms)} after the heal`}; ${replica.sessions_on_replica} sessions on it (${replica.sessions_closed_at_markdown} closed at mark-down); new clients sent there after DOWN: ${replica.new_clients_sent_after_down ?? '-'}; longest hang ${replica.max_hang_ms} ms; read errors ${replica.read_errors} (${replica.errors_saveable} saveable)`);
    if (primary) narrator.say(`run ${engine}: ${PRIMARY}: ${rwName} ${primary.rw_detection_ms === null ? 'never marked it DOWN' : `DOWN after ${primary.rw_detection_ms} ms, UP ${fmtMs(primary.rw_readmission_ms)} after the heal`}; write errors ${primary.write_errors}, longest writer hang ${primary.write_max_hang_ms} ms, writes stopped for ${primary.write_downtime_ms === null ? 'the rest of the run' : `${primary.write_downtime_ms} ms`}`);
    return { engine, label, reads, writes, replica, primary, times };
  } finally {
    for (const balancer of [rw, lb]) {
      await balancer?.stop().catch((error) => narrator.say(`could not stop balancer ${balancer.name}: ${messageOf(error)}`));
    }
    await waitReplicasCaughtUp(lab.masterPort, 2, 30_000, lab.masterHost).catch(() => undefined);
  }
}

export function primaryFigures(writes: WriterResult, t: { start: number; heal: number; end: number; downAt: number | null; upAt: number | null }): PrimaryFigures {
  const inWindow = (at: number) => at >= t.start && at < t.end;
  const errors = writes.errors.filter((e) => inWindow(writes.startedEpochMs + e.atMs));
  const slow = writes.slow.filter((s) => s.at + s.tookMs >= t.start && s.at < t.end);
  const lastBefore = writes.acked.filter((a) => a.at < t.start).reduce((m, a) => Math.max(m, a.at), 0);
  const firstAfter = writes.acked.filter((a) => a.at >= t.heal).reduce((m, a) => Math.min(m, a.at), Infinity);
  return {
    rw_detection_ms: t.downAt === null ? null : t.downAt - t.start,
    rw_readmission_ms: t.upAt === null || t.downAt === null ? null : t.upAt - t.heal,
    write_errors: errors.length,
    writers_hung: slow.length,
    write_max_hang_ms: slow.reduce((m, s) => Math.max(m, s.tookMs), 0),
    write_downtime_ms: lastBefore && firstAfter !== Infinity ? firstAfter - lastBefore : null,
    acked_during_partition: writes.acked.filter((a) => a.at >= t.start && a.at < t.heal).length,
  };
}

function fmtMs(ms: number | null): string {
  return ms === null ? 'never (not within the phase)' : `${ms} ms`;
}

interface ReportInput {
  results: RunResult[];
  options: PartitionDrillOptions;
  narrator: Narrator;
  lab: DemoLab;
}

/** Goals of issue 17 for a replica's partition, with the lab's check settings. */
const DOWN_GOAL_MS = FAULT_GOALS.downMs;
const UP_GOAL_MS = FAULT_GOALS.upMs;

function buildReport(input: ReportInput): Report {
  const { results, options, narrator } = input;
  const epoch = narrator.loadEpochMs!;
  const rel = (t: number) => Math.round(t - epoch);
  const figures: Report['figures'] = { detection_ms: null, readmission_ms: null, errors_after_detection: null, phase_ms: options.phaseMs, readers: options.readers, writers: options.writers, check_inter_ms: LAB_CHECK_DEFAULTS.interMs, check_timeout_ms: LAB_CHECK_DEFAULTS.timeoutMs };
  const summary: string[] = [];
  const rows: (string | number)[][] = [];
  const series: ReportSeries[] = [];
  const errors: ReportError[] = [];
  const hangLimit = FAULT_GOALS.waitMs;
  for (const r of results) {
    const f = r.replica;
    for (const [key, value] of Object.entries(f)) figures[`${r.engine}_${key}`] = value;
    if (r.primary) for (const [key, value] of Object.entries(r.primary)) figures[`${r.engine}_${key}`] = value;
    figures[`${r.engine}_reads`] = r.reads.filter((q) => q.error === null).length;
    figures[`${r.engine}_acked_writes`] = r.writes.acked.length;
    if (r.engine === 'builtin') {
      figures.detection_ms = f.detection_ms;
      figures.readmission_ms = f.readmission_ms;
      figures.goal_down_within_1500ms = f.detection_ms !== null && f.detection_ms <= DOWN_GOAL_MS;
      figures.goal_no_hang_beyond = hangLimit;
      figures.goal_no_hang_beyond_met = f.max_hang_ms <= hangLimit;
      figures.goal_no_saveable_error = f.errors_saveable === 0;
      figures.goal_up_within_2000ms = f.readmission_ms !== null && f.readmission_ms <= UP_GOAL_MS;
    }
    summary.push(`${r.engine} (${r.label}):`);
    summary.push(`  ${REPLICA} partitioned: DOWN after ${fmtMs(f.detection_ms)}; ${f.sessions_on_replica} reader sessions on it, ${f.sessions_closed_at_markdown} closed at mark-down; new clients sent there after DOWN: ${f.new_clients_sent_after_down ?? '-'}; ${f.clients_hung} readers hung, longest ${f.max_hang_ms} ms; read errors ${f.read_errors}, saveable ${f.errors_saveable}; healed: ${f.detection_ms === null ? 'it was never DOWN' : `UP after ${fmtMs(f.readmission_ms)}`}`);
    if (r.primary) {
      const p = r.primary;
      summary.push(`  ${PRIMARY} partitioned: rw DOWN after ${fmtMs(p.rw_detection_ms)}; write errors ${p.write_errors}; ${p.writers_hung} writer attempts hung, longest ${p.write_max_hang_ms} ms; acknowledged during the partition ${p.acked_during_partition}; writes stopped ${p.write_downtime_ms === null ? 'and did not resume within the phase after the heal' : `${p.write_downtime_ms} ms`}; healed: ${p.rw_detection_ms === null ? 'rw never marked it DOWN' : `rw UP after ${fmtMs(p.rw_readmission_ms)}`} (no promotion)`);
    }
    rows.push([r.engine, fmtMs(f.detection_ms), f.sessions_on_replica, f.sessions_closed_at_markdown, f.new_clients_sent_after_down ?? '-', f.max_hang_ms, f.read_errors, f.errors_saveable, fmtMs(f.readmission_ms),
      r.primary ? fmtMs(r.primary.rw_detection_ms) : '-', r.primary ? r.primary.write_errors : '-', r.primary ? r.primary.write_max_hang_ms : '-', r.primary ? fmtMs(r.primary.write_downtime_ms) : '-']);
    // Timeline: reads answered and writes acknowledged per second, per run.
    const start = r.reads.reduce((m, q) => Math.min(m, q.start), Infinity);
    const end = r.reads.reduce((m, q) => Math.max(m, q.end), 0);
    if (start !== Infinity) {
      const seconds = Math.max(1, Math.ceil((end - start) / 1000));
      const readsPer = Array.from({ length: seconds }, () => 0);
      for (const q of r.reads) if (q.error === null) readsPer[Math.min(seconds - 1, Math.floor((q.end - start) / 1000))]! += 1;
      const writesPer = Array.from({ length: seconds }, () => 0);
      for (const a of r.writes.acked) { const i = Math.floor((a.at - start) / 1000); if (i >= 0 && i < seconds) writesPer[i]! += 1; }
      series.push({ node: `${r.engine}: reads/s (lb)`, port: null, points: readsPer.map((n, i) => ({ at_ms: rel(start) + (i + 1) * 1000, tps: n })) });
      series.push({ node: `${r.engine}: acked writes/s (rw)`, port: null, points: writesPer.map((n, i) => ({ at_ms: rel(start) + (i + 1) * 1000, tps: n })) });
    }
    errors.push(...r.reads.filter((q) => q.error !== null).map((q) => ({ at_ms: rel(q.end), message: `${q.kind}: ${q.error}`, target: `${r.engine} lb (reader ${q.reader})` })));
    errors.push(...r.writes.errors.map((e) => ({ at_ms: rel(r.writes.startedEpochMs + e.atMs), message: e.message, target: `${r.engine} rw` })));
  }
  const builtin = results.find((r) => r.engine === 'builtin');
  if (builtin) {
    const goals = [
      ['DOWN within 1.5 s', figures.goal_down_within_1500ms],
      [`no client hung longer than ${hangLimit} ms`, figures.goal_no_hang_beyond_met],
      ['no saveable client error', figures.goal_no_saveable_error],
      ['UP within 2 s of the heal', figures.goal_up_within_2000ms],
      ['no new client sent to the partitioned replica after DOWN', builtin.replica.new_clients_sent_after_down === 0],
    ];
    summary.push(`goals (built-in): ${goals.map(([what, ok]) => `${what}: ${ok ? 'met' : 'NOT met'}`).join('; ')}`);
  }
  const tables: ReportTable[] = [{
    title: 'The runs side by side',
    headers: ['engine', `${REPLICA} DOWN after`, 'sessions on it', 'closed at mark-down', 'new clients there after DOWN', 'longest read hang ms', 'read errors', 'saveable', 'UP after heal', `rw: ${PRIMARY} DOWN after`, 'write errors', 'longest write hang ms', 'writes stopped'],
    rows,
    note: 'Readers hold a session through lb and query every 50 ms (connect and query timeouts 3 s), reconnecting after an error. "saveable": a new connection that failed while another replica was UP.',
  }];
  const events: ReportEvent[] = [...narrator.events].sort((a, b) => a.at_ms - b.at_ms);
  const last = results.at(-1);
  return {
    title: `pglab partition demo: ${REPLICA}'s host, then ${PRIMARY}'s, cut off under reads (lb) and acknowledged writes (rw); ${results.map((r) => r.engine).join(' and ')}`,
    generated_at: new Date().toISOString(),
    started_at: new Date(epoch).toISOString(),
    duration_ms: last ? rel(last.times.primaryEnd ?? last.times.end) : 0,
    summary,
    details: {
      hung_reads: results.flatMap((r) => r.reads.filter((q) => q.end - q.start >= HANG_MS).slice(0, 100).map((q) => ({ engine: r.engine, reader: q.reader, kind: q.kind, at_ms: rel(q.start), took_ms: q.end - q.start, port: q.port, error: q.error }))),
      hung_writes: results.flatMap((r) => r.writes.slow.slice(0, 100).map((s) => ({ engine: r.engine, at_ms: rel(s.at), took_ms: s.tookMs, error: s.error }))),
    },
    y_label: 'reads answered / writes acknowledged per second',
    tables,
    events,
    series,
    errors: errors.slice(0, 500),
    errors_total: errors.length,
    figures,
    transactions: [],
    crosscheck: [],
    notes: [
      `Lab: made with --hosts (master1 and two replicas each in a network namespace with its own address on the lab's bridge). lab fault partition drops every packet to and from the node's host (sockets stay open); heal removes the rules.`,
      `Readers: ${options.readers} clients through lb, each on a persistent session: connect, then SELECT inet_server_port() every ${READ_EVERY_MS} ms; after an error a new connection (connect timeout ${READ_CONNECT_TIMEOUT_MS} ms, query timeout ${READ_QUERY_TIMEOUT_MS} ms). A request that took ${HANG_MS} ms or more is a hang.`,
      `Writers: ${options.writers} clients through rw (--pool primary), one INSERT per transaction, counted once acknowledged (connect and query timeouts ${WRITE_CONNECT_TIMEOUT_MS} ms); after an error a writer retries 20 ms later, so write_errors counts attempts (a rw with no server UP refuses each at once).`,
      'detection_ms: from the return of lab fault partition (its rules in place) to the first stats read (every 20 ms) showing the node not UP; readmission_ms: from the start of lab fault heal to the first showing it UP.',
      'sessions_closed_at_markdown: reader sessions on the replica when it was cut off whose request failed within 500 ms after DOWN (before their own query timeout). new_clients_sent_after_down: new reader connections that landed on the replica between DOWN and UP. errors_saveable: new connections that failed while the other replica was UP.',
      'The primary half: no promotion (a partition this short is healed, not failed over; `lab demo primary-failover` drills the promotion). rw has no other server: writers wait or fail until the heal.',
    ],
  };
}
