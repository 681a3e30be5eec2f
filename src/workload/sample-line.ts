// The per-second lines of `cockroach workload run` (seed 004), for our samples.
import type { WorkloadResult, WorkloadSample } from './types.js';

export const SAMPLE_HEADER = '_elapsed___errors__ops/sec(inst)___ops/sec(cum)__p50(ms)__p95(ms)__p99(ms)_pMax(ms)';

const ms = (value: number) => value.toFixed(1).padStart(9);

export function formatSampleLine(sample: WorkloadSample): string {
  return (
    `${`${(sample.elapsed_ms / 1000).toFixed(1)}s`.padStart(8)}` +
    `${String(sample.errors_total).padStart(9)}` +
    `${sample.ops_per_sec.toFixed(1).padStart(15)}` +
    `${sample.ops_per_sec_cum.toFixed(1).padStart(15)}` +
    `${ms(sample.p50_ms)}${ms(sample.p95_ms)}${ms(sample.p99_ms)}${ms(sample.max_ms)}`
  );
}

/** `names`: port -> node name, shown next to the port when known. */
export function formatSummary(result: WorkloadResult, names: Record<string, string> = {}): string {
  const s = result.summary;
  const ports = Object.entries(s.by_port)
    .map(([port, count]) => `${port}${names[port] ? ` (${names[port]})` : ''}: ${count}`)
    .join(', ');
  const lines = [
    '',
    '_elapsed___errors_____ops(total)___ops/sec(cum)__p50(ms)__p95(ms)__p99(ms)_pMax(ms)__result',
    `${`${(s.duration_ms / 1000).toFixed(1)}s`.padStart(8)}${String(s.errors).padStart(9)}${String(s.ops).padStart(15)}${s.ops_per_sec.toFixed(1).padStart(15)}` +
      `${ms(s.p50_ms)}${ms(s.p95_ms)}${ms(s.p99_ms)}${ms(s.max_ms)}  ${s.mode}`,
    `transactions per server port: ${ports || 'none'}`,
    `connections: ${s.connections}, fall-overs to the next URL: ${s.failovers}, stopped by: ${s.stopped_by}`,
  ];
  if (s.errors > 0) {
    const first = result.errors[0];
    lines.push(`errors: ${s.errors}${first ? ` (first at ${(first.at_ms / 1000).toFixed(1)}s: ${first.message})` : ''}`);
  }
  return lines.join('\n');
}
