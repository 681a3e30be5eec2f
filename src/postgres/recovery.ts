// What a running server says about its own role: in recovery or not, and on which timeline. The lab
// state says who should be the primary; these answers say who is (they differ after a mistake).
import { queryRows, type ConnectOptions } from './client.js';
import { dialectFor } from './dialect.js';

export interface ServerRole {
  inRecovery: boolean;
  /** Timeline the server writes (primary) or last checkpointed on (standby). */
  timeline: number;
  /** WAL position: insert position on a primary, last received (or replayed) on a standby. */
  lsn: string | null;
}

/** pg_walfile_name exists since 10; a standby has no current WAL file, its checkpoint timeline is what it follows. */
export async function serverRole(conn: ConnectOptions, major: number): Promise<ServerRole> {
  const d = dialectFor(major);
  const [walfile, received, replayed, current] = [d.currentWalFile, d.lastReceiveLsn, d.lastReplayLsn, d.currentWriteLsn];
  const rows = await queryRows<{ recovery: boolean; tli_hex: string | null; tli: number; lsn: string | null }>(
    conn,
    `SELECT pg_is_in_recovery() AS recovery,
       CASE WHEN NOT pg_is_in_recovery() THEN substr(${walfile}, 1, 8) END AS tli_hex,
       coalesce((SELECT received_tli FROM pg_stat_wal_receiver), (SELECT timeline_id FROM pg_control_checkpoint())) AS tli,
       CASE WHEN pg_is_in_recovery() THEN coalesce(${received}, ${replayed})::text ELSE ${current}::text END AS lsn`,
  );
  const row = rows[0]!;
  return { inRecovery: row.recovery, timeline: row.tli_hex ? parseInt(row.tli_hex, 16) : Number(row.tli), lsn: row.lsn };
}

/** Bytes between two LSNs written as "X/Y" (positive when a is ahead of b). */
export function lsnDiff(a: string, b: string): number {
  return lsnToNumber(a) - lsnToNumber(b);
}

export function lsnToNumber(lsn: string): number {
  const [hi, lo] = lsn.split('/');
  return parseInt(hi!, 16) * 2 ** 32 + parseInt(lo!, 16);
}
