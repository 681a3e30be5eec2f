// `lab switchover NAME`: a planned change of primary that loses nothing (the pattern of PostgreSQL's
// src/test/recovery/t/009_twophase.pl, and of Patroni's, repmgr's and pg_auto_failover's switchovers).
// The primary is shut down cleanly (fast: its walsenders send all its WAL, the shutdown checkpoint last),
// NAME replays up to that checkpoint and is promoted, and the old primary starts again as NAME's standby
// with no rewind: its last record is one NAME has. The old primary's other standbys follow NAME;
// cascades follow the new timeline through their upstreams. A balancer's primary pool follows lab.json.
// Every step is named: a failure says where it stopped and whether the switch had gone through.
import { open } from 'node:fs/promises';
import { constants } from 'node:fs';
import path from 'node:path';
import { LabError, messageOf } from '../common/errors.js';
import { pollUntil } from '../common/poll.js';
import { assertPortFree } from '../common/ports.js';
import { silentReporter, type Reporter } from '../common/reporter.js';
import { nodeLogFile, openLab, type GlobalOptions, type LabContext } from '../lab/context.js';
import { assertAnswers, boundedConn, onNode } from '../lab/node-answers.js';
import { nodeFilesSpec, writeStandbyConfig } from '../lab/node-files.js';
import { primaryOf, requireBuilt, requireNode, updateState, type NodeRecord } from '../lab/state.js';
import { nodeAddress } from '../network/address.js';
import { dropSlot, ensureSlot, slotName } from '../postgres/base-backup.js';
import { queryRows, withClient } from '../postgres/client.js';
import { serverRole, type ServerRole } from '../postgres/recovery.js';
import { sizeOf } from '../postgres/server.js';
import { applySyncStandbys } from '../postgres/sync-standbys.js';
import { runtimeFor } from '../runtime/runtime-for.js';
import { replicaFollow, waitStreaming } from './follow.js';
import { promoteServer } from './promote.js';
import { refuseSubscriber } from '../lab/subscriber.js';

export interface SwitchoverOptions {
  /** Refused when NAME's replay is further behind the primary than this (bytes); default 1 MiB (Patroni's maximum_lag_on_failover). */
  maxLagBytes?: number;
  /** Bound on each step's wait; default 60 s. */
  timeoutMs?: number;
  reporter?: Reporter;
}

export type SwitchoverStepName = 'checks' | 'checkpoint' | 'stop' | 'catch up' | 'promote' | 'old primary streams' | 'standbys follow';

export interface SwitchoverStep {
  step: SwitchoverStepName;
  ms: number;
  detail: string;
}

export interface SwitchoverResult {
  name: string;
  previousPrimary: string;
  timeline: number;
  /** The old primary's shutdown checkpoint, replayed by NAME before its promotion. */
  shutdownCheckpoint: string;
  /** From the request to stop the old primary until NAME accepted writes: the lab had no primary. */
  noPrimaryMs: number;
  /** The old primary's other standbys, re-pointed to NAME. */
  followed: string[];
  /** Standbys of the old primary that were not running: they follow NAME once re-pointed (`lab replica follow`). */
  notFollowed: string[];
  synchronousStandbyNames: string;
  steps: SwitchoverStep[];
  elapsedMs: number;
}

export const DEFAULT_MAX_LAG_BYTES = 1024 * 1024;

/** pg_control's first fields, the same offsets in every supported major (src/include/catalog/pg_control.h). */
const DB_SHUTDOWNED = 1;
const DB_STATES = ['starting up', 'shut down', 'shut down in recovery', 'shutting down', 'in crash recovery', 'in archive recovery', 'in production'];

/** The cluster state and latest checkpoint of a stopped data dir, read from global/pg_control (no pg_controldata: cached majors have none). */
export interface ControlFile {
  state: number;
  stateName: string;
  checkpoint: string;
}

