// `lab node restore NAME DATADIR PORT --target-...`: point-in-time recovery from the lab's archive. The
// newest base backup consistent before the target is copied, restore_command reads the archive, and
// recovery stops at the target (recovery_target_action promote, or pause with --pause). The node is a
// standalone 'restored' node on a timeline of its own: no upstream, no balancer pool, no archiving (its
// new timeline must not mix with the lab's in the archive). A target that cannot be reached is an error
// and leaves nothing: no record, no data dir the lab made, no log.
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { LabError } from '../common/errors.js';
import { parsePort, assertPortFree } from '../common/ports.js';
import { silentReporter, type Reporter } from '../common/reporter.js';
import { checkShellSafePath, checkShellSafeProgram } from '../common/shell-safe-path.js';
import { archiveEnd, backupDir, formatLsn, parseLsn, quoteConf, readyBackups, requireArchive, restoreCommand } from '../lab/archive.js';
import { nodeLogFile, openLab, type GlobalOptions } from '../lab/context.js';
import { checkDatadirPath, inspectDatadir, prepareDatadir, undoDatadir, type PreparedDatadir } from '../lab/datadir.js';
import { checkName } from '../lab/names.js';
import { nodeFilesSpec, writeNodeConfig } from '../lab/node-files.js';
import { findNode, primaryOf, runtimeOf, thisBuilder, updateState, type LabState } from '../lab/state.js';
import type { BackupRecord } from '../lab/state-types.js';
import { checkNodeFits } from '../lab/topology.js';
import { nodeAddress } from '../network/address.js';
import { queryRows } from '../postgres/client.js';
import { dialectFor } from '../postgres/dialect.js';
import { giveTo } from '../postgres/os-user.js';
import { runPg } from '../postgres/run.js';
import { readLogFrom } from '../postgres/server.js';
import { readNoFollow, writePrivateFile } from '../common/safe-files.js';
import { runtimeFor } from '../runtime/runtime-for.js';
import { pollUntil } from '../common/poll.js';

/** Exactly one: a restore point's name, a time, an LSN, a transaction id, or the end of the backup (immediate). */
export type RestoreTarget = { name: string } | { time: string | Date } | { lsn: string } | { xid: number | string } | { immediate: true };

export interface RestoreOptions {
  target: RestoreTarget;
  /** recovery_target_action = pause: the node stays in recovery, paused at the target, for a look. */
  pause?: boolean;
  reporter?: Reporter;
  /** Bound on the start and on the wait until the target is reached (default 120 s). */
  timeoutMs?: number;
  /** Ctrl-C: the restore stops where it is and is undone as a failed one is. */
  signal?: AbortSignal;
}

export interface RestoreResult {
  name: string;
  port: number;
  datadir: string;
  pid: number;
  /** The base backup copied. */
  backup: string;
  target: string;
  /** promoted (a primary on its new timeline) or paused (in recovery, replay paused at the target). */
  state: 'promoted' | 'paused';
  /** The server's own line: "recovery stopping ...". */
  stoppedAt?: string;
  timeline: number | null;
  elapsedMs: number;
}

interface Resolved {
  kind: 'name' | 'time' | 'lsn' | 'xid' | 'immediate';
  /** The recovery_target* settings. */
  settings: string[];
  shown: string;
  /** The target's LSN when known (lsn, name): checked against the archive's end before anything is made. */
  lsn?: bigint;
}

function isoUtc(date: Date): string {
  return date.toISOString().replace('T', ' ').replace('Z', '+00');
}

