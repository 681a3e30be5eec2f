// pglab's own base backup (issue 16): the low-level backup API in one session, a kernel file copy of
// the primary's data dir by a child running as the data's owner, and backup_label / tablespace_map
// written exactly as pg_backup_stop returned them. Also the replication slots every replica streams
// through (primary_slot_name), so the primary keeps the WAL a new standby needs from the backup's start.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { fileSystemError, LabError } from '../common/errors.js';
import { followLines } from '../common/lines.js';
import { packageRoot } from '../common/package-root.js';
import type { Reporter } from '../common/reporter.js';
import { withClient, type ConnectOptions } from './client.js';
import { dialectFor } from './dialect.js';
import type { OsUser } from './os-user.js';

export type BaseBackupMethod = 'auto' | 'pglab' | 'pg_basebackup';
export const BASE_BACKUP_METHODS: BaseBackupMethod[] = ['auto', 'pglab', 'pg_basebackup'];

export function parseBaseBackupMethod(value: string | undefined, from = '--base-backup'): BaseBackupMethod | undefined {
  if (value === undefined || value === '') return undefined;
  if (!(BASE_BACKUP_METHODS as string[]).includes(value)) {
    throw new LabError('USAGE', `Invalid ${from} "${value}": expected ${BASE_BACKUP_METHODS.join(', ')}`);
  }
  return value as BaseBackupMethod;
}

/**
 * What `auto` means where a pg_basebackup of the server's major or newer exists: the faster of the two
 * on the same server (benchmarks/base-backup.ts). Without such a pg_basebackup, auto is always pglab.
 */
export const AUTO_WITH_PG_BASEBACKUP: Exclude<BaseBackupMethod, 'auto'> = 'pglab';

export function resolveAuto(wanted: BaseBackupMethod): Exclude<BaseBackupMethod, 'auto'> {
  return wanted === 'auto' ? AUTO_WITH_PG_BASEBACKUP : wanted;
}

/** The physical replication slot of replica `name` on its primary (slot names: lower case, digits, _). */
export function slotName(name: string): string {
  return `pglab_${name.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`;
}

/** The slot of `slot` on the primary at `conn`, reserving WAL at once; a left-over one is dropped first when `fresh`. */
export async function ensureSlot(conn: ConnectOptions, slot: string, options: { fresh?: boolean } = {}): Promise<void> {
  await withClient(conn, async (client) => {
    const exists = (await client.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot])).rowCount! > 0;
    if (exists && !options.fresh) return;
    if (exists) await dropSlotIn(client, slot);
    await client.query('SELECT pg_create_physical_replication_slot($1, true)', [slot]);
  });
}

/** Drops the slot if it exists (a walsender still holding it is ended first). */
export async function dropSlot(conn: ConnectOptions, slot: string): Promise<boolean> {
  return withClient(conn, (client) => dropSlotIn(client, slot));
}

