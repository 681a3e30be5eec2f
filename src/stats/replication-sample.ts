// ut-stat-replication: the master's pg_stat_replication as the seed showed it, a synthetic first row
// for the master itself (state local, sent = insert LSN, write = current LSN, mode master), plus what
// a person needs today: replay lag in bytes and in time.
import { faultWord } from '../lab/fault-words.js';
import { sampleSubscribers, type SubscriberRow } from './subscriber-sample.js';
import type { LabState, NodeRecord } from '../lab/state.js';
import { primaryOf } from '../lab/state.js';
import { dialectFor, type Dialect } from '../postgres/dialect.js';
import { queryWithin } from './bounded-query.js';
import { downReason } from './down-reason.js';
import { nodeAddress } from '../network/address.js';
import { ARCHIVER_SQL, type ArchiverStat } from '../lab/archive.js';

export interface ReplicationRow {
  pid: number | null;
  name: string | null;
  addr: string | null;
  port: number | null;
  state: string;
  sent: string | null;
  write: string | null;
  flush: string | null;
  replay: string | null;
  pri: number | null;
  mode: string;
  /** WAL the master has written that this standby has not replayed. */
  lagBytes: number | null;
  /** replay_lag in seconds; 0 when the standby has replayed everything (PostgreSQL then reports NULL). */
  lagSeconds: number | null;
  /**
   * A cascade's row: the standby whose pg_stat_replication it comes from (`lab replica add --upstream`);
   * its lag_bytes is still measured against the master's WAL. Absent on the master's own standbys.
   */
  upstream?: string;
  /**
   * A delayed standby's recovery_min_apply_delay in ms (`lab replica add --apply-delay`): its replay lag is
   * expected to be about this. Absent on standbys without one; a paused replay (`lab fault lag`) is in `faults`.
   */
  applyDelayMs?: number;
}

export interface ReplicationSample {
  at: string;
  master: { name: string; port: number } | null;
  up: boolean;
  /** Why there is no table: master down (with the reason) or no master in the lab. */
  reason: string | null;
  rows: ReplicationRow[];
  /** Logical subscribers (`lab logical add`), present when the lab has some: their lag against the master's WAL. */
  subscribers?: SubscriberRow[];
  /** Faults in force in the lab (`lab fault`), per node, as `lab status` words them. */
  faults: { node: string; fault: string }[];
  /** A lab made with --archive: the master's pg_stat_archiver (null when it did not answer). */
  archiver?: ArchiverStat | null;
}

type Raw = Record<string, string | number | null>;

/** `masterWrite`: the LSN lag_bytes is measured from; default the server's own (a primary's). */
export function replicationSql(dialect: Dialect, masterWrite = dialect.currentWriteLsn): string {
  const c = dialect.replicationColumns;
  return [
    'SELECT pid, application_name AS name, host(client_addr) AS addr, client_port AS port, state,',
    `  ${c.sent}::text AS sent, ${c.write}::text AS write, ${c.flush}::text AS flush, ${c.replay}::text AS replay,`,
    '  sync_priority AS pri, sync_state AS mode,',
    `  ${dialect.lsnDiff}(${masterWrite}, ${c.replay})::bigint AS lag_bytes, ${dialect.replayLagSeconds} AS lag_seconds`,
    'FROM pg_stat_replication ORDER BY application_name, pid',
  ].join('\n');
}

/** One round trip: the master's own positions and its standbys as a JSON array. */
function sampleSql(dialect: Dialect): string {
  return [
    `SELECT ${dialect.currentInsertLsn}::text AS sent, ${dialect.currentWriteLsn}::text AS write,`,
    `  (SELECT coalesce(json_agg(r), '[]'::json) FROM (${replicationSql(dialect)}) r) AS standbys`,
  ].join('\n');
}

const numberOrNull = (value: unknown) => (value === null || value === undefined ? null : Number(value));

