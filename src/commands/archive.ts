// The WAL archive of a lab made with `lab master start --archive`: base backups (`lab backup`), restore
// points (`lab restore-point NAME`), and the only thing that ever removes WAL from the archive
// (`lab archive prune --before BACKUP`). Restores: restore.ts.
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { LabError } from '../common/errors.js';
import { silentReporter, type Reporter } from '../common/reporter.js';
import { archiveDir, backupDir, readyBackups, requireArchive, segmentKeyOf, switchAndWaitArchived, archiveFailureLine } from '../lab/archive.js';
import { openLab, type GlobalOptions, type LabContext } from '../lab/context.js';
import { onNode } from '../lab/node-answers.js';
import { RESTORE_POINT_NAME } from '../lab/state-check.js';
import { primaryOf, runtimeOf, updateState, type NodeRecord } from '../lab/state.js';
import type { ArchiveRecord, BackupRecord } from '../lab/state-types.js';
import { nodeAddress } from '../network/address.js';
import { ownBaseBackup } from '../postgres/base-backup.js';
import { withClient, type ConnectOptions } from '../postgres/client.js';
import { giveTo } from '../postgres/os-user.js';
import { runtimeFor } from '../runtime/runtime-for.js';

/** The primary of an archiving lab, running: what every archive command talks to. */
async function archivingPrimary(context: LabContext, what: string): Promise<{ archive: ArchiveRecord; primary: NodeRecord; conn: ConnectOptions }> {
  const archive = requireArchive(context.state.archive);
  if (runtimeOf(context.state) !== 'process') throw new LabError('USAGE', `${what} needs the process runtime`);
  const primary = primaryOf(context.state);
  if (!primary) throw new LabError('STATE', 'This lab has no master: run `lab master start --archive` first');
  const { status } = await runtimeFor(context).status(primary, primary.expected);
  if (status !== 'running') throw new LabError('STATE', `Master "${primary.name}" is ${status}: start it first (\`lab node start ${primary.name}\`)`);
  return { archive, primary, conn: { host: nodeAddress(primary), port: primary.port, user: context.state.dbUser } };
}

/** pg_switch_wal() and the wait until that segment is archived, its failure naming the server's log line. */
async function archiveNow(context: LabContext, primary: NodeRecord, conn: ConnectOptions): Promise<string | undefined> {
  const nodes = runtimeFor(context);
  const logLine = async () => archiveFailureLine((await nodes.logTail(primary, 40)) ?? '');
  return onNode(context.state, primary, () => switchAndWaitArchived(conn, context.state.pg.major, { logLine, dir: archiveDir(context.labDir) }));
}

export interface BackupResult {
  id: string;
  dir: string;
  startLsn: string;
  stopLsn: string;
  startedAt: string;
  stoppedAt: string;
  kb: number;
  /** The WAL file archived after it (it holds the backup's end). */
  archivedWal?: string;
  elapsedMs: number;
}

/**
 * `lab backup`: pglab's own base backup of the primary (works on every major) into <lab-dir>/backups/<id>,
 * then pg_switch_wal() and the wait until the segment holding its end is archived: a restore from it can
 * then always reach consistency. Recorded building first; a failure removes the dir and the record.
 */
export async function labBackup(global: GlobalOptions, options: { reporter?: Reporter; signal?: AbortSignal } = {}): Promise<BackupResult> {
  const started = Date.now();
  const reporter = options.reporter ?? silentReporter;
  const context = await openLab(global);
  const { primary, conn } = await archivingPrimary(context, '`lab backup`');
  let id = '';
  const startedAt = new Date().toISOString();
  await updateState(context.labDir, (s) => {
    const backups = requireArchive(s.archive).backups;
    id = `b${Math.max(0, ...backups.map((b) => Number(b.id.slice(1)))) + 1}`;
    backups.push({ id, phase: 'building', startedAt });
  });
  const dir = backupDir(context.labDir, id);
  try {
    await mkdir(dir, { mode: 0o700 });
    await giveTo(dir, context.runAs);
    reporter.step(`pglab base backup (pg_backup_start, file copy, pg_backup_stop) of ${primary.name} into ${dir}`);
    const copied = await onNode(context.state, primary, () =>
      ownBaseBackup({ conn, major: context.state.pg.major, sourceDatadir: primary.datadir, targetDatadir: dir, owner: context.runAs, label: `pglab backup ${id}`, reporter, signal: options.signal }),
    );
    const stoppedAt = new Date().toISOString();
    const facts = await withClient(conn, async (client) => (await client.query<{ xid: string; seg: string }>(
      "SELECT txid_snapshot_xmax(txid_current_snapshot())::text AS xid, setting AS seg FROM pg_settings WHERE name = 'wal_segment_size'",
    )).rows[0]!);
    // wal_segment_size is in bytes from 11 (in 8 kB blocks before).
    const segmentBytes = Number(facts.seg) * (context.state.pg.major >= 11 ? 1 : 8192);
    reporter.step(`pg_switch_wal() on ${primary.name}, then waiting until the WAL up to ${copied.stopLsn} is archived`);
    const archivedWal = await archiveNow(context, primary, conn);
    await updateState(context.labDir, (s) => {
      const backup = requireArchive(s.archive).backups.find((b) => b.id === id)!;
      Object.assign(backup, { phase: 'ready', startLsn: copied.startLsn, stopLsn: copied.stopLsn, stoppedAt, nextXid: Number(facts.xid), segmentBytes } satisfies Partial<BackupRecord>);
    });
    return { id, dir, startLsn: copied.startLsn, stopLsn: copied.stopLsn, startedAt, stoppedAt, kb: Math.round(copied.bytes / 1024), archivedWal, elapsedMs: Date.now() - started };
  } catch (error) {
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    await updateState(context.labDir, (s) => {
      if (s.archive) s.archive.backups = s.archive.backups.filter((b) => b.id !== id);
    }).catch(() => undefined);
    throw error;
  }
}

