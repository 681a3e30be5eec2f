// The client matrix: which PostgreSQL clients work through the lab's balancer with TLS and SCRAM, check
// by check. Everything here starts from the variables `lab env --json` prints (issue 14's contract):
// PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSFILE, PGSSLROOTCERT, PGSSLMODE.
//
// Clients: psycopg 3 and asyncpg (test/clients/psycopg_client.py, asyncpg_client.py, Debian's
// /usr/bin/python3), pgjdbc (test/clients/JdbcClient.java, the JDK's source launcher with
// /usr/share/java/postgresql.jar), node-postgres and postgres.js (./node-pg.ts, ./postgres-js.ts, in this
// process), psql and pgbench (PostgreSQL 15's, as child processes with the lab's variables in their
// environment). asyncpg and postgres.js send their CancelRequest inside TLS, the others in plaintext.
// Every call is bounded; a missing runtime is an error of that client (scripts/setup.sh installs them
// all), never a silent skip.
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { repoRoot } from '../helpers/lab.js';
import { NODE_PG_CHECKS, runNodePg } from './node-pg.js';
import { POSTGRES_JS_CHECKS, runPostgresJs } from './postgres-js.js';

export interface LabEnv {
  PGHOST: string;
  PGPORT: string;
  PGUSER: string;
  PGDATABASE: string;
  PGPASSFILE: string;
  PGSSLROOTCERT: string;
  PGSSLMODE: string;
}

export const LAB_ENV_KEYS = ['PGHOST', 'PGPORT', 'PGUSER', 'PGDATABASE', 'PGPASSFILE', 'PGSSLROOTCERT', 'PGSSLMODE'] as const;

export interface ClientOptions {
  host: string;
  port: number;
  user: string;
  dbname: string;
  /** sslmode of the checks that are not about sslmode (the lab's PGSSLMODE) */
  sslmode: string;
  rootcert: string;
  passfile: string;
  /** the password read from the pgpass file, for the clients that take it as a parameter (node-pg) */
  password: string;
}

export interface CheckResult {
  ok: boolean;
  detail: string;
}

export interface ClientRun {
  client: string;
  version?: string;
  /** the client could not run at all (missing runtime, no JSON line, timeout) */
  error?: string;
  checks: Record<string, CheckResult>;
}

/** The matrix's columns, in order; a client that has no such check shows '-'. */
export const MATRIX_CHECKS = ['require', 'verify-full', 'prefer', 'scram', 'wrong-password', 'extended', 'copy', 'cancel', 'channel-binding', 'pgbench -S'];
const DRIVER_CHECKS = ['require', 'verify-full', 'prefer', 'scram', 'wrong-password', 'extended', 'copy', 'cancel'];
const PSQL_CHECKS = ['require', 'verify-full', 'prefer', 'scram', 'wrong-password', 'copy', 'cancel', 'channel-binding'];

export const PSYCOPG_SCRIPT = path.join(repoRoot, 'test', 'clients', 'psycopg_client.py');
export const ASYNCPG_SCRIPT = path.join(repoRoot, 'test', 'clients', 'asyncpg_client.py');
export const JDBC_SOURCE = path.join(repoRoot, 'test', 'clients', 'JdbcClient.java');
export const JDBC_JAR = '/usr/share/java/postgresql.jar';
/** Debian's python3, which has python3-psycopg and python3-asyncpg (a `python3` on PATH may be another one). */
export const DEBIAN_PYTHON = '/usr/bin/python3';

/** libpq's pgpass lookup: the first line whose host, port, database and user match (* matches all). */
export function passwordFromPgpass(file: string, want: { host: string; port: number; dbname: string; user: string }): string {
  const keys = [want.host, String(want.port), want.dbname, want.user];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    const fields: string[] = [];
    let field = '';
    for (let i = 0; i < line.length; i += 1) {
      const c = line[i]!;
      if (c === '\\' && i + 1 < line.length) field += line[++i];
      else if (c === ':' && fields.length < 4) {
        fields.push(field);
        field = '';
      } else field += c;
    }
    fields.push(field);
    if (fields.length === 5 && fields.slice(0, 4).every((f, i) => f === '*' || f === keys[i])) return fields[4]!;
  }
  throw new Error(`no line of the pgpass file ${file} matches ${keys.join(':')}`);
}

