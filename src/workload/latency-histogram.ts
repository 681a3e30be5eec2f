// Latencies in buckets 1% wide (log scale), so a long run's percentiles cost a few KB, not one number
// per transaction. The maximum is kept exactly.
const GROWTH = Math.log(1.01);

export class LatencyHistogram {
  private readonly buckets = new Map<number, number>();
  count = 0;
  maxMs = 0;

  record(ms: number): void {
    const index = Math.max(0, Math.floor(Math.log(Math.max(ms, 0.001) * 1000) / GROWTH));
    this.buckets.set(index, (this.buckets.get(index) ?? 0) + 1);
    this.count += 1;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  /** The latency under which `fraction` of the recorded ones fall (upper edge of its bucket), 0 when empty. */
  percentile(fraction: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(fraction * this.count));
    let seen = 0;
    for (const index of [...this.buckets.keys()].sort((a, b) => a - b)) {
      seen += this.buckets.get(index)!;
      if (seen >= rank) return Math.min(this.maxMs, Math.exp((index + 1) * GROWTH) / 1000);
    }
    return this.maxMs;
  }

  merge(other: LatencyHistogram): void {
    for (const [index, count] of other.buckets) this.buckets.set(index, (this.buckets.get(index) ?? 0) + count);
    this.count += other.count;
    if (other.maxMs > this.maxMs) this.maxMs = other.maxMs;
  }
}
