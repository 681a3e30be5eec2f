// `lab status`: every node with its real state (a dead pid is "crashed", not "running") and what the
// master says about its replication.
import { accessOf, pgpassPath, tlsPaths, type AuthMethod, type TlsMode } from '../lab/access.js';
import { openLab, type GlobalOptions } from '../lab/context.js';
import { primaryOf, runtimeOf, type FaultKind, type LabState, type NodeRole } from '../lab/state.js';
import { ARCHIVER_SQL, archiveDir, readyBackups, type ArchiverStat } from '../lab/archive.js';
import { faultsOf } from '../lab/faults.js';
import { faultWordsOf } from '../lab/fault-words.js';
import type { RuntimeName } from '../lab/global-options.js';
import { queryRows } from '../postgres/client.js';
import { dialectFor } from '../postgres/dialect.js';
import { serverRole } from '../postgres/recovery.js';
import type { ServerStatus } from '../postgres/server.js';
import { runtimeFor } from '../runtime/runtime-for.js';
import { messageOf } from '../common/errors.js';
import { nodeAddress } from '../network/address.js';
import { sampleSubscribers, type SubscriberRow } from '../stats/subscriber-sample.js';

export interface NodeStatus {
  name: string;
  role: NodeRole;
  port: number;
  datadir: string;
  pid: number | null;
  status: ServerStatus | 'building';
  /** For replicas: pg_stat_replication.state on its upstream (the master, or a standby for a cascade), or null if absent. */
  replication: string | null;
  /** For replicas: bytes of WAL its upstream sent that this replica has not replayed. */
  replayLagBytes: number | null;
  upstream: string | null;
  /** What the running server answers: 'primary' (not in recovery) or 'standby'; null when not reachable. */
  serverRole: 'primary' | 'standby' | null;
  timeline: number | null;
  /** Why a running server's role is unknown: "not answering" (a frozen postmaster), its FATAL, refused. */
  serverProblem?: string;
  /** A former primary that must be rewound (`lab node rewind`) before it can follow again. */
  rewindNeeded: boolean;
  /** Where it is reached: 127.0.0.1, or its namespace's address in a lab made with --hosts. */
  address: string;
  /** A delayed standby's recovery_min_apply_delay in ms: its replay lag is expected (a paused replay is the fault `lag`). */
  applyDelayMs: number | null;
  /** Faults in force on it (`lab fault`): pause, lag, partition, loss. */
  faults: FaultKind[];
  /** The same as a person reads them: paused, lag, partition from replica2, loss 20%, delay 100ms. */
  faultWords: string[];
  /** A logical subscriber (`lab logical add`): its subscription, what it received and confirmed, lag (also in replication and replayLagBytes). */
  logical?: SubscriberRow;
}

export interface LabStatus {
  labDir: string;
  version: string;
  /** Where the nodes run. */
  runtime: RuntimeName;
  /** Their image (docker runtime). */
  image?: string;
  /** How clients get in: authentication, TLS, and the lab's files for them (`lab env` prints the same). */
  access: { auth: AuthMethod; tls: TlsMode; passFile: string | null; caCert: string | null };
  nodes: NodeStatus[];
  /** Why replication columns are empty, when the master could not be asked. */
  replicationError?: string;
  /** Disagreements between the lab state and the servers, e.g. two primaries at once. */
  warnings: string[];
  /** A lab made with --archive: its archive, backups, restore points, and the primary's pg_stat_archiver. */
  archive?: ArchiveStatus;
}

export interface ArchiveStatus {
  dir: string;
  backups: { id: string; stopLsn: string; stoppedAt: string }[];
  restorePoints: { name: string; lsn: string; at: string }[];
  /** The primary's pg_stat_archiver; null when it could not be asked (archiverError says why). */
  archiver: ArchiverStat | null;
  archiverError?: string;
}

/** Each probe of a server: connect, log in and answer within this, or it is "not answering". */
const PROBE_MS = 1000;