/** Checks the contract's variables and turns them into the drivers' options. */
export function optionsFromEnv(env: LabEnv): ClientOptions {
  const missing = LAB_ENV_KEYS.filter((key) => typeof env[key] !== 'string' || env[key] === '');
  if (missing.length) throw new Error(`lab env --json lacks ${missing.join(', ')}: ${JSON.stringify(env)}`);
  const base = { host: env.PGHOST, port: Number(env.PGPORT), user: env.PGUSER, dbname: env.PGDATABASE };
  return {
    ...base,
    sslmode: env.PGSSLMODE,
    rootcert: env.PGSSLROOTCERT,
    passfile: env.PGPASSFILE,
    password: passwordFromPgpass(env.PGPASSFILE, base),
  };
}

/** The process environment without inherited PG* variables, plus the lab's. */
function childEnv(env: LabEnv, extra: Record<string, string> = {}): Record<string, string> {
  const clean: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('PG') && value !== undefined) clean[key] = value;
  return { ...clean, ...env, ...extra };
}

/** A time budget for the whole matrix, so that a hanging client cannot stretch the test past its bound. */
export class Budget {
  private readonly end: number;
  constructor(ms: number) {
    this.end = Date.now() + ms;
  }
  /** `wanted` ms, or less if the budget has less left (at least 1 ms). */
  ms(wanted: number): number {
    return Math.max(1, Math.min(wanted, this.end - Date.now()));
  }
  get spent(): boolean {
    return Date.now() >= this.end;
  }
}

interface Runtime {
  ok: boolean;
  why: string;
}

async function probe(command: string, args: string[], timeout = 20_000): Promise<{ ok: boolean; out: string }> {
  const result = await execa(command, args, { reject: false, timeout, env: { ...process.env, LC_ALL: 'C' } });
  return { ok: result.exitCode === 0, out: `${String(result.stdout)}${String(result.stderr)}`.trim() || String(result.message ?? '') };
}

/** What each client needs from the machine, with the Debian package that brings it. */
export async function runtimeOf(client: string): Promise<Runtime> {
  switch (client) {
    case 'psycopg': {
      if (!existsSync(DEBIAN_PYTHON)) return { ok: false, why: `${DEBIAN_PYTHON} is missing (Debian's python3)` };
      const p = await probe(DEBIAN_PYTHON, ['-c', 'import psycopg; print(psycopg.__version__)']);
      return p.ok ? { ok: true, why: '' } : { ok: false, why: `${DEBIAN_PYTHON} cannot import psycopg (Debian package python3-psycopg): ${p.out.split('\n').pop()}` };
    }
    case 'asyncpg': {
      if (!existsSync(DEBIAN_PYTHON)) return { ok: false, why: `${DEBIAN_PYTHON} is missing (Debian's python3)` };
      const p = await probe(DEBIAN_PYTHON, ['-c', 'import asyncpg; print(asyncpg.__version__)']);
      return p.ok ? { ok: true, why: '' } : { ok: false, why: `${DEBIAN_PYTHON} cannot import asyncpg (Debian package python3-asyncpg): ${p.out.split('\n').pop()}` };
    }
    case 'jdbc': {
      if (!existsSync(JDBC_JAR)) return { ok: false, why: `${JDBC_JAR} is missing (Debian package libpostgresql-jdbc-java)` };
      const p = await probe('java', ['--list-modules']);
      if (!p.ok) return { ok: false, why: `no java on PATH (Debian package openjdk-17-jdk-headless): ${p.out.split('\n').pop()}` };
      return /^jdk\.compiler@/m.test(p.out) ? { ok: true, why: '' } : { ok: false, why: 'java has no jdk.compiler module: a JRE, not a JDK (Debian package openjdk-17-jdk-headless); `java File.java` needs it' };
    }
    case 'psql':
    case 'pgbench': {
      const p = await probe(client, ['--version']);
      return p.ok ? { ok: true, why: '' } : { ok: false, why: `no ${client} on PATH (Debian package postgresql-client-15): ${p.out}` };
    }
    default: // node-pg and postgres.js: npm packages of this repository, installed with it
      return { ok: true, why: '' };
  }
}

