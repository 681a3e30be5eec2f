// `lab env`: the libpq environment for this lab (PGHOST, PGPORT, PGUSER, PGPASSFILE, PGSSLROOTCERT,
// PGSSLMODE...), so psql, pgbench, psycopg or node-postgres log in without a password typed.
import { LabError } from '../common/errors.js';
import { accessEnv } from '../lab/access.js';
import type { GlobalOptions } from '../lab/context.js';
import { primaryOf, requireLabState } from '../lab/state.js';
import { nodeAddress } from '../network/address.js';

export interface EnvOptions {
  /** Point PGHOST/PGPORT at this balancer's client address instead of the primary. */
  balancer?: string;
}

/** host:port, [v6]:port or a bare port. */
function splitAddress(address: string): { host: string; port: string } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address);
  if (!match) return { host: '127.0.0.1', port: address };
  const host = match[1] ?? match[2] ?? '';
  return { host: host === '' || host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host, port: match[3]! };
}

export async function labEnv(global: GlobalOptions, options: EnvOptions = {}): Promise<Record<string, string>> {
  const state = await requireLabState(global);
  let target: { host: string; port: string };
  if (options.balancer) {
    const record = state.balancers.find((b) => b.name === options.balancer);
    if (!record) {
      const names = state.balancers.map((b) => b.name).join(', ') || 'none';
      throw new LabError('NOT_FOUND', `No balancer "${options.balancer}" in this lab (balancers: ${names}): start one with \`lab balancer start --name ${options.balancer}\``);
    }
    target = splitAddress(record.listen);
  } else {
    const primary = primaryOf(state);
    if (!primary) throw new LabError('STATE', 'This lab has no master: run `lab master start` first');
    target = { host: nodeAddress(primary), port: String(primary.port) };
  }
  return { PGHOST: target.host, PGPORT: target.port, ...accessEnv(global.labDir, state) };
}

/** `export NAME='value'` lines for a POSIX shell. */
export function shellExports(env: Record<string, string>): string {
  return Object.entries(env).map(([name, value]) => `export ${name}='${value.replace(/'/g, `'\\''`)}'`).join('\n');
}
