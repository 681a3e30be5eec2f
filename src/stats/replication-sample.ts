// ut-stat-replication: the master's pg_stat_replication as the seed showed it, a synthetic first row
// for the master itself (state local, sent = insert LSN, write = current LSN, mode master), plus what
// a person needs today: replay lag in bytes and in time.
import { faultWord } from '../lab/fault-words.js';
import type { LabState, NodeRecord } from '../lab/state.js';
import { primaryOf } from '../lab/state.js';
import { dialectFor, type Dialect } from '../postgres/dialect.js';
import { queryWithin } from './bounded-query.js';
import { downReason } from './down-reason.js';
import { nodeAddress } from '../network/address.js';

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
}

export interface ReplicationSample {
  at: string;
  master: { name: string; port: number } | null;
  up: boolean;
  /** Why there is no table: master down (with the reason) or no master in the lab. */
  reason: string | null;
  rows: ReplicationRow[];
  /** Faults in force in the lab (`lab fault`), per node, as `lab status` words them. */
  faults: { node: string; fault: string }[];
}

type Raw = Record<string, string | number | null>;

export function replicationSql(dialect: Dialect): string {
  const c = dialect.replicationColumns;
  return [
    'SELECT pid, application_name AS name, host(client_addr) AS addr, client_port AS port, state,',
    `  ${c.sent}::text AS sent, ${c.write}::text AS write, ${c.flush}::text AS flush, ${c.replay}::text AS replay,`,
    '  sync_priority AS pri, sync_state AS mode,',
    `  ${dialect.lsnDiff}(${dialect.currentWriteLsn}, ${c.replay})::bigint AS lag_bytes, ${dialect.replayLagSeconds} AS lag_seconds`,
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
    return { at, master: { name: master.name, port: master.port }, up: true, reason: null, rows: [masterRow, ...standbys.map(standbyRow)], faults };
  } catch (error) {
    const { reason } = await downReason(state, master, error, options.timeoutMs);
    return { at, master: { name: master.name, port: master.port }, up: false, reason, rows: [], faults };
  }
}