export async function readControlFile(datadir: string): Promise<ControlFile> {
  const handle = await open(path.join(datadir, 'global', 'pg_control'), constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const buffer = Buffer.alloc(40);
    const { bytesRead } = await handle.read(buffer, 0, 40, 0);
    if (bytesRead < 40) throw new LabError('STATE', `${datadir}/global/pg_control is too short (${bytesRead} bytes)`);
    const state = buffer.readUInt32LE(16);
    const lsn = buffer.readBigUInt64LE(32);
    const checkpoint = `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
    return { state, stateName: DB_STATES[state] ?? `state ${state}`, checkpoint };
  } finally {
    await handle.close();
  }
}

export async function switchover(global: GlobalOptions, name: string, options: SwitchoverOptions = {}): Promise<SwitchoverResult> {
  const started = Date.now();
  const timeoutMs = options.timeoutMs ?? 60_000;
  const maxLagBytes = options.maxLagBytes ?? DEFAULT_MAX_LAG_BYTES;
  const reporter = options.reporter ?? silentReporter;
  const context = await openLab(global);
  const { state } = context;
  const nodes = runtimeFor(context);
  const steps: SwitchoverStep[] = [];
  let stepStarted = Date.now();
  const done = (step: SwitchoverStepName, detail: string) => {
    const now = Date.now();
    steps.push({ step, ms: now - stepStarted, detail });
    reporter.detail(`${step}: ${detail} (${now - stepStarted} ms)`);
    stepStarted = now;
  };

  // ---- checks: nothing is touched until each passes ----
  const target = requireNode(state, name);
  refuseSubscriber(target, 'switched over to');
  const old = primaryOf(state);
  if (!old) throw new LabError('STATE', 'This lab has no primary to switch over from: promote a replica (`lab promote NAME`)');
  if (target.name === old.name) throw new LabError('USAGE', `Node "${name}" is already the lab's primary: switch over to one of its standbys`);
  requireBuilt(target, 're-add it first');
  if (target.role === 'restored') throw new LabError('STATE', `Node "${name}" is a restored node (\`lab node restore\`) on a timeline of its own: it is nobody's standby; switch over to a replica`);
  if (target.rewindNeeded) throw new LabError('STATE', `Node "${name}" is a former primary waiting for a rewind: rewind it first (\`lab node rewind ${name}\`), then switch over to it`);
  if (target.upstream && target.upstream !== old.name) {
    throw new LabError('STATE', `Node "${name}" streams from "${target.upstream}", not from the primary "${old.name}": switch over to "${target.upstream}", or re-point "${name}" first (\`lab replica follow ${name}\`)`);
  }
  for (const node of [old, target]) {
    const fault = state.faults?.find((f) => f.node === node.name);
    if (fault) throw new LabError('STATE', `Node "${node.name}" has a fault in force (${fault.kind}): heal it first (\`lab fault heal ${node.name}\`), then switch over`);
    if (!(await nodes.livePid(node))) throw new LabError('STATE', `Node "${node.name}" is not running: start it first (\`lab node start ${node.name}\`), then switch over`);
    await assertAnswers(state, node);
  }
  const oldConn = boundedConn(state, old);
  const targetConn = boundedConn(state, target);
  const oldRole = await onNode(state, old, () => serverRole(oldConn, state.pg.major));
  if (oldRole.inRecovery) throw new LabError('STATE', `The lab's primary "${old.name}" answers as a standby (in recovery): check the lab with \`lab status\``);
  const [row] = await onNode(state, old, () =>
    queryRows<{ state: string; lag: string | null }>(oldConn, 'SELECT state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint::text AS lag FROM pg_stat_replication WHERE application_name = $1', [name]),
  );
  if (!row || row.state !== 'streaming') {
    throw new LabError('STATE', `Node "${name}" is not streaming from "${old.name}" (${row ? `state ${row.state}` : 'not connected'}): wait until it streams (\`lab stat replication\`), then switch over`);
  }
  const [standby] = await onNode(state, target, () =>
    queryRows<{ recovery: boolean; paused: boolean; delay: string | null }>(
      targetConn,
      "SELECT pg_is_in_recovery() AS recovery, pg_is_wal_replay_paused() AS paused, (SELECT setting FROM pg_settings WHERE name = 'recovery_min_apply_delay') AS delay",
    ),
  );
  if (!standby!.recovery) throw new LabError('STATE', `Node "${name}" is not in recovery: it runs as a primary; rewind it (\`lab node rewind ${name}\`)`);
  // PostgreSQL 11 has no such setting (null): its delay is in recovery.conf, which lab.json records (applyDelayMs).
  const delayMs = target.applyDelayMs ?? (standby!.delay !== null && standby!.delay !== '0' ? standby!.delay : undefined);
  if (delayMs !== undefined) {
    throw new LabError('STATE', `Node "${name}" applies WAL ${delayMs} ms late (recovery_min_apply_delay): the lab would have no primary while it catches up; switch over to a standby without a delay`);
  }
  const lag = Number(row.lag ?? 0);
  if (lag > maxLagBytes) {
    throw new LabError('STATE', `Node "${name}" is ${lag} bytes behind "${old.name}" (more than --max-lag ${maxLagBytes}): wait until it catches up, or raise --max-lag`);
  }
  if (standby!.paused) throw new LabError('STATE', `Node "${name}" has its replay paused: resume it (\`lab fault heal ${name}\`, or SELECT pg_wal_replay_resume()), then switch over`);
  done('checks', `${name} streams from ${old.name}, ${lag} bytes behind`);

  // ---- checkpoint: the shutdown checkpoint then has little to write ----
  await onNode(state, old, () => withClient({ ...oldConn, queryTimeoutMs: timeoutMs }, (client) => client.query('CHECKPOINT')));
  done('checkpoint', `CHECKPOINT on ${old.name}`);

  let stopAt = 0;
  let control!: ControlFile;
  let promoted!: ServerRole;
  // One session on NAME from before the stop to its promotion: the catch-up and the promotion are polled
  // on it (a login per poll, scram and TLS, would cost more than the wait).
  await withClient(targetConn, async (session) => {
    // ---- stop: a fast shutdown; its walsenders send every record, the shutdown checkpoint last ----
    stopAt = Date.now();
    await nodes.stop(old, 'fast', timeoutMs);
    await updateState(context.labDir, (s) => {
      requireNode(s, old.name).expected = 'stopped';
    });
    control = await readControlFile(old.datadir);
    if (control.state !== DB_SHUTDOWNED) {
      await restartOld(context, old, timeoutMs);
      throw new LabError('STATE', `The switchover stopped at step 'stop': ${old.name} did not shut down cleanly (pg_control says "${control.stateName}"); nothing was promoted and ${old.name} was started again as the primary`);
    }
    done('stop', `${old.name} shut down cleanly, shutdown checkpoint at ${control.checkpoint}`);

    // ---- catch up: NAME replays past the shutdown checkpoint ----
    try {
      await pollUntil(
        async () => ((await session.query<{ ok: boolean }>('SELECT pg_last_wal_replay_lsn() > $1::pg_lsn AS ok', [control.checkpoint])).rows[0]?.ok ? true : undefined),
        { timeoutMs, intervalMs: 5, what: `${name} to replay ${old.name}'s shutdown checkpoint ${control.checkpoint}` },
      );
    } catch (error) {
      const at = await session.query<{ lsn: string }>('SELECT pg_last_wal_replay_lsn()::text AS lsn').then((r) => r.rows[0]?.lsn, () => undefined);
      const restarted = await restartOld(context, old, timeoutMs).then(() => `${old.name} was started again as the primary`, (e) => `${old.name} could not be started again (${messageOf(e)}): start it (\`lab node start ${old.name}\`)`);
      throw new LabError(
        error instanceof LabError && error.code === 'TIMEOUT' ? 'TIMEOUT' : 'STATE',
        `The switchover stopped at step 'catch up': ${name} did not replay ${old.name}'s shutdown checkpoint ${control.checkpoint} (it replayed up to ${at ?? 'an unknown point'}): ${messageOf(error)}; nothing was promoted and ${restarted}`,
        { cause: error },
      );
    }
    done('catch up', `${name} replayed past ${control.checkpoint}`);

    // ---- promote ----
    try {
      promoted = await promoteServer(context, target, timeoutMs, { session });
    } catch (error) {
      // A promotion that went through while its wait failed is a promotion: carry on, never report it as a failure.
      const role = await serverRole(targetConn, state.pg.major).catch(() => undefined);
      if (role && !role.inRecovery) {
        promoted = role;
        return;
      }
      throw new LabError(
        error instanceof LabError && error.code === 'TIMEOUT' ? 'TIMEOUT' : 'STATE',
        `The switchover stopped at step 'promote': ${messageOf(error)}; ${name} is ${role ? 'still in recovery' : 'not answering'}, ${old.name} is shut down cleanly with all of its WAL on ${name}, and lab.json still names ${old.name} the primary: look at ${name}'s log, then start ${old.name} again (\`lab node start ${old.name}\`) or promote ${name} (\`lab promote ${name}\`)`,
        { cause: error },
      );
    }
  });

  await updateState(context.labDir, (s) => {
    const t = requireNode(s, name);
    t.role = 'primary';
    t.timeline = promoted.timeline;
    delete t.upstream;
    delete t.rewindNeeded;
    const o = requireNode(s, old.name);
    o.role = 'replica';
    o.upstream = name;
    delete o.rewindNeeded;
    delete o.sync;
  });
  const noPrimaryMs = Date.now() - stopAt;
  done('promote', `${name} is the primary on timeline ${promoted.timeline}`);

  // From here the switch has gone through: a failure says so, with the step it stopped at.
  const wentThrough = (step: SwitchoverStepName, error: unknown) =>
    new LabError(
      error instanceof LabError && error.code === 'TIMEOUT' ? 'TIMEOUT' : 'STATE',
      `The switchover went through (${name} is the primary on timeline ${promoted.timeline}, ${old.name}'s WAL all on it) but stopped at step '${step}': ${messageOf(error)}`,
      { cause: error, detail: error instanceof LabError ? error.detail : undefined },
    );
  let synchronousStandbyNames: string;
  try {
    // The lab's other synchronous standbys (NAME's settings, a copy of the old primary's, may name itself).
    const syncNames = state.nodes.filter((n) => n.sync && n.name !== name && n.name !== old.name && !n.rewindNeeded).map((n) => n.name);
    synchronousStandbyNames = await applySyncStandbys(targetConn, syncNames);
    // ---- the old primary starts again as NAME's standby, with no rewind ----
    await ensureSlot(targetConn, slotName(old.name));
    const current = { ...old, role: 'replica' as const, upstream: name };
    await writeStandbyConfig({ ...nodeFilesSpec(context.labDir, state, current, await nodes.dataOwner()), upstreamPort: target.port, upstreamHost: nodeAddress(target) });
    await assertPortFree(old.port, `node "${old.name}"`);
    const logFrom = await sizeOf(nodeLogFile(context.labDir, old.name));
    await nodes.start(current, timeoutMs);
    await updateState(context.labDir, (s) => {
      requireNode(s, old.name).expected = 'running';
    });
    const targetNow = { ...target, role: 'primary' as const };
    await waitStreaming(context, targetNow, old.name, timeoutMs, false, logFrom);
    const oldNow = await serverRole(oldConn, state.pg.major);
    if (oldNow.timeline !== promoted.timeline) throw new LabError('STATE', `${old.name} streams on timeline ${oldNow.timeline}, not ${promoted.timeline}`);
    // Its slot for NAME is of no use now: left, it would keep WAL on a standby forever.
    await dropSlot(oldConn, slotName(name)).catch(() => undefined);
  } catch (error) {
    throw wentThrough('old primary streams', error);
  }
  done('old primary streams', `${old.name} streams from ${name} on timeline ${promoted.timeline}, no rewind`);

  // ---- the old primary's other standbys follow NAME (each restarts with the new primary_conninfo) ----
  const followed: string[] = [];
  const notFollowed: string[] = [];
  for (const replica of state.nodes.filter((n) => n.role === 'replica' && n.name !== name && n.name !== old.name && n.phase === 'ready' && !n.rewindNeeded && (n.upstream ?? old.name) === old.name)) {
    if (!(await nodes.livePid(replica))) {
      notFollowed.push(replica.name);
      continue;
    }
    try {
      await replicaFollow(global, replica.name, { primary: name, timeoutMs });
    } catch (error) {
      throw wentThrough('standbys follow', error);
    }
    followed.push(replica.name);
  }
  done('standbys follow', followed.length > 0 ? `${followed.join(', ')} ${followed.length === 1 ? 'follows' : 'follow'} ${name}` : 'no other standby of the old primary');

  return {
    name, previousPrimary: old.name, timeline: promoted.timeline, shutdownCheckpoint: control.checkpoint, noPrimaryMs, followed, notFollowed,
    synchronousStandbyNames, steps, elapsedMs: Date.now() - started,
  };
}

/** Before the promotion, a failed switchover gives the lab its primary back. */
async function restartOld(context: LabContext, old: NodeRecord, timeoutMs: number): Promise<void> {
  await runtimeFor(context).start(old, timeoutMs);
  await updateState(context.labDir, (s) => {
    requireNode(s, old.name).expected = 'running';
  });
}
