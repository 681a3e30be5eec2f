// Turning a workload run into the report's series, errors and per-phase counts.
import type { WorkloadError, WorkloadSample } from '../workload/types.js';
import type { ReportError, ReportNodeTransactions, ReportSeries } from './types.js';

/** port -> node name; ports not in it are shown as "port 5433". */
export type NodeNames = Record<string, string>;

function nodeName(port: string, names: NodeNames): string {
  return names[port] ?? `port ${port}`;
}

/** Ports that served any transaction, in the order of `names`, then the others. */
function portsOf(samples: WorkloadSample[], names: NodeNames): string[] {
  const seen = new Set<string>(Object.keys(names));
  for (const sample of samples) for (const port of Object.keys(sample.by_port)) seen.add(port);
  return [...seen];
}

/** Transactions per second per node, one point per sample (a node absent from a sample served 0). */
export function seriesFromSamples(samples: WorkloadSample[], names: NodeNames = {}): ReportSeries[] {
  return portsOf(samples, names).map((port) => ({
    node: nodeName(port, names),
    port: Number.isFinite(Number(port)) ? Number(port) : null,
    points: samples.map((sample) => ({
      at_ms: sample.elapsed_ms,
      tps: sample.interval_ms > 0 ? Math.round(((sample.by_port[port] ?? 0) * 1000) / sample.interval_ms * 10) / 10 : 0,
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
