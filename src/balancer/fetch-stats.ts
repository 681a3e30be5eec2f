// A running balancer's statistics, whatever its engine: the built-in one serves them as JSON
// (`?format=json`), HAProxy as CSV (`;csv`), read into the same BalancerStats.
import { httpGet } from '../common/http-get.js';
import type { BalancerRecord } from '../lab/state.js';
import { statsPageUrl, type BalancerStats } from './stats-types.js';

/** The URL asked for a record's stats (shown in errors and by the watchers). */
export function statsRequestUrl(record: Pick<BalancerRecord, 'stats' | 'engine'>): string {
  const page = statsPageUrl(record.stats);
  return record.engine === 'haproxy' ? `${page};csv` : `${page}?format=json`;
}

/** Throws a one-line reason (refused, no answer within the bound, closed) or what the answer lacked. */
export async function fetchBalancerStats(record: Pick<BalancerRecord, 'stats' | 'engine' | 'name'> & { listen?: string }, timeoutMs: number): Promise<BalancerStats> {
  if (record.engine === 'haproxy') {
    const { fetchHaproxyStats } = await import('../haproxy/fetch-stats.js');
    return fetchHaproxyStats(statsPageUrl(record.stats), { proxy: record.name, listen: record.listen, timeoutMs });
  }
  const url = statsRequestUrl(record);
  const { status, text } = await httpGet(url, timeoutMs, { accept: 'application/json' });
  if (status < 200 || status > 299) throw new Error(`HTTP ${status} from ${url}`);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`${url} did not answer JSON`);
  }
  if (typeof body !== 'object' || body === null || !Array.isArray((body as BalancerStats).servers)) {
    throw new Error(`${url} answered JSON without a servers list`);
  }
  return body as BalancerStats;
}
