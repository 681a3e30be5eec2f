// The libpq environment pglab's own clients use (the password file, sslmode, CA), kept per lab and never
// written into process.env: a program that imports pglab keeps its own PG* variables, and two labs in
// one process each have theirs. A scope (AsyncLocalStorage) follows every call, timer and socket
// started inside it; outside any scope the process-wide setting applies (the CLI's, one lab per run).
import { AsyncLocalStorage } from 'node:async_hooks';

/** The variables a lab's environment replaces: they would name another lab's (or the user's) files. */
export const LIBPQ_ACCESS_VARS = ['PGPASSFILE', 'PGSSLROOTCERT', 'PGSSLMODE', 'PGPASSWORD', 'PGSSLCERT', 'PGSSLKEY'] as const;

interface Holder {
  env?: Record<string, string>;
}

const scopes = new AsyncLocalStorage<Holder>();
const processWide: Holder = {};

/** Runs `fn` in a scope of its own, starting with `env` (a lab's access environment) when given. */
export function withClientScope<T>(fn: () => T, env?: Record<string, string>): T {
  return scopes.run({ ...(env ? { env: { ...env } } : {}) }, fn);
}

/** Sets the lab environment of the current scope (the process-wide one outside any scope). */
export function useClientEnv(env: Record<string, string>): void {
  (scopes.getStore() ?? processWide).env = { ...env };
}

/** Drops the current scope's lab environment. */
export function forgetClientEnv(): void {
  delete (scopes.getStore() ?? processWide).env;
}

/** The lab variables in effect here (empty outside a lab). */
export function labClientVars(): Record<string, string> {
  return { ...((scopes.getStore() ?? processWide).env ?? {}) };
}

/**
 * The environment libpq would see for a client opened here: the process's, with a lab's access
 * variables in place of the caller's own. The caller's own pgpass file is kept as a second place to
 * look (PGLAB_USER_PGPASSFILE): it still serves servers that are not the lab's (a --config pool).
 */
export function clientEnv(): NodeJS.ProcessEnv {
  const lab = (scopes.getStore() ?? processWide).env;
  if (!lab) return process.env;
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (process.env.PGPASSFILE && process.env.PGPASSFILE !== lab.PGPASSFILE && !env.PGLAB_USER_PGPASSFILE) env.PGLAB_USER_PGPASSFILE = process.env.PGPASSFILE;
  for (const name of LIBPQ_ACCESS_VARS) delete env[name];
  return Object.assign(env, lab);
}