class NotAnswering extends Error {
  constructor(ms: number) {
    super(`not answering (no answer within ${ms} ms)`);
  }
}

/** `work`, or NotAnswering after `ms` (a server that accepted and then said nothing). */
async function within<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new NotAnswering(ms)), ms);
  });
  work.catch(() => undefined);
  try {
    return await Promise.race([work, bound]);
  } finally {
    clearTimeout(timer);
  }
}

export async function labStatus(global: GlobalOptions): Promise<LabStatus> {
  const context = await openLab(global);
  const { state } = context;
  const dialect = dialectFor(state.pg.major);
  const runtime = runtimeFor(context);
  const nodes: NodeStatus[] = await Promise.all(
    state.nodes.map(async (node) => {
      const live = await runtime.status(node, node.expected);
      return {
        name: node.name,
        role: node.role,
        port: node.port,
        datadir: node.datadir,
        pid: live.pid ?? null,
        status: node.phase === 'building' && live.status !== 'running' ? 'building' : live.status,
        replication: node.role === 'primary' ? 'primary' : null,
        replayLagBytes: null,
        upstream: node.upstream ?? null,
        serverRole: null,
        timeline: null,
        rewindNeeded: Boolean(node.rewindNeeded),
        applyDelayMs: node.applyDelayMs ?? null,
        faults: faultsOf(state, node.name).map((fault) => fault.kind),
        faultWords: faultWordsOf(state, node.name),
        address: nodeAddress(node),
      } satisfies NodeStatus as NodeStatus;
    }),
  );
  // Ask every running server its role: the state says who should be primary, the servers say who is.
  await Promise.all(
    nodes.map(async (node) => {
      if (node.status !== 'running') return;
      try {
        const role = await within(serverRole({ host: nodeAddress(state.nodes.find((n) => n.name === node.name)!), port: node.port, user: state.dbUser, connectTimeoutMs: PROBE_MS }, state.pg.major), PROBE_MS);
        node.serverRole = role.inRecovery ? 'standby' : 'primary';
        node.timeline = role.timeline;
      } catch (error) {
        // Starting up or shutting down, or hung (SIGSTOP, a full accept queue): unknown, and why.
        node.serverProblem = error instanceof NotAnswering || /timeout/i.test(messageOf(error)) ? 'not answering' : messageOf(error).split('\n')[0];
      }
    }),
  );
  const warnings: string[] = [];
  const answering = nodes.filter((n) => n.serverRole === 'primary');
  for (const node of answering) {
    if (node.role === 'replica') {
      warnings.push(`${node.name} runs as a primary (timeline ${node.timeline}) but the lab's primary is ${primaryOf(state)?.name ?? 'none'}: rewind it (\`lab node rewind ${node.name}\`)`);
    }
  }
  for (const node of nodes) {
    if (node.role === 'primary' && node.serverRole === 'standby') warnings.push(`${node.name} is the lab's primary but is in recovery: promote it (\`lab promote ${node.name}\`)`);
  }
  const primary = primaryOf(state);
  let replicationError: string | undefined;
  // Each replica's row is in its upstream's pg_stat_replication: the primary's, or a standby's for a cascade.
  const upstreamOf = (node: NodeStatus) => (node.upstream && state.nodes.some((n) => n.name === node.upstream) ? node.upstream : primary?.name);
  const senders = state.nodes.filter((n) => n.name === primary?.name || (n.role === 'replica' && nodes.some((d) => d.role !== 'primary' && d.upstream === n.name)));
  await Promise.all(
    senders.map(async (sender) => {
      const live = nodes.find((n) => n.name === sender.name);
      if (live?.status !== 'running') return;
      try {
        const c = dialect.replicationColumns;
        const rows = await within(queryRows<{ application_name: string; state: string; lag: string | null }>(
          { host: nodeAddress(sender), port: sender.port, user: state.dbUser, connectTimeoutMs: PROBE_MS },
          `SELECT application_name, state, ${dialect.lsnDiff}(${c.sent}, ${c.replay})::bigint AS lag FROM pg_stat_replication`,
        ), PROBE_MS);
        for (const node of nodes) {
          const row = rows.find((r) => r.application_name === node.name);
          if (row && node.role !== 'primary' && upstreamOf(node) === sender.name) {
            node.replication = row.state;
            node.replayLagBytes = row.lag === null ? null : Number(row.lag);
          }
        }
      } catch (error) {
        // The primary's answer is the one `lab status` reports missing; a cascade's upstream shows in its rows.
        if (sender.name === primary?.name) replicationError = messageOf(error);
      }
    }),
  );
  // Subscribers: their own pg_stat_subscription, lag from the primary's slot of each.
  for (const row of await sampleSubscribers(state, { timeoutMs: PROBE_MS })) {
    const node = nodes.find((n) => n.name === row.name)!;
    node.logical = row;
    node.replication = row.state;
    node.replayLagBytes = row.lagBytes;
  }
  for (const node of nodes) if (node.rewindNeeded && !node.replication) node.replication = 'needs rewind';
  const archive = state.archive ? await archiveStatus(context.labDir, state, nodes) : undefined;
  if (archive?.archiver && failingNow(archive.archiver)) {
    warnings.push(`archiving fails on ${primary?.name}: ${archive.archiver.failedCount} failures, the last for ${archive.archiver.lastFailedWal} at ${archive.archiver.lastFailedTime} (see its log: archive command failed)`);
  }
  // A cascade whose upstream standby is down keeps answering reads from the WAL it has: stale, and growing staler.
  for (const node of nodes) {
    const up = node.role === 'replica' && node.upstream && node.upstream !== primary?.name ? nodes.find((n) => n.name === node.upstream) : undefined;
    if (!up || up.status === 'running' || node.replication) continue;
    node.replication = `upstream ${up.status}`;
    warnings.push(
      `${node.name} streams from ${up.name}, which is ${up.status}: it answers reads from the WAL it has, staler each second; re-point it (\`lab replica follow ${node.name} --upstream ${primary?.name ?? 'NODE'}\`) or bring ${up.name} back`,
    );
  }
  const { auth, tls } = accessOf(state);
  const access = { auth, tls, passFile: auth === 'scram' ? pgpassPath(context.labDir) : null, caCert: tls === 'off' ? null : tlsPaths(context.labDir).caCert };
  return { labDir: context.labDir, version: state.pg.version, runtime: runtimeOf(state), image: state.image, access, nodes, replicationError, warnings, ...(archive ? { archive } : {}) };
}