/** Runs a driver program that prints one JSON line with {client, version, checks}. */
async function runJsonDriver(client: string, command: string, args: string[], env: LabEnv, timeoutMs: number): Promise<ClientRun> {
  const started = Date.now();
  const result = await execa(command, args, { reject: false, timeout: timeoutMs, forceKillAfterDelay: 2000, env: childEnv(env), extendEnv: false });
  const line = String(result.stdout).split('\n').reverse().find((l) => l.startsWith('{'));
  if (result.timedOut) return { client, error: `no result within ${timeoutMs} ms (killed)`, checks: {} };
  if (!line) return { client, error: `exit ${result.exitCode}, no JSON line: ${String(result.stderr).slice(-800)}`, checks: {} };
  try {
    const parsed = JSON.parse(line) as ClientRun;
    if (parsed.error) return { client, error: parsed.error, checks: {} };
    return { client, version: `${parsed.version} (${((Date.now() - started) / 1000).toFixed(1)} s)`, checks: parsed.checks };
  } catch (error) {
    return { client, error: `unreadable JSON line (${(error as Error).message}): ${line.slice(0, 400)}`, checks: {} };
  }
}

function driverArgs(o: ClientOptions, checks: string[]): string[] {
  return ['--host', o.host, '--port', String(o.port), '--user', o.user, '--dbname', o.dbname, '--sslmode', o.sslmode, '--rootcert', o.rootcert, '--passfile', o.passfile, '--checks', checks.join(',')];
}

export function runPsycopg(o: ClientOptions, env: LabEnv, timeoutMs: number): Promise<ClientRun> {
  return runJsonDriver('psycopg', DEBIAN_PYTHON, [PSYCOPG_SCRIPT, ...driverArgs(o, DRIVER_CHECKS)], env, timeoutMs);
}

/** `extra`: more arguments for asyncpg_client.py (--sleep N for the cancel check). */
export function runAsyncpg(o: ClientOptions, env: LabEnv, timeoutMs: number, checks = DRIVER_CHECKS, extra: string[] = []): Promise<ClientRun> {
  return runJsonDriver('asyncpg', DEBIAN_PYTHON, [ASYNCPG_SCRIPT, ...driverArgs(o, checks), ...extra], env, timeoutMs);
}

export function runJdbc(o: ClientOptions, env: LabEnv, timeoutMs: number): Promise<ClientRun> {
  return runJsonDriver('jdbc', 'java', ['-cp', JDBC_JAR, JDBC_SOURCE, ...driverArgs(o, DRIVER_CHECKS)], env, timeoutMs);
}

const SSL_QUERY = 'SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()';

/** psql with the lab's environment; `extra` overrides (PGSSLMODE, PGPASSWORD, PGCHANNELBINDING). */
function psql(env: LabEnv, args: string[], extra: Record<string, string>, timeoutMs: number) {
  return execa('psql', ['-X', '-v', 'ON_ERROR_STOP=1', ...args], { reject: false, timeout: timeoutMs, forceKillAfterDelay: 2000, env: childEnv(env, extra), extendEnv: false });
}

