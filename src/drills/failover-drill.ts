// `lab demo failover`: the nine steps of the seed's scenario in one command, measured.
// 1-2 master and replicas, 3 the balancer, 4 pgbench -i on the master, 5 a pgbench -S -C like load
// through the balancer, 6 kill -9 one replica, 7 the balancer drops it, 8 the replica is re-added with
// the same `lab replica add`, 9 the balancer takes it back; then a report with a timeline.
import { setTimeout as delay } from 'node:timers/promises';
import type { Lab } from '../api/lab.js';
import { findFreePorts } from '../common/ports.js';
import { LabError } from '../common/errors.js';
import { pollUntil } from '../common/poll.js';
import type { Reporter } from '../common/reporter.js';
import { errorsOnSessionsOpenedAfter, nodeNamesByPort, reportFromWorkload } from '../report/from-workload.js';
import type { Report, ReportCrossCheck } from '../report/types.js';
import { alongsideLoad, inDemoLab, publishReport, type DrillOutcome } from './drill-run.js';
import { xactTable, withBanner } from '../stats/render.js';
import type { XactSample } from '../stats/xact-sample.js';
import { runWorkload } from '../workload/run-workload.js';
import { formatSampleLine, SAMPLE_HEADER } from '../workload/sample-line.js';
import type { WorkloadResult } from '../workload/types.js';
import { buildDemoLab, DEMO_DATABASE, prepareBenchData, type DemoBase } from './lab-setup.js';
import { Narrator, type Print } from './narrator.js';
import { logEventTime, READY_PATTERN } from '../postgres/server-log.js';
import { nodeLogFile } from '../lab/context.js';
import type { FailoverDrillOptions } from './defaults.js';

export { FAILOVER_DEFAULTS, type FailoverDrillOptions } from './defaults.js';

export function checkFailoverOptions(o: FailoverDrillOptions): void {
  if (!Number.isInteger(o.replicas) || o.replicas < 2) throw new LabError('USAGE', `--replicas must be 2 or more (one is killed, another keeps serving), got ${o.replicas}`);
  if (!Number.isInteger(o.scale) || o.scale < 1) throw new LabError('USAGE', `--scale must be 1 or more, got ${o.scale}`);
  if (!Number.isInteger(o.concurrency) || o.concurrency < 1) throw new LabError('USAGE', `--concurrency must be 1 or more, got ${o.concurrency}`);
  const index = /^replica(\d+)$/.exec(o.kill)?.[1];
  if (!index || Number(index) < 1 || Number(index) > o.replicas) {
    throw new LabError('USAGE', `--kill must name one of the demo's replicas (replica1..replica${o.replicas}), got "${o.kill}"`);
  }
  if (!(o.killAtMs > 0 && o.killAtMs < o.recoverAtMs && o.recoverAtMs < o.durationMs)) {
    throw new LabError('USAGE', `Expected 0 < --kill-at (${o.killAtMs / 1000}s) < --recover-at (${o.recoverAtMs / 1000}s) < --duration (${o.durationMs / 1000}s)`);
  }
}

/** Sum of the positive growths of a counter that restarts from 0 when its node is rebuilt. */
function counterGrowth(values: (number | null)[]): number | null {
  const seen = values.filter((v): v is number => v !== null);
  if (seen.length < 2) return null;
  let growth = 0;
  for (let i = 1; i < seen.length; i++) {
    const delta = seen[i]! - seen[i - 1]!;
    growth += delta >= 0 ? delta : seen[i]!;
  }
  return growth;
}