async function dropSlotIn(client: pg.Client, slot: string): Promise<boolean> {
  for (let attempt = 0; ; attempt += 1) {
    const rows = (await client.query<{ active_pid: number | null }>('SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1', [slot])).rows;
    if (rows.length === 0) return false;
    if (rows[0]!.active_pid !== null) await client.query('SELECT pg_terminate_backend($1)', [rows[0]!.active_pid]);
    try {
      await client.query('SELECT pg_drop_replication_slot($1)', [slot]);
      return true;
    } catch (error) {
      // "is active for PID n": the walsender has not exited yet.
      if (attempt >= 50 || !/is active/.test((error as Error).message)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

export interface OwnBaseBackupSpec {
  /** The primary's session (the lab's superuser over TCP). */
  conn: ConnectOptions;
  major: number;
  /** The primary's data dir on this host (the docker runtime bind-mounts it at the same path). */
  sourceDatadir: string;
  /** The new data dir: exists, empty, owned by `owner`. */
  targetDatadir: string;
  /** Who the copy runs as: the OS user owning both data dirs (undefined: ourselves, not root). */
  owner: OsUser | undefined;
  label: string;
  reporter: Reporter;
  /** Files copied side by side (default 2: this machine's cores; env LAB_COPY_WORKERS). */
  workers?: number;
  /** Aborts the copy (the child is killed) and the backup. */
  signal?: AbortSignal;
}

export interface OwnBaseBackupResult {
  bytes: number;
  files: number;
  vanished: number;
  startLsn: string;
  stopLsn: string;
  /** Milliseconds in pg_backup_start (its checkpoint), the copy, and pg_backup_stop + backup_label. */
  phasesMs: { start: number; copy: number; stop: number };
  /** Peak resident size of the copying child, from /proc (kB), when it could be read. */
  childPeakRssKb?: number;
}

/** What the copy child said when it failed (src/children/datadir-copy-child.ts). */
interface ChildError {
  message: string;
  code?: string;
  syscall?: string;
  path?: string;
  dest?: string;
  bytes: number;
}

const mb = (bytes: number) => (bytes / 1048576).toFixed(bytes < 10 * 1048576 ? 1 : 0);

/** The child's file system error as one line (exit 10): a full target names what was copied and how much is needed. */
function copyError(failed: ChildError, spec: OwnBaseBackupSpec, total: number): LabError {
  if (failed.code === 'ENOSPC' || failed.code === 'EDQUOT') return noSpaceError(spec.targetDatadir, failed.code, `after ${mb(failed.bytes)} of ${mb(total)} MB`, mb(total));
  const errno = Object.assign(new Error(failed.message), { code: failed.code, syscall: failed.syscall, path: failed.path, dest: failed.dest });
  return fileSystemError(errno) ?? new LabError('COMMAND_FAILED', `pglab base backup: the copy of ${spec.sourceDatadir} into ${spec.targetDatadir} failed: ${failed.message}`);
}

function noSpaceError(datadir: string, code: string, when: string, neededMb?: string): LabError {
  const why = code === 'EDQUOT' ? 'the disk quota is exhausted' : 'no space left on the device';
  return new LabError(
    'FILESYSTEM',
    `cannot copy the base backup into ${datadir}: ${why} (${code}) ${when}: free some space there, or choose a data dir on a file system with room for ${neededMb ? `${neededMb} MB and more` : 'the master\'s data'}, then run the command again`,
  );
}

/** pg_basebackup's (or a one-off container's) "No space left on device" as the same line as pglab's copy gives; other errors unchanged. */
export function baseBackupSpaceError(error: unknown, datadir: string): unknown {
  if (!(error instanceof LabError) || error.code !== 'COMMAND_FAILED') return error;
  return /No space left on device/.test(`${error.message}\n${error.detail ?? ''}`) ? noSpaceError(datadir, 'ENOSPC', 'while pg_basebackup wrote it') : error;
}

/** The copy child's code, handed to `node -e`: the data's owner may not be able to read our install dir. */
async function childSource(): Promise<string> {
  return readFile(path.join(packageRoot, 'dist', 'src', 'children', 'datadir-copy-child.js'), 'utf8');
}

/**
 * pg_backup_start in one session, the copy, pg_backup_stop in the same session, then backup_label and
 * tablespace_map (if not empty) exactly as returned, written by the child as the data's owner.
 */
export async function ownBaseBackup(spec: OwnBaseBackupSpec): Promise<OwnBaseBackupResult> {
  spec.signal?.throwIfAborted();
  const dialect = dialectFor(spec.major);
  const source = await childSource();
  return withClient({ ...spec.conn, connectTimeoutMs: spec.conn.connectTimeoutMs ?? 5000, applicationName: 'pglab base backup' }, async (client) => {
    const t0 = Date.now();
    const startLsn = (await client.query<{ lsn: string }>(dialect.backupStartSql, [spec.label])).rows[0]!.lsn;
    const t1 = Date.now();
    let stopped = false;
    try {
      const child = spawn(process.execPath, ['--input-type=module', '-e', source, JSON.stringify({ source: spec.sourceDatadir, target: spec.targetDatadir, workers: spec.workers ?? (Number(process.env.LAB_COPY_WORKERS) || 2) })], {
        uid: spec.owner?.uid,
        gid: spec.owner?.gid,
        cwd: '/',
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      const kill = () => child.kill('SIGKILL');
      spec.signal?.addEventListener('abort', kill, { once: true });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => {
        stderr = (stderr + chunk.toString('utf8')).slice(-4000);
      });
      let peakRss = 0;
      const sampler = setInterval(() => {
        void readFile(`/proc/${child.pid}/status`, 'utf8').then((text) => {
          const kb = Number(/VmHWM:\s+(\d+)/.exec(text)?.[1] ?? 0);
          if (kb > peakRss) peakRss = kb;
        }, () => undefined);
      }, 100);
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      let total = 0;
      let failed: ChildError | undefined;
      let copied: { bytes: number; files: number; vanished: number } | undefined;
      let written = false;
      const kb = (bytes: number) => Math.round(bytes / 1024);
      const onCopied = new Promise<void>((resolve) => {
        void followLines(child.stdout, (line) => {
          let message: { type: string; bytes?: number; files?: number; vanished?: number } & Partial<ChildError>;
          try {
            message = JSON.parse(line);
          } catch {
            return;
          }
          if (message.type === 'total') {
            total = message.bytes!;
            spec.reporter.detail(`pglab base backup: ${kb(total)} kB in ${message.files} files to copy from ${spec.sourceDatadir}`);
            spec.reporter.progress(0, `0/${kb(total)} kB`);
          } else if (message.type === 'progress') {
            // pg_basebackup's progress form (reportBackupLine below reads the same).
            spec.reporter.progress(Math.min(1, message.bytes! / Math.max(1, total)), `${kb(message.bytes!)}/${kb(total)} kB`);
          } else if (message.type === 'copied') {
            copied = { bytes: message.bytes!, files: message.files!, vanished: message.vanished! };
            resolve();
          } else if (message.type === 'written') {
            written = true;
          } else if (message.type === 'error') {
            failed = message as ChildError;
          }
        });
        void exited.then(() => resolve());
      });
      await onCopied;
      if (!copied) {
        clearInterval(sampler);
        const code = await exited;
        spec.signal?.throwIfAborted();
        if (failed) throw copyError(failed, spec, total);
        throw new LabError('COMMAND_FAILED', `pglab base backup: the copy of ${spec.sourceDatadir} failed (exit code ${code}): ${stderr.trim().split('\n').pop() ?? ''}`);
      }
      const t2 = Date.now();
      const stop = (await client.query<{ lsn: string; labelfile: string; spcmapfile: string | null }>(dialect.backupStopSql)).rows[0]!;
      stopped = true;
      const files: Record<string, string> = { backup_label: stop.labelfile };
      if (stop.spcmapfile) files.tablespace_map = stop.spcmapfile;
      child.stdin.end(JSON.stringify({ files }));
      const code = await exited;
      clearInterval(sampler);
      spec.signal?.removeEventListener('abort', kill);
      spec.signal?.throwIfAborted();
      if (failed && !written) throw copyError(failed, spec, total);
      if (code !== 0 || !written) {
        throw new LabError('COMMAND_FAILED', `pglab base backup: writing backup_label into ${spec.targetDatadir} failed (exit code ${code}): ${stderr.trim().split('\n').pop() ?? ''}`);
      }
      const copiedDone: { bytes: number; files: number; vanished: number } = copied;
      spec.reporter.progress(1, `${kb(copiedDone.bytes)}/${kb(total)} kB`);
      return { ...copiedDone, startLsn, stopLsn: stop.lsn, phasesMs: { start: t1 - t0, copy: t2 - t1, stop: Date.now() - t2 }, childPeakRssKb: peakRss || undefined };
    } finally {
      // A failed copy must not leave the backup running on the primary (the session's end aborts it too).
      if (!stopped) await client.query(dialect.backupStopSql).catch(() => undefined);
    }
  });
}

/** One line of pg_basebackup --progress --verbose: progress to the reporter; returns the backup's size in kB when it says it. */
export function reportBackupLine(line: string, reporter: Reporter): number | undefined {
  const match = /(\d+)\/(\d+) kB \((\d+)%\)/.exec(line);
  if (!match) {
    reporter.detail(line);
    return undefined;
  }
  reporter.progress(Number(match[1]) / Math.max(1, Number(match[2])), `${match[1]}/${match[2]} kB`);
  return Number(match[2]);
}