/** The target, checked: one kind only, well formed, not in the future, a restore point the lab made. */
async function resolveTarget(state: LabState, target: RestoreTarget, primaryConn: (() => Promise<{ lsn: bigint; nextXid: number }>) | undefined): Promise<Resolved> {
  if (typeof target !== 'object' || target === null) throw new LabError('USAGE', 'A restore needs a target: --target-name, --target-time, --target-lsn, --target-xid or --target-immediate');
  const kinds = (['name', 'time', 'lsn', 'xid', 'immediate'] as const).filter((k) => (target as Record<string, unknown>)[k] !== undefined && (target as Record<string, unknown>)[k] !== false);
  if (kinds.length !== 1) throw new LabError('USAGE', `A restore takes exactly one target (--target-name, --target-time, --target-lsn, --target-xid or --target-immediate), got ${kinds.length === 0 ? 'none' : kinds.join(' and ')}`);
  const kind = kinds[0]!;
  const value = (target as Record<string, unknown>)[kind];
  const now = primaryConn && (kind === 'lsn' || kind === 'xid') ? await primaryConn() : undefined;
  switch (kind) {
    case 'name': {
      const point = requireArchive(state.archive).restorePoints.find((p) => p.name === value);
      if (!point) {
        const names = requireArchive(state.archive).restorePoints.map((p) => p.name);
        throw new LabError('NOT_FOUND', `No restore point "${String(value)}" in this lab (made with \`lab restore-point NAME\`; this lab has ${names.join(', ') || 'none'})`);
      }
      return { kind, settings: [`recovery_target_name = ${quoteConf(point.name)}`], shown: `restore point "${point.name}" (LSN ${point.lsn})`, lsn: parseLsn(point.lsn) };
    }
    case 'time': {
      const date = value instanceof Date ? value : new Date(String(value));
      if (Number.isNaN(date.getTime())) throw new LabError('USAGE', `Invalid --target-time ${JSON.stringify(String(value))}: give a time such as 2026-12-07T22:40:00Z`);
      if (date.getTime() > Date.now()) throw new LabError('USAGE', `Target time ${date.toISOString()} is in the future (now ${new Date().toISOString()}): nothing has happened there to restore to`);
      return { kind, settings: [`recovery_target_time = ${quoteConf(isoUtc(date))}`], shown: `time ${date.toISOString()}` };
    }
    case 'lsn': {
      const lsn = parseLsn(String(value));
      if (now && lsn > now.lsn) throw new LabError('USAGE', `Target LSN ${String(value)} is in the future: the master's WAL ends at ${formatLsn(now.lsn)}`);
      return { kind, settings: [`recovery_target_lsn = ${quoteConf(formatLsn(lsn))}`], shown: `LSN ${formatLsn(lsn)}`, lsn };
    }
    case 'xid': {
      const xid = Number(value);
      if (!Number.isSafeInteger(xid) || xid < 3) throw new LabError('USAGE', `Invalid --target-xid ${JSON.stringify(String(value))}: give a transaction id (txid_current() shows one)`);
      if (now && xid >= now.nextXid) throw new LabError('USAGE', `Target transaction ${xid} is in the future: the master's next transaction id is ${now.nextXid}`);
      return { kind, settings: [`recovery_target_xid = '${xid}'`], shown: `transaction ${xid}` };
    }
    case 'immediate':
      return { kind, settings: ["recovery_target = 'immediate'"], shown: 'the end of the base backup (immediate)' };
  }
}

/** The newest backup consistent before the target, or the one-line reason there is none. */
function chooseBackup(state: LabState, target: Resolved, value: RestoreTarget): BackupRecord {
  const backups = readyBackups(state.archive);
  if (backups.length === 0) throw new LabError('STATE', 'No base backup in this lab yet: take one with `lab backup` (a restore starts from a base backup)');
  const fits = (b: BackupRecord): boolean => {
    switch (target.kind) {
      case 'immediate':
        return true;
      case 'lsn':
      case 'name':
        return parseLsn(b.stopLsn!) <= target.lsn!;
      case 'time':
        return new Date(b.stoppedAt!).getTime() <= new Date((value as { time: string | Date }).time).getTime();
      case 'xid':
        return b.nextXid! <= Number((value as { xid: number | string }).xid);
    }
  };
  const chosen = [...backups].reverse().find(fits);
  if (!chosen) {
    const first = backups[0]!;
    throw new LabError('USAGE', `Target ${target.shown} is before the first base backup (${first.id}, consistent at LSN ${first.stopLsn}, ${first.stoppedAt}): nothing can restore to it`);
  }
  return chosen;
}

