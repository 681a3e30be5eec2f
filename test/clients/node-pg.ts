// The client matrix's node-postgres driver, run in the test's own process: the same checks as
// psycopg_client.py and JdbcClient.java, with pg's own TLS (sslmode read the libpq way through
// pg-connection-string's uselibpqcompat), SCRAM, extended protocol and a COPY sub-protocol written
// here as a pg Submittable (pg has no COPY API of its own; pg-copy-streams is not a dependency).
// Cancel is a CancelRequest sent on a fresh socket with the session's BackendKeyData, as pg does.
import net from 'node:net';
import { createHash } from 'node:crypto';
import pg from 'pg';
import { checkTable, packageVersion, runChecks } from './in-process.js';
import type { CheckResult, ClientOptions, ClientRun } from './matrix.js';

const COPY_ROWS = 60_000; // about 4.5 MB of COPY text

// The password goes in the URL: pg lets a connection string's (absent) password win over a `password`
// given beside it.
function connectionString(options: ClientOptions, sslmode: string, password: string): string {
  const query = new URLSearchParams({ sslmode, sslrootcert: options.rootcert, uselibpqcompat: 'true', application_name: 'client-matrix-node-pg' });
  const credentials = `${encodeURIComponent(options.user)}:${encodeURIComponent(password)}`;
  return `postgresql://${credentials}@${options.host}:${options.port}/${encodeURIComponent(options.dbname)}?${query}`;
}

async function connect(options: ClientOptions, sslmode = options.sslmode, password = options.password): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: connectionString(options, sslmode, password), connectionTimeoutMillis: 10_000, query_timeout: 60_000 });
  client.on('error', () => undefined); // a session cut after a check is reported by the check itself
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => undefined); // else a half-open login waits for the server's authentication_timeout
    throw error;
  }
  return client;
}

