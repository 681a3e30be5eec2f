// What the in-process drivers (node-pg.ts, postgres-js.ts) share: their checks run one after the other in
// the test's own process, each bounded, and the version of the npm package that is the client.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { CheckResult, ClientOptions, ClientRun } from './matrix.js';

export type Check = (options: ClientOptions) => Promise<CheckResult>;

export interface DriverChecks {
  /** connects with that sslmode and says whether the session is on TLS */
  sslmode: (options: ClientOptions, mode: string) => Promise<CheckResult>;
  scram: Check;
  wrongPassword: Check;
  extended: Check;
  copy: Check;
  cancel: Check;
}

/** The matrix's driver checks by name, in the matrix's order, from one driver's functions. */
export function checkTable(d: DriverChecks): Record<string, Check> {
  return {
    require: (o) => d.sslmode(o, 'require'),
    'verify-full': (o) => d.sslmode(o, 'verify-full'),
    prefer: (o) => d.sslmode(o, 'prefer'),
    scram: d.scram,
    'wrong-password': d.wrongPassword,
    extended: d.extended,
    copy: d.copy,
    cancel: d.cancel,
  };
}

/** Each check bounded by `timeoutMs`; a failure or a timeout is that check's result, never a throw. */
export async function runChecks(client: string, version: string, table: Record<string, Check>, options: ClientOptions, checks: string[], timeoutMs: number): Promise<ClientRun> {
  const started = Date.now();
  const results: Record<string, CheckResult> = {};
  for (const name of checks) {
    const check = table[name];
    if (!check) {
      results[name] = { ok: false, detail: `unknown check for ${client}` };
      continue;
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<CheckResult>((resolve) => {
      timer = setTimeout(() => resolve({ ok: false, detail: `no result within ${timeoutMs} ms` }), timeoutMs);
    });
    results[name] = await Promise.race([check(options).catch((error: Error) => ({ ok: false, detail: `${error.name}: ${error.message}` })), timeout]);
    clearTimeout(timer);
  }
  return { client, version: `${version} (${((Date.now() - started) / 1000).toFixed(1)} s)`, checks: results };
}

/** The installed version of an npm package whose entry point is one directory below its package.json. */
export function packageVersion(name: string): string {
  try {
    const main = createRequire(import.meta.url).resolve(name);
    return JSON.parse(readFileSync(path.join(path.dirname(main), '..', 'package.json'), 'utf8')).version;
  } catch {
    return '?';
  }
}
