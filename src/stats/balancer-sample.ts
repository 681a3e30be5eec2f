// A balancer's statistics for the watchers, read the way any client would (src/balancer/fetch-stats.ts),
// with a bounded timeout so a dead balancer only costs its own row.
import type { BalancerServerStats, BalancerStats } from '../balancer/stats-types.js';
import { fetchBalancerStats, statsRequestUrl } from '../balancer/fetch-stats.js';
import type { BalancerRecord } from '../lab/state.js';
import { messageOf } from '../common/errors.js';

export interface BalancerSample {
  name: string;
  /** The URL asked. */
  url: string;
  up: boolean;
  /** Why there are no rows: refused, timed out, not JSON... */
  reason: string | null;
  listen: string;
  sessionsCurrent: number | null;
  sessionsTotal: number | null;
  servers: BalancerServerStats[];
}

/** "127.0.0.1:8081" or "127.0.0.1:6080/stats" (a configuration file's `stats uri`) to the JSON URL. */
export function statsUrl(stats: string): string {
  return statsRequestUrl({ stats, engine: 'builtin' });
}

function fetchProblem(error: unknown, timeoutMs: number): string {
  if ((error as Error)?.name === 'TimeoutError' || (error as Error)?.name === 'AbortError') return `not answering: no answer within ${timeoutMs / 1000}s`;
  const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
  if (cause?.code === 'ECONNREFUSED') return 'connection refused';
  if (cause?.code === 'ECONNRESET' || cause?.code === 'UND_ERR_SOCKET') return 'connection reset';
  return cause?.message ?? messageOf(error);
}

export async function sampleBalancer(record: BalancerRecord, options: { timeoutMs: number }): Promise<BalancerSample> {
  const url = record.stats ? statsRequestUrl(record) : '';
  const down = (reason: string): BalancerSample => ({
    name: record.name, url, up: false, reason, listen: record.listen, sessionsCurrent: null, sessionsTotal: null, servers: [],
  });
  if (!record.stats) return down('it has no stats listener (started without a stats address)');
  let body: BalancerStats;
  try {
    body = await fetchBalancerStats(record, options.timeoutMs);
  } catch (error) {
    return down(fetchProblem(error, options.timeoutMs));
  }
  return {
    name: record.name,
    url,
    up: true,
    reason: null,
    listen: body.listen ?? record.listen,
    sessionsCurrent: body.sessionsCurrent ?? null,
    sessionsTotal: body.sessionsTotal ?? null,
    servers: body.servers,
  };
}