async function using<T>(client: pg.Client, use: (client: pg.Client) => Promise<T>): Promise<T> {
  try {
    return await use(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function sslState(client: pg.Client): Promise<{ ssl: boolean; text: string }> {
  const row = (await client.query('SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0];
  return { ssl: row.ssl === true, text: `${row.ssl} ${row.version ?? ''} ${row.cipher ?? ''}`.trim() };
}

async function sslmodeCheck(options: ClientOptions, mode: string): Promise<CheckResult> {
  return using(await connect(options, mode), async (client) => {
    const state = await sslState(client);
    const note = mode === 'prefer' ? ' (node-postgres has no plaintext fallback: prefer = TLS without certificate checks)' : '';
    return { ok: state.ssl, detail: `sslmode=${mode}: pg_stat_ssl.ssl=${state.text}${note}` };
  });
}

async function scram(options: ClientOptions): Promise<CheckResult> {
  return using(await connect(options), async (client) => {
    const verifier = (await client.query("SELECT left(rolpassword, 14) AS v FROM pg_authid WHERE rolname = current_user")).rows[0].v;
    const ssl = (await sslState(client)).ssl;
    return { ok: verifier === 'SCRAM-SHA-256$', detail: `logged in with the lab password (ssl=${ssl}); role verifier '${verifier}'` };
  });
}

async function wrongPassword(options: ClientOptions): Promise<CheckResult> {
  let client: pg.Client | undefined;
  try {
    client = await connect(options, options.sslmode, `wrong-${options.port}`);
    return { ok: false, detail: 'a wrong password was accepted' };
  } catch (error) {
    const e = error as { code?: string; severity?: string; message: string };
    const ok = e.code === '28P01' && /password authentication failed/.test(e.message);
    return { ok, detail: `refused: sqlstate=${e.code} ${e.severity ?? ''} ${e.message}` };
  } finally {
    await client?.end().catch(() => undefined);
  }
}

async function extended(options: ClientOptions): Promise<CheckResult> {
  return using(await connect(options), async (client) => {
    const row = (await client.query('SELECT $1::int + $2::int AS sum, $3::text AS t', [2, 3, 'matrix'])).rows[0];
    if (row.sum !== 5 || row.t !== 'matrix') return { ok: false, detail: `parameterised query returned ${JSON.stringify(row)}` };
    let total = 0;
    for (let i = 0; i < 300; i += 1) {
      total += (await client.query({ name: 'matrix_double', text: 'SELECT $1::int * 2 AS v', values: [i] })).rows[0].v;
    }
    const prepared = Number((await client.query("SELECT count(*) AS n FROM pg_prepared_statements WHERE name = 'matrix_double' AND NOT from_sql")).rows[0].n);
    return {
      ok: total === 2 * ((299 * 300) / 2) && prepared === 1,
      detail: `parameterised query ok; 300 executions of the named statement matrix_double (pg_prepared_statements: ${prepared}), sum ${total}`,
    };
  });
}

/** The part of pg's Connection a COPY needs (pg/lib/connection.js). */
interface CopyConnection {
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
}

/**
 * COPY ... FROM STDIN or TO STDOUT as a pg Submittable. It settles through `callback`, the way pg's own
 * Query does: pg wraps that callback with its query_timeout timer, which is cleared only when it is called.
 */
class Copy implements pg.Submittable {
  readonly done: Promise<{ rows: number; out: Buffer }>;
  callback: (error: Error | null, result?: { rows: number; out: Buffer }) => void = () => undefined;
  private rows = -1;
  private failed: Error | undefined;
  private readonly chunks: Buffer[] = [];

  constructor(private readonly text: string, private readonly input?: Buffer) {
    this.done = new Promise((resolve, reject) => {
      this.callback = (error, result) => (error ? reject(error) : resolve(result!));
    });
  }

  submit(connection: unknown): void {
    (connection as CopyConnection).query(this.text);
  }

  handleCopyInResponse(connection: CopyConnection): void {
    const input = this.input ?? Buffer.alloc(0);
    for (let offset = 0; offset < input.length; offset += 64 * 1024) connection.sendCopyFromChunk(input.subarray(offset, offset + 64 * 1024));
    connection.endCopyFrom();
  }

  handleCopyData(message: { chunk: Buffer }): void {
    this.chunks.push(Buffer.from(message.chunk)); // a view of pg-protocol's read buffer, which it reuses
  }

  handleCommandComplete(message: { text: string }): void {
    this.rows = Number(/^COPY (\d+)/.exec(message.text)?.[1] ?? -1);
  }

  handleError(error: Error): void {
    if (this.failed) return;
    this.failed = error;
    this.callback(error);
  }

  handleReadyForQuery(): void {
    if (!this.failed) this.callback(null, { rows: this.rows, out: Buffer.concat(this.chunks) });
  }

  // Not expected during a COPY; present because pg calls them on the active query.
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
}

async function copy(options: ClientOptions): Promise<CheckResult> {
  const lines: string[] = [];
  for (let i = 0; i < COPY_ROWS; i += 1) lines.push(`${i}\tnode-pg row ${String(i).padStart(8, '0')} ${'x'.repeat(48)}\n`);
  const payload = Buffer.from(lines.join(''));
  return using(await connect(options), async (client) => {
    await client.query('CREATE TEMP TABLE matrix_copy (id int, payload text)');
    const started = Date.now();
    const copyIn = client.query(new Copy('COPY matrix_copy FROM STDIN', payload));
    const rowsIn = (await copyIn.done).rows;
    const copyOut = client.query(new Copy('COPY matrix_copy TO STDOUT'));
    const { rows: rowsOut, out } = await copyOut.done;
    const seconds = (Date.now() - started) / 1000;
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    const same = sha(out) === sha(payload);
    return {
      ok: rowsIn === COPY_ROWS && rowsOut === COPY_ROWS && same,
      detail: `${(payload.length / 1e6).toFixed(1)} MB in (${rowsIn} rows) and out (${rowsOut} rows, identical: ${same}) in ${seconds.toFixed(2)} s`,
    };
  });
}

/** A CancelRequest (length 16, code 80877102, pid, secret key) on a new plaintext socket, as pg and libpq send it. */
export function sendCancelRequest(host: string, port: number, pid: number, secretKey: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const timer = setTimeout(() => socket.destroy(new Error('CancelRequest: no answer in 5 s')), 5000);
    socket.on('connect', () => {
      const message = Buffer.alloc(16);
      message.writeInt32BE(16, 0);
      message.writeInt32BE(80877102, 4);
      message.writeInt32BE(pid, 8);
      message.writeInt32BE(secretKey, 12);
      socket.end(message);
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.resume();
  });
}

async function cancel(options: ClientOptions): Promise<CheckResult> {
  return using(await connect(options), async (client) => {
    const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
    const sleeping = client.query('SELECT pg_sleep(30)').then(
      () => undefined,
      (error: { code?: string; message: string }) => error,
    );
    await new Promise((resolve) => setTimeout(resolve, 500));
    const cancelledAt = Date.now();
    await sendCancelRequest(options.host, options.port, processID, secretKey);
    const error = await sleeping;
    const elapsed = (Date.now() - cancelledAt) / 1000;
    if (!error) return { ok: false, detail: 'pg_sleep(30) was not cancelled' };
    return { ok: error.code === '57014' && elapsed < 3, detail: `CancelRequest (backend ${processID}): ${error.code} ${error.message} ${elapsed.toFixed(2)} s after the cancel` };
  });
}

const CHECKS = checkTable({ sslmode: sslmodeCheck, scram, wrongPassword, extended, copy, cancel });

export const NODE_PG_CHECKS = Object.keys(CHECKS);

/** Each check bounded by `timeoutMs`; a failure or a timeout is that check's result, never a throw. */
export function runNodePg(options: ClientOptions, checks: string[], timeoutMs = 30_000): Promise<ClientRun> {
  return runChecks('node-pg', `pg ${packageVersion('pg')}`, CHECKS, options, checks, timeoutMs);
}
