// `lab demo lb-ha`: seed 004's drill with our balancer. Two balancers (lb, lb2) over the same replicas,
// a workload given both URLs (a client falls over to the other on a connection error), kill -9 lb,
// the load goes on through lb2, restart lb, then the same for lb2. The report shows errors per phase
// and whether reads ever stopped.
import { setTimeout as delay } from 'node:timers/promises';
import type { Lab } from '../api/lab.js';
import type { BalancerProcess } from '../api/balancer-process.js';
import { findFreePorts } from '../common/ports.js';
import { LabError } from '../common/errors.js';
import type { Reporter } from '../common/reporter.js';
import { nodeNamesByPort, reportFromWorkload } from '../report/from-workload.js';
import type { Report, ReportSeries } from '../report/types.js';
import { alongsideLoad, inDemoLab, publishReport, type DrillOutcome } from './drill-run.js';
import { runWorkload } from '../workload/run-workload.js';
import { formatSampleLine, SAMPLE_HEADER } from '../workload/sample-line.js';
import type { WorkloadResult } from '../workload/types.js';
import { buildDemoLab, DEMO_DATABASE, prepareBenchData, type DemoBase } from './lab-setup.js';
import { Narrator, type Print } from './narrator.js';
import type { LbHaDrillOptions } from './defaults.js';

/** The drill's phases, as fractions of the load's duration. */
const PHASES = [
  { at: 0.15, action: 'kill', balancer: 'lb' },
  { at: 0.35, action: 'restart', balancer: 'lb' },
  { at: 0.55, action: 'kill', balancer: 'lb2' },
  { at: 0.75, action: 'restart', balancer: 'lb2' },
] as const;

export async function runLbHaDrill(base: DemoBase, options: LbHaDrillOptions, hooks: { print: Print; reporter: Reporter; signal: AbortSignal; verbose?: boolean }): Promise<DrillOutcome> {
  if (!Number.isInteger(options.replicas) || options.replicas < 1) throw new LabError('USAGE', `--replicas must be 1 or more, got ${options.replicas}`);
  if (options.durationMs < 8000) throw new LabError('USAGE', `--duration must be at least 8s (four phases), got ${options.durationMs / 1000}s`);
  const { signal } = hooks;
  const narrator = new Narrator(hooks.print);
  narrator.say(`lab demo lb-ha: two balancers over ${options.replicas} replicas, load for ${options.durationMs / 1000}s through both, each balancer killed and restarted in turn`);
  const lab = await buildDemoLab(base, { replicas: options.replicas, access: options.access, labDir: options.labDir, reporter: hooks.reporter, say: (t) => narrator.say(t) });
  return inDemoLab(lab, narrator, { keep: options.keep, what: 'both balancers' }, async () => {
    const [lbPort, lbStats, lb2Port, lb2Stats] = await findFreePorts(4);
    const balancers: Record<'lb' | 'lb2', BalancerSpec> = {
      lb: { name: 'lb', port: lbPort!, statsPort: lbStats!, listen: `127.0.0.1:${lbPort}`, stats: `127.0.0.1:${lbStats}`, started: undefined },
      lb2: { name: 'lb2', port: lb2Port!, statsPort: lb2Stats!, listen: `127.0.0.1:${lb2Port}`, stats: `127.0.0.1:${lb2Stats}`, started: undefined },
    };
    for (const b of Object.values(balancers)) {
      narrator.say(`balancer ${b.name} on ${b.listen} (stats http://${b.stats}/)`);
      b.started = await lab.lab.balancerProcess({ name: b.name, port: b.port, statsPort: b.statsPort });
    }
    narrator.say(`pgbench -i -s ${options.scale} on the master (database ${DEMO_DATABASE})`);
    await prepareBenchData(lab, options.scale, signal);

    const urls = Object.values(balancers).map((b) => `postgresql://postgres@${b.listen}/${DEMO_DATABASE}`);
    const urlName = (url: string) => (url.includes(`:${lbPort}/`) ? 'lb' : url.includes(`:${lb2Port}/`) ? 'lb2' : url);
    narrator.say(`load: ${options.concurrency} clients given both balancers' URLs, a new connection per SELECT, errors tolerated (seed 004's --tolerate-errors)`);
    const loadStarted = Date.now();
    narrator.loadEpochMs = loadStarted;
    if (hooks.verbose) narrator.show(SAMPLE_HEADER);
    const workload = await alongsideLoad(signal, (loadSignal) => ({
      workload: runWorkload(
        { urls, concurrency: options.concurrency, durationMs: options.durationMs, mode: 'select', connectPerTx: true, tolerateErrors: true, scale: options.scale, maxRecordedErrors: 10_000 },
        { signal: loadSignal, onSample: (sample) => (hooks.verbose ? narrator.show(formatSampleLine(sample)) : undefined) },
      ),
      drill: killAndRestartEach(lab.lab, balancers, narrator, loadStarted, options.durationMs, loadSignal),
    }));
    signal.throwIfAborted();
    narrator.event('stop', 'end of load', workload.summary.started_epoch_ms + workload.summary.duration_ms, `end of load: ${workload.summary.ops} transactions, ${workload.summary.errors} client errors`);

    const report = buildLbHaReport(workload, narrator, lab, urlName);
    const written = await publishReport(narrator, options.reportDir, report);
    return { report, written, labDir: lab.labDir, kept: options.keep };
  });
}

