// `lab replica follow NAME [--primary P]`: point a standby at a (new) primary: a reload from 13 (its
// sessions kept), a restart before. With
// recovery_target_timeline = 'latest' it switches to the primary's timeline; we return once that
// primary's pg_stat_replication shows NAME streaming.
import { LabError } from '../common/errors.js';
import { pollUntil } from '../common/poll.js';
import { assertPortFree } from '../common/ports.js';
import { nodeLogFile, openLab, type GlobalOptions, type LabContext } from '../lab/context.js';
import { assertAnswers, boundedConn } from '../lab/node-answers.js';
import { upstreamFor } from '../lab/topology.js';
import { nodeFilesSpec, writeStandbyConfig } from '../lab/node-files.js';
import { primaryOf, requireBuilt, requireNode, updateState, type NodeRecord } from '../lab/state.js';
import { dropSlot, ensureSlot, slotName } from '../postgres/base-backup.js';
import { queryRows, withClient } from '../postgres/client.js';
import { serverRole } from '../postgres/recovery.js';
import { logTail, readLogFrom, sizeOf } from '../postgres/server.js';
import { runtimeFor } from '../runtime/runtime-for.js';
import { nodeAddress } from '../network/address.js';
import { refuseSubscriber } from '../lab/subscriber.js';

export interface FollowOptions {
  /** Default: the lab's current primary. */
  primary?: string;
  /** A node to stream from that may be a standby (a cascade); not with `primary`. */
  upstream?: string;
  timeoutMs?: number;
}

export interface FollowResult {
  name: string;
  /** The lab's primary. */
  primary: string;
  /** The node it streams from now: the primary, or a standby (a cascade). */
  upstream: string;
  pid: number;
  syncState: string;
  /** True when a reload re-pointed it (13+: its sessions kept), false when it was restarted. */
  reloaded: boolean;
  elapsedMs: number;
}

/** The node to follow: it must be running and answer pg_is_in_recovery() = false. */
export async function requireRunningPrimary(context: LabContext, wanted: string | undefined): Promise<NodeRecord> {
  const { state } = context;
  const primary = wanted ? requireNode(state, wanted) : primaryOf(state);
  if (!primary) throw new LabError('STATE', 'This lab has no primary: promote a replica first (`lab promote NAME`)');
  if (!(await runtimeFor(context).livePid(primary))) {
    throw new LabError('STATE', `Node "${primary.name}" is not running: start it or promote a replica first`);
  }
  const role = await serverRole({ host: nodeAddress(primary), port: primary.port, user: state.dbUser, connectTimeoutMs: 2000 }, state.pg.major);
  if (role.inRecovery) {
    throw new LabError('STATE', `Node "${primary.name}" is not a primary (it is in recovery): follow the lab's primary, or promote "${primary.name}" first`);
  }
  if (primary.role !== 'primary') {
    throw new LabError(
      'STATE',
      `Node "${primary.name}" answers as a primary but the lab's primary is "${primaryOf(state)?.name ?? 'none'}": it is an old primary started by mistake; rewind it (\`lab node rewind ${primary.name}\`)`,
    );
  }
  return primary;
}

/**
 * The node `node` is to stream from, `wanted`, running: the primary (requireRunningPrimary), or a standby
 * in recovery for a cascade (upstreamFor's checks: no cycle, built, not waiting for a rewind; a
 * synchronous standby streams from the primary).
 */
async function requireRunningUpstream(context: LabContext, node: NodeRecord, wanted: string): Promise<NodeRecord> {
  const { state } = context;
  const primary = primaryOf(state);
  if (!primary) throw new LabError('STATE', 'This lab has no primary: promote a replica first (`lab promote NAME`)');
  const upstream = upstreamFor(state, node.name, wanted, node, primary);
  if (upstream.name === primary.name) return requireRunningPrimary(context, primary.name);
  if (node.sync) throw new LabError('USAGE', `A synchronous standby streams from the primary: "${node.name}" cannot follow the standby "${upstream.name}"; re-add it without --sync first`);
  if (!(await runtimeFor(context).livePid(upstream))) throw new LabError('STATE', `Upstream "${upstream.name}" is not running: start it first (\`lab node start ${upstream.name}\`), or follow another node`);
  await assertAnswers(state, upstream);
  const role = await serverRole(boundedConn(state, upstream), state.pg.major);
  if (!role.inRecovery) throw new LabError('STATE', `Upstream "${upstream.name}" answers as a primary but the lab's primary is "${primary.name}": rewind it (\`lab node rewind ${upstream.name}\`)`);
  return upstream;
}

/** Wait until `primary` shows `name` streaming; returns its sync_state. */
export async function waitStreaming(context: LabContext, primary: NodeRecord, name: string, timeoutMs: number, wantSync = false, logFrom?: number, signal?: AbortSignal): Promise<string> {
  const conn = { host: nodeAddress(primary), port: primary.port, user: context.state.dbUser, connectTimeoutMs: 2000 };
  const logFile = nodeLogFile(context.labDir, name);
  const result = await pollUntil<string | { diverged: string }>(
    async () => {
      // A standby that replayed WAL past the fork point never streams: say so at once, not after the timeout.
      if (logFrom !== undefined) {
        const diverged = DIVERGED.exec(await readLogFrom(logFile, logFrom));
        if (diverged) return { diverged: diverged[0] };
      }
      const rows = await queryRows<{ state: string; sync_state: string }>(conn, 'SELECT state, sync_state FROM pg_stat_replication WHERE application_name = $1', [name]);
      const row = rows.find((r) => r.state === 'streaming' && (!wantSync || r.sync_state === 'sync' || r.sync_state === 'quorum'));
      return row?.sync_state;
    },
    {
      timeoutMs,
      intervalMs: 50,
      signal,
      what: `${primary.name} to show ${name} ${wantSync ? 'as a synchronous standby' : 'streaming'} in pg_stat_replication`,
      detail: () => logTail(logFile),
    },
  );
  if (typeof result === 'string') return result;
  throw new LabError(
    'STATE',
    `${name} has WAL beyond the point where ${primary.name} took over (${result.diverged}): rewind it (\`lab node rewind ${name}\`) or rebuild it`,
    { detail: await logTail(logFile) },
  );
}

