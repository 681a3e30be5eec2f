// The watchers' tables as text, in the seed's look: a `****** date ******` banner, then a psql-style
// table with the seed's columns first, in the seed's order; what we add comes after them.
import { withFaultWords } from '../lab/fault-words.js';
import { formatApplyDelay } from '../lab/apply-delay.js';
import { psqlTable, type Cell, type Column } from '../common/table.js';
import type { BalancerSample } from './balancer-sample.js';
import { banner } from './banner.js';
import { noPaint, type Paint } from './paint.js';
import type { ReplicationSample } from './replication-sample.js';
import type { XactSample } from './xact-sample.js';

export const REPLICATION_COLUMNS: Column[] = [
  { header: 'pid', align: 'right' }, { header: 'name' }, { header: 'addr' }, { header: 'port', align: 'right' },
  { header: 'state' }, { header: 'sent' }, { header: 'write' }, { header: 'flush' }, { header: 'replay' },
  { header: 'pri', align: 'right' }, { header: 'mode' }, { header: 'lag_bytes', align: 'right' }, { header: 'lag_time', align: 'right' },
];

export function xactColumns(withTps: boolean): Column[] {
  return [
    { header: 'port', align: 'right' }, { header: 'datname' }, { header: 'numbackends', align: 'right' },
    { header: 'xact_commit', align: 'right' }, { header: 'xact_rollback', align: 'right' },
    ...(withTps ? [{ header: 'tps', align: 'right' } as Column] : []),
    { header: 'node' }, { header: 'status' },
  ];
}

export const BALANCER_COLUMNS: Column[] = [
  { header: 'name' }, { header: 'address' }, { header: 'status' }, { header: 'check' }, { header: 'since', align: 'right' },
  { header: 'sess_cur', align: 'right' }, { header: 'sess_total', align: 'right' }, { header: 'conn_err', align: 'right' },
  { header: 'role' }, { header: 'lag_bytes', align: 'right' },
];

/** replay lag as a person reads it: 0s, 850us, 12.3ms, 4.20s, 3m05s. */
export function formatLagSeconds(seconds: number | null): string {
  if (seconds === null) return '';
  if (seconds === 0) return '0s';
  if (seconds < 0.001) return `${Math.round(seconds * 1e6)}us`;
  if (seconds < 1) return `${(seconds * 1000).toFixed(1)}ms`;
  if (seconds < 60) return `${seconds.toFixed(2)}s`;
  return formatDuration(seconds);
}

