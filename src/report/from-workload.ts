// Turning a workload run into the report's series, errors and per-phase counts.
import type { WorkloadError, WorkloadResult, WorkloadSample } from '../workload/types.js';
import type { Report, ReportCrossCheck, ReportError, ReportEvent, ReportFigures, ReportNodeTransactions, ReportPhase, ReportSeries } from './types.js';

/** port -> node name; ports not in it are shown as "port 5433". */
export type NodeNames = Record<string, string>;

function nodeName(port: string, names: NodeNames): string {
  return names[port] ?? `port ${port}`;
}

/** The named ports (an idle master shows as idle) and any other port that served, named nodes first, by name. */
function portsOf(samples: WorkloadSample[], names: NodeNames): string[] {
  const seen = new Set<string>(Object.keys(names));
  for (const sample of samples) for (const port of Object.keys(sample.by_port)) seen.add(port);
  const key = (port: string) => [names[port] === undefined ? 1 : 0, nodeName(port, names)] as const;
  return [...seen].sort((a, b) => key(a)[0] - key(b)[0] || key(a)[1].localeCompare(key(b)[1], 'en', { numeric: true }));
}

/** A rate over the last few ms of a run (the partial last sample) is noise on a per-second chart. */
const MIN_POINT_INTERVAL_MS = 500;

/**
 * Transactions per second per node, one point per sample (a node absent from a sample served 0),
 * nodes by name. A last sample shorter than half a second is left off the chart (its transactions
 * still count in the per-phase totals).
 */
export function seriesFromSamples(samples: WorkloadSample[], names: NodeNames = {}): ReportSeries[] {
  const charted = samples.filter((sample) => sample.interval_ms >= MIN_POINT_INTERVAL_MS);
  return portsOf(samples, names).map((port) => ({
    node: nodeName(port, names),
    port: Number.isFinite(Number(port)) ? Number(port) : null,
    points: charted.map((sample) => ({
      at_ms: sample.elapsed_ms,
      tps: Math.round((((sample.by_port[port] ?? 0) * 1000) / sample.interval_ms) * 10) / 10,
    })),
  }));
}

export function errorsFromWorkload(errors: WorkloadError[]): ReportError[] {
  return errors.map((error) => ({ at_ms: error.at_ms, message: error.message, target: error.url }));
}

/**
 * Per node: transactions in samples that ended by `duringFromMs` (before), that started at or after
 * `duringToMs` (after), and the rest (during).
 */
export function transactionsByPhase(samples: WorkloadSample[], names: NodeNames, duringFromMs: number, duringToMs: number): ReportNodeTransactions[] {
  return portsOf(samples, names).map((port) => {
    const counts = { before: 0, during: 0, after: 0 };
    for (const sample of samples) {
      const count = sample.by_port[port] ?? 0;
      if (sample.elapsed_ms <= duringFromMs) counts.before += count;
      else if (sample.elapsed_ms - sample.interval_ms >= duringToMs) counts.after += count;
      else counts.during += count;
    }
    return { node: nodeName(port, names), ...counts, total: counts.before + counts.during + counts.after };
  });
}

/** port -> name for the lab's nodes (state.nodes). */
export function nodeNamesByPort(nodes: { name: string; port: number }[]): NodeNames {
  return Object.fromEntries(nodes.map((node) => [String(node.port), node.name]));
}

/** ms since the workload's start for a wall-clock time (Date.now()) taken while it ran. */
export function atMs(epochMs: number, workload: WorkloadResult): number {
  return Math.round(epochMs - workload.summary.started_epoch_ms);
}

export interface DrillReportInput {
  title: string;
  workload: WorkloadResult;
  /** port -> node name (nodeNamesByPort(state.nodes)). */
  names: NodeNames;
  /** at_ms since the workload's start (see atMs). */
  events: ReportEvent[];
  /** The master's name: its read transactions become the figure master_transactions. */
  primary?: string;
  /** Figures measured elsewhere (the balancer's own detection time...) win over the ones derived here. */
  figures?: Partial<ReportFigures>;
  crosscheck?: ReportCrossCheck[];
  summary?: string[];
  notes?: string[];
}

/**
 * Errors the balancer could have saved: those of sessions opened after it marked the server down.
 * A session opened before may die with the killed server even if its error arrives a moment later.
 */
export function errorsOnSessionsOpenedAfter(errors: WorkloadError[], atMs: number): number {
  return errors.filter((e) => e.session_started_ms > atMs).length;
}

function firstEvent(events: ReportEvent[], kind: string, afterMs = -Infinity): ReportEvent | undefined {
  return [...events].sort((a, b) => a.at_ms - b.at_ms).find((e) => e.kind === kind && e.at_ms >= afterMs);
}

/**
 * A report from a workload run and the drill's events: per-node series, the phases before the kill,
 * until the re-admission and after it, and the figures that follow from the events:
 * detection_ms (kill -> detection), readmission_ms (re-add -> readmission), errors_after_detection.
 */
