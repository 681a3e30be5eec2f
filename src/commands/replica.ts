// `lab replica add NAME DATADIR PORT`: CHECKPOINT, pg_basebackup with progress, the standby
// configuration for the server's version, start, and return once the master shows NAME streaming.
// Re-adding a crashed replica is the same command (demo step 8). What can be checked before the copy is;
// a failure after the add began undoes what it made (replica-undo.ts).
import { userInfo } from 'node:os';
import { checkShellSafePath, checkShellSafeProgram } from '../common/shell-safe-path.js';
import { rm } from 'node:fs/promises';
import { refuseSubscriber } from '../lab/subscriber.js';
import { LabError } from '../common/errors.js';
import { parsePort } from '../common/ports.js';
import { silentReporter, type Reporter } from '../common/reporter.js';
import { nodeLogFile, openLab, type GlobalOptions } from '../lab/context.js';
import { checkDatadirPath, checkDatadirPlace, inspectDatadir, prepareDatadir, removeDatadir, writeMarker, type DatadirCondition } from '../lab/datadir.js';
import { checkName } from '../lab/names.js';
import { findNode, primaryOf, readState, refuseWhileBuilding, runtimeOf, thisBuilder, updateState, type NodeRecord } from '../lab/state.js';
import { checkNodeFits, upstreamFor } from '../lab/topology.js';
import { dropSlot, ensureSlot, parseBaseBackupMethod, slotName, type BaseBackupMethod } from '../postgres/base-backup.js';
import { withClient } from '../postgres/client.js';
import { runtimeFor } from '../runtime/runtime-for.js';
import { applySyncStandbys } from '../postgres/sync-standbys.js';
import { dropOldSlot, waitStreaming } from './follow.js';
import { releaseFaults } from '../lab/faults.js';
import { nodeAddress, type NodeHost } from '../network/address.js';
import { newNodeHost } from '../network/address.js';
import { removeNodeHost } from '../network/namespaces.js';
import { assertAnswers, boundedConn, onNode } from '../lab/node-answers.js';
import { assertServerPort, type ServerPlace } from '../network/server-port.js';
import { undoAdd, type AddMade } from './replica-undo.js';
import { checkApplyDelayMs } from '../lab/apply-delay.js';

export interface ReplicaAddOptions {
  reporter?: Reporter;
  /** Bound on the wait until the master shows the replica streaming. */
  timeoutMs?: number;
  /** A synchronous standby: listed in the primary's synchronous_standby_names, COMMIT waits for it. */
  sync?: boolean;
  /**
   * The node it is copied from and streams from: a replica makes it a cascading standby. Default: the
   * node a re-added replica streamed from (if still in the lab), else the primary.
   */
  upstream?: string;
  /**
   * A delayed standby: recovery_min_apply_delay in ms (1 ms to 24 h). Default: a re-added replica keeps
   * the delay it had; a new one has none. Not with sync (see replicaAdd).
   */
  applyDelayMs?: number;
  /** pglab's own base backup, pg_basebackup, or auto (default; env LAB_BASE_BACKUP): src/postgres/base-backup.ts. */
  baseBackup?: BaseBackupMethod | string;
  /** Ctrl-C: the add stops where it is and is undone as a failed one is (replica-undo.ts). */
  signal?: AbortSignal;
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
  /** How the base backup was taken: pglab's own copy or pg_basebackup. */
  baseBackup: 'pglab' | 'pg_basebackup';
  /** The physical replication slot on the primary the replica streams through. */
  slot: string;
  /** A delayed standby's recovery_min_apply_delay in ms (absent: it applies WAL as it comes). */
  applyDelayMs?: number;
  /** pg_stat_replication.sync_state on the primary: async, or quorum/sync with --sync. */
  syncState: string;
  /** The primary's synchronous_standby_names after this command (--sync). */
  synchronousStandbyNames?: string;
  elapsedMs: number;
}

