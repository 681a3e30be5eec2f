// Logical subscribers (`lab logical add`) as the watchers and `lab status` show them: the subscriber's
// pg_stat_subscription (its apply worker: received_lsn, latest_end_lsn) and the primary's slot of the
// subscription (confirmed_flush_lsn), lag in bytes against the primary's current WAL position.
import type { LabState, NodeRecord } from '../lab/state.js';
import { primaryOf } from '../lab/state.js';
import { nodeAddress } from '../network/address.js';
import { queryWithin } from './bounded-query.js';

export interface SubscriberRow {
  name: string;
  port: number;
  publication: string;
  subscription: string;
  tables: string[];
  /** streaming (its apply worker runs), stopped (no worker: disabled, or failing to connect), down (no answer: reason), building. */
  state: 'streaming' | 'stopped' | 'down' | 'building';
  reason: string | null;
  /** The apply worker's pid on the subscriber. */
  pid: number | null;
  /** pg_stat_subscription: the last WAL position received, and the last reported back to the primary. */
  received: string | null;
  latestEnd: string | null;
  lastMessageAt: string | null;
  /** The primary's slot of the subscription: what the subscriber confirmed applied and flushed, whether a walsender uses it. */
  confirmedFlush: string | null;
  slotActive: boolean | null;
  /** The primary's current WAL position minus confirmed_flush_lsn (bytes the subscriber has not confirmed). */
  lagBytes: number | null;
  /** The primary's current WAL position minus received_lsn. */
  receivedLagBytes: number | null;
}

const LSN = /^([0-9A-F]{1,8})\/([0-9A-F]{1,8})$/i;

/** An LSN ("16/B374D848") as a number of bytes; null when it is not one. */
export function lsnBytes(lsn: string | null | undefined): bigint | null {
  const match = lsn ? LSN.exec(lsn) : null;
  return match ? (BigInt(`0x${match[1]}`) << 32n) + BigInt(`0x${match[2]}`) : null;
}

function diff(a: string | null, b: string | null): number | null {
  const x = lsnBytes(a);
  const y = lsnBytes(b);
  return x === null || y === null ? null : Number(x - y);
}

/** One row per subscriber of the lab (none: an empty list). Each server is asked within `timeoutMs`. */
export async function sampleSubscribers(state: LabState, options: { timeoutMs: number }): Promise<SubscriberRow[]> {
  const subscribers = state.nodes.filter((n): n is NodeRecord & { logical: NonNullable<NodeRecord['logical']> } => n.role === 'subscriber' && Boolean(n.logical));
  if (subscribers.length === 0) return [];
  const primary = primaryOf(state);
  const target = (node: NodeRecord) => ({ host: nodeAddress(node), port: node.port, user: state.dbUser, database: 'postgres', timeoutMs: options.timeoutMs });
  const slots = primary
    ? await queryWithin<{ current: string; slot_name: string | null; confirmed_flush: string | null; active: boolean | null }>(
      target(primary),
      `SELECT pg_current_wal_lsn()::text AS current, s.slot_name, s.confirmed_flush_lsn::text AS confirmed_flush, s.active
       FROM (SELECT 1) one LEFT JOIN pg_replication_slots s ON s.slot_name = ANY($1::text[])`,
      [subscribers.map((n) => n.logical.subscription)],
    ).catch(() => undefined)
    : undefined;
  const current = slots?.[0]?.current ?? null;
  return Promise.all(subscribers.map(async (node): Promise<SubscriberRow> => {
    const slot = slots?.find((s) => s.slot_name === node.logical.subscription);
    const row: SubscriberRow = {
      name: node.name, port: node.port, publication: node.logical.publication, subscription: node.logical.subscription, tables: node.logical.tables,
      state: node.phase === 'building' ? 'building' : 'down', reason: null, pid: null, received: null, latestEnd: null, lastMessageAt: null,
      confirmedFlush: slot?.confirmed_flush ?? null, slotActive: slot ? Boolean(slot.active) : null,
      lagBytes: diff(current, slot?.confirmed_flush ?? null), receivedLagBytes: null,
    };
    try {
      const [stat] = await queryWithin<{ pid: number | null; received: string | null; latest_end: string | null; last_msg: string | null }>(
        target(node),
        `SELECT st.pid, st.received_lsn::text AS received, st.latest_end_lsn::text AS latest_end, to_char(st.last_msg_receipt_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS last_msg
         FROM pg_stat_subscription st WHERE st.subname = $1 AND st.relid IS NULL`,
        [node.logical.subscription],
      );
      if (node.phase !== 'building') row.state = stat?.pid ? 'streaming' : 'stopped';
      row.pid = stat?.pid ?? null;
      row.received = stat?.received ?? null;
      row.latestEnd = stat?.latest_end ?? null;
      row.lastMessageAt = stat?.last_msg ?? null;
      row.receivedLagBytes = diff(current, row.received);
    } catch (error) {
      row.reason = error instanceof Error ? error.message.split('\n')[0]! : String(error);
    }
    return row;
  }));
}