export async function runFailoverDrill(base: DemoBase, options: FailoverDrillOptions, hooks: { print: Print; reporter: Reporter; signal: AbortSignal }): Promise<DrillOutcome> {
  checkFailoverOptions(options);
  const { signal } = hooks;
  const narrator = new Narrator(hooks.print);
  narrator.say(`lab demo failover: ${options.replicas} replicas, scale ${options.scale}, load for ${options.durationMs / 1000}s, kill -9 ${options.kill} at ${options.killAtMs / 1000}s, re-add at ${options.recoverAtMs / 1000}s`);
  const lab = await buildDemoLab(base, { replicas: options.replicas, access: options.access, labDir: options.labDir, reporter: hooks.reporter, say: (t) => narrator.say(t) });
  return inDemoLab(lab, narrator, { keep: options.keep, what: 'the balancer' }, async () => {
    signal.throwIfAborted();
    const [listenPort, statsPort] = await findFreePorts(2);
    narrator.say(`step 3: balancer lb on 127.0.0.1:${listenPort} (stats http://127.0.0.1:${statsPort}/), pool = the replicas, sql health checks`);
    const balancer = await lab.lab.balancerProcess({ name: 'lb', port: listenPort, statsPort });
    const serverState = async (name: string) => (await balancer.stats({ timeoutMs: 1000 })).servers.find((s) => s.name === name)?.status;
    await balancer.waitUp(options.replicas, { timeoutMs: 15_000, signal });

    narrator.say(`step 4: pgbench -i -s ${options.scale} on the master (database ${DEMO_DATABASE})`);
    await prepareBenchData(lab, options.scale, signal);

    const victim = lab.replicas.find((r) => r.name === options.kill)!;
    narrator.say(`step 5: load through the balancer: ${options.concurrency} clients, a new connection per transaction, SELECT only (pgbench -S -C -c ${options.concurrency})`);
    const url = `postgresql://postgres@127.0.0.1:${listenPort}/${DEMO_DATABASE}`;
    const timeline: DrillTimeline = { killEpoch: null, detectionEpoch: null, acceptingEpoch: null, readmissionEpoch: null };
    // A sample right before and right after the load bound the cross-check exactly.
    const xactSamples: XactSample[] = [await lab.lab.stat.xact({ database: DEMO_DATABASE, timeoutMs: 1000 })];
    // Every sample taken after the first, kept or not (a settle read, one that timed out): each commits on
    // the nodes it reached, and the cross-check takes those commits off.
    const takenSamples: (XactSample | undefined)[] = [];
    const loadStarted = Date.now();
    narrator.loadEpochMs = loadStarted;
    if (options.verbose) narrator.show(SAMPLE_HEADER);
    const workload = await alongsideLoad(signal, (loadSignal) => ({
      workload: runWorkload(
        { urls: [url], concurrency: options.concurrency, durationMs: options.durationMs, mode: 'select', connectPerTx: true, tolerateErrors: true, scale: options.scale, maxRecordedErrors: 10_000 },
        { signal: loadSignal, onSample: (sample) => (options.verbose ? narrator.show(formatSampleLine(sample)) : undefined) },
      ),
      background: sampleXactEverySecond(lab.lab, loadSignal, xactSamples, takenSamples, (sample, withTps) => {
        narrator.show(withBanner(sample.at, xactTable(sample, { tps: withTps })));
      }, options.xactEveryMs),
      drill: killAndReadd({ lab: lab.lab, narrator, victim, serverState, options, loadStarted, loadSignal, timeline, reporter: hooks.reporter }),
    }));
    signal.throwIfAborted();
    xactSamples.push(await settledXactSample(lab.lab, xactSamples[xactSamples.length - 1], takenSamples));
    narrator.event('stop', 'end of load', workload.summary.started_epoch_ms + workload.summary.duration_ms, `end of load: ${workload.summary.ops} transactions, ${workload.summary.errors} client errors`);

    const report = buildFailoverReport({ options, workload, narrator, lab, xactSamples, takenSamples, ...timeline });
    const written = await publishReport(narrator, options.reportDir, report);
    return { report, written, labDir: lab.labDir, kept: options.keep };
  });
}

/** When each step of the drill happened (Date.now() values). */
interface DrillTimeline {
  killEpoch: number | null;
  detectionEpoch: number | null;
  /** The rebuilt replica accepts connections again. */
  acceptingEpoch: number | null;
  readmissionEpoch: number | null;
}

