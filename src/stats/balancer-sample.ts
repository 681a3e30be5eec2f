// A balancer's statistics, read the way any client would: GET <stats address><uri>?format=json
// (src/balancer/stats-types.ts is the contract), with a bounded timeout so a dead balancer only costs
// its own row.
import type { BalancerServerStats, BalancerStats } from '../balancer/stats-types.js';
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
  const slash = stats.indexOf('/');
  const address = slash < 0 ? stats : stats.slice(0, slash);
  const uri = slash < 0 ? '/' : stats.slice(slash);
  return `http://${address}${uri}?format=json`;
}

function fetchProblem(error: unknown, timeoutMs: number): string {
  if ((error as Error)?.name === 'TimeoutError' || (error as Error)?.name === 'AbortError') return `no answer within ${timeoutMs / 1000}s`;
  const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
  if (cause?.code === 'ECONNREFUSED') return 'connection refused';
  if (cause?.code === 'ECONNRESET' || cause?.code === 'UND_ERR_SOCKET') return 'connection reset';
  return cause?.message ?? messageOf(error);
}

function looksLikeStats(value: unknown): value is BalancerStats {
  return typeof value === 'object' && value !== null && Array.isArray((value as BalancerStats).servers);
}

export async function sampleBalancer(record: BalancerRecord, options: { timeoutMs: number }): Promise<BalancerSample> {
  const url = record.stats ? statsUrl(record.stats) : '';
  const down = (reason: string): BalancerSample => ({
    name: record.name, url, up: false, reason, listen: record.listen, sessionsCurrent: null, sessionsTotal: null, servers: [],
  });
  if (!record.stats) return down('it has no stats listener (started without a stats address)');
  let body: unknown;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(options.timeoutMs), headers: { accept: 'application/json' } });
    const text = await response.text();
    if (!response.ok) return down(`HTTP ${response.status} from ${url}`);
    body = JSON.parse(text);
  } catch (error) {
    if (error instanceof SyntaxError) return down(`${url} did not answer JSON`);
    return down(fetchProblem(error, options.timeoutMs));
  }
  if (!looksLikeStats(body)) return down(`${url} answered JSON without a servers list`);
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