export function reportFromWorkload(input: DrillReportInput): Report {
  const { workload, names, events } = input;
  const kill = firstEvent(events, 'kill');
  const detection = kill ? firstEvent(events, 'detection', kill.at_ms) : firstEvent(events, 'detection');
  const readd = firstEvent(events, 're-add', kill?.at_ms ?? -Infinity);
  const readmission = readd ? firstEvent(events, 'readmission', readd.at_ms) : undefined;
  const end = workload.summary.duration_ms;
  const transactions = transactionsByPhase(workload.samples, names, kill?.at_ms ?? end, readmission?.at_ms ?? end);
  const lastWhole = [...workload.samples].reverse().find((s) => s.interval_ms >= 900);
  const servingAtEnd = lastWhole ? Object.keys(lastWhole.by_port).filter((port) => lastWhole.by_port[port]! > 0).map((port) => names[port] ?? `port ${port}`) : [];
  const primaryPort = input.primary ? Object.keys(names).find((port) => names[port] === input.primary) : undefined;
  const figures: ReportFigures = {
    detection_ms: kill && detection ? detection.at_ms - kill.at_ms : null,
    readmission_ms: readd && readmission ? readmission.at_ms - readd.at_ms : null,
    errors_after_detection: detection ? errorsOnSessionsOpenedAfter(workload.errors, detection.at_ms) : null,
    errors_total: workload.summary.errors,
    transactions_total: workload.summary.ops,
    tps_average: workload.summary.ops_per_sec,
    latency_p99_ms: workload.summary.p99_ms,
    serving_at_end: servingAtEnd.sort().join(', '),
    ...(primaryPort !== undefined ? { master_transactions: workload.summary.by_port[primaryPort] ?? 0 } : {}),
  };
  for (const [name, value] of Object.entries(input.figures ?? {})) if (value !== undefined) figures[name] = value;
  // Counts taken from the recorded errors (here or by the drill) are lower bounds once the list was cut.
  if (workload.errors.length < workload.summary.errors && figures.errors_after_detection !== null) {
    figures.errors_after_detection_note = `counted among the first ${workload.errors.length} recorded errors only`;
  }
  return {
    title: input.title,
    generated_at: new Date().toISOString(),
    started_at: workload.summary.started_at,
    duration_ms: workload.summary.duration_ms,
    summary: input.summary ?? [],
    events: [...events].sort((a, b) => a.at_ms - b.at_ms),
    series: seriesFromSamples(workload.samples, names),
    errors: errorsFromWorkload(workload.errors),
    errors_total: workload.summary.errors,
    figures,
    transactions,
    crosscheck: input.crosscheck ?? [],
    notes: input.notes ?? [],
  };
}

/**
 * One line per URL the workers went through (lab demo lb-ha: one per balancer), `labels` naming them
 * (URL -> "lb"); same shape as the per-node series.
 */
export function seriesByUrl(samples: WorkloadSample[], labels: Record<string, string> = {}): ReportSeries[] {
  const urls = new Set<string>(Object.keys(labels));
  for (const sample of samples) for (const url of Object.keys(sample.by_url)) urls.add(url);
  const charted = samples.filter((sample) => sample.interval_ms >= MIN_POINT_INTERVAL_MS);
  return [...urls].map((url) => ({
    node: labels[url] ?? url,
    port: null,
    points: charted.map((sample) => ({ at_ms: sample.elapsed_ms, tps: Math.round((((sample.by_url[url] ?? 0) * 1000) / sample.interval_ms) * 10) / 10 })),
  }));
}

/**
 * Phases from their start times (each ends where the next starts, the last at the end of the run):
 * transactions and errors in each, and the slowest whole second (a sample counts in the phase it ends in).
 */
export function phasesFromWorkload(workload: WorkloadResult, starts: { name: string; from_ms: number }[]): ReportPhase[] {
  const sorted = [...starts].sort((a, b) => a.from_ms - b.from_ms);
  return sorted.map((phase, index) => {
    const to = sorted[index + 1]?.from_ms ?? Math.max(workload.summary.duration_ms, phase.from_ms);
    const inPhase = workload.samples.filter((s) => s.elapsed_ms > phase.from_ms && s.elapsed_ms <= to);
    const whole = inPhase.filter((s) => s.interval_ms >= 900 && s.elapsed_ms - s.interval_ms >= phase.from_ms);
    return {
      name: phase.name,
      from_ms: phase.from_ms,
      to_ms: to,
      transactions: inPhase.reduce((sum, s) => sum + s.ops, 0),
      errors: workload.errors.filter((e) => e.at_ms >= phase.from_ms && e.at_ms < to).length,
      min_tps: whole.length ? Math.min(...whole.map((s) => s.ops_per_sec)) : null,
    };
  });
}
