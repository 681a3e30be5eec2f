// The report's per-node counts checked against the servers' own counter, pg_stat_database.xact_commit.
// Every autocommit statement is a commit there, so a node's growth is the workload's transactions plus
// the workload's per-connection `SELECT inet_server_port()`, plus whatever else ran (health checks,
// watchers, these readings): the check allows for those, and says by how much it missed otherwise.
import { queryRows } from '../postgres/client.js';
import type { ReportCrossCheck } from './types.js';

/** xact_commit of `database` on each port; null for a port that does not answer. */
export async function readXactCommits(ports: number[], options: { user?: string; database?: string; connectTimeoutMs?: number } = {}): Promise<Record<string, number | null>> {
  const database = options.database ?? 'postgres';
  const entries = await Promise.all(
    ports.map(async (port) => {
      try {
        const rows = await queryRows<{ n: string }>(
          { port, user: options.user, database, connectTimeoutMs: options.connectTimeoutMs ?? 2000 },
          'SELECT xact_commit AS n FROM pg_stat_database WHERE datname = $1',
          [database],
        );
        return [String(port), rows[0] ? Number(rows[0].n) : null] as const;
      } catch {
        return [String(port), null] as const;
      }
    }),
  );
  return Object.fromEntries(entries);
}

/**
 * The workload counted `workload` transactions on `node`; the server's counter grew by `serverGrowth`.
 * They agree when the growth covers the count and exceeds it by at most `allowance` (other commits).
 */
export function crossCheck(node: string, workload: number, serverGrowth: number | null, allowance: number): ReportCrossCheck {
  if (serverGrowth === null) {
    return { node, workload, pg_stat_database: null, agrees: false, note: 'the server could not be asked (down, or restarted and its counters reset)' };
  }
  const extra = serverGrowth - workload;
  if (extra < 0) {
    return { node, workload, pg_stat_database: serverGrowth, agrees: false, note: `the server counted ${-extra} fewer commits than the workload` };
  }
  if (extra > allowance) {
    return { node, workload, pg_stat_database: serverGrowth, agrees: false, note: `the server counted ${extra} more commits than the workload (allowed: ${allowance} for connections and probes)` };
  }
  return { node, workload, pg_stat_database: serverGrowth, agrees: true };
}
