// `lab demo stale-reads [--max-lag 1MB]` (issue 17): how old can a read through `lb` be while a replica's
// links are delayed (a lab made with --hosts), while it is paused, while it stops replaying? A writer
// stamps an increasing counter on the primary (StampWriter); readers read it through a balancer, each read judged against what the writer had acknowledged when it
// was sent (ms and bytes behind). The same phases run three times on the same lab, each with a balancer
// of its own: the built-in one with the sql check's --max-lag, the built-in one without a lag bound, and
// HAProxy with the seed's settings (pgsql-check: it cannot see lag). The report puts them side by side
// and checks the rule: with --max-lag B (bytes) / S (seconds), check interval I and check timeout C,
//   ms_behind    <= S + I + 2C
//   bytes_behind <= B + WAL the primary wrote in the I + 2C before the read + one stamp's WAL.
import { readFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import type { Lab } from '../api/lab.js';
import type { BalancerProcessOptions } from '../api/options.js';
import { parseDelay } from '../lab/faults.js';
import { LAB_CHECK_DEFAULTS } from '../balancer/config.js';
import { parseMaxLag } from '../balancer/settings.js';
import { findFreePorts } from '../common/ports.js';
import { LabError, messageOf } from '../common/errors.js';
import { checkCanMakeHosts } from '../network/ip.js';
import type { Reporter } from '../common/reporter.js';
import { queryRows } from '../postgres/client.js';
import type { Report, ReportError, ReportEvent, ReportNodeTransactions, ReportPhase, ReportSeries, ReportTable } from '../report/types.js';
import { SEED_HAPROXY, STALE_READS_DEFAULTS, type StaleReadsDrillOptions } from './defaults.js';
import { alongsideLoad, inDemoLab, publishReport, type DrillOutcome } from './drill-run.js';
import { buildDemoLab, createDatabase, DEMO_DATABASE, waitReplicasCaughtUp, waitBalancerUp, type DemoBase } from './lab-setup.js';
import { Narrator, type Print } from './narrator.js';
import { CREATE_STAMP_TABLE, STAMP_TABLE, latestAt, runStampReaders, StampWriter, type ReadersResult, type Stamp, type StampRead } from './stamp-load.js';

export { STALE_READS_DEFAULTS, type StaleReadsDrillOptions } from './defaults.js';

/** Faults a phase can apply, in the default order. `delay` needs the lab made with --hosts (REFERENCE 8). */
export const STALE_FAULTS = ['delay', 'pause', 'lag'] as const;
export type StaleFault = (typeof STALE_FAULTS)[number];
export const STALE_RUNS = ['bounded', 'unbounded', 'haproxy'] as const;
export type StaleRun = (typeof STALE_RUNS)[number];

/** The writer: one stamp every 15 ms, each with 16 kB of uncompressed padding (about 1 MB of WAL a second). */
const STAMP_EVERY_MS = 15;
const STAMP_PAD_BYTES = 16_384;
// Above the built-in balancer's connection phase (3 s: a hung server's 1 s detour included), as drivers' 10-30 s are.
const READ_CONNECT_TIMEOUT_MS = 5000;
const READ_QUERY_TIMEOUT_MS = 3000;

interface PhaseSpec {
  name: string;
  fault: StaleFault | null;
  ms: number;
}

/** The drill's phases: a baseline, then each fault for --phase and a recovery of half that after its heal. */
export function phasePlan(faults: StaleFault[], node: string, phaseMs: number, delayMs: number, runtime = 'process'): PhaseSpec[] {
  const pause = runtime === 'docker' ? 'docker pause' : 'SIGSTOP';
  const words: Record<StaleFault, string> = { delay: `${node} delayed (${delayMs} ms)`, pause: `${node} paused (${pause})`, lag: `${node} replay paused (lag)` };
  return [
    { name: 'baseline', fault: null, ms: phaseMs / 2 },
    ...faults.flatMap((fault) => [
      { name: words[fault], fault, ms: phaseMs },
      { name: `after ${fault} healed`, fault: null, ms: phaseMs / 2 },
    ]),
  ];
}

export function parseStaleFaults(text: string): StaleFault[] {
  const faults = text.split(',').map((f) => f.trim()).filter(Boolean);
  if (faults.length === 0) throw new LabError('USAGE', '--faults needs at least one of delay, pause, lag');
  for (const fault of faults) {
    if (!(STALE_FAULTS as readonly string[]).includes(fault)) throw new LabError('USAGE', `Invalid --faults "${fault}": expected delay, pause and/or lag`);
  }
  return faults as StaleFault[];
}

/**
 * The phases this machine can run. A delay needs the drill's lab made with --hosts (`hostsProblem`: why
 * it cannot be, or null): named in --faults it is refused in one line; in the default list it is left
 * out, and `skipped` says why in one line.
 */
export function faultsHere(faults: StaleFault[], explicit: boolean, hostsProblem: LabError | null): { faults: StaleFault[]; skipped: string | null } {
  if (!faults.includes('delay') || hostsProblem === null) return { faults, skipped: null };
  if (explicit) throw new LabError(hostsProblem.code, `--faults delay needs the drill's lab made with --hosts (nodes in network namespaces): ${hostsProblem.message}`);
  const rest = faults.filter((f) => f !== 'delay');
  return { faults: rest, skipped: `delay phase skipped (${rest.join(' and ')} run): it needs the drill's lab made with --hosts, and ${hostsProblem.message}` };
}

export function parseStaleRuns(text: string): StaleRun[] {
  const runs = text.split(',').map((r) => r.trim()).filter(Boolean);
  if (runs.length === 0) throw new LabError('USAGE', '--runs needs at least one of bounded, unbounded, haproxy');
  for (const run of runs) {
    if (!(STALE_RUNS as readonly string[]).includes(run)) throw new LabError('USAGE', `Invalid --runs "${run}": expected bounded, unbounded and/or haproxy`);
  }
  return [...new Set(runs)] as StaleRun[];
}

export function checkStaleReadsOptions(o: StaleReadsDrillOptions): { maxLagBytes: number | null; maxLagSeconds: number | null; delayMs: number } {
  if (!Number.isInteger(o.replicas) || o.replicas < 2) throw new LabError('USAGE', `--replicas must be 2 or more (one keeps serving while the other is faulted), got ${o.replicas}`);
  if (!Number.isInteger(o.readers) || o.readers < 1) throw new LabError('USAGE', `--readers must be 1 or more, got ${o.readers}`);
  if (!(o.phaseMs >= 2000)) throw new LabError('USAGE', `--phase must be at least 2s, got ${o.phaseMs / 1000}s`);
  const match = /^replica(\d+)$/.exec(o.node);
  if (!match || Number(match[1]) < 1 || Number(match[1]) > o.replicas) throw new LabError('USAGE', `--node must be one of the drill's replicas (replica1..replica${o.replicas}), got "${o.node}"`);
  const bound = parseMaxLag(o.maxLag.split(','));
  if (bound.maxLagBytes === null && bound.maxLagSeconds === null) throw new LabError('USAGE', '--max-lag needs a bound (1MB, 1s)');
  return { ...bound, delayMs: parseDelay(o.delay) };
}

/** What the rule allows a read, from the check's knobs. */
export interface Rule {
  maxLagBytes: number | null;
  maxLagSeconds: number | null;
  interMs: number;
  checkTimeoutMs: number;
  /** I + 2C: from one check's measurement to the latest moment its verdict can still route a read. */
  windowMs: number;
}

export interface JudgedRead extends StampRead {
  /** Over the bound itself (--max-lag). */
  beyond_bound: boolean;
  /** Over the rule: the bound plus what one check interval can add. */
  beyond_rule: boolean;
  /** What the rule allowed this read (null: no such bound, or the read saw the newest stamp). */
  limit_ms: number | null;
  limit_bytes: number | null;
}

export function judgeAgainstRule(stamps: Stamp[], read: StampRead, rule: Rule): JudgedRead {
  let beyondBound = false;
  let beyondRule = false;
  let limitMs: number | null = null;
  let limitBytes: number | null = null;
  if (rule.maxLagSeconds !== null) {
    limitMs = rule.maxLagSeconds * 1000 + rule.windowMs;
    beyondBound ||= read.ms_behind > rule.maxLagSeconds * 1000;
    beyondRule ||= read.ms_behind > limitMs;
  }
  if (rule.maxLagBytes !== null && read.counter < read.latest) {
    beyondBound ||= read.bytes_behind > rule.maxLagBytes;
    const written = stamps[read.latest]!.lsn - latestAt(stamps, read.at - rule.windowMs).lsn;
    const oneStamp = stamps[read.counter + 1]!.lsn - stamps[read.counter]!.lsn;
    limitBytes = rule.maxLagBytes + Math.max(0, written) + oneStamp;
    beyondRule ||= read.bytes_behind > limitBytes;
  }
  return { ...read, beyond_bound: beyondBound, beyond_rule: beyondRule, limit_ms: limitMs, limit_bytes: limitBytes };
}

/** A state change of a server in the built-in balancer's log: `<ISO time> lb server replica2 UP -> DRAIN: why`. */
export interface StateChange {
  at: number;
  server: string;
  from: string;
  to: string;
  why: string;
}

export function stateChangesOf(log: string, balancer: string, since: number): StateChange[] {
  const changes: StateChange[] = [];
  const pattern = /^(\S+) (\S+) server (\S+) ([A-Z]+) -> ([A-Z]+): (.*)$/;
  for (const line of log.split('\n')) {
    const m = pattern.exec(line);
    if (!m || m[2] !== balancer) continue;
    const at = Date.parse(m[1]!);
    if (Number.isFinite(at) && at >= since) changes.push({ at, server: m[3]!, from: m[4]!, to: m[5]!, why: m[6]! });
  }
  return changes;
}

interface PhaseResult {
  name: string;
  fault: StaleFault | null;
  from: number;
  to: number;
}

interface RunResult {
  run: StaleRun;
  label: string;
  balancer: string;
  phases: PhaseResult[];
  reads: JudgedRead[];
  errors: ReadersResult['errors'];
  /** The faulted node's state changes in the built-in balancer (HAProxy's are not read). */
  changes: StateChange[];
}

export async function runStaleReadsDrill(
  base: DemoBase,
  options: StaleReadsDrillOptions,
  hooks: { print: Print; reporter: Reporter; signal: AbortSignal },
): Promise<DrillOutcome> {
  const { delayMs, ...bound } = checkStaleReadsOptions(options);
  const requested = parseStaleFaults(options.faults ?? STALE_READS_DEFAULTS.faults!);
  const runs = parseStaleRuns(options.runs);
  // A delay phase needs nodes in network namespaces: the lab is made with --hosts when it has one.
  const hostsProblem = requested.includes('delay')
    ? await checkCanMakeHosts(base.runtime ?? 'process', 'leave delay out of --faults').then(() => null, (error: unknown) => (error instanceof LabError ? error : new LabError('ENVIRONMENT', messageOf(error))))
    : null;
  const { faults, skipped } = faultsHere(requested, options.faults !== undefined, hostsProblem);
  const hosts = faults.includes('delay');
  const rule: Rule = { ...bound, interMs: LAB_CHECK_DEFAULTS.interMs, checkTimeoutMs: LAB_CHECK_DEFAULTS.timeoutMs, windowMs: LAB_CHECK_DEFAULTS.interMs + 2 * LAB_CHECK_DEFAULTS.timeoutMs };
  const plan = phasePlan(faults, options.node, options.phaseMs, delayMs, base.runtime);
  const { signal } = hooks;
  const narrator = new Narrator(hooks.print);
  if (skipped) narrator.say(skipped);
  narrator.say(`lab demo stale-reads: ${options.replicas} replicas, ${options.readers} readers through a balancer, ${options.node} ${faults.map((f) => (f === 'delay' ? `delayed ${delayMs} ms` : f)).join(' then ')} for ${options.phaseMs / 1000}s each; runs: ${runs.join(', ')}; bound --max-lag ${options.maxLag}`);
  const lab = await buildDemoLab(base, { replicas: options.replicas, hosts, access: options.access, labDir: options.labDir, reporter: hooks.reporter, say: (t) => narrator.say(t) });
  return inDemoLab(lab, narrator, { keep: options.keep, what: 'the writer, the balancers' }, async () => {
    narrator.say(`step 3: table ${STAMP_TABLE} in database ${DEMO_DATABASE} on master1 (${lab.masterHost}:${lab.masterPort}); a writer stamps counter+1 every ${STAMP_EVERY_MS} ms (${STAMP_PAD_BYTES / 1024} kB of WAL each)`);
    await createDatabase(lab.masterPort, DEMO_DATABASE, lab.masterHost);
    for (const sql of CREATE_STAMP_TABLE) await queryRows({ host: lab.masterHost, port: lab.masterPort, database: DEMO_DATABASE }, sql);
    await waitReplicasCaughtUp(lab.masterPort, lab.replicas.length, 60_000, lab.masterHost);
    const writer = new StampWriter({ host: lab.masterHost, port: lab.masterPort, database: DEMO_DATABASE, everyMs: STAMP_EVERY_MS, padBytes: STAMP_PAD_BYTES, maxStamps: 2_000_000 });
    narrator.loadEpochMs = Date.now();
    await writer.start();
    const results: RunResult[] = [];
    try {
      for (const run of runs) {
        signal.throwIfAborted();
        results.push(await oneRun({ lab: lab.lab, masterPort: lab.masterPort, masterHost: lab.masterHost, replicas: lab.replicas, run, rule, options, delayMs, plan, writer, narrator, signal }));
      }
    } finally {
      await writer.stop();
    }
    narrator.event('stop', `end: ${writer.latest} stamps written, ${results.reduce((n, r) => n + r.reads.length, 0)} reads in ${results.length} runs`);
    const report = buildReport({ results, rule, options, writer, narrator, plan, faults, delayMs, hosts, nodes: [{ name: 'master1', port: lab.masterPort }, ...lab.replicas] });
    const written = await publishReport(narrator, options.reportDir, report);
    return { report, written, labDir: lab.labDir, kept: options.keep };
  });
}

function runLabel(run: StaleRun, maxLag: string): string {
  switch (run) {
    case 'bounded': return `built-in, sql check --max-lag ${maxLag}`;
    case 'unbounded': return 'built-in, sql check, no lag bound';
    case 'haproxy': return 'HAProxy, seed settings (pgsql-check, inter 10s)';
  }
}

function balancerOptions(run: StaleRun, maxLag: string): BalancerProcessOptions & { name: string } {
  const { maxLagBytes, maxLagSeconds } = parseMaxLag(maxLag.split(','));
  switch (run) {
    case 'bounded': return { name: 'lb', check: 'sql', ...(maxLagBytes !== null ? { maxLagBytes } : {}), ...(maxLagSeconds !== null ? { maxLagMs: Math.round(maxLagSeconds * 1000) } : {}) };
    case 'unbounded': return { name: 'lb-nobound', check: 'sql' };
    case 'haproxy':
      // The seed's haproxy.cfg knobs (REFERENCE 1): pgsql-check every 10 s, rise 2, fall 3, timeout check 5 s.
      return { name: 'hx', ...SEED_HAPROXY };
  }
}

interface RunInput {
  lab: Lab;
  masterPort: number;
  masterHost: string;
  replicas: { name: string; port: number }[];
  run: StaleRun;
  rule: Rule;
  options: StaleReadsDrillOptions;
  delayMs: number;
  plan: PhaseSpec[];
  writer: StampWriter;
  narrator: Narrator;
  signal: AbortSignal;
}

async function oneRun(d: RunInput): Promise<RunResult> {
  const { lab, run, rule, options, delayMs, plan, writer, narrator, signal } = d;
  const label = runLabel(run, options.maxLag);
  const [listen, stats] = await findFreePorts(2);
  const spec = { ...balancerOptions(run, options.maxLag), port: listen, statsPort: stats };
  narrator.say(`run ${run}: balancer ${spec.name} on 127.0.0.1:${listen}, ${label}`);
  const balancer = await lab.balancerProcess(spec);
  try {
    await waitBalancerUp(balancer, d.replicas.length, signal, 30_000);
    const phases: PhaseResult[] = [];
    const started = Date.now();
    // The readers stop when the last phase ends (a fault that takes its time to apply moves that).
    let end = Infinity;
    const readers = await alongsideLoad(signal, (loadSignal) => ({
      workload: runStampReaders(writer, {
        url: `postgresql://postgres@127.0.0.1:${listen}/${DEMO_DATABASE}`, clients: options.readers, until: () => end, maxReads: 200_000,
        connectTimeoutMs: READ_CONNECT_TIMEOUT_MS, queryTimeoutMs: READ_QUERY_TIMEOUT_MS,
      }, loadSignal),
      drill: (async () => {
        for (const phase of plan) {
          let from = Date.now();
          if (phase.fault) {
            // A fault's phase begins once its command returned (the fault in force) and lasts --phase from
            // then; the time it took to apply (a delay: its relay's start, ~0.5 s) ends the phase before.
            await applyFault(lab, phase.fault, options.node, delayMs);
            const applying = Date.now() - from;
            from = Date.now();
            if (phases.length > 0) phases.at(-1)!.to = from;
            narrator.event(`${run}-${phase.fault}`, `${run}: ${phase.name}`, from, `${run}: ${phase.name} (applied in ${applying} ms)`);
          } else {
            narrator.event(`${run}-phase`, `${run}: ${phase.name}`, from);
          }
          await delay(phase.ms, undefined, { signal: loadSignal });
          if (phase.fault) {
            const healed = await lab.node(options.node).heal();
            narrator.say(`run ${run}: heal ${options.node}: ${healed.healed.map((h) => h.outcome).join('; ')}`);
          }
          phases.push({ name: phase.name, fault: phase.fault, from, to: Date.now() });
        }
        end = Date.now();
      })(),
    }));
    const reads = readers.reads.map((r) => judgeAgainstRule(writer.stamps, r, rule));
    narrator.say(`run ${run}: ${reads.length} reads, ${readers.errors.length} read errors, ${reads.filter((r) => r.beyond_bound).length} beyond the bound, ${reads.filter((r) => r.beyond_rule).length} beyond the rule`);
    const changes = balancer.engine === 'haproxy' ? [] : stateChangesOf(balancer.logFile ? await readFile(balancer.logFile, 'utf8').catch(() => '') : '', spec.name, started).filter((c) => c.server === options.node);
    for (const c of changes) narrator.event(`${run}-state`, `${spec.name}: ${c.server} ${c.to}`, c.at, `run ${run}: balancer ${spec.name}: ${c.server} ${c.from} -> ${c.to} (${c.why})`);
    return { run, label, balancer: spec.name, phases, reads, errors: readers.errors, changes };
  } finally {
    await balancer.stop().catch((error) => narrator.say(`could not stop balancer ${spec.name}: ${error instanceof Error ? error.message : String(error)}`));
    // The next run starts from replicas that replayed everything (a heal's backlog is not the next run's).
    await waitReplicasCaughtUp(d.masterPort, d.replicas.length, 30_000, d.masterHost).catch(() => undefined);
  }
}

async function applyFault(lab: Lab, fault: StaleFault, node: string, delayMs: number): Promise<void> {
  switch (fault) {
    case 'delay': await lab.node(node).delay(delayMs); return;
    case 'pause': await lab.node(node).pause(); return;
    case 'lag': await lab.node(node).lag(); return;
  }
}


interface PhaseFigures {
  reads: number;
  errors: number;
  on_node: number;
  beyond_bound: number;
  beyond_rule: number;
  worst_ms: number;
  worst_bytes: number;
  /** The oldest answer when it arrived (ms_old_on_arrival): a late answer is older than its ms_behind. */
  worst_ms_on_arrival: number;
  /** The median time the faulted node took to answer a SELECT, and to a new connection (null: it answered none). */
  node_median_took_ms: number | null;
  node_median_connect_ms: number | null;
}

function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function figuresOf(reads: JudgedRead[], errors: number, nodePort: number): PhaseFigures {
  const onNode = reads.filter((r) => r.port === nodePort);
  return {
    reads: reads.length,
    errors,
    on_node: onNode.length,
    beyond_bound: reads.filter((r) => r.beyond_bound).length,
    beyond_rule: reads.filter((r) => r.beyond_rule).length,
    worst_ms: reads.reduce((m, r) => Math.max(m, r.ms_behind), 0),
    worst_bytes: reads.reduce((m, r) => Math.max(m, r.bytes_behind), 0),
    worst_ms_on_arrival: reads.reduce((m, r) => Math.max(m, r.ms_old_on_arrival), 0),
    node_median_took_ms: median(onNode.map((r) => r.took_ms)),
    node_median_connect_ms: median(onNode.map((r) => r.connect_ms)),
  };
}

function fmtBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(0)} kB`;
  return `${bytes} B`;
}

interface ReportInput {
  results: RunResult[];
  rule: Rule;
  options: StaleReadsDrillOptions;
  writer: StampWriter;
  narrator: Narrator;
  plan: PhaseSpec[];
  faults: StaleFault[];
  delayMs: number;
  /** The lab was made with --hosts (every node in a network namespace). */
  hosts: boolean;
  nodes: { name: string; port: number }[];
}

function buildReport(input: ReportInput): Report {
  const { results, rule, options, writer, narrator, nodes } = input;
  const epoch = narrator.loadEpochMs!;
  const rel = (t: number) => Math.round(t - epoch);
  const nodePort = nodes.find((n) => n.name === options.node)!.port;
  const stamps = writer.stamps;
  const lastStamp = stamps[stamps.length - 1]!;
  const walPerSecond = stamps.length > 1 ? Math.round(((lastStamp.lsn - stamps[0]!.lsn) * 1000) / Math.max(1, lastStamp.ackedAt - stamps[0]!.ackedAt)) : 0;
  const ruleText = [
    rule.maxLagSeconds !== null ? `ms behind <= ${rule.maxLagSeconds * 1000} + ${rule.interMs} + 2 x ${rule.checkTimeoutMs} = ${rule.maxLagSeconds * 1000 + rule.windowMs} ms` : null,
    rule.maxLagBytes !== null ? `bytes behind <= ${fmtBytes(rule.maxLagBytes)} + the WAL written in the ${rule.windowMs} ms before the read + one stamp's WAL` : null,
  ].filter(Boolean).join('; ');

  const figures: Report['figures'] = {
    detection_ms: null, readmission_ms: null, errors_after_detection: null,
    max_lag: options.maxLag,
    max_lag_bytes: rule.maxLagBytes,
    max_lag_s: rule.maxLagSeconds,
    inter_ms: rule.interMs,
    check_timeout_ms: rule.checkTimeoutMs,
    rule_window_ms: rule.windowMs,
    faulted_node: options.node,
    faults: input.faults.join(','),
    delay_ms: input.faults.includes('delay') ? input.delayMs : null,
    hosts: input.hosts,
    phase_ms: options.phaseMs,
    stamps: writer.latest,
    wal_bytes_per_s: walPerSecond,
    writer_errors: writer.errors.length,
  };
  const rows: (string | number)[][] = [];
  const phases: ReportPhase[] = [];
  const transactions: ReportNodeTransactions[] = [];
  const series: ReportSeries[] = [];
  const errors: ReportError[] = [];
  const summary: string[] = [`bound: --max-lag ${options.maxLag}; the rule (check every ${rule.interMs} ms, timeout ${rule.checkTimeoutMs} ms): ${ruleText}`];
  for (const result of results) {
    const all = figuresOf(result.reads, result.errors.length, nodePort);
    const inFault = result.phases.filter((p) => p.fault);
    const inPhase = (p: PhaseResult) => (t: number) => t >= p.from && t < p.to;
    for (const phase of result.phases) {
      const within = inPhase(phase);
      const f = figuresOf(result.reads.filter((r) => within(r.at)), result.errors.filter((e) => within(e.at)).length, nodePort);
      rows.push([phase.name, result.run, f.reads, f.errors, f.on_node, f.on_node ? `${f.node_median_connect_ms} / ${f.node_median_took_ms}` : '-', f.beyond_bound, f.beyond_rule, f.worst_ms, fmtBytes(f.worst_bytes), f.worst_ms_on_arrival]);
      const perSecond = new Map<number, number>();
      for (const r of result.reads.filter((x) => within(x.at))) perSecond.set(Math.floor((r.at - phase.from) / 1000), (perSecond.get(Math.floor((r.at - phase.from) / 1000)) ?? 0) + 1);
      const whole = Math.floor((phase.to - phase.from) / 1000);
      phases.push({
        name: `${result.run}: ${phase.name}`, from_ms: rel(phase.from), to_ms: rel(phase.to), transactions: f.reads, errors: f.errors,
        min_tps: whole > 0 ? Math.min(...Array.from({ length: whole }, (_, i) => perSecond.get(i) ?? 0)) : null,
      });
      // Per phase: <run>_lag_..., <run>_after_lag_... (the phase after a fault's heal).
      const key = phase.fault ?? (phase.name.startsWith('after ') ? `after_${phase.name.split(' ')[1]}` : phase.name);
      figures[`${result.run}_${key}_beyond_bound`] = f.beyond_bound;
      figures[`${result.run}_${key}_beyond_rule`] = f.beyond_rule;
      figures[`${result.run}_${key}_worst_ms_behind`] = f.worst_ms;
      figures[`${result.run}_${key}_worst_bytes_behind`] = f.worst_bytes;
      figures[`${result.run}_${key}_worst_ms_on_arrival`] = f.worst_ms_on_arrival;
      figures[`${result.run}_${key}_reads`] = f.reads;
      figures[`${result.run}_${key}_errors`] = f.errors;
      figures[`${result.run}_${key}_on_node`] = f.on_node;
      figures[`${result.run}_${key}_node_median_took_ms`] = f.node_median_took_ms;
      figures[`${result.run}_${key}_node_median_connect_ms`] = f.node_median_connect_ms;
    }
    Object.assign(figures, {
      [`${result.run}_reads`]: all.reads,
      [`${result.run}_read_errors`]: all.errors,
      [`${result.run}_beyond_bound`]: all.beyond_bound,
      [`${result.run}_beyond_rule`]: all.beyond_rule,
      [`${result.run}_worst_ms_behind`]: all.worst_ms,
      [`${result.run}_worst_bytes_behind`]: all.worst_bytes,
      [`${result.run}_worst_ms_on_arrival`]: all.worst_ms_on_arrival,
    });
    summary.push(`${result.run} (${result.label}): ${all.reads} reads, ${all.errors} read errors; older than the bound: ${all.beyond_bound}; beyond the rule: ${all.beyond_rule}; worst ${all.worst_ms} ms / ${fmtBytes(all.worst_bytes)} behind (${all.worst_ms_on_arrival} ms old on arrival)`);
    // Reads per server: before the first fault, during faults, after them.
    const firstFault = inFault[0]?.from ?? Infinity;
    for (const node of nodes) {
      const mine = result.reads.filter((r) => r.port === node.port);
      if (mine.length === 0) continue;
      const during = mine.filter((r) => inFault.some((p) => r.at >= p.from && r.at < p.to)).length;
      const before = mine.filter((r) => r.at < firstFault).length;
      transactions.push({ node: `${result.run}: ${node.name}`, before, during, after: mine.length - before - during, total: mine.length });
    }
    // The timeline: the worst staleness of each second's reads, per run.
    const start = result.phases[0]?.from ?? epoch;
    const end = result.phases.at(-1)?.to ?? start;
    const worst = Array.from({ length: Math.ceil((end - start) / 1000) }, () => 0);
    for (const r of result.reads) {
      const i = Math.min(worst.length - 1, Math.floor((r.at - start) / 1000));
      if (i >= 0) worst[i] = Math.max(worst[i]!, r.ms_behind);
    }
    series.push({ node: `${result.run} (worst ms behind)`, port: null, points: worst.map((ms, i) => ({ at_ms: rel(start) + (i + 1) * 1000, tps: ms })) });
    errors.push(...result.errors.map((e) => ({ at_ms: rel(e.at), message: e.message, target: `${result.run} (${result.balancer})` })));
  }
  errors.push(...writer.errors.map((e) => ({ at_ms: rel(e.at), message: e.message, target: 'writer (master1)' })));
  const bounded = results.find((r) => r.run === 'bounded');
  const goal = bounded ? bounded.reads.filter((r) => r.beyond_rule).length === 0 : null;
  figures.goal_no_read_beyond_rule = goal;
  if (bounded && goal !== null) {
    const where = bounded.phases
      .map((p) => ({ name: p.name, n: bounded.reads.filter((r) => r.beyond_rule && r.at >= p.from && r.at < p.to).length }))
      .filter((p) => p.n > 0);
    const afterPause = where.some((p) => p.name === 'after pause healed')
      ? ' (after a pause: the sql check measures a replica\'s lag against the primary\'s pg_current_wal_lsn(), sampled once a check interval, and on the replica when no sample younger than two intervals exists; see README, Stale reads)'
      : '';
    summary.push(`goal (--max-lag: no read beyond the bound plus one check interval): ${goal ? 'met' : `NOT met: ${where.map((p) => `${p.n} in "${p.name}"`).join(', ')}${afterPause}`}`);
  }
  summary.push(`writer: ${writer.latest} stamps, ${fmtBytes(walPerSecond)} of WAL a second${writer.errors.length ? `, ${writer.errors.length} errors` : ''}`);

  const tableNotes = `Reads: a new connection through the run's balancer, then SELECT counter FROM stamp. "on ${options.node}": reads the faulted replica answered, and the median ms their new connection (TLS, login) and their SELECT took. "> bound": older than --max-lag ${options.maxLag}; "> rule": older than the rule allows (both judge ms/bytes behind, taken when the SELECT was sent). "ms old on arrival": the same age taken when the answer came back.`;
  const tables: ReportTable[] = [{
    title: 'The runs side by side, per phase',
    headers: ['phase', 'run', 'reads', 'errors', `on ${options.node}`, `${options.node} ms to connect / answer (median)`, '> bound', '> rule', 'worst ms behind', 'worst bytes behind', 'worst ms old on arrival'],
    rows: rows
      .map((row, i) => ({ row, i }))
      .sort((a, b) => phaseIndex(input.plan, String(a.row[0])) - phaseIndex(input.plan, String(b.row[0])) || a.i - b.i)
      .map(({ row }) => row),
    note: tableNotes,
  }];
  const events: ReportEvent[] = [...narrator.events].sort((a, b) => a.at_ms - b.at_ms);
  const phaseOf = (result: RunResult, at: number) => result.phases.find((p) => at >= p.from && at < p.to)?.name ?? null;
  const details = {
    reads_beyond_rule: results.flatMap((result) => result.reads.filter((r) => r.beyond_rule).slice(0, 100).map((r) => ({
      run: result.run, phase: phaseOf(result, r.at), at_ms: rel(r.at), connect_ms: r.connect_ms, took_ms: r.took_ms, server: nodes.find((n) => n.port === r.port)?.name ?? r.port,
      counter: r.counter, latest: r.latest, ms_behind: r.ms_behind, bytes_behind: r.bytes_behind, limit_ms: r.limit_ms, limit_bytes: r.limit_bytes,
    }))),
    state_changes: results.flatMap((result) => result.changes.map((c) => ({ run: result.run, at_ms: rel(c.at), server: c.server, from: c.from, to: c.to, why: c.why }))),
  };
  return {
    title: `pglab stale reads demo: ${input.plan.filter((p) => p.fault).map((p) => p.name).join(', then ')}; reads through lb (--max-lag ${options.maxLag}), without a bound and through HAProxy`,
    generated_at: new Date().toISOString(),
    started_at: new Date(epoch).toISOString(),
    duration_ms: rel(Math.max(...results.map((r) => r.phases.at(-1)?.to ?? epoch), epoch)),
    summary,
    details,
    y_label: 'worst staleness of the second\'s reads (ms)',
    tables,
    events,
    series,
    errors: errors.slice(0, 500),
    errors_total: errors.length,
    figures,
    transactions,
    crosscheck: [],
    phases,
    notes: [
      `Writer: one session on master1 (not through a balancer) runs UPDATE stamp SET counter = counter + 1, at = clock_timestamp(), lsn = pg_current_wal_insert_lsn(), pad = (16 kB, stored uncompressed) every ${STAMP_EVERY_MS} ms; it keeps, per counter, when the UPDATE was acknowledged and the LSN it returned.`,
      `Readers: ${options.readers} clients, each read a new connection through the run's balancer (connect timeout ${READ_CONNECT_TIMEOUT_MS} ms, query timeout ${READ_QUERY_TIMEOUT_MS} ms) and SELECT counter, inet_server_port() FROM stamp. A new connection per read because an L4 balancer cannot move a session that is already on a replica when it is drained: persistent sessions keep reading from it.`,
      'Staleness of a read: L = the newest counter acknowledged when its SELECT was sent, c = the counter it read. If c >= L it is 0. Otherwise ms behind = send time - acknowledgement of counter c+1 (the first it did not see), bytes behind = LSN(L) - LSN(c).',
      `The rule: with --max-lag S (seconds) a read is at most S + I + 2C behind; with --max-lag B (bytes) at most B + the WAL written in the I + 2C before it + one stamp's WAL; I = inter (${rule.interMs} ms), C = timeout check (${rule.checkTimeoutMs} ms). I + 2C: the verdict of a check that measured the lag at t is in force until the next check's verdict, which comes at most I after the first check ended (it took at most C after measuring) and at most C after the next one started. The sql check measures receive - replay on the replica (bytes) and now() - the last replayed commit's time while receive != replay (seconds); WAL not yet received is not in it (milliseconds here). A check that fails without a hang keeps the last verdict up to fall - 1 more checks; none did in these runs. The rule counts from the SELECT, while the balancer chose the server when the read's connection began (connect ms earlier: tens of ms here, seconds through a delayed link).`,
      'Runs: bounded (built-in balancer, sql check, --max-lag), unbounded (the same without a lag bound), haproxy (HAProxy with the seed\'s settings: pgsql-check every 10 s, rise 2, fall 3, retries 3, timeout connect 10 s; it cannot see lag). Each run has its balancer, the same phases on the same lab; the replicas replay everything between runs. The unbounded and HAProxy runs are judged against the same bound.',
      'Phases: a baseline, then for each fault: the fault for --phase from when its lab fault command returned, and half of that after its heal returned. delay = lab fault delay (the lab is made with --hosts: a relay in the node\'s namespace holds what the node sends, to its clients and to the primary, for the delay; the WAL it receives is not held), pause = SIGSTOP of every process of the node (lab fault pause), lag = pg_wal_replay_pause() (lab fault lag).',
      'Timeline: the worst staleness (ms) of the reads of each second, one line per run; the runs follow each other on one clock.',
    ],
  };
}

function phaseIndex(plan: PhaseSpec[], name: string): number {
  const i = plan.findIndex((p) => p.name === name);
  return i < 0 ? plan.length : i;
}