export async function replicaAdd(global: GlobalOptions, nameArg: string, datadirArg: string, portArg: string | number, options: ReplicaAddOptions = {}): Promise<ReplicaAddResult> {
  const started = Date.now();
  const reporter = options.reporter ?? silentReporter;
  const { signal } = options;
  const name = checkName(nameArg);
  // Before anything is made: the data dir and the lab dir (the replica's log is in it) reach pg_ctl's /bin/sh.
  const datadir = checkShellSafePath(checkDatadirPath(datadirArg), 'data dir');
  checkShellSafePath(global.labDir, 'lab dir');
  const port = parsePort(portArg);
  const wantedDelay = options.applyDelayMs === undefined ? undefined : checkApplyDelayMs(options.applyDelayMs, 'apply delay');
  const timeoutMs = options.timeoutMs ?? 60_000;
  const context = await openLab(global);
  const { state } = context;
  if (runtimeOf(state) === 'process') await checkShellSafeProgram(context.installation.tools.pg_ctl);
  const nodes = runtimeFor(context);

  const primary = primaryOf(state);
  if (!primary) throw new LabError('STATE', 'This lab has no master: run `lab master start` first');
  const spec = { name, port, datadir, role: 'replica' as const };
  const known = checkNodeFits(state, context.labDir, spec);
  const upstream = upstreamFor(state, name, options.upstream, known, primary);
  if ((options.sync || known?.sync) && upstream !== primary) {
    const why = options.sync ? 'drop the sync option or the upstream' : `it is one now: re-add it without an upstream, or remove it first`;
    throw new LabError('USAGE', `A synchronous standby streams from the primary: "${name}" with upstream "${upstream.name}" (a cascade) cannot be one; ${why}`);
  }
  const applyDelayMs = wantedDelay ?? known?.applyDelayMs;
  if (applyDelayMs !== undefined && (options.sync || known?.sync)) {
    // With synchronous_commit = remote_apply (any session may set it) a COMMIT waits until the standby
    // applied it: the whole delay, every commit. With on (flush) it would not wait, but a standby that
    // stays behind on purpose is not the one whose ack says "safe": keep the two apart.
    const what = options.sync ? `--sync with --apply-delay` : `"${name}" is a synchronous standby: an apply delay on it`;
    throw new LabError('USAGE', `${what} is refused: under synchronous_commit = remote_apply every COMMIT would wait out the delay; make the delayed standby asynchronous (remove it and add it again without --sync) or drop the delay`);
  }
  const upstreamStatus = await nodes.status(upstream, upstream.expected);
  if (upstreamStatus.status !== 'running') {
    const what = upstream === primary ? 'Master' : 'Upstream';
    throw new LabError('STATE', `${what} "${upstream.name}" is ${upstreamStatus.status}: start it first (\`lab node start ${upstream.name}\`)`);
  }
  const conn = { host: nodeAddress(upstream), port: upstream.port, user: state.dbUser };
  if (known) refuseWhileBuilding(known);
  // What can be checked before anything is made is checked here, each refusal one line: the data dir and
  // its place, the port where the server will listen (its own node may still hold it on a rebuild: checked
  // again after the stop), and that the master answers at all (a paused one accepts connections, answers nothing).
  const owner = await nodes.dataOwner();
  const place = (host: NodeHost | undefined): ServerPlace => ({ runtime: runtimeOf(state), host, user: owner ? `the OS user ${owner.name}` : `user ${userInfo().username}` });
  let method: BaseBackupMethod;
  try {
    await refuseDatadir(datadir, state.labId, Boolean(known));
    await checkDatadirPlace(datadir, owner);
    method = await nodes.checkCanClone(parseBaseBackupMethod(options.baseBackup) ?? parseBaseBackupMethod(process.env.LAB_BASE_BACKUP, 'LAB_BASE_BACKUP') ?? 'auto');
    await assertServerPort(port, `replica "${name}"`, place(known?.host ?? (state.hosts ? newNodeHost(state, name) : undefined)), { free: !known });
    await assertAnswers(state, upstream);
  } catch (error) {
    // These checks read the state of when this command began: a second command adding the same name may
    // have made its data dir or started its server since. That is a conflict, not the check's own answer.
    if (!known) await refuseAddedMeanwhile(context.labDir, name);
    throw error;
  }
  const slot = slotName(name);

  // The claim: under the lock, the node is marked building by this process (pid and start time). A second
  // command on it is refused (exit 3) until this one ends; a claim of a process that is gone is taken over.
  let existing: NodeRecord | undefined;
  let condition: DatadirCondition = 'missing';
  const recorded = await updateState(context.labDir, async (s) => {
    const again = checkNodeFits(s, context.labDir, spec);
    if (again) refuseWhileBuilding(again);
    existing = again && { ...again };
    condition = await refuseDatadir(datadir, s.labId, Boolean(again));
    if (again) {
      again.phase = 'building';
      again.upstream = upstream.name;
      again.builder = thisBuilder();
    } else {
      s.nodes.push({
        name, role: 'replica', port, datadir, upstream: upstream.name, datadirCreated: condition === 'missing',
        phase: 'building', expected: 'stopped', createdAt: new Date().toISOString(), builder: thisBuilder(),
        // Its host's names are recorded before the namespace is made (the runtime makes it on start).
        ...(s.hosts ? { host: newNodeHost(s, name) } : {}),
      });
    }
  });

  const node = { name, port, datadir, host: recorded.nodes.find((n) => n.name === name)!.host, applyDelayMs };
  const made: AddMade = {};
  let pid: number;
  let backupKb: number | undefined;
  let syncState: string;
  let synchronousStandbyNames: string | undefined;
  const wasSync = Boolean(existing?.sync);
  try {
    // The seed killed whatever ran on PGDATA; we only stop our own node.
    if (existing) {
      reporter.step(`stopping ${name} before rebuilding it`);
      await releaseFaults(context.labDir, state, existing, nodes);
      await nodes.stop(node, 'immediate');
      await dropOldSlot(context, existing, upstream.name);
      await assertServerPort(port, `replica "${name}"`, place(node.host), { free: true });
    }
    signal?.throwIfAborted();
    made.datadir = await prepareDatadir(datadir, state.labId);
    // pglab's copy fills a dir that already carries the node's marker, so a copy cut short (a full disk, a
    // kill -9) is still recognised as the lab's; pg_basebackup wants an empty dir (the marker comes after it).
    if (method === 'pglab') await writeMarker(datadir, { labId: state.labId, node: name }, owner);
    // On a standby upstream (a cascade) CHECKPOINT makes a restartpoint, where its backup starts.
    reporter.step(`CHECKPOINT on ${upstream.name}`);
    await onNode(state, upstream, () => withClient(conn, (client) => client.query('CHECKPOINT')));
    signal?.throwIfAborted();

    // Every replica streams through its own slot: reserved now, it keeps the WAL from before the backup's
    // start until the replica has it (a rebuild gets a fresh one: the old one may hold WAL from long ago).
    reporter.step(`replication slot ${slot} on ${upstream.name}`);
    made.slot = true; // before: a call cut short may have made it
    await onNode(state, upstream, () => ensureSlot(boundedConn(state, upstream), slot, { fresh: true }));
    reporter.step(
      method === 'pglab'
        ? `pglab base backup (pg_backup_start, file copy, pg_backup_stop) from ${upstream.name} (port ${upstream.port}) into ${datadir}`
        : `pg_basebackup from ${upstream.name} (port ${upstream.port}) into ${datadir}`,
    );
    ({ backupKb } = await nodes.cloneReplica(node, { host: nodeAddress(upstream), port: upstream.port, datadir: upstream.datadir, slot, method }, reporter, signal));
    signal?.throwIfAborted();

    reporter.step(`starting ${name} on port ${port}`);
    made.server = true;
    pid = await nodes.start(node, timeoutMs, signal);
    reporter.step(`waiting until ${upstream.name} shows ${name} streaming`);
    syncState = await waitStreaming(context, upstream, name, timeoutMs, false, undefined, signal);
    if (options.sync || wasSync) {
      made.sync = !wasSync;
      const after = await updateState(context.labDir, (s) => {
        s.nodes.find((n) => n.name === name)!.sync = true;
      });
      const names = after.nodes.filter((n) => n.sync && n.role === 'replica' && !n.rewindNeeded).map((n) => n.name);
      reporter.step(`synchronous_standby_names on ${primary.name}`);
      synchronousStandbyNames = await onNode(state, primary, () => applySyncStandbys(boundedConn(state, primary), names));
      syncState = await waitStreaming(context, primary, name, timeoutMs, true, undefined, signal);
    }
    // Ready only now: until the master shows it streaming it is `building` (HAProxy's pool and node commands leave it out).
    await updateState(context.labDir, (s) => {
      const node = s.nodes.find((n) => n.name === name)!;
      node.phase = 'ready';
      node.expected = 'running';
      delete node.rewindNeeded; // a rebuilt former primary is a fresh copy
      delete node.builder;
      // Recorded once built with it: follow, rewind and a later re-add write it again.
      if (applyDelayMs === undefined) delete node.applyDelayMs;
      else node.applyDelayMs = applyDelayMs;
    });
  } catch (error) {
    throw await undoAdd({ context, nodes, primary, upstream, node, slot, existing, made, reporter }, signal?.aborted ? signal.reason : error);
  }
  return { name, port, datadir, pid, upstream: upstream.name, rebuilt: Boolean(existing), backupKb, baseBackup: method, slot, ...(applyDelayMs !== undefined ? { applyDelayMs } : {}), syncState, synchronousStandbyNames, elapsedMs: Date.now() - started };
}