const DIVERGED = /new timeline \d+ forked off current database system timeline \d+ before current recovery point [0-9A-F/]+|requested timeline \d+ is not a child of this server's history/;

/**
 * The slot `node` had on its former upstream, dropped if that server still runs (left there, it would
 * keep WAL for a standby that went elsewhere): a primary, or a standby a cascade streamed from; a dead
 * upstream is left alone.
 */
export async function dropOldSlot(context: LabContext, node: NodeRecord, newUpstream: string): Promise<void> {
  const old = node.upstream && node.upstream !== newUpstream ? context.state.nodes.find((n) => n.name === node.upstream) : undefined;
  if (!old || !(await runtimeFor(context).livePid(old))) return;
  const conn = { host: nodeAddress(old), port: old.port, user: context.state.dbUser, connectTimeoutMs: 2000 };
  await dropSlot(conn, slotName(node.name)).catch(() => undefined);
}

export async function replicaFollow(global: GlobalOptions, name: string, options: FollowOptions = {}): Promise<FollowResult> {
  const started = Date.now();
  const timeoutMs = options.timeoutMs ?? 60_000;
  const context = await openLab(global);
  const { state } = context;
  const nodes = runtimeFor(context);
  const node = requireNode(state, name);
  refuseSubscriber(node, 're-pointed');
  if (node.role === 'primary') throw new LabError('STATE', `Node "${name}" is the lab's primary: it follows nobody; promote another node first`);
  if (node.role === 'restored') throw new LabError('STATE', `Node "${name}" is a restored node (\`lab node restore\`): it stands alone on a timeline of its own and joins no replication; remove it with \`lab replica remove ${name}\``);
  if (node.rewindNeeded) {
    throw new LabError('STATE', `Node "${name}" was a primary and may have diverged: rewind it instead (\`lab node rewind ${name}\`)`);
  }
  requireBuilt(node, 're-add it first');
  if (options.primary !== undefined && options.upstream !== undefined) throw new LabError('USAGE', 'Give --primary or --upstream, not both');
  const primary = options.upstream === undefined ? await requireRunningPrimary(context, options.primary) : await requireRunningUpstream(context, node, options.upstream);
  if (primary.name === name) throw new LabError('USAGE', `Node "${name}" cannot follow itself`);
  const running = await nodes.livePid(node);
  if (running) {
    const role = await serverRole({ host: nodeAddress(node), port: node.port, user: state.dbUser, connectTimeoutMs: 2000 }, state.pg.major);
    if (!role.inRecovery) {
      throw new LabError('STATE', `Node "${name}" is running as a primary: it cannot simply follow; rewind it (\`lab node rewind ${name}\`)`);
    }
  }

  // The new upstream has no slot for this node yet (slots are not replicated).
  await ensureSlot({ host: nodeAddress(primary), port: primary.port, user: state.dbUser }, slotName(name));
  await writeStandbyConfig({ ...nodeFilesSpec(context.labDir, state, node, await nodes.dataOwner()), upstreamPort: primary.port, upstreamHost: nodeAddress(primary) });
  if (running && state.pg.major >= 13) {
    // 13+ reloads primary_conninfo and primary_slot_name: the walreceiver reconnects to the new upstream
    // and the standby's own sessions (readers through a balancer) are kept; before 13 it restarts.
    const logFrom = await sizeOf(nodeLogFile(context.labDir, name));
    await withClient({ host: nodeAddress(node), port: node.port, user: state.dbUser, connectTimeoutMs: 2000 }, (client) => client.query('SELECT pg_reload_conf()'));
    await updateState(context.labDir, (s) => {
      requireNode(s, name).upstream = primary.name;
    });
    const syncState = await waitStreaming(context, primary, name, timeoutMs, false, logFrom);
    await dropOldSlot(context, node, primary.name);
    return { name, primary: primaryOf(state)!.name, upstream: primary.name, pid: running, syncState, reloaded: true, elapsedMs: Date.now() - started };
  }
  await nodes.stop(node, 'fast');
  await dropOldSlot(context, node, primary.name);
  await assertPortFree(node.port, `node "${name}"`);
  const logFrom = await sizeOf(nodeLogFile(context.labDir, name));
  const pid = await nodes.start(node, timeoutMs);
  await updateState(context.labDir, (s) => {
    const n = requireNode(s, name);
    n.upstream = primary.name;
    n.expected = 'running';
  });
  const syncState = await waitStreaming(context, primary, name, timeoutMs, false, logFrom);
  return { name, primary: primaryOf(state)!.name, upstream: primary.name, pid, syncState, reloaded: false, elapsedMs: Date.now() - started };
}
