// The lab a demo builds for itself: its own temporary lab dir and free ports, so it runs on a machine
// where 5432 is taken and never touches the user's lab; removed afterwards unless --keep.
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Lab } from '../api/lab.js';
import type { BalancerProcess } from '../api/balancer-process.js';
import type { LabEvent } from '../api/options.js';
import { findFreePorts } from '../common/ports.js';
import type { Reporter } from '../common/reporter.js';
import type { GlobalOptions } from '../lab/global-options.js';
import { queryRows, withClient } from '../postgres/client.js';
import { pollUntil } from '../common/poll.js';
import type { DemoAccess } from './defaults.js';

export interface DemoLab {
  /** The lab, as the library gives it: nodes, faults, balancers, samples. */
  lab: Lab;
  labDir: string;
  root: string;
  masterPort: number;
  /** Where master1 is reached: 127.0.0.1, or its namespace's address in a lab made with --hosts. */
  masterHost: string;
  replicas: { name: string; datadir: string; port: number; host: string }[];
  /** Remove everything the demo created (stops nodes and balancers). */
  dispose(): Promise<void>;
}

/** What the CLI gives a drill: the PostgreSQL, OS user and runtime of its lab. */
export type DemoBase = Pick<GlobalOptions, 'pg' | 'osUser' | 'runtime' | 'initdbTemplate'>;

/** A temporary lab dir for a demo (traversable by the postgres OS user when we run as root). */
export async function demoLabDir(labDir?: string): Promise<{ labDir: string; root: string; owned: boolean }> {
  if (labDir) return { labDir: path.resolve(labDir), root: path.resolve(labDir), owned: false };
  const root = await mkdtemp(path.join(tmpdir(), 'pglab-demo-'));
  await chmod(root, 0o755);
  return { labDir: path.join(root, 'lab'), root, owned: true };
}

/** The library's events shown as the CLI shows a command's steps and progress. */
export function eventsTo(reporter: Reporter): (event: LabEvent) => void {
  return (event) => {
    if (event.type === 'step') reporter.step(event.message);
    else if (event.type === 'progress') reporter.progress(event.fraction, event.message);
    else reporter.detail(event.message);
  };
}

/** The lab of a drill: master1 and `replicas` streaming replicas, built with the library (Lab). */
export async function buildDemoLab(
  base: DemoBase,
  options: { replicas: number; labDir?: string; reporter: Reporter; say: (text: string) => void; sync?: boolean; access?: DemoAccess; hosts?: boolean },
): Promise<DemoLab> {
  const { labDir, root, owned } = await demoLabDir(options.labDir);
  let lab: Lab | undefined;
  const dispose = async () => {
    // A start that failed before it gave a Lab may still have recorded one (its master half made).
    const made = lab ?? (await Lab.open(labDir).catch(() => undefined));
    await made?.destroy();
    if (owned) await rm(root, { recursive: true, force: true });
  };
  try {
    const [masterPort, ...replicaPorts] = await findFreePorts(options.replicas + 1);
    options.say(`step 1: master1 on port ${masterPort} (lab dir ${labDir}${base.runtime === 'docker' ? ', nodes in containers' : ''}${options.hosts ? ', every node on a host of its own' : ''})`);
    lab = await Lab.start({
      dir: labDir, port: masterPort, replicas: 0, onEvent: eventsTo(options.reporter),
      ...(base.pg !== undefined ? { pg: base.pg } : {}), ...(base.osUser ? { osUser: base.osUser } : {}), ...(base.runtime ? { runtime: base.runtime } : {}),
      ...(base.initdbTemplate !== undefined ? { initdbTemplate: base.initdbTemplate } : {}),
      ...(options.access?.auth ? { auth: options.access.auth } : {}), ...(options.access?.tls ? { tls: options.access.tls } : {}), ...(options.hosts ? { hosts: true } : {}),
    });
    const replicas = replicaPorts.map((port, i) => ({ name: `replica${i + 1}`, datadir: path.join(labDir, `replica${i + 1}`), port, host: '' }));
    options.say(`step 2: ${replicas.length} ${options.sync ? 'synchronous (ANY 1)' : 'asynchronous'} streaming replicas`);
    for (const replica of replicas) {
      replica.host = (await lab.addReplica({ name: replica.name, datadir: replica.datadir, port: replica.port, ...(options.sync ? { sync: true } : {}) })).host;
    }
    return { lab, labDir, root, masterPort: masterPort!, masterHost: lab.primary.host, replicas, dispose };
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
export async function prepareBenchData(lab: DemoLab, scale: number, signal: AbortSignal): Promise<void> {
  await createDatabase(lab.masterPort, DEMO_DATABASE);
  await lab.lab.initBench({ scale, database: DEMO_DATABASE, signal });
  await waitReplicasCaughtUp(lab.masterPort, lab.replicas.length);
}

/**
 * Until `balancer` shows at least `count` servers UP (a stats read that fails is retried like a no).
 * `checked`: UP after a completed check, not as started (check status INI): HAProxy starts its servers
 * UP, first checks them up to one `inter` later, and marks a server DOWN at the first failure of that
 * first check instead of after `fall` failures.
 */
export async function waitBalancerUp(balancer: BalancerProcess, count: number, signal: AbortSignal, timeoutMs: number, options: { checked?: boolean } = {}): Promise<void> {
  await balancer.waitUp(count, { timeoutMs, signal, ...(options.checked ? { checked: true } : {}) });
}