export async function nodeRestore(global: GlobalOptions, nameArg: string, datadirArg: string, portArg: string | number, options: RestoreOptions): Promise<RestoreResult> {
  const started = Date.now();
  const reporter = options.reporter ?? silentReporter;
  const timeoutMs = options.timeoutMs ?? 120_000;
  const name = checkName(nameArg);
  const datadir = checkShellSafePath(checkDatadirPath(datadirArg), 'data dir');
  checkShellSafePath(global.labDir, 'lab dir');
  const port = parsePort(portArg);
  const context = await openLab(global);
  const { state } = context;
  requireArchive(state.archive);
  if (runtimeOf(state) !== 'process') throw new LabError('USAGE', '`lab node restore` needs the process runtime');
  await checkShellSafeProgram(context.installation.tools.pg_ctl);
  const dialect = dialectFor(state.pg.major);
  const nodes = runtimeFor(context);

  // Everything checkable is checked before anything is copied, each refusal one line.
  const primary = primaryOf(state);
  const primaryRunning = primary && (await nodes.livePid(primary)) !== undefined;
  const primaryNow = primary && primaryRunning
    ? async () => {
      const [row] = await queryRows<{ lsn: string; xid: string }>({ host: nodeAddress(primary), port: primary.port, user: state.dbUser, connectTimeoutMs: 3000 },
        `SELECT ${dialect.currentInsertLsn}::text AS lsn, txid_snapshot_xmax(txid_current_snapshot())::text AS xid`);
      return { lsn: parseLsn(row!.lsn), nextXid: Number(row!.xid) };
    }
    : undefined;
  const target = await resolveTarget(state, options.target, primaryNow);
  if (findNode(state, name)) throw new LabError('CONFLICT', `Node "${name}" exists in this lab: choose another name (a restored node goes with \`lab replica remove ${name}\`)`);
  checkNodeFits(state, context.labDir, { name, port, datadir, role: 'restored' });
  const backup = chooseBackup(state, target, options.target);
  if (target.lsn !== undefined) {
    const end = await archiveEnd(context.labDir, backup.segmentBytes!);
    if (end && target.lsn >= parseLsn(end.endLsn)) throw pastEnd(target, `the archive ends at LSN ${end.endLsn} (WAL file ${end.wal})`);
  }
  const condition = await inspectDatadir(datadir, state.labId);
  if (condition === 'ours') throw new LabError('UNSAFE', `Data dir ${datadir} holds another node of this lab; nothing was deleted: choose another path`);
  if (condition === 'foreign' || condition === 'not-a-directory') await prepareDatadir(datadir, state.labId); // throws the clear error
  await assertPortFree(port, `restored node "${name}"`);

  const recorded = await updateState(context.labDir, (s) => {
    if (findNode(s, name)) throw new LabError('CONFLICT', `Node "${name}" was added by another command meanwhile: choose another name`);
    checkNodeFits(s, context.labDir, { name, port, datadir, role: 'restored' });
    s.nodes.push({ name, role: 'restored', port, datadir, datadirCreated: condition === 'missing', phase: 'building', expected: 'stopped', createdAt: new Date().toISOString(), builder: thisBuilder() });
  });
  const node = { name, port, datadir };
  let prepared: PreparedDatadir | undefined;
  let startedServer = false;
  try {
    options.signal?.throwIfAborted();
    prepared = await prepareDatadir(datadir, state.labId);
    await giveTo(datadir, context.runAs);
    reporter.step(`copying base backup ${backup.id} (consistent at LSN ${backup.stopLsn}) into ${datadir}`);
    await runPg('cp', ['-a', '--', `${backupDir(context.labDir, backup.id)}/.`, datadir], { runAs: context.runAs, timeoutMs: 30 * 60_000, signal: options.signal });
    for (const stale of ['recovery.conf', 'standby.signal', 'recovery.signal', 'postmaster.pid', 'postmaster.opts', 'backup_label.old']) await rm(path.join(datadir, stale), { force: true });
    await writeNodeConfig(nodeFilesSpec(context.labDir, recorded, node, context.runAs));
    await writeRecoveryFiles(datadir, context.runAs, dialect.recoveryFiles([
      `restore_command = ${quoteConf(restoreCommand(context.labDir))}`,
      ...target.settings,
      `recovery_target_action = '${options.pause ? 'pause' : 'promote'}'`,
      "recovery_target_timeline = 'latest'",
    ]));
    await rm(nodeLogFile(context.labDir, name), { force: true });

    reporter.step(`starting ${name} on port ${port}: recovery from the archive to ${target.shown}${options.pause ? ', then pause' : ', then promote'}`);
    startedServer = true;
    const log = () => readLogFrom(nodeLogFile(context.labDir, name), 0).catch(() => '');
    let pid: number;
    // The server may accept connections and then stop (13+: FATAL at the end of WAL before the target)
    // while the start still waits for it: the log is watched beside the start, which it ends.
    const verdict = new AbortController();
    const interrupted = () => verdict.abort(options.signal!.reason);
    options.signal?.addEventListener('abort', interrupted, { once: true });
    const watcher = setInterval(() => {
      void log().then((text) => notReached(text, target)).then((failed) => {
        if (failed && !verdict.signal.aborted) verdict.abort(failed);
      });
    }, 200);
    try {
      pid = await nodes.start(node, timeoutMs, verdict.signal);
    } catch (error) {
      throw verdict.signal.aborted ? verdict.signal.reason : ((await notReached(await log(), target)) ?? error);
    } finally {
      clearInterval(watcher);
      options.signal?.removeEventListener('abort', interrupted);
    }
    reporter.step(`waiting until ${name} reaches ${target.shown}`);
    const conn = { host: '127.0.0.1', port, user: state.dbUser, connectTimeoutMs: 3000, queryTimeoutMs: 3000 };
    const outcome = await pollUntil(async () => {
      const text = await log();
      const failed = await notReached(text, target);
      if (failed) return { failed };
      if (!(await nodes.livePid(node))) return { failed: new LabError('COMMAND_FAILED', `${name} stopped during recovery: ${lastFatal(text) ?? 'see its log'}`, { detail: text.split('\n').slice(-15).join('\n') }) };
      const stoppedAt = /LOG:\s+(recovery stopping [^\n]*)/.exec(text)?.[1];
      const [row] = await queryRows<{ recovery: boolean; tli: number | null }>(conn, 'SELECT pg_is_in_recovery() AS recovery, (SELECT timeline_id FROM pg_control_checkpoint()) AS tli');
      if (!row!.recovery) {
        // Before 13 a recovery that ran out of WAL promotes without having reached the target.
        if (!stoppedAt && target.kind !== 'immediate') return { failed: pastEnd(target, reachedFrom(text)) };
        return { state: 'promoted' as const, stoppedAt, tli: row!.tli };
      }
      if (options.pause) {
        const [paused] = await queryRows<{ paused: boolean }>(conn, dialect.replayPausedSql);
        if (paused!.paused && (stoppedAt || /recovery has paused/.test(text))) return { state: 'paused' as const, stoppedAt, tli: row!.tli };
      }
      return undefined;
    }, { timeoutMs, intervalMs: 200, signal: options.signal, what: `${name} to reach ${target.shown}`, detail: async () => (await log()).split('\n').slice(-15).join('\n') });
    if ('failed' in outcome) throw outcome.failed;
    await updateState(context.labDir, (s) => {
      const n = s.nodes.find((x) => x.name === name)!;
      n.phase = 'ready';
      n.expected = 'running';
      if (outcome.tli) n.timeline = outcome.tli;
      delete n.builder;
    });
    return { name, port, datadir, pid, backup: backup.id, target: target.shown, state: outcome.state, stoppedAt: outcome.stoppedAt, timeline: outcome.tli, elapsedMs: Date.now() - started };
  } catch (error) {
    // Nothing half made stays: the server, the data dir the lab filled, its log, its record.
    if (startedServer) await nodes.stop(node, 'immediate').catch(() => undefined);
    if (prepared) await undoDatadir(datadir, prepared).catch(() => undefined);
    await rm(nodeLogFile(context.labDir, name), { force: true }).catch(() => undefined);
    await updateState(context.labDir, (s) => {
      s.nodes = s.nodes.filter((n) => n.name !== name);
    }).catch(() => undefined);
    throw error;
  }
}