/** Whole seconds as 45s, 3m05s, 2h07m, 3d04h. */
export function formatDuration(seconds: number): string {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86_400)}d${String(Math.floor((s % 86_400) / 3600)).padStart(2, '0')}h`;
}

export function replicationTable(sample: ReplicationSample, paint: Paint = noPaint): string {
  // A partitioned or paused standby may have left pg_stat_replication: the faults in force are named below.
  const faults = sample.faults.length ? `\n${paint.yellow(`faults: ${sample.faults.map((f) => `${f.node} ${f.fault}`).join('; ')}`)}` : '';
  if (!sample.up) {
    const who = sample.master ? `master ${sample.master.name} (port ${sample.master.port})` : 'master';
    return paint.red(sample.master ? `${who} is DOWN: ${sample.reason}` : `no table: ${sample.reason}`) + faults;
  }
  // A lab with cascading standbys: a last column names the standby each cascade streams from.
  const cascades = sample.rows.some((r) => r.upstream !== undefined);
  // A lab with a delayed standby: a column says what holds each standby's replay back, its configured
  // delay (a lag of about that is expected) or a paused replay (`lab fault lag`: a fault).
  const delays = sample.rows.some((r) => r.applyDelayMs !== undefined);
  const paused = new Set(sample.faults.filter((f) => f.fault === 'lag').map((f) => f.node));
  const rows: Cell[][] = sample.rows.map((r) => [
    r.pid, r.name, r.addr, r.port, r.state, r.sent, r.write, r.flush, r.replay, r.pri, r.mode, r.lagBytes, formatLagSeconds(r.lagSeconds),
    ...(delays ? [r.applyDelayMs !== undefined ? formatApplyDelay(r.applyDelayMs) : r.name !== null && paused.has(r.name) ? 'replay paused' : ''] : []),
    ...(cascades ? [r.upstream ?? (r.state === 'local' ? '' : sample.master?.name ?? '')] : []),
  ]);
  const columns = [...REPLICATION_COLUMNS, ...(delays ? [{ header: 'delay' }] : []), ...(cascades ? [{ header: 'upstream' }] : [])];
  return psqlTable(columns, rows) + faults + archiverTable(sample, paint) + subscribersTable(sample, paint);
}

/** A lab made with --archive: the master's pg_stat_archiver below the table, failures in red while the last one is newer than the last success. */
function archiverTable(sample: ReplicationSample, paint: Paint): string {
  if (sample.archiver === undefined) return '';
  const a = sample.archiver;
  if (a === null) return `\n${paint.yellow('archiver: pg_stat_archiver did not answer')}`;
  const failing = a.failedCount > 0 && a.lastFailedTime !== null && (a.lastArchivedTime === null || a.lastFailedTime > a.lastArchivedTime);
  const table = psqlTable(
    [{ header: 'archived_count', align: 'right' }, { header: 'last_archived_wal' }, { header: 'last_archived_time' }, { header: 'failed_count', align: 'right' }, { header: 'last_failed_wal' }, { header: 'last_failed_time' }],
    [[a.archivedCount, a.lastArchivedWal, a.lastArchivedTime, a.failedCount, a.lastFailedWal, a.lastFailedTime]],
  );
  return `\n${table}${failing ? `\n${paint.red(`archiving FAILS: last failure for ${a.lastFailedWal} at ${a.lastFailedTime}, after the last success`)}` : ''}`;
}

export const SUBSCRIBER_COLUMNS: Column[] = [
  { header: 'subscriber' }, { header: 'port', align: 'right' }, { header: 'subscription' }, { header: 'state' }, { header: 'pid', align: 'right' },
  { header: 'received' }, { header: 'latest_end' }, { header: 'confirmed_flush' }, { header: 'lag_bytes', align: 'right' }, { header: 'tables' },
];

/** The lab's logical subscribers under the streaming table: what each received and confirmed, lag against the master's WAL. */
function subscribersTable(sample: ReplicationSample, paint: Paint): string {
  if (!sample.subscribers?.length) return '';
  const rows: Cell[][] = sample.subscribers.map((s) => [
    s.name, s.port, s.subscription, s.state === 'streaming' ? s.state : paint.red(s.reason ? `${s.state}: ${s.reason}` : s.state), s.pid,
    s.received, s.latestEnd, s.confirmedFlush, s.lagBytes, s.tables.join(','),
  ]);
  return `\n${psqlTable(SUBSCRIBER_COLUMNS, rows)}`;
}

export function xactTable(sample: XactSample, options: { tps: boolean }, paint: Paint = noPaint): string {
  const rows: Cell[][] = sample.rows.map((r) => [
    r.port, r.datname, r.numbackends, r.xactCommit, r.xactRollback,
    ...(options.tps ? [r.tps === null ? '' : r.tps.toFixed(1)] : []),
    r.node, r.up ? withFaultWords('up', r.faults) : paint.red(withFaultWords(`DOWN: ${r.reason}`, r.faults)),
  ]);
  return psqlTable(xactColumns(options.tps), rows);
}

export function balancerTable(sample: BalancerSample, paint: Paint = noPaint): string {
  const title = `balancer ${sample.name} (listen ${sample.listen}, stats ${sample.url || 'none'})`;
  if (!sample.up) return `${title}\n${paint.red(`DOWN: ${sample.reason}`)}`;
  const status = (s: string) => (s === 'UP' ? paint.green(s) : s === 'DOWN' ? paint.red(s) : paint.yellow(s));
  const rows: Cell[][] = sample.servers.map((s) => [
    s.name, s.address, status(s.status), [s.checkStatus, s.checkMessage].filter(Boolean).join(' '), formatDuration(s.lastChangeS),
    s.sessionsCurrent, s.sessionsTotal, s.connectionErrors, s.role ?? '', s.lagBytes,
  ]);
  const sessions = sample.sessionsCurrent === null ? '' : `, sessions ${sample.sessionsCurrent} current / ${sample.sessionsTotal} total`;
  return `balancer ${sample.name} (listen ${sample.listen}${sessions})\n${psqlTable(BALANCER_COLUMNS, rows)}`;
}

export function withBanner(at: string, body: string): string {
  return `${banner(new Date(at))}\n${body}`;
}