/**
 * The node a replica is copied from and streams from: `wanted` (a cascade when it is a replica), else
 * the one a re-added replica streamed from while it is still in the lab, else the primary. Itself, a
 * node that streams (through others) from it, or a node not built or needing a rewind is refused.
 */
/** A node `name` that another command recorded after this one read the state: refused (exit 3). */
async function refuseAddedMeanwhile(labDir: string, name: string): Promise<void> {
  const fresh = await readState(labDir).catch(() => undefined);
  const added = fresh && findNode(fresh, name);
  if (!added) return;
  refuseWhileBuilding(added);
  throw new LabError('CONFLICT', `Node "${name}" was added by another command while this one was checking: run this one again to rebuild it, or choose another name`);
}

/**
 * What is at `datadir` for replica `known` or a new one (`exists`): a dir with someone else's content,
 * something else than a directory, or a dir of this lab belonging to no replica of that name is refused.
 */
async function refuseDatadir(datadir: string, labId: string, exists: boolean): Promise<DatadirCondition> {
  const condition = await inspectDatadir(datadir, labId);
  if (condition === 'ours' && !exists) throw new LabError('UNSAFE', `Data dir ${datadir} holds another node of this lab; nothing was deleted: choose another path`);
  if (condition === 'foreign' || condition === 'not-a-directory') await prepareDatadir(datadir, labId); // throws the clear "not created by this lab" error
  return condition;
}

