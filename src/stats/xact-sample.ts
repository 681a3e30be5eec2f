// ut-stat-xact: pg_stat_database of one database on every lab node, in port order. All nodes are asked
// at once with a bounded timeout; a node that does not answer keeps its row, marked down with why.
import { faultWordsOf } from '../lab/fault-words.js';
import type { LabState, NodeRecord } from '../lab/state.js';
import { queryWithin } from './bounded-query.js';
import { downReason, type LabNodeState } from './down-reason.js';
import { nodeAddress } from '../network/address.js';

export interface XactRow {
  node: string;
  role: NodeRecord['role'];
  port: number;
  up: boolean;
  datname: string | null;
  numbackends: number | null;
  xactCommit: number | null;
  xactRollback: number | null;
  /** Transactions (commit + rollback) per second since the previous sample of a watch; null on the first. */
  tps: number | null;
  /** Why the node did not answer, e.g. "connection refused (crashed)"; null when up. */
  reason: string | null;
  /** The lab's view of a down node: crashed, stopped, building or running (e.g. starting up). */
  labState: LabNodeState | null;
  /** Faults in force on the node (`lab fault`), as `lab status` words them: paused, delay 100ms, ... */
  faults: string[];
}

export interface XactSample {
  at: string;
  dbname: string;
  rows: XactRow[];
}

export interface XactOptions {
  dbname: string;
  timeoutMs: number;
}

const SQL = 'SELECT datname, numbackends, xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()';

async function sampleNode(state: LabState, node: NodeRecord, options: XactOptions): Promise<XactRow> {
  const base = { node: node.name, role: node.role, port: node.port, tps: null, faults: faultWordsOf(state, node.name) };
  try {
    const rows = await queryWithin<{ datname: string; numbackends: number; xact_commit: string; xact_rollback: string }>(
      { host: nodeAddress(node), port: node.port, user: state.dbUser, database: options.dbname, timeoutMs: options.timeoutMs },
      SQL,
    );
    const row = rows[0];
    if (!row) throw new Error(`no pg_stat_database row for ${options.dbname}`);
    return {
      ...base,
      up: true,
      datname: row.datname,
      numbackends: Number(row.numbackends),
      xactCommit: Number(row.xact_commit),
      xactRollback: Number(row.xact_rollback),
      reason: null,
      labState: null,
    };
  } catch (error) {
    const { reason, labState } = await downReason(state, node, error, options.timeoutMs);
    return { ...base, up: false, datname: null, numbackends: null, xactCommit: null, xactRollback: null, reason, labState };
  }
}

export async function sampleXact(state: LabState, options: XactOptions, now: () => Date = () => new Date()): Promise<XactSample> {
  const nodes = [...state.nodes].sort((a, b) => a.port - b.port);
  const at = now();
  const rows = await Promise.all(nodes.map((node) => sampleNode(state, node, options)));
  return { at: at.toISOString(), dbname: options.dbname, rows };
}

/** Fill in tps from the previous sample: per node, by name and port, only when both samples saw it up. */
export function withTps(sample: XactSample, previous: XactSample | undefined): XactSample {
  if (!previous) return sample;
  const seconds = (Date.parse(sample.at) - Date.parse(previous.at)) / 1000;
  if (!(seconds > 0)) return sample;
  const rows = sample.rows.map((row) => {
    const before = previous.rows.find((p) => p.node === row.node && p.port === row.port);
    if (!row.up || !before?.up) return row;
    const delta = row.xactCommit! + row.xactRollback! - (before.xactCommit! + before.xactRollback!);
    // A rebuilt node starts its counters again: a negative delta is not a rate.
    return delta < 0 ? row : { ...row, tps: Math.round((delta / seconds) * 10) / 10 };
  });
  return { ...sample, rows };
}