async function psqlCheck(name: string, env: LabEnv, budget: Budget): Promise<CheckResult> {
  const t = () => budget.ms(20_000);
  const said = (r: { stdout: unknown; stderr: unknown; exitCode?: number }) => `exit ${r.exitCode}: ${String(r.stderr).trim() || String(r.stdout).trim()}`;
  switch (name) {
    case 'require':
    case 'verify-full':
    case 'prefer':
    case 'channel-binding': {
      const extra: Record<string, string> = name === 'channel-binding' ? { PGCHANNELBINDING: 'require' } : { PGSSLMODE: name };
      const r = await psql(env, ['-Atq', '-F', ' ', '-c', SSL_QUERY], extra, t());
      const out = String(r.stdout).trim();
      const label = name === 'channel-binding' ? `channel_binding=require, sslmode=${env.PGSSLMODE}` : `sslmode=${name}`;
      return r.exitCode === 0 ? { ok: out.startsWith('t '), detail: `${label}: pg_stat_ssl.ssl=${out}` } : { ok: false, detail: `${label}: ${said(r)}` };
    }
    case 'scram': {
      const r = await psql(env, ['-Atq', '-c', 'SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = current_user'], {}, t());
      const verifier = String(r.stdout).trim();
      return r.exitCode === 0 ? { ok: verifier === 'SCRAM-SHA-256$', detail: `logged in through PGPASSFILE; role verifier '${verifier}'` } : { ok: false, detail: said(r) };
    }
    case 'wrong-password': {
      const r = await psql(env, ['-Atq', '-c', 'SELECT 1'], { PGPASSWORD: `wrong-${env.PGPORT}` }, t());
      const message = String(r.stderr).trim();
      return { ok: r.exitCode === 2 && /FATAL:\s+password authentication failed/.test(message), detail: `refused (exit ${r.exitCode}): ${message}` };
    }
    case 'copy': {
      const dir = await mkdtemp(path.join(tmpdir(), 'pglab-matrix-'));
      try {
        const lines: string[] = [];
        for (let i = 0; i < 60_000; i += 1) lines.push(`${i}\tpsql row ${String(i).padStart(8, '0')} ${'x'.repeat(48)}\n`);
        const payload = lines.join('');
        const inFile = path.join(dir, 'in.copy');
        const outFile = path.join(dir, 'out.copy');
        await writeFile(inFile, payload);
        const started = Date.now();
        const r = await psql(env, ['-c', 'CREATE TEMP TABLE matrix_copy (id int, payload text)', '-c', `\\copy matrix_copy from '${inFile}'`, '-c', `\\copy matrix_copy to '${outFile}'`], {}, t());
        if (r.exitCode !== 0) return { ok: false, detail: said(r) };
        const seconds = (Date.now() - started) / 1000;
        const out = await readFile(outFile, 'utf8');
        const tags = String(r.stdout).match(/^COPY \d+$/gm) ?? [];
        const same = out === payload;
        return { ok: same && tags.join(',') === 'COPY 60000,COPY 60000', detail: `\\copy ${(payload.length / 1e6).toFixed(1)} MB in and out (${tags.join(', ')}; identical: ${same}) in ${seconds.toFixed(2)} s` };
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
    case 'cancel': {
      const app = `client-matrix-psql-cancel-${process.pid}`;
      const child = psql(env, ['-v', 'VERBOSITY=verbose', '-c', 'SELECT pg_sleep(30)'], { PGAPPNAME: app }, t());
      // SIGINT once the server runs the query (before that it would only end psql's login).
      const running = `SELECT count(*) FROM pg_stat_activity WHERE application_name = '${app}' AND state = 'active' AND query = 'SELECT pg_sleep(30)'`;
      const waitUntil = Date.now() + 10_000;
      while (Date.now() < waitUntil && String((await psql(env, ['-Atq', '-c', running], {}, t())).stdout).trim() !== '1') await new Promise((resolve) => setTimeout(resolve, 100));
      const cancelledAt = Date.now();
      child.kill('SIGINT');
      const r = await child;
      const elapsed = (Date.now() - cancelledAt) / 1000;
      const message = String(r.stderr).trim();
      const error = message.split('\n').find((line) => line.startsWith('ERROR:')) ?? message;
      return { ok: /^ERROR:\s+57014: canceling statement due to user request/.test(error) && elapsed < 3, detail: `SIGINT to psql (pid ${child.pid}): ${error} (exit ${r.exitCode}) ${elapsed.toFixed(2)} s after the signal` };
    }
    default:
      return { ok: false, detail: 'unknown check for psql' };
  }
}

export async function runPsql(env: LabEnv, budget: Budget): Promise<ClientRun> {
  const version = String((await probe('psql', ['--version'])).out);
  const checks: Record<string, CheckResult> = {};
  for (const name of PSQL_CHECKS) {
    checks[name] = budget.spent ? { ok: false, detail: 'not run: the matrix ran out of time' } : await psqlCheck(name, env, budget).catch((error: Error) => ({ ok: false, detail: error.message }));
  }
  return { client: 'psql', version, checks };
}

/** pgbench -i (scale 1) then a bounded select-only run with sslmode=require and prepared statements. */
export async function runPgbench(env: LabEnv, budget: Budget): Promise<ClientRun> {
  const version = String((await probe('pgbench', ['--version'])).out);
  const run = (args: string[], ms: number) =>
    execa('pgbench', args, { reject: false, timeout: budget.ms(ms), forceKillAfterDelay: 2000, env: childEnv(env, { PGSSLMODE: 'require' }), extendEnv: false });
  const init = await run(['-i', '-s', '1', '-q'], 60_000);
  if (init.exitCode !== 0) return { client: 'pgbench', version, checks: { 'pgbench -S': { ok: false, detail: `pgbench -i: exit ${init.exitCode}: ${String(init.stderr).slice(-600)}` } } };
  const r = await run(['-n', '-S', '-M', 'prepared', '-T', '3', '-c', '2'], 30_000);
  const out = `${String(r.stdout)}\n${String(r.stderr)}`;
  const processed = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? 0);
  const failed = /number of failed transactions: (\d+)/.exec(out)?.[1] ?? '?';
  const tps = /tps = ([\d.]+)/.exec(out)?.[1] ?? '?';
  const aborted = /aborted/i.test(out);
  const ok = r.exitCode === 0 && processed > 0 && !aborted && failed === '0';
  const detail = ok
    ? `sslmode=require, -S -M prepared -T 3 -c 2: ${processed} transactions, ${failed} failed, no aborted client, tps ${tps}`
    : `exit ${r.exitCode}${r.timedOut ? ' (timed out)' : ''}: ${out.trim().slice(-800)}`;
  return { client: 'pgbench', version, checks: { 'pgbench -S': { ok, detail } } };
}

/**
 * Runs every client against the target that `env` (from `lab env --json`) names, one after the other
 * (two cores are shared), within `budgetMs` in all.
 */
export async function runMatrix(env: LabEnv, budgetMs = 170_000): Promise<ClientRun[]> {
  const options = optionsFromEnv(env);
  const budget = new Budget(budgetMs);
  const runs: ClientRun[] = [];
  const clients: [string, () => Promise<ClientRun>][] = [
    ['psycopg', () => runPsycopg(options, env, budget.ms(60_000))],
    ['asyncpg', () => runAsyncpg(options, env, budget.ms(60_000))],
    ['jdbc', () => runJdbc(options, env, budget.ms(60_000))],
    ['node-pg', () => runNodePg(options, NODE_PG_CHECKS, budget.ms(20_000))],
    ['postgres.js', () => runPostgresJs(options, POSTGRES_JS_CHECKS, budget.ms(20_000))],
    ['psql', () => runPsql(env, budget)],
    ['pgbench', () => runPgbench(env, budget)],
  ];
  for (const [client, run] of clients) {
    const runtime = await runtimeOf(client);
    if (!runtime.ok) runs.push({ client, error: `runtime missing: ${runtime.why}; scripts/setup.sh installs it`, checks: {} });
    else if (budget.spent) runs.push({ client, error: 'not run: the matrix ran out of time', checks: {} });
    else runs.push(await run().catch((error: Error) => ({ client, error: `${error.name}: ${error.message}`, checks: {} })));
  }
  return runs;
}

/** Every failed check and client error, one line each (empty when the matrix is all green). */
export function matrixFailures(runs: ClientRun[]): string[] {
  const failures: string[] = [];
  for (const run of runs) {
    if (run.error) failures.push(`${run.client}: ${run.error}`);
    for (const [name, result] of Object.entries(run.checks)) if (!result.ok) failures.push(`${run.client} ${name}: ${result.detail}`);
  }
  return failures;
}

/** The matrix as a Markdown table (client x check: ok, FAIL, '-' not run by that client), then each cell's detail. */
export function formatMatrix(runs: ClientRun[], title: string): string {
  const header = `| client | ${MATRIX_CHECKS.join(' | ')} |`;
  const rule = `|---|${MATRIX_CHECKS.map(() => '---').join('|')}|`;
  const rows = runs.map((run) => {
    const cells = MATRIX_CHECKS.map((name) => {
      if (run.error) return 'ERROR';
      const result = run.checks[name];
      return result === undefined ? '-' : result.ok ? 'ok' : 'FAIL';
    });
    return `| ${run.client} | ${cells.join(' | ')} |`;
  });
  const details: string[] = [];
  for (const run of runs) {
    details.push(`${run.client}: ${run.error ? `ERROR ${run.error}` : run.version ?? ''}`);
    for (const [name, result] of Object.entries(run.checks)) details.push(`  ${result.ok ? 'ok  ' : 'FAIL'} ${name}: ${result.detail}`);
  }
  const notes = [
    "'-': not that client's check. psql 15 has no \\bind, so the extended protocol of libpq is run by pgbench -M prepared;",
    'channel_binding is a libpq setting (psql); pgbench is its own column. cancel: asyncpg and postgres.js send the',
    'CancelRequest inside a new TLS session, psycopg, pgjdbc, node-postgres and psql in plaintext.',
  ];
  return [title, '', header, rule, ...rows, '', ...notes, '', ...details].join('\n');
}