export interface ReplicaRemoveResult {
  name: string;
  datadir: string;
  /** What happened to the data dir: removed (the lab made it), emptied (it was yours), or kept (no marker of this lab). */
  datadirOutcome: 'removed' | 'emptied' | 'kept';
  /** The slot dropped from the upstream, or why it was not. */
  slot: string;
  slotDropped: boolean;
}

/**
 * `lab replica remove NAME`: stop the replica, drop its replication slot from its upstream (else the
 * primary keeps WAL for it until max_slot_wal_keep_size), remove its data dir (only with this lab's
 * marker) and log, and forget it; a synchronous standby leaves synchronous_standby_names.
 */
export async function replicaRemove(global: GlobalOptions, nameArg: string): Promise<ReplicaRemoveResult> {
  const context = await openLab(global);
  const { state } = context;
  const nodes = runtimeFor(context);
  const name = checkName(nameArg);
  const node = state.nodes.find((n) => n.name === name);
  if (!node) throw new LabError('NOT_FOUND', `No node "${name}" in this lab`);
  if (node.role === 'primary') throw new LabError('STATE', `Node "${name}" is the lab's primary: promote another node first, or \`lab destroy --yes\` the whole lab`);
  refuseSubscriber(node, 'removed as a replica');
  const cascades = state.nodes.filter((n) => n.upstream === name).map((n) => n.name);
  if (cascades.length > 0) {
    throw new LabError('STATE', `${cascades.join(', ')} ${cascades.length === 1 ? 'streams' : 'stream'} from "${name}": remove ${cascades.length === 1 ? 'it' : 'them'} first, or re-add ${cascades.length === 1 ? 'it' : 'them'} with another upstream`);
  }
  refuseWhileBuilding(node);
  await releaseFaults(context.labDir, state, node, nodes);
  if (await nodes.livePid(node)) await nodes.stop(node, 'fast');
  if (node.host && state.hosts) await removeNodeHost(state.labId, state.hosts, node.host);
  const slot = slotName(name);
  const upstream = state.nodes.find((n) => n.name === node.upstream && n.name !== name) ?? primaryOf(state);
  let slotDropped = false;
  if (upstream && (await nodes.livePid(upstream))) {
    slotDropped = await onNode(state, upstream, () => dropSlot(boundedConn(state, upstream), slot));
  }
  const datadirOutcome = await removeDatadir(node.datadir, state.labId, node.datadirCreated);
  await rm(nodeLogFile(context.labDir, name), { force: true });
  const after = await updateState(context.labDir, (s) => {
    s.nodes = s.nodes.filter((n) => n.name !== name);
  });
  const primary = primaryOf(after);
  if (node.sync && primary && (await nodes.livePid(primary))) {
    const names = after.nodes.filter((n) => n.sync && n.role === 'replica' && !n.rewindNeeded).map((n) => n.name);
    await applySyncStandbys({ host: nodeAddress(primary), port: primary.port, user: state.dbUser }, names);
  }
  return { name, datadir: node.datadir, datadirOutcome, slot, slotDropped };
}