/** The seed's ut-stat-xact: a sample every second for the figures, shown every `showEveryMs`. */
async function sampleXactEverySecond(lab: Lab, signal: AbortSignal, samples: XactSample[], taken: (XactSample | undefined)[], show: (sample: XactSample, withTps: boolean) => void, showEveryMs: number): Promise<void> {
  let previous: XactSample | undefined;
  let lastShown = 0;
  while (!signal.aborted) {
    const sample = await lab.stat.xact({ database: DEMO_DATABASE, previous, timeoutMs: 500 }).catch(() => undefined);
    taken.push(sample);
    if (sample) {
      samples.push(sample);
      if (Date.now() - lastShown >= showEveryMs) {
        show(sample, previous !== undefined);
        lastShown = Date.now();
      }
      previous = sample;
    }
    await delay(1000, undefined, { signal }).catch(() => undefined);
  }
}

interface DrillSteps {
  lab: Lab;
  narrator: Narrator;
  victim: { name: string; datadir: string; port: number };
  serverState: (name: string) => Promise<string | undefined>;
  options: FailoverDrillOptions;
  loadStarted: number;
  loadSignal: AbortSignal;
  timeline: DrillTimeline;
  reporter: Reporter;
}

/** Steps 6 to 9: kill -9 the victim, wait for the balancer to drop it, re-add it, wait for it to be taken back. */
async function killAndReadd(d: DrillSteps): Promise<void> {
  const { lab, narrator, victim, serverState, options, loadStarted, loadSignal, timeline } = d;
  const statusIs = (wanted: string) => async () => ((await serverState(victim.name).catch(() => undefined)) === wanted ? Date.now() : undefined);

  await delay(Math.max(0, loadStarted + options.killAtMs - Date.now()), undefined, { signal: loadSignal });
  const killed = await lab.node(victim.name).kill();
  const killEpoch = (timeline.killEpoch = killed.killedAtMs!);
  narrator.event('kill', `kill -9 ${victim.name}`, killEpoch, `step 6: kill -9 ${victim.name} (postmaster pid ${killed.pid})`);
  const detectionEpoch = (timeline.detectionEpoch = await pollUntil(statusIs('DOWN'), {
    timeoutMs: 60_000, intervalMs: 10, what: `the balancer to mark ${victim.name} DOWN`, signal: loadSignal,
  }));
  narrator.event('detection', `${victim.name} DOWN in lb (+${detectionEpoch - killEpoch} ms)`, detectionEpoch, `step 7: the balancer marked ${victim.name} DOWN (${detectionEpoch - killEpoch} ms after the kill)`);

  await delay(Math.max(0, loadStarted + options.recoverAtMs - Date.now()), undefined, { signal: loadSignal });
  const readdStarted = Date.now();
  narrator.event('re-add-start', `lab replica add ${victim.name}`, readdStarted, `step 8: lab replica add ${victim.name} ${victim.datadir} ${victim.port}`);
  const readmission = pollUntil(statusIs('UP'), { timeoutMs: 120_000, intervalMs: 10, what: `the balancer to take ${victim.name} back`, signal: loadSignal });
  readmission.catch(() => undefined); // awaited below; a failure of the re-add must not leave it unhandled
  await lab.addReplica({ name: victim.name, datadir: victim.datadir, port: victim.port });
  const rebuiltMs = Date.now() - readdStarted;
  // When the rebuilt server started to accept connections, by its own log: our client's first
  // successful connect comes later than that, and the balancer may notice first.
  const fromLog = await logEventTime(nodeLogFile(lab.dir, victim.name), READY_PATTERN, readdStarted);
  const acceptingEpoch = (timeline.acceptingEpoch = fromLog ?? Date.now());
  narrator.event('re-add', `${victim.name} accepts connections`, acceptingEpoch, `${victim.name} accepts connections again (rebuilt in ${(rebuiltMs / 1000).toFixed(1)} s)`);
  const readmissionEpoch = (timeline.readmissionEpoch = await readmission);
  narrator.event('readmission', `${victim.name} UP in lb (+${readmissionEpoch - acceptingEpoch} ms)`, readmissionEpoch, `step 9: the balancer took ${victim.name} back (${readmissionEpoch - acceptingEpoch} ms after it accepted connections)`);
}

