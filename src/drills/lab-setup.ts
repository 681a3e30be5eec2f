// The lab a demo builds for itself: its own temporary lab dir and free ports, so it runs on a machine
// where 5432 is taken and never touches the user's lab; removed afterwards unless --keep.
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { masterStart } from '../commands/master.js';
import { replicaAdd } from '../commands/replica.js';
import { destroyLab } from '../commands/destroy.js';
import { findFreePorts } from '../common/ports.js';
import type { Reporter } from '../common/reporter.js';
import type { GlobalOptions } from '../lab/context.js';
import { readState } from '../lab/state.js';
import { queryRows, withClient } from '../postgres/client.js';
import { pollUntil } from '../common/poll.js';
import { benchInit } from '../commands/bench.js';
import { fetchBalancerStats, type StartedBalancer } from '../commands/balancer.js';
import type { DemoAccess } from './defaults.js';
import { LOOPBACK, nodeAddress } from '../network/address.js';

export interface DemoLab {
  global: GlobalOptions;
  root: string;
  masterPort: number;
  /** Where master1 is reached: 127.0.0.1, or its namespace's address in a lab made with --hosts. */
  masterHost: string;
  replicas: { name: string; datadir: string; port: number; host: string }[];
  /** Remove everything the demo created (stops nodes and balancers). */
  dispose(): Promise<void>;
}

/** A temporary lab dir for a demo (traversable by the postgres OS user when we run as root). */
export async function demoLabDir(base: Pick<GlobalOptions, 'pg' | 'osUser' | 'runtime'>, labDir?: string): Promise<{ global: GlobalOptions; root: string; owned: boolean }> {
  if (labDir) return { global: { ...base, labDir: path.resolve(labDir) }, root: path.resolve(labDir), owned: false };
  const root = await mkdtemp(path.join(tmpdir(), 'pglab-demo-'));
  await chmod(root, 0o755);
  return { global: { ...base, labDir: path.join(root, 'lab') }, root, owned: true };
}

export async function buildDemoLab(
  base: Pick<GlobalOptions, 'pg' | 'osUser' | 'runtime'>,
  options: { replicas: number; labDir?: string; reporter: Reporter; say: (text: string) => void; sync?: boolean; access?: DemoAccess; hosts?: boolean },
): Promise<DemoLab> {
  const { global, root, owned } = await demoLabDir(base, options.labDir);
  const dispose = async () => {
    if (await readState(global.labDir)) await destroyLab(global, { yes: true });
    if (owned) await rm(root, { recursive: true, force: true });
  };
  try {
    const [masterPort, ...replicaPorts] = await findFreePorts(options.replicas + 1);
    options.say(`step 1: master1 on port ${masterPort} (lab dir ${global.labDir}${global.runtime === 'docker' ? ', nodes in containers' : ''}${options.hosts ? ', every node on a host of its own' : ''})`);
    const master = await masterStart(global, { port: masterPort!, reporter: options.reporter, ...options.access, hosts: options.hosts });
    const replicas = replicaPorts.map((port, i) => ({ name: `replica${i + 1}`, datadir: path.join(global.labDir, `replica${i + 1}`), port, host: LOOPBACK }));
    options.say(`step 2: ${replicas.length} ${options.sync ? 'synchronous (ANY 1)' : 'asynchronous'} streaming replicas`);
    for (const replica of replicas) {
      await replicaAdd(global, replica.name, replica.datadir, replica.port, { reporter: options.reporter, sync: options.sync });
    }
    const state = await readState(global.labDir);
    for (const replica of replicas) replica.host = nodeAddress(state?.nodes.find((n) => n.name === replica.name) ?? {});
    return { global, root, masterPort: masterPort!, masterHost: master.address, replicas, dispose };
  } catch (error) {
    await dispose().catch(() => undefined);
    throw error;
  }
}

/** CREATE DATABASE for the demo's load, so pg_stat_database counts only the load's transactions. */
export async function createDatabase(port: number, name: string, host?: string): Promise<void> {
  await withClient({ port, host }, (client) => client.query(`CREATE DATABASE ${name}`));
}

/** Wait until every standby has replayed what the master has written (e.g. pgbench -i's tables). */
export async function waitReplicasCaughtUp(masterPort: number, replicaCount: number, timeoutMs = 60_000, host?: string): Promise<void> {
  await pollUntil(
    async () => {
      const rows = await queryRows<{ n: string }>(
        { port: masterPort, host },
        'SELECT count(*) AS n FROM pg_stat_replication WHERE replay_lsn >= pg_current_wal_lsn()',
      );
      return Number(rows[0]?.n) >= replicaCount ? true : undefined;
    },
    { timeoutMs, intervalMs: 100, what: `${replicaCount} replicas to replay the master's WAL` },
  );
}

/** The database the demos load, so pg_stat_database counts only the load (and the demo's samples). */
export const DEMO_DATABASE = 'pglab_demo';

/** pgbench -i into the demo database on the master, then wait until every replica has it. */
export async function prepareBenchData(lab: DemoLab, scale: number, reporter: Reporter, signal: AbortSignal): Promise<void> {
  await createDatabase(lab.masterPort, DEMO_DATABASE);
  await benchInit(lab.global, { scale, database: DEMO_DATABASE, reporter, signal });
  await waitReplicasCaughtUp(lab.masterPort, lab.replicas.length);
}

/**
 * Until `balancer`'s stats show at least `count` servers UP (a fetch that fails is retried like a no).
 * `checked`: UP after a completed check, not as started (check status INI): HAProxy starts its servers
 * UP, first checks them up to one `inter` later, and marks a server DOWN at the first failure of that
 * first check instead of after `fall` failures.
 */
export async function waitBalancerUp(balancer: StartedBalancer, count: number, signal: AbortSignal, timeoutMs: number, options: { checked?: boolean } = {}): Promise<void> {
  await pollUntil(async () => {
    const stats = await fetchBalancerStats(balancer, 1000);
    return stats.servers.filter((s) => s.status === 'UP' && !(options.checked && s.checkStatus === 'INI')).length >= count ? true : undefined;
  }, { timeoutMs, intervalMs: 50, what: `balancer ${balancer.name} to see ${count} server(s) UP${options.checked ? ' after a check' : ''}`, signal });
}
