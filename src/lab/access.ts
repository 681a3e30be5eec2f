// How clients get into a lab's servers: the authentication method (scram-sha-256 by default, trust only
// when asked for), the lab's own password kept in a pgpass file, and TLS with the lab's own CA.
// Every connection pglab makes (its commands, the balancer's checks, the pgbench it runs) takes these
// from the client scope `useLabAccess` fills (src/postgres/client-env.ts; never process.env), which
// holds what `lab env` prints.
import { randomBytes } from 'node:crypto';
import { mkdir, rm, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { LabError } from '../common/errors.js';
import { writePrivateFile } from '../common/safe-files.js';
import { forgetClientEnv, useClientEnv } from '../postgres/client-env.js';
import { pgpassLookup } from '../postgres/pgpass.js';

export const AUTH_METHODS = ['scram', 'trust'] as const;
export type AuthMethod = (typeof AUTH_METHODS)[number];
export const TLS_MODES = ['off', 'on', 'required'] as const;
export type TlsMode = (typeof TLS_MODES)[number];

export interface LabAccessSettings {
  auth: AuthMethod;
  tls: TlsMode;
}

/** What of a lab's record (lab.json, src/lab/state-types.ts) its access needs: a LabState is one. */
export interface LabAccess {
  /** Absent in labs made before access settings existed. */
  access?: LabAccessSettings;
  dbUser: string;
}

/** A lab written before access settings existed was built with trust and no TLS. */
export function accessOf(state: Pick<LabAccess, 'access'>): LabAccessSettings {
  return state.access ?? { auth: 'trust', tls: 'off' };
}

export const PGPASS_FILE = 'pgpass';
export const TLS_DIR = 'tls';

export function pgpassPath(labDir: string): string {
  return path.join(labDir, PGPASS_FILE);
}

export function tlsPaths(labDir: string): { dir: string; caCert: string; caKey: string; serverCert: string; serverKey: string } {
  const dir = path.join(labDir, TLS_DIR);
  return {
    dir,
    caCert: path.join(dir, 'ca.crt'),
    caKey: path.join(dir, 'ca.key'),
    serverCert: path.join(dir, 'server.crt'),
    serverKey: path.join(dir, 'server.key'),
  };
}

/** Hosts the pgpass lines name: the nodes' and the default balancers' loopback addresses. */
const PGPASS_HOSTS = ['127.0.0.1', 'localhost', '::1'];

function pgpassEscape(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
}

/** The password in a lab's pgpass file for `user`, or undefined. */
export async function readLabPassword(labDir: string, user: string): Promise<string | undefined> {
  return pgpassLookup({ host: '127.0.0.1', user, database: 'postgres', port: '*' }, { PGPASSFILE: pgpassPath(labDir) });
}

/** A new password for the lab's database superuser, in the lab's pgpass file (0600, the invoking user's), for loopback and `nodeAddresses`. */
export async function createLabPassword(labDir: string, user: string, nodeAddresses: string[] = []): Promise<string> {
  const existing = await readLabPassword(labDir, user);
  if (existing) return existing;
  const password = randomBytes(18).toString('base64url');
  // A lab made with --hosts: every address its nodes can have (never `*`: the password goes to the lab only).
  const lines = [...PGPASS_HOSTS, ...nodeAddresses].map((host) => `${pgpassEscape(host)}:*:*:${pgpassEscape(user)}:${pgpassEscape(password)}`);
  await writePrivateFile(pgpassPath(labDir), `${lines.join('\n')}\n`);
  return password;
}

/** The libpq environment for this lab's servers: what `lab env` prints and pglab's own clients use. */
export function accessEnv(labDir: string, state: LabAccess): Record<string, string> {
  const settings = accessOf(state);
  const env: Record<string, string> = { PGUSER: state.dbUser, PGDATABASE: 'postgres' };
  if (settings.auth === 'scram') env.PGPASSFILE = pgpassPath(labDir);
  if (settings.tls === 'off') {
    env.PGSSLMODE = 'disable';
  } else {
    env.PGSSLMODE = 'verify-full';
    env.PGSSLROOTCERT = tlsPaths(labDir).caCert;
    // Node (node-postgres, postgres.js) reads PGSSLMODE as "TLS, verified against Node's CAs": add the lab's.
    env.NODE_EXTRA_CA_CERTS = env.PGSSLROOTCERT;
  }
  return env;
}

/**
 * Points the current client scope (src/postgres/client-env.ts) at the lab (pgpass, CA, sslmode), so every
 * client pglab opens, and every pgbench it starts, logs in without a password typed. process.env is not
 * touched: the caller's own PG* variables stay theirs.
 */
export function useLabAccess(labDir: string, state: LabAccess): void {
  // NODE_EXTRA_CA_CERTS is for the user's node programs (Node reads it only at start).
  const { NODE_EXTRA_CA_CERTS: _forNodePrograms, ...env } = accessEnv(labDir, state);
  useClientEnv(env);
}

/** Drops the lab environment useLabAccess set in the current scope. */
export function forgetLabAccess(): void {
  forgetClientEnv();
}

/**
 * The environment of a PostgreSQL program the lab runs as its OS user (pg_basebackup, pg_rewind):
 * that user cannot read the invoking user's pgpass file, so the password goes in PGPASSWORD.
 */
export async function toolEnv(labDir: string, state: LabAccess): Promise<Record<string, string>> {
  const password = await labPassword(labDir, state);
  return password === undefined ? {} : { PGPASSWORD: password, PGPASSFILE: '/dev/null', PGSSLMODE: 'prefer' };
}

/** The lab's password when the lab has one (scram), else undefined; a scram lab without it is an error. */
export async function labPassword(labDir: string, state: LabAccess): Promise<string | undefined> {
  if (accessOf(state).auth !== 'scram') return undefined;
  const password = await readLabPassword(labDir, state.dbUser);
  if (password) return password;
  throw new LabError('STATE', `The lab's password file ${pgpassPath(labDir)} is missing or has no line for the lab's user: restore it, or rebuild the lab (\`lab destroy --yes\`)`);
}

/** True when the TLS files of the lab exist (made by ensureLabTls). */
export async function hasLabTls(labDir: string): Promise<boolean> {
  const { caCert, serverCert, serverKey } = tlsPaths(labDir);
  for (const file of [caCert, serverCert, serverKey]) {
    if (!(await stat(file).then((s) => s.isFile(), () => false))) return false;
  }
  return true;
}

/** The lab's TLS directory: readable by the servers' OS user (the CA certificate), keys 0600 root's. */
export async function makeTlsDir(labDir: string): Promise<string> {
  const { dir } = tlsPaths(labDir);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  return dir;
}

/** `lab destroy`: the pgpass file and the TLS files, by their names only (nothing else in the lab dir). */
export async function removeLabAccessFiles(labDir: string): Promise<void> {
  const { dir, caCert, caKey, serverCert, serverKey } = tlsPaths(labDir);
  for (const file of [pgpassPath(labDir), caCert, caKey, serverCert, serverKey]) await rm(file, { force: true });
  await rmdir(dir).catch(() => undefined); // only if empty
}
