// The client matrix's postgres.js driver (the npm package `postgres`), run in the test's own process: the
// same checks as psycopg_client.py, asyncpg_client.py, JdbcClient.java and node-pg.ts, each with the
// library's own API: `ssl` as a tls.connect object with the lab's CA for verify-full and as the mode
// strings 'require' / 'prefer', SCRAM, automatic named prepared statements, COPY as `.writable()` /
// `.readable()` streams, and `query.cancel()`.
// postgres.js sends its CancelRequest inside a new TLS session when the session it cancels uses TLS
// (startup.js cancel() negotiates TLS first), unlike libpq 15, psycopg, pgjdbc and node-postgres.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import postgres from 'postgres';
import { checkTable, packageVersion, runChecks } from './in-process.js';
import type { CheckResult, ClientOptions, ClientRun } from './matrix.js';

const COPY_ROWS = 60_000; // about 4.5 MB of COPY text
const CANCEL_AFTER_MS = 500; // the query runs on the server by then (the other drivers wait as long)
const SSL_QUERY = 'SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()';

type Sql = postgres.Sql;

/** libpq's sslmode as postgres.js's `ssl`: verify-full checks the lab's CA and the host (tls.connect's default checks). */
function sslOption(options: ClientOptions, sslmode: string): postgres.Options<{}>['ssl'] {
  if (sslmode === 'verify-full') return { ca: readFileSync(options.rootcert), rejectUnauthorized: true };
  return sslmode as 'require' | 'prefer' | 'allow' | 'disable';
}

/** One connection at most, so that a TEMP table, a prepared statement and a cancel all use one session. */
function open(options: ClientOptions, extra: postgres.Options<{}> = {}, sslmode = options.sslmode): Sql {
  return postgres({
    host: options.host,
    port: options.port,
    database: options.dbname,
    username: options.user,
    password: options.password,
    ssl: sslOption(options, sslmode),
    max: 1,
    connect_timeout: 10,
    onnotice: false,
    connection: { application_name: 'client-matrix-postgres.js' },
    ...extra,
  });
}

async function using<T>(sql: Sql, use: (sql: Sql) => Promise<T>): Promise<T> {
  try {
    return await use(sql);
  } finally {
    await sql.end({ timeout: 5 }).catch(() => undefined);
  }
}

async function sslState(sql: Sql): Promise<{ ssl: boolean; text: string }> {
  const [row] = await sql.unsafe(SSL_QUERY);
  return { ssl: row!.ssl === true, text: `${row!.ssl} ${row!.version ?? ''} ${row!.cipher ?? ''}`.trim() };
}

async function sslmodeCheck(options: ClientOptions, mode: string): Promise<CheckResult> {
  return using(open(options, {}, mode), async (sql) => {
    const state = await sslState(sql);
    const how = mode === 'verify-full' ? "ssl: { ca: the lab's CA } (certificate and host checked)" : `ssl: '${mode}'`;
    return { ok: state.ssl, detail: `sslmode=${mode} as ${how}: pg_stat_ssl.ssl=${state.text}` };
  });
}

async function scram(options: ClientOptions): Promise<CheckResult> {
  return using(open(options), async (sql) => {
    const [row] = await sql`SELECT left(rolpassword, 14) AS v FROM pg_authid WHERE rolname = current_user`;
    const ssl = (await sslState(sql)).ssl;
    return { ok: row!.v === 'SCRAM-SHA-256$', detail: `logged in with the lab password from the pgpass file (ssl=${ssl}); role verifier '${row!.v}'` };
  });
}

async function wrongPassword(options: ClientOptions): Promise<CheckResult> {
  return using(open(options, { password: `wrong-${options.port}` }), async (sql) => {
    try {
      await sql`SELECT 1`;
      return { ok: false, detail: 'a wrong password was accepted' };
    } catch (error) {
      const e = error as { code?: string; severity?: string; message: string };
      const ok = e.code === '28P01' && /password authentication failed/.test(e.message);
      return { ok, detail: `refused: sqlstate=${e.code} ${e.severity ?? ''} ${e.message}` };
    }
  });
}

async function extended(options: ClientOptions): Promise<CheckResult> {
  return using(open(options), async (sql) => {
    const [row] = await sql`SELECT ${2}::int + ${3}::int AS sum, ${'matrix'}::text AS t`;
    if (row!.sum !== 5 || row!.t !== 'matrix') return { ok: false, detail: `parameterised query returned ${JSON.stringify(row)}` };
    let total = 0;
    for (let i = 0; i < 300; i += 1) total += (await sql`SELECT ${i}::int * 2 AS v`)[0]!.v as number;
    const [prepared] = await sql`SELECT count(*)::int AS n, min(name) AS name FROM pg_prepared_statements WHERE NOT from_sql AND statement = 'SELECT $1::int * 2 AS v'`;
    return {
      ok: total === 2 * ((299 * 300) / 2) && prepared!.n === 1,
      detail: `parameterised query ok; 300 executions of the statement postgres.js prepared by itself as ${prepared!.name} (pg_prepared_statements: ${prepared!.n}), sum ${total}`,
    };
  });
}

