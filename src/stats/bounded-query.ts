// One query against one node that answers or fails within a bound: the connect timeout covers a dead
// or frozen postmaster, the overall bound covers a server that accepted us and then stopped talking.
// A watcher samples every node this way at once, so one bad node never stalls the others' rows.
import { queryRows } from '../postgres/client.js';

export interface BoundedQueryOptions {
  /** The node's address (nodeAddress); default 127.0.0.1. */
  host?: string;
  port: number;
  user: string;
  database: string;
  timeoutMs: number;
}

export class QueryTimeoutError extends Error {
  constructor(timeoutMs: number) {
    super(`timed out after ${timeoutMs}ms`);
    this.name = 'QueryTimeoutError';
  }
}

export async function queryWithin<R extends Record<string, unknown>>(options: BoundedQueryOptions, sql: string, params: unknown[] = []): Promise<R[]> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    // Connect timeout plus time for one small query.
    timer = setTimeout(() => reject(new QueryTimeoutError(options.timeoutMs)), options.timeoutMs * 2);
  });
  try {
    return await Promise.race([
      queryRows<R>({ host: options.host, port: options.port, user: options.user, database: options.database, connectTimeoutMs: options.timeoutMs, applicationName: 'pglab-stat' }, sql, params),
      bound,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
