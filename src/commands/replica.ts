// `lab replica add NAME DATADIR PORT`: CHECKPOINT, pg_basebackup with progress, the standby
// configuration for the server's version, start, and return once the master shows NAME streaming.
// Re-adding a crashed replica is the same command (demo step 8).
import { LabError } from '../common/errors.js';
import { assertPortFree, parsePort } from '../common/ports.js';
import { silentReporter, type Reporter } from '../common/reporter.js';
import { openLab, type GlobalOptions } from '../lab/context.js';
import { checkDatadirPath, inspectDatadir, prepareDatadir } from '../lab/datadir.js';
import { checkName } from '../lab/names.js';
import { primaryOf, updateState } from '../lab/state.js';
import { checkNodeFits } from '../lab/topology.js';
import { withClient } from '../postgres/client.js';
import { runtimeFor } from '../runtime/node-runtime.js';
import { applySyncStandbys } from '../postgres/sync-standbys.js';
import { waitStreaming } from './follow.js';

export interface ReplicaAddOptions {
  reporter?: Reporter;
  /** Bound on the wait until the master shows the replica streaming. */
  timeoutMs?: number;
  /** A synchronous standby: listed in the primary's synchronous_standby_names, COMMIT waits for it. */
  sync?: boolean;
}

export interface ReplicaAddResult {
  name: string;
  port: number;
  datadir: string;
  pid: number;
  upstream: string;
  /** True when this rebuilt a replica the lab already had. */
  rebuilt: boolean;
  backupKb?: number;
  /** pg_stat_replication.sync_state on the primary: async, or quorum/sync with --sync. */
  syncState: string;
  /** The primary's synchronous_standby_names after this command (--sync). */
  synchronousStandbyNames?: string;
  elapsedMs: number;
}

export async function replicaAdd(global: GlobalOptions, nameArg: string, datadirArg: string, portArg: string | number, options: ReplicaAddOptions = {}): Promise<ReplicaAddResult> {
  const started = Date.now();
  const reporter = options.reporter ?? silentReporter;
  const name = checkName(nameArg);
  const datadir = checkDatadirPath(datadirArg);
  const port = parsePort(portArg);
  const timeoutMs = options.timeoutMs ?? 60_000;
  const context = await openLab(global);
  const { state } = context;
  const nodes = runtimeFor(context);

  const primary = primaryOf(state);
  if (!primary) throw new LabError('STATE', 'This lab has no master: run `lab master start` first');
  const primaryStatus = await nodes.status(primary, primary.expected);
  if (primaryStatus.status !== 'running') {
    throw new LabError('STATE', `Master "${primary.name}" is ${primaryStatus.status}: start it first (\`lab node start ${primary.name}\`)`);
  }
  const existing = checkNodeFits(state, context.labDir, { name, port, datadir, role: 'replica' });
  const condition = await inspectDatadir(datadir, state.labId);
  if (condition === 'foreign' || condition === 'not-a-directory' || (condition === 'ours' && !existing)) {
    // A dir of this lab that belongs to no replica of that name is someone else's too: refuse.
    if (condition === 'ours') throw new LabError('UNSAFE', `Data dir ${datadir} holds another node of this lab; nothing was deleted: choose another path`);
    await prepareDatadir(datadir, state.labId); // throws the clear "not created by this lab" error
  }

  await nodes.checkCanClone();

  // The seed killed whatever ran on PGDATA; we only stop our own node.
  const node = { name, port, datadir };
  if (existing) {
    reporter.step(`stopping ${name} before rebuilding it`);
    await nodes.stop(node, 'immediate');
  }
  await assertPortFree(port, `replica "${name}"`);

  await updateState(context.labDir, (s) => {
    const again = checkNodeFits(s, context.labDir, { name, port, datadir, role: 'replica' });
    if (again) {
      again.phase = 'building';
      again.upstream = primary.name;
    } else {
      s.nodes.push({
        name, role: 'replica', port, datadir, upstream: primary.name, datadirCreated: condition === 'missing',
        phase: 'building', expected: 'stopped', createdAt: new Date().toISOString(),
      });
    }
  });

  await prepareDatadir(datadir, state.labId);
  const conn = { port: primary.port, user: state.dbUser };
  reporter.step(`CHECKPOINT on ${primary.name}`);
  await withClient(conn, (client) => client.query('CHECKPOINT'));

  reporter.step(`pg_basebackup from ${primary.name} (port ${primary.port}) into ${datadir}`);
  const { backupKb } = await nodes.cloneReplica(node, primary.port, reporter);

  reporter.step(`starting ${name} on port ${port}`);
  const pid = await nodes.start(node, timeoutMs);
  await updateState(context.labDir, (s) => {
    const node = s.nodes.find((n) => n.name === name)!;
    node.phase = 'ready';
    node.expected = 'running';
    delete node.rewindNeeded; // a rebuilt former primary is a fresh copy
  });

  reporter.step(`waiting until ${primary.name} shows ${name} streaming`);
  let syncState = await waitStreaming(context, primary, name, timeoutMs);
  let synchronousStandbyNames: string | undefined;
  const wasSync = Boolean(existing?.sync);
  if (options.sync || wasSync) {
    const after = await updateState(context.labDir, (s) => {
      s.nodes.find((n) => n.name === name)!.sync = true;
    });
    const names = after.nodes.filter((n) => n.sync && n.role === 'replica' && !n.rewindNeeded).map((n) => n.name);
    reporter.step(`synchronous_standby_names on ${primary.name}`);
    synchronousStandbyNames = await applySyncStandbys(conn, names);
    syncState = await waitStreaming(context, primary, name, timeoutMs, true);
  }
  return { name, port, datadir, pid, upstream: primary.name, rebuilt: Boolean(existing), backupKb, syncState, synchronousStandbyNames, elapsedMs: Date.now() - started };
}