type BalancerSpec = { name: string; port: number; statsPort: number; listen: string; stats: string; started: BalancerProcess | undefined };

/** Seed 004's actions: kill -9 each balancer in turn (what `docker kill lb` does) and start it again. */
async function killAndRestartEach(lab: Lab, balancers: Record<'lb' | 'lb2', BalancerSpec>, narrator: Narrator, loadStarted: number, durationMs: number, signal: AbortSignal): Promise<void> {
  for (const phase of PHASES) {
    await delay(Math.max(0, loadStarted + phase.at * durationMs - Date.now()), undefined, { signal });
    const spec = balancers[phase.balancer];
    if (phase.action === 'kill') {
      if (!spec.started) throw new LabError('STATE', `balancer ${spec.name} was not started`);
      const at = Date.now();
      if (!(await spec.started.kill())) throw new LabError('STATE', `balancer ${spec.name} (pid ${spec.started.pid}) was not running when the drill came to kill it`);
      narrator.event(`${spec.name}-kill`, `kill -9 ${spec.name}`, at, `kill -9 balancer ${spec.name} (pid ${spec.started.pid})`);
    } else {
      spec.started = await lab.balancerProcess({ name: spec.name, port: spec.port, statsPort: spec.statsPort });
      narrator.event(`${spec.name}-restart`, `${spec.name} restarted`, Date.now(), `balancer ${spec.name} restarted (pid ${spec.started.pid})`);
    }
  }
}

function buildLbHaReport(workload: WorkloadResult, narrator: Narrator, lab: { masterPort: number; replicas: { name: string; port: number }[] }, urlName: (url: string) => string): Report {
  const events = [...narrator.events].sort((a, b) => a.at_ms - b.at_ms);
  const boundaries = [0, ...events.filter((e) => e.kind !== 'stop').map((e) => e.at_ms), workload.summary.duration_ms];
  const phaseNames = ['both balancers up', 'lb killed', 'lb back', 'lb2 killed', 'lb2 back'];
  const phases = phaseNames.slice(0, boundaries.length - 1).map((name, i) => {
    const from = boundaries[i]!;
    const to = boundaries[i + 1]!;
    const samples = workload.samples.filter((s) => s.elapsed_ms > from && s.elapsed_ms <= to);
    const whole = samples.filter((s) => s.interval_ms >= 900);
    return {
      name, from, to,
      errors: workload.errors.filter((e) => e.at_ms >= from && e.at_ms < to).length,
      ops: samples.reduce((sum, s) => sum + s.ops, 0),
      min_ops_per_sec: whole.length ? Math.min(...whole.map((s) => s.ops_per_sec)) : null,
    };
  });
  const wholeSeconds = workload.samples.filter((s) => s.interval_ms >= 900);
  const stalledSeconds = wholeSeconds.filter((s) => s.ops === 0).length;
  const base = reportFromWorkload({
    title: 'pglab balancer high availability demo (seed 004): two balancers, each killed and restarted under load',
    workload,
    names: nodeNamesByPort([{ name: 'master1', port: lab.masterPort }, ...lab.replicas]),
    events,
    primary: 'master1',
    figures: {
      detection_ms: null,
      readmission_ms: null,
      errors_after_detection: null,
      seconds_without_reads: stalledSeconds,
      reads_never_stopped: stalledSeconds === 0,
      failovers_between_balancers: workload.summary.failovers,
      ...Object.fromEntries(phases.map((p, i) => [`errors_phase_${i + 1}`, p.errors])),
    },
    notes: [
      'Phases: ' + phases.map((p, i) => `${i + 1} = ${p.name} (${(p.from / 1000).toFixed(1)}-${(p.to / 1000).toFixed(1)} s)`).join('; '),
      'Each client starts on one balancer\'s URL and moves to the next one when a connection fails, as seed 004 recommends; errors are sessions that were open on a balancer when it was killed.',
    ],
  });
  // The timeline of this drill is per balancer: how the load moved between them.
  const byBalancer: ReportSeries[] = [...new Set(workload.samples.flatMap((s) => Object.keys(s.by_url)))].map((url) => ({
    node: urlName(url),
    port: null,
    points: workload.samples.map((s) => ({ at_ms: s.elapsed_ms, tps: ((s.by_url[url] ?? 0) * 1000) / Math.max(1, s.interval_ms) })),
  }));
  base.series = [...byBalancer, ...base.series];
  base.summary = [
    `reads never stopped: ${stalledSeconds === 0 ? 'yes' : `no, ${stalledSeconds} second(s) without a read`} (${wholeSeconds.length} whole seconds of load, lowest ${Math.min(...wholeSeconds.map((s) => s.ops_per_sec))} reads/s)`,
    ...phases.map((p, i) => `phase ${i + 1}, ${p.name}: ${p.ops} reads, ${p.errors} client errors, lowest ${p.min_ops_per_sec ?? '-'} reads/s`),
    `clients moved to the other balancer ${workload.summary.failovers} times`,
  ];
  return base;
}
