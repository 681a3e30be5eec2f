// The lab's WAL archive (`lab master start --archive`): <lab-dir>/archive, filled by the servers'
// archive_command as their OS user, and <lab-dir>/backups/<id>, the base backups a restore starts from.
// Both directories are made by the lab and given to the servers' OS user; nothing else is.
import { mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { LabError } from '../common/errors.js';
import { pollUntil } from '../common/poll.js';
import { withClient, type ConnectOptions } from '../postgres/client.js';
import { giveTo, type OsUser } from '../postgres/os-user.js';
import type { ArchiveRecord, BackupRecord } from './state-types.js';

export function archiveDir(labDir: string): string {
  return path.join(path.resolve(labDir), 'archive');
}

export function backupsDir(labDir: string): string {
  return path.join(path.resolve(labDir), 'backups');
}

export function backupDir(labDir: string, id: string): string {
  return path.join(backupsDir(labDir), id);
}

/** A path inside a single-quoted postgresql.conf value, inside double quotes for /bin/sh, with % doubled for archive_command / restore_command. */
function shellConfPath(file: string): string {
  return `"${file.replace(/%/g, '%%')}"`;
}

/**
 * archive_command: a file already archived with the same content is success (a retry after a crash),
 * with other content a failure (never overwritten); a new file is copied under a temporary name,
 * fsync-ed, renamed into place and the directory fsync-ed. The lab dir's path was checked shell-safe
 * (no $, `, ", \) before the lab was made.
 */
export function archiveCommand(labDir: string): string {
  const dir = shellConfPath(archiveDir(labDir));
  return `f=${dir}/%f; if [ -e "$f" ]; then cmp -s %p "$f"; else cp %p "$f.tmp" && sync "$f.tmp" && mv "$f.tmp" "$f" && sync ${dir}; fi`;
}

export function restoreCommand(labDir: string): string {
  return `cp ${shellConfPath(archiveDir(labDir))}/%f %p`;
}

export const quoteConf = (value: string) => `'${value.replace(/'/g, "''")}'`;

/** The postgresql.conf lines of a node of an archiving lab (standbys archive once promoted: archive_mode = on). */
export function archiveConfLines(labDir: string): string[] {
  return ['', '# lab master start --archive: WAL into the lab\'s archive', 'archive_mode = on', `archive_command = ${quoteConf(archiveCommand(labDir))}`, 'archive_timeout = 0'];
}

/** <lab-dir>/NAME made for the servers' OS user (mode 0700); one that exists is refused (destroy removes these dirs whole). */
async function prepareServerDir(dir: string, runAs: OsUser | undefined): Promise<void> {
  try {
    await mkdir(dir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    throw new LabError('UNSAFE', `${dir} exists and was not made by this lab: nothing was written; move it away or choose another --lab-dir`);
  }
  await giveTo(dir, runAs);
}

export async function prepareArchiveDirs(labDir: string, runAs: OsUser | undefined): Promise<void> {
  await prepareServerDir(archiveDir(labDir), runAs);
  await prepareServerDir(backupsDir(labDir), runAs);
}

export function newArchiveRecord(): ArchiveRecord {
  return { since: new Date().toISOString(), backups: [], restorePoints: [] };
}

export interface ArchiverStat {
  archivedCount: number;
  lastArchivedWal: string | null;
  lastArchivedTime: string | null;
  failedCount: number;
  lastFailedWal: string | null;
  lastFailedTime: string | null;
}

export const ARCHIVER_SQL = `SELECT archived_count::int AS "archivedCount", last_archived_wal AS "lastArchivedWal", last_archived_time::text AS "lastArchivedTime",
  failed_count::int AS "failedCount", last_failed_wal AS "lastFailedWal", last_failed_time::text AS "lastFailedTime" FROM pg_stat_archiver`;

/** A WAL file name's position (timeline aside): its last 16 hex digits. */
const segmentKey = (wal: string) => wal.slice(8, 24);

/**
 * pg_switch_wal() on the primary, then a bounded wait until pg_stat_archiver says the segment it closed
 * (or a later one) is archived. A failure to archive it is an error naming the server's log line.
 * Returns the archived segment's name. A primary with nothing written since the last switch: nothing to wait for.
 */
export async function switchAndWaitArchived(conn: ConnectOptions, major: number, options: { timeoutMs?: number; logLine?: () => Promise<string | undefined>; dir?: string } = {}): Promise<string | undefined> {
  const modern = major >= 10;
  const wanted = await withClient(conn, async (client) => {
    const sql = modern
      ? 'SELECT pg_walfile_name(pg_switch_wal()) AS wal, pg_walfile_name(pg_current_wal_lsn()) AS now'
      : 'SELECT pg_xlogfile_name(pg_switch_xlog()) AS wal, pg_xlogfile_name(pg_current_xlog_location()) AS now';
    return (await client.query<{ wal: string }>(sql)).rows[0]!.wal;
  });
  const failedBefore = (await withClient(conn, async (client) => (await client.query<ArchiverStat>(ARCHIVER_SQL)).rows[0]!)).failedCount;
  // The probe returns its verdict (pollUntil retries what throws): archived, or failed.
  const verdict = await pollUntil(
    () =>
      withClient(conn, async (client) => {
        const stat = (await client.query<ArchiverStat>(ARCHIVER_SQL)).rows[0]!;
        // The last one archived may be a backup history file (000000010000000000000003.00000028.backup) or a timeline's .history.
        const last = /^[0-9A-F]{24}/.exec(stat.lastArchivedWal ?? '')?.[0];
        if (last && segmentKey(last) >= segmentKey(wanted)) return { archived: stat.lastArchivedWal! };
        if (stat.failedCount > failedBefore) return { failed: stat.lastFailedWal ?? wanted };
        return undefined;
      }),
    { timeoutMs: options.timeoutMs ?? 30_000, intervalMs: 100, what: `WAL file ${wanted} to be archived (pg_stat_archiver.last_archived_wal)`, detail: options.logLine },
  );
  if ('archived' in verdict) return verdict.archived;
  const line = await options.logLine?.();
  throw new LabError('COMMAND_FAILED', `archive_command failed for WAL file ${verdict.failed}${line ? `: ${line}` : ''}${options.dir ? ` (check ${options.dir}: its owner and free space)` : ''}`);
}

/** The last WAL segment in the archive (highest position, then timeline) and the LSN where it ends; undefined when empty. */
export async function archiveEnd(labDir: string, segmentBytes: number): Promise<{ wal: string; endLsn: string } | undefined> {
  const files = (await readdir(archiveDir(labDir)).catch(() => [] as string[])).filter((f) => /^[0-9A-F]{24}$/.test(f));
  if (files.length === 0) return undefined;
  files.sort((a, b) => (segmentKey(a) === segmentKey(b) ? a.localeCompare(b) : segmentKey(a).localeCompare(segmentKey(b))));
  const wal = files[files.length - 1]!;
  const perXlogId = 0x100000000 / segmentBytes;
  const segno = BigInt(parseInt(wal.slice(8, 16), 16)) * BigInt(perXlogId) + BigInt(parseInt(wal.slice(16, 24), 16));
  return { wal, endLsn: formatLsn((segno + 1n) * BigInt(segmentBytes)) };
}

export function parseLsn(lsn: string): bigint {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn.trim());
  if (!match) throw new LabError('USAGE', `Invalid LSN "${lsn}": expected the form 0/3000060 (as pg_current_wal_lsn() shows it)`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

export function formatLsn(value: bigint): string {
  return `${(value >> 32n).toString(16).toUpperCase()}/${(value & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** The WAL file (timeline aside) holding `lsn`: files before it are not needed by a backup starting there. */
export function segmentKeyOf(lsn: string, segmentBytes: number): string {
  const segno = parseLsn(lsn) / BigInt(segmentBytes);
  const perXlogId = BigInt(0x100000000 / segmentBytes);
  return `${(segno / perXlogId).toString(16).toUpperCase().padStart(8, '0')}${(segno % perXlogId).toString(16).toUpperCase().padStart(8, '0')}`;
}

export function readyBackups(archive: ArchiveRecord | undefined): BackupRecord[] {
  return (archive?.backups ?? []).filter((b) => b.phase === 'ready');
}

export function requireArchive(archive: ArchiveRecord | undefined): ArchiveRecord {
  if (!archive) throw new LabError('STATE', 'This lab does not archive WAL: make one with `lab master start --archive` (an existing lab cannot start archiving)');
  return archive;
}

/** The server log's word on a failed archive_command: the command's own error (cp: cannot create ...), else PostgreSQL's line. */
export function archiveFailureLine(tail: string): string | undefined {
  const lines = tail.split('\n').reverse();
  return (lines.find((line) => /^(cp|cmp|sync|mv): /.test(line.trim())) ?? lines.find((line) => /archive command failed/.test(line)))?.trim();
}