export interface RestorePointResult {
  name: string;
  lsn: string;
  at: string;
  archivedWal?: string;
}

/**
 * `lab restore-point NAME`: pg_create_restore_point on the primary, then pg_switch_wal() and the wait
 * until it is archived (a restore to it needs the segment holding it). A name used before is refused:
 * recovery would stop at the first one.
 */
export async function labRestorePoint(global: GlobalOptions, name: string): Promise<RestorePointResult> {
  if (typeof name !== 'string' || !RESTORE_POINT_NAME.test(name)) {
    throw new LabError('USAGE', `Invalid restore point name ${JSON.stringify(name)}: use a letter or digit then letters, digits, _ . : or - (at most 63)`);
  }
  const context = await openLab(global);
  const { archive, primary, conn } = await archivingPrimary(context, '`lab restore-point`');
  if (archive.restorePoints.some((p) => p.name === name)) throw new LabError('CONFLICT', `Restore point "${name}" exists already (recovery stops at the first of a name): choose another name`);
  const at = new Date().toISOString();
  const lsn = await onNode(context.state, primary, () => withClient(conn, async (client) => (await client.query<{ lsn: string }>('SELECT pg_create_restore_point($1)::text AS lsn', [name])).rows[0]!.lsn));
  await updateState(context.labDir, (s) => {
    requireArchive(s.archive).restorePoints.push({ name, lsn, at });
  });
  const archivedWal = await archiveNow(context, primary, conn);
  return { name, lsn, at, archivedWal };
}

export interface PruneResult {
  before: string;
  /** The archive files removed (WAL segments, .partial, .backup files before the backup's start). */
  removedFiles: number;
  removedBackups: string[];
  removedRestorePoints: string[];
  keptFiles: number;
}

/**
 * `lab archive prune --before BACKUP`: the WAL files the backup and every later one do not need (those
 * before the segment of its start; timeline history files stay), the backups older than it and the
 * restore points before its end, which nothing could reach any more. Never done by anything else.
 */
export async function pruneArchive(global: GlobalOptions, before: string): Promise<PruneResult> {
  const context = await openLab(global);
  const archive = requireArchive(context.state.archive);
  const backup = readyBackups(archive).find((b) => b.id === before);
  if (!backup) {
    const ids = readyBackups(archive).map((b) => b.id);
    throw new LabError('NOT_FOUND', `No backup "${before}" in this lab (backups: ${ids.join(', ') || 'none; `lab backup` takes one'})`);
  }
  const key = segmentKeyOf(backup.startLsn!, backup.segmentBytes!);
  const dir = archiveDir(context.labDir);
  let removedFiles = 0;
  let keptFiles = 0;
  for (const file of await readdir(dir)) {
    const match = /^[0-9A-F]{8}([0-9A-F]{16})(\.partial|\.[0-9A-F]{8}\.backup|\.tmp)?$/.exec(file);
    if (match && match[1]! < key) {
      await rm(path.join(dir, file), { force: true });
      removedFiles += 1;
    } else keptFiles += 1;
  }
  const older = archive.backups.filter((b) => b.startedAt < backup.startedAt && b.id !== backup.id).map((b) => b.id);
  for (const id of older) await rm(backupDir(context.labDir, id), { recursive: true, force: true });
  const stop = backup.stopLsn!;
  const lsnValue = (lsn: string) => BigInt(`0x${lsn.split('/')[0]}`) * 2n ** 32n + BigInt(`0x${lsn.split('/')[1]}`);
  const gone = archive.restorePoints.filter((p) => lsnValue(p.lsn) < lsnValue(stop)).map((p) => p.name);
  await updateState(context.labDir, (s) => {
    const a = requireArchive(s.archive);
    a.backups = a.backups.filter((b) => !older.includes(b.id));
    a.restorePoints = a.restorePoints.filter((p) => !gone.includes(p.name));
  });
  return { before, removedFiles, removedBackups: older, removedRestorePoints: gone, keptFiles };
}