function standbyRow(raw: Raw): ReplicationRow {
  const lagBytes = numberOrNull(raw.lag_bytes);
  const lagSeconds = numberOrNull(raw.lag_seconds);
  return {
    pid: numberOrNull(raw.pid),
    name: (raw.name as string | null) ?? null,
    addr: (raw.addr as string | null) ?? null,
    port: numberOrNull(raw.port),
    state: String(raw.state ?? ''),
    sent: (raw.sent as string | null) ?? null,
    write: (raw.write as string | null) ?? null,
    flush: (raw.flush as string | null) ?? null,
    replay: (raw.replay as string | null) ?? null,
    pri: numberOrNull(raw.pri),
    mode: String(raw.mode ?? ''),
    lagBytes,
    lagSeconds: lagSeconds ?? (lagBytes === 0 ? 0 : null),
  };
}

export async function sampleReplication(state: LabState, options: { timeoutMs: number }, now: () => Date = () => new Date()): Promise<ReplicationSample> {
  if (!state.nodes.some((n) => n.role === 'subscriber')) return sampleStreaming(state, options, now);
  const [sample, subscribers] = await Promise.all([sampleStreaming(state, options, now), sampleSubscribers(state, options)]);
  return { ...sample, subscribers };
}

async function sampleStreaming(state: LabState, options: { timeoutMs: number }, now: () => Date): Promise<ReplicationSample> {
  const at = now().toISOString();
  const faults = (state.faults ?? []).map((fault) => ({ node: fault.node, fault: faultWord(fault) }));
  const master: NodeRecord | undefined = primaryOf(state);
  if (!master) return { at, master: null, up: false, reason: 'the lab has no master: run `lab master start`', rows: [], faults };
  const dialect = dialectFor(state.pg.major);
  const target = { host: nodeAddress(master), port: master.port, user: state.dbUser, database: 'postgres', timeoutMs: options.timeoutMs };
  try {
    const [local] = await queryWithin<{ sent: string; write: string; standbys: Raw[] }>(target, sampleSql(dialect));
    const standbys = local?.standbys ?? [];
    const masterRow: ReplicationRow = {
      pid: null, name: null, addr: null, port: null, state: 'local',
      sent: local?.sent ?? null, write: local?.write ?? null,
      flush: null, replay: null, pri: null, mode: 'master', lagBytes: null, lagSeconds: null,
    };
    const [cascades, archiver] = await Promise.all([
      local?.write ? sampleCascades(state, dialect, local.write, options.timeoutMs) : [],
      state.archive ? queryWithin<ArchiverStat & Record<string, unknown>>(target, ARCHIVER_SQL).then((rows) => rows[0] ?? null, () => null) : undefined,
    ]);
    return { at, master: { name: master.name, port: master.port }, up: true, reason: null, rows: [masterRow, ...standbys.map(standbyRow), ...cascades].map((row) => withApplyDelay(state, row)), faults, ...(archiver !== undefined ? { archiver } : {}) };
  } catch (error) {
    const { reason } = await downReason(state, master, error, options.timeoutMs);
    return { at, master: { name: master.name, port: master.port }, up: false, reason, rows: [], faults };
  }
}

/** A standby row with its node's configured apply delay, when it has one. */
function withApplyDelay(state: LabState, row: ReplicationRow): ReplicationRow {
  const delay = row.name === null ? undefined : state.nodes.find((n) => n.name === row.name && n.role === 'replica')?.applyDelayMs;
  return delay === undefined ? row : { ...row, applyDelayMs: delay };
}

/**
 * The rows of cascading standbys: each standby that others stream from is asked for its own
 * pg_stat_replication, lag measured against the master's write LSN. One that does not answer adds no row
 * (its cascades show as absent, as a master's dead standbys do).
 */
async function sampleCascades(state: LabState, dialect: Dialect, masterWrite: string, timeoutMs: number): Promise<ReplicationRow[]> {
  if (!/^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i.test(masterWrite)) return [];
  const upstreams = state.nodes.filter((n) => n.role === 'replica' && state.nodes.some((d) => d.upstream === n.name));
  const sets = await Promise.all(
    upstreams.map(async (upstream) => {
      const target = { host: nodeAddress(upstream), port: upstream.port, user: state.dbUser, database: 'postgres', timeoutMs };
      const rows = await queryWithin<Raw>(target, replicationSql(dialect, `'${masterWrite}'::pg_lsn`)).catch(() => [] as Raw[]);
      return rows.map((raw) => ({ ...standbyRow(raw), upstream: upstream.name }));
    }),
  );
  return sets.flat();
}