/**
 * A sample once the servers' counters have settled: backends flush their statistics when they go idle
 * or exit, so read until two samples in a row differ only by the samples' own commits (bounded).
 */
async function settledXactSample(lab: Lab, last: XactSample | undefined, taken: (XactSample | undefined)[]): Promise<XactSample> {
  const total = (s: XactSample | undefined) => (s ? s.rows.reduce((sum, r) => sum + (r.xactCommit ?? 0), 0) : 0);
  let previous = last;
  const answering = (s: XactSample) => s.rows.filter((r) => r.up).length;
  return pollUntil(
    async () => {
      const sample = await lab.stat.xact({ database: DEMO_DATABASE, timeoutMs: 1000 }).catch((error: unknown) => {
        taken.push(undefined);
        throw error;
      });
      taken.push(sample);
      const settled = previous !== undefined && total(sample) - total(previous) <= 2 * answering(sample);
      previous = sample;
      return settled ? sample : undefined;
    },
    { timeoutMs: 5000, intervalMs: 200, what: 'the servers\' transaction counters to settle' },
  ).catch(async () => {
    const sample = await lab.stat.xact({ database: DEMO_DATABASE, timeoutMs: 1000 });
    taken.push(sample);
    return sample;
  });
}

interface ReportInput extends DrillTimeline {
  options: FailoverDrillOptions;
  workload: WorkloadResult;
  narrator: Narrator;
  lab: { masterPort: number; replicas: { name: string; port: number }[] };
  xactSamples: XactSample[];
  /** Every sample taken after the first (undefined: it failed), the kept ones among them. */
  takenSamples: (XactSample | undefined)[];
}

function buildFailoverReport(input: ReportInput): Report {
  const { options, workload, lab, xactSamples } = input;
  const nodes = [{ name: 'master1', port: lab.masterPort }, ...lab.replicas];
  const names = nodeNamesByPort(nodes);
  const detectionMs = input.killEpoch !== null && input.detectionEpoch !== null ? input.detectionEpoch - input.killEpoch : null;
  const readmissionMs = input.acceptingEpoch !== null && input.readmissionEpoch !== null ? input.readmissionEpoch - input.acceptingEpoch : null;
  const detectionAt = input.detectionEpoch === null ? null : input.detectionEpoch - workload.summary.started_epoch_ms;
  const killAt = input.killEpoch === null ? null : input.killEpoch - workload.summary.started_epoch_ms;
  const errorsAfterDetection = detectionAt === null ? null : errorsOnSessionsOpenedAfter(workload.errors, detectionAt);
  // Sessions opened before the detection that failed from the kill on: on the killed server, or sent there before it was known dead.
  const errorsBetween = killAt === null || detectionAt === null ? null : workload.errors.filter((e) => e.at_ms >= killAt && e.session_started_ms <= detectionAt).length;

  const crosscheck = nodes.map((node) => crossCheckNode(node, workload, xactSamples, input.takenSamples, node.name === options.kill));
  const masterTx = workload.summary.by_port[String(lab.masterPort)] ?? 0;
  const report = reportFromWorkload({
    title: `pglab failover demo: kill -9 ${options.kill} under load, re-add it`,
    workload,
    names,
    events: input.narrator.events,
    primary: 'master1',
    figures: {
      detection_ms: detectionMs,
      readmission_ms: readmissionMs,
      errors_after_detection: errorsAfterDetection,
      errors_between_kill_and_detection: errorsBetween,
      master_transactions: masterTx,
      replicas: options.replicas,
      clients: options.concurrency,
      scale: options.scale,
    },
    crosscheck,
    notes: [
      'Load: the seed\'s pgbench -S -C (a new connection per SELECT), run by pglab\'s own load generator so every error and every server is timed.',
      'detection_ms: from the SIGKILL of the postmaster to the balancer\'s stats showing the server DOWN (polled every 10 ms).',
      'readmission_ms: from the rebuilt replica accepting connections (the "ready to accept" line of its own log, in ms) to the balancer\'s stats showing it UP.',
      'Cross-check: the workload\'s per-server counts against pg_stat_database.xact_commit growth of the demo database, sampled every second.',
    ],
  });
  const f = report.figures;
  const serving = String(f.serving_at_end ?? '');
  const loadEnd = workload.summary.started_epoch_ms + workload.summary.duration_ms;
  if (input.readmissionEpoch !== null && input.readmissionEpoch > loadEnd) {
    report.notes.push(`The load ended ${((input.readmissionEpoch - loadEnd) / 1000).toFixed(1)} s before ${options.kill} was back in the pool (its rebuild took longer than --duration left): give the load more time after --recover-at to see it serve again.`);
  }
  report.summary = [
    `detection: ${fmtMs(detectionMs)} after kill -9 (HAProxy with the seed's settings: 20-30 s)`,
    `re-admission: ${fmtMs(readmissionMs)} after the replica accepted connections (HAProxy with the seed's settings: 10-20 s)`,
    `client errors: ${workload.summary.errors} in all, ${errorsBetween ?? '-'} on sessions opened before the detection (on ${options.kill} when it died, or sent to it before it was known dead), ${errorsAfterDetection ?? '-'} on sessions opened after it`,
    `transactions: ${workload.summary.ops} (${workload.summary.ops_per_sec.toFixed(1)}/s), master served ${masterTx} of the reads`,
    `serving at the end: ${serving || 'none'}`,
    `cross-check with pg_stat_database: ${crosscheck.filter((c) => c.agrees).length} of ${crosscheck.length} nodes agree`,
  ];
  return report;
}

