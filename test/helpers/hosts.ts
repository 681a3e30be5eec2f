// Test helpers for labs made with --hosts (nodes in network namespaces): what of a lab's network is left on
// this machine, pglab's delay relays, the balancer's view of a server timed, and round trips to a node.
import { setTimeout as delay } from 'node:timers/promises';
import { execa } from 'execa';
import pg from 'pg';
import { labClientConfig, queryRows, type ConnectOptions } from '../../src/postgres/client.js';
import { pollUntil } from '../../src/common/poll.js';

export const isRoot = process.geteuid?.() === 0;

/** What of lab index N is on this machine: namespaces, links, host iptables lines. */
export async function leftovers(index: number): Promise<string[]> {
  const netns = (await execa('ip', ['netns', 'list'])).stdout.split('\n').filter((l) => l.startsWith(`pglab-${index}-`));
  const links = (await execa('ip', ['-o', 'link', 'show'])).stdout.split('\n').filter((l) => new RegExp(`^\\d+: pgl${index}[-:@]`).test(l));
  const rules = (await execa('iptables-save')).stdout.split('\n').filter((l) => /PGL-|pgl\d/.test(l));
  return [...netns, ...links, ...rules];
}

/** pglab delay relays running on this machine for lab index N (their last argument: a namespace pglab-N-*; other labs may run theirs meanwhile). */
export async function relayProcesses(index: number): Promise<string[]> {
  const { stdout } = await execa('ps', ['-eo', 'pid,args'], { reject: false });
  return stdout.split('\n').filter((line) => line.includes('delay-relay.js') && new RegExp(` pglab-${index}-\\S+$`).test(line));
}

async function serverStatus(statsPort: number, name: string): Promise<string | undefined> {
  const response = await fetch(`http://127.0.0.1:${statsPort}/?format=json`);
  const stats = (await response.json()) as { servers: { name: string; status: string }[] };
  return stats.servers.find((s) => s.name === name)?.status;
}

/** ms from now until the balancer shows `name` in `status` (polled every 20 ms), bounded. */
export async function msUntil(statsPort: number, name: string, status: string, timeoutMs = 10_000): Promise<number> {
  const started = Date.now();
  await pollUntil(async () => ((await serverStatus(statsPort, name)) === status ? true : undefined), { timeoutMs, intervalMs: 20, what: `${name} ${status} at the balancer` });
  return Date.now() - started;
}

/** The median of 5 `SELECT 1` round trips, in ms, on one session to the node at host:port. */
export async function roundTripMs(host: string, port: number): Promise<number> {
  const client = new pg.Client(labClientConfig({ host, port, user: 'postgres', database: 'postgres', ssl: false, connectionTimeoutMillis: 5000 }));
  await client.connect();
  try {
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      await client.query('SELECT 1');
      times.push(performance.now() - t);
    }
    return times.sort((a, b) => a - b)[2]!;
  } finally {
    await client.end();
  }
}

/** Writes on the primary until it shows the standby's write_lag at `atLeastS` seconds or more; that write_lag. */
export async function waitWriteLag(primary: ConnectOptions, standby: string, atLeastS: number, timeoutMs = 20_000): Promise<number> {
  await queryRows(primary, 'CREATE TABLE IF NOT EXISTS pglab_lag_probe (x int)');
  return pollUntil(async () => {
    await queryRows(primary, 'INSERT INTO pglab_lag_probe VALUES (0)');
    await delay(300);
    const rows = await queryRows<{ lag: number | null }>(primary, `SELECT extract(epoch FROM write_lag)::float8 AS lag FROM pg_stat_replication WHERE application_name = $1`, [standby]);
    const writeLag = rows[0]?.lag ?? 0;
    return writeLag >= atLeastS ? writeLag : undefined;
  }, { timeoutMs, intervalMs: 0, what: `the primary to show ${standby}'s write_lag of ${atLeastS} s or more` });
}
