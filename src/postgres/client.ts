// SQL against a lab node over TCP on loopback, with a bounded connect timeout.
import pg from 'pg';

export interface ConnectOptions {
  host?: string;
  port: number;
  user?: string;
  database?: string;
  connectTimeoutMs?: number;
  applicationName?: string;
}

export async function withClient<T>(options: ConnectOptions, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({
    host: options.host ?? '127.0.0.1',
    port: options.port,
    user: options.user ?? 'postgres',
    database: options.database ?? 'postgres',
    connectionTimeoutMillis: options.connectTimeoutMs ?? 3000,
    application_name: options.applicationName ?? 'pglab',
  });
  // An error event after connect (server killed) must not crash the process; the query rejects anyway.
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function queryRows<R extends Record<string, unknown>>(options: ConnectOptions, sql: string, params: unknown[] = []): Promise<R[]> {
  return withClient(options, async (client) => (await client.query<R>(sql, params)).rows);
}
