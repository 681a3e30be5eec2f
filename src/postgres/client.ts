// SQL against a lab node over TCP on loopback, with a bounded connect timeout. The password comes from
// the lab's pgpass file (PGPASSFILE, looked up by pgpassLookup) and TLS from clientSsl().
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import { parse as parseConnectionString } from 'pg-connection-string';
import { clientEnv } from './client-env.js';
import { pgpassLookup } from './pgpass.js';

/**
 * A node-postgres client configuration with the lab's access: `connectionString` (a user's URL) is
 * parsed here so that its own password and sslmode win, and what it lacks comes from the environment.
 */
export function labClientConfig(config: pg.ClientConfig, env: NodeJS.ProcessEnv = clientEnv()): pg.ClientConfig {
  const { connectionString, ...rest } = config;
  const fromUrl = connectionString ? parseConnectionString(connectionString) : {};
  const merged: Record<string, unknown> = { ...rest };
  for (const [key, value] of Object.entries(fromUrl)) if (value !== '' && value !== undefined && value !== null) merged[key] = value;
  const urlHasSsl = connectionString !== undefined && /[?&](sslmode|ssl)=/.test(connectionString);
  return {
    ...(merged as pg.ClientConfig),
    ...(merged.password ? {} : { password: (async () => pgpassLookup({ host: String(merged.host ?? 'localhost'), port: merged.port as number, database: merged.database as string, user: merged.user as string }, env)) as () => Promise<string> }),
    ...(urlHasSsl ? {} : { ssl: clientSsl(env) }),
  };
}

/**
 * node-postgres's TLS options for the libpq environment pglab set for the lab (src/lab/access.ts):
 * verify-full checks the server's certificate against PGSSLROOTCERT, including its name; require
 * encrypts without checking. node-postgres has no "prefer": anything else is plaintext.
 */
export function clientSsl(env: NodeJS.ProcessEnv = clientEnv()): false | ConnectionOptions {
  const mode = env.PGSSLMODE;
  if (mode === 'require') return { rejectUnauthorized: false };
  if (mode !== 'verify-full' && mode !== 'verify-ca') return false;
  const ca = env.PGSSLROOTCERT ? readFileSync(env.PGSSLROOTCERT) : undefined;
  return mode === 'verify-ca' ? { ca, checkServerIdentity: () => undefined } : { ca };
}

export interface ConnectOptions {
  host?: string;
  port: number;
  user?: string;
  database?: string;
  connectTimeoutMs?: number;
  /** Bound on each query's answer (node-postgres query_timeout): a frozen server never answers. */
  queryTimeoutMs?: number;
  applicationName?: string;
}

export async function withClient<T>(options: ConnectOptions, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(labClientConfig({
    host: options.host ?? '127.0.0.1',
    port: options.port,
    user: options.user ?? 'postgres',
    database: options.database ?? 'postgres',
    connectionTimeoutMillis: options.connectTimeoutMs ?? 3000,
    application_name: options.applicationName ?? 'pglab',
    ...(options.queryTimeoutMs ? { query_timeout: options.queryTimeoutMs } : {}),
  }));
  // An error event after connect (server killed) must not crash the process; the query rejects anyway.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    // A login that failed half way (a refused password, a timeout) must not leave its socket open:
    // the server would keep that backend in authentication until authentication_timeout.
    destroySocket(client);
    throw error;
  }
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Destroys the socket under a node-postgres client: end() would wait on a stuck or half-open login. */
export function destroySocket(client: pg.Client): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

export async function queryRows<R extends Record<string, unknown>>(options: ConnectOptions, sql: string, params: unknown[] = []): Promise<R[]> {
  return withClient(options, async (client) => (await client.query<R>(sql, params)).rows);
}