function lastFatal(text: string): string | undefined {
  return [...text.matchAll(/\b(?:FATAL|PANIC):\s+(.+)$/gm)].pop()?.[1];
}

/** What the server's log says it reached before WAL ran out: redo's end and the last commit's time. */
function reachedFrom(text: string): string {
  const redo = /redo done at ([0-9A-F]+\/[0-9A-F]+)/.exec(text)?.[1];
  const last = /last completed transaction was at log time ([^\n]+)/.exec(text)?.[1]?.trim();
  if (!redo && !last) return 'the server did not say how far it got';
  return `the last point that can be reached is ${redo ? `LSN ${redo}` : ''}${redo && last ? ', ' : ''}${last ? `the commit at ${last}` : ''}`;
}

function pastEnd(target: Resolved, reached: string): LabError {
  return new LabError('USAGE', `Target ${target.shown} is past the end of the archive: ${reached}; WAL not yet archived is in the master's current WAL file (\`lab restore-point NAME\` archives up to now)`);
}

/** 13+: the server ends with FATAL when WAL runs out before the target. */
async function notReached(text: string, target: Resolved): Promise<LabError | undefined> {
  if (/recovery ended before configured recovery target was reached/.test(text)) return pastEnd(target, reachedFrom(text));
  return undefined;
}

/** recovery.conf (<= 11), or recovery.signal and the settings in postgresql.auto.conf, whose copied recovery and standby lines go. */
async function writeRecoveryFiles(datadir: string, owner: Parameters<typeof giveTo>[1], files: ReturnType<ReturnType<typeof dialectFor>['recoveryFiles']>): Promise<void> {
  if (files.recoveryConf) await writePrivateFile(path.join(datadir, 'recovery.conf'), files.recoveryConf, 0o600, owner);
  if (files.signal) await writePrivateFile(path.join(datadir, files.signal), '', 0o600, owner);
  const autoConf = path.join(datadir, 'postgresql.auto.conf');
  const current = (await readNoFollow(autoConf)) ?? '';
  // ALTER SYSTEM lines of the primary that a standalone copy must not keep (a sync standby list would hang its commits).
  const kept = current.split('\n').filter((line) => line && !/^\s*(primary_conninfo|primary_slot_name|restore_command|recovery_target\w*|synchronous_standby_names)\s*=/.test(line));
  await writePrivateFile(autoConf, `${[...kept, ...(files.autoConfLines ?? [])].join('\n')}\n`, 0o600, owner);
}