async function copy(options: ClientOptions): Promise<CheckResult> {
  const lines: string[] = [];
  for (let i = 0; i < COPY_ROWS; i += 1) lines.push(`${i}\tpostgres.js row ${String(i).padStart(8, '0')} ${'x'.repeat(48)}\n`);
  const payload = Buffer.from(lines.join(''));
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < payload.length; offset += 64 * 1024) chunks.push(payload.subarray(offset, offset + 64 * 1024));
  return using(open(options), async (sql) => {
    const reserved = await sql.reserve();
    try {
      await reserved`CREATE TEMP TABLE matrix_copy (id int, payload text)`;
      const started = Date.now();
      const into = (await reserved`COPY matrix_copy FROM STDIN`.writable()) as Writable & { count?: number };
      await pipeline(Readable.from(chunks), into);
      const out: Buffer[] = [];
      for await (const chunk of await reserved`COPY matrix_copy TO STDOUT`.readable()) out.push(Buffer.from(chunk as Uint8Array));
      const seconds = (Date.now() - started) / 1000;
      const received = Buffer.concat(out);
      const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
      const same = sha(received) === sha(payload);
      return {
        ok: into.count === COPY_ROWS && same,
        detail: `${(payload.length / 1e6).toFixed(1)} MB in (.writable(), ${into.count} rows) and out (.readable(), identical: ${same}) in ${seconds.toFixed(2)} s`,
      };
    } finally {
      reserved.release();
    }
  });
}

export interface CancelOutcome {
  ok: boolean;
  elapsedMs: number;
  detail: string;
}

/**
 * One session runs `SELECT pg_sleep(sleepSeconds)` and `query.cancel()` cancels it 0.5 s later. ok: it
 * ended with 57014 within 3 s of the cancel. `cancelTimeoutS` is postgres.js's cancel_timeout: past it
 * without an answer the library closes the connection (CANCEL_UNANSWERED); a value above the sleep lets
 * a lost cancel show as the sleep running to its end instead. elapsedMs: from the cancel to the query's end.
 */
export async function postgresJsCancel(options: ClientOptions, sleepSeconds: number, cancelTimeoutS?: number): Promise<CancelOutcome> {
  const extra = cancelTimeoutS === undefined ? {} : { cancel_timeout: cancelTimeoutS };
  return using(open(options, extra), async (sql) => {
    const session = (await sslState(sql)).text;
    const query = sql`SELECT pg_sleep(${sleepSeconds})`.execute();
    const outcome = query.then(
      () => undefined,
      (error: { code?: string; message: string; cause?: { code?: string } }) => error,
    );
    await new Promise((resolve) => setTimeout(resolve, CANCEL_AFTER_MS));
    const cancelledAt = Date.now();
    const sent = query.cancel().then(
      () => 'sent',
      (error: Error) => `not sent (${error.message})`,
    );
    const error = await outcome;
    const elapsedMs = Date.now() - cancelledAt;
    const how = `query.cancel(): CancelRequest inside a new TLS session (postgres.js does so whenever the session is TLS; session pg_stat_ssl.ssl=${session}), ${await sent}`;
    const seconds = (elapsedMs / 1000).toFixed(2);
    if (!error) return { ok: false, elapsedMs, detail: `${how}; not cancelled: pg_sleep(${sleepSeconds}) ran to its end, ${seconds} s after the cancel` };
    const cause = error.cause?.code ? ` (cause ${error.cause.code})` : '';
    return { ok: error.code === '57014' && elapsedMs < 3000, elapsedMs, detail: `${how}; ${error.code}${cause} ${error.message} ${seconds} s after the cancel` };
  });
}

const CHECKS = checkTable({
  sslmode: sslmodeCheck,
  scram,
  wrongPassword,
  extended,
  copy,
  // postgres.js's default cancel_timeout (5 s): a lost cancel fails as its user would see it
  cancel: async (o) => {
    const { ok, detail } = await postgresJsCancel(o, 30);
    return { ok, detail };
  },
});

export const POSTGRES_JS_CHECKS = Object.keys(CHECKS);

/** Each check bounded by `timeoutMs`; a failure or a timeout is that check's result, never a throw. */
export function runPostgresJs(options: ClientOptions, checks: string[], timeoutMs = 30_000): Promise<ClientRun> {
  return runChecks('postgres.js', `postgres.js ${packageVersion('postgres')}`, CHECKS, options, checks, timeoutMs);
}