/** The last failure is newer than the last success: archiving is failing now (not a failure healed since). */
export function failingNow(stat: ArchiverStat): boolean {
  return stat.failedCount > 0 && stat.lastFailedTime !== null && (stat.lastArchivedTime === null || stat.lastFailedTime > stat.lastArchivedTime);
}

async function archiveStatus(labDir: string, state: LabState, nodes: NodeStatus[]): Promise<ArchiveStatus> {
  const archive = state.archive!;
  const result: ArchiveStatus = {
    dir: archiveDir(labDir),
    backups: readyBackups(archive).map((b) => ({ id: b.id, stopLsn: b.stopLsn!, stoppedAt: b.stoppedAt! })),
    restorePoints: archive.restorePoints,
    archiver: null,
  };
  const primary = primaryOf(state);
  if (!primary || nodes.find((n) => n.name === primary.name)?.status !== 'running') {
    result.archiverError = 'the master is not running';
    return result;
  }
  try {
    [result.archiver] = await within(queryRows<ArchiverStat & Record<string, unknown>>({ host: nodeAddress(primary), port: primary.port, user: state.dbUser, connectTimeoutMs: PROBE_MS }, ARCHIVER_SQL), PROBE_MS);
  } catch (error) {
    result.archiverError = messageOf(error);
  }
  return result;
}