/**
 * The workload's count for a node against the growth of xact_commit of the demo database on it.
 * Every connection commits twice besides its transaction (its startup, and the workload's
 * `SELECT inet_server_port()` probe), and so does every sample (it connects to the same database):
 * those are taken off before comparing, for every sample taken after the first (kept, or read while
 * the counters settled). A sample that did not answer for the node may still have committed there (it
 * timed out on our side): each adds 2 to what the count may exceed.
 */
function crossCheckNode(node: { name: string; port: number }, workload: WorkloadResult, samples: XactSample[], taken: (XactSample | undefined)[], killed: boolean): ReportCrossCheck {
  const values = samples.map((s) => s.rows.find((r) => r.node === node.name)?.xactCommit ?? null);
  const growth = counterGrowth(values);
  const counted = workload.summary.by_port[String(node.port)] ?? 0;
  const connections = workload.summary.connections_by_port[String(node.port)] ?? 0;
  if (growth === null) {
    return { node: node.name, workload: counted, pg_stat_database: null, agrees: false, note: 'fewer than two samples answered' };
  }
  // The first sample's own commits come after its reading (in the growth), and so do those of every
  // sample taken since but the last.
  const before = taken.slice(0, -1);
  const answered = (values[0] !== null ? 1 : 0) + before.filter((s) => (s?.rows.find((r) => r.node === node.name)?.xactCommit ?? null) !== null).length;
  const unsure = before.length - answered;
  const serverTx = growth - 2 * connections - 2 * answered;
  const tolerance = Math.max(10, Math.ceil(counted * 0.02));
  const agrees = serverTx >= counted - tolerance && serverTx <= counted + tolerance + 2 * unsure;
  let note: string | undefined;
  if (!agrees) {
    note = `pg_stat_database grew by ${growth}: ${serverTx} transactions after taking off ${connections} connections x 2 and ${answered} samples x 2 (${unsure} more did not answer); the workload counted ${counted} (tolerance ${tolerance})`;
    if (killed) note += `; expected for the killed node: its counters died with it (what it served since the last sample before the kill is in no sample) and restarted at 0 when it was rebuilt`;
  }
  return { node: node.name, workload: counted, pg_stat_database: serverTx, agrees, ...(note ? { note } : {}) };
}

function fmtMs(ms: number | null): string {
  return ms === null ? 'not measured' : `${ms} ms`;
}
