// `lab promote NAME`: a replica becomes the lab's primary. pg_ctl promote works on every version
// (the trigger for recovery.conf servers too); we return once the server is out of recovery and the
// lab state names it primary. The former primary stays in the lab as a replica marked rewindNeeded:
// its data may have diverged, so only `lab node rewind` (or a rebuild) brings it back.
import { LabError } from '../common/errors.js';
import { pollUntil } from '../common/poll.js';
import { openLab, type GlobalOptions, type LabContext } from '../lab/context.js';
import { primaryOf, requireBuilt, requireNode, updateState, type NodeRecord } from '../lab/state.js';
import { serverRole, type ServerRole } from '../postgres/recovery.js';
import { dialectFor } from '../postgres/dialect.js';
import { runPg } from '../postgres/run.js';
import type pg from 'pg';
import { queryRows, withClient, type ConnectOptions } from '../postgres/client.js';
import { formatApplyDelay } from '../lab/apply-delay.js';
import { runtimeFor } from '../runtime/runtime-for.js';
import { applySyncStandbys } from '../postgres/sync-standbys.js';
import { nodeAddress } from '../network/address.js';
import { refuseSubscriber } from '../lab/subscriber.js';

export interface PromoteOptions {
  timeoutMs?: number;
}

export interface PromoteResult {
  name: string;
  port: number;
  /** The node that was the lab's primary before, now waiting for a rewind. */
  previousPrimary: string | null;
  timeline: number;
  /** synchronous_standby_names now set on the new primary ('' = asynchronous). */
  synchronousStandbyNames: string;
  /** What it had of the WAL when promoted: see walAtPromote. */
  walAtPromote: WalAtPromote;
  elapsedMs: number;
}

/**
 * The standby's WAL just before the promote (pg_last_wal_receive_lsn / pg_last_wal_replay_lsn) and after.
 * PostgreSQL ends a recovery_min_apply_delay wait when promoted (xlogrecovery.c, recoveryApplyDelay breaks
 * on CheckForStandbyTrigger) and replays all WAL already streamed before it leaves recovery
 * (WaitForWALToBecomeAvailable): a delayed standby applies what it held back, at once. WAL its upstream
 * had not sent it is not there.
 */
export interface WalAtPromote {
  /** The end of the WAL it had received (null: its walreceiver never ran since its start). */
  receivedLsn: string | null;
  /** The end of the WAL it had applied. */
  replayedLsn: string | null;
  /** Received but not yet applied (a delayed standby's held-back WAL, or a paused replay's): applied at the promote. */
  unappliedBytes: number | null;
  /** Where its new timeline begins (the switch point in its timeline history file): the end of the WAL it replayed. */
  timelineStartLsn: string | null;
  /** True when the new timeline begins at or past what it had received: everything received was applied. */
  appliedAllReceived: boolean | null;
  /** The apply delay it had as a standby (it has none as a primary). */
  applyDelayMs: number | null;
}

/**
 * Asks the standby `node` to promote and waits until it is out of recovery (polled every `pollMs` on one
 * session, `session` if given, else one opened here: a login per poll, scram and TLS, costs more than the
 * poll): pg_promote() from 12, pg_ctl promote without its own wait (it polls at 100 ms) on 11.
 */
export async function promoteServer(context: LabContext, node: NodeRecord, timeoutMs: number, options: { session?: pg.Client; pollMs?: number } = {}): Promise<ServerRole> {
  const { state } = context;
  const nodes = runtimeFor(context);
  const conn = { host: nodeAddress(node), port: node.port, user: state.dbUser, connectTimeoutMs: 2000 };
  const promote = async (client: pg.Client) => {
    if (state.pg.major >= 12) {
      await client.query('SELECT pg_promote(false)');
    } else if (nodes.name === 'docker') {
      // pg_ctl on the host cannot write into a data dir the image's user owns.
      throw new LabError('STATE', `Promoting a PostgreSQL ${state.pg.major} container needs pg_promote() (PostgreSQL 12+): not supported on the docker runtime`);
    } else {
      await runPg(context.installation.tools.pg_ctl!, ['-W', '-D', node.datadir, 'promote'], { runAs: context.runAs, timeoutMs: timeoutMs + 10_000 });
    }
    await pollUntil(async () => ((await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]?.r === false ? true : undefined), {
      timeoutMs, intervalMs: options.pollMs ?? 10, what: `${node.name} to leave recovery after its promotion`, detail: () => nodes.logTail(node),
    });
  };
  const promoteAndRead = async (client: pg.Client): Promise<ServerRole> => {
    await promote(client);
    const d = dialectFor(state.pg.major);
    const { rows } = await client.query<{ tli_hex: string; lsn: string }>(`SELECT substr(${d.currentWalFile}, 1, 8) AS tli_hex, ${d.currentWriteLsn}::text AS lsn`);
    return { inRecovery: false, timeline: parseInt(rows[0]!.tli_hex, 16), lsn: rows[0]!.lsn };
  };
  return options.session ? promoteAndRead(options.session) : withClient(conn, promoteAndRead);
}

export async function promoteNode(global: GlobalOptions, name: string, options: PromoteOptions = {}): Promise<PromoteResult> {
  const started = Date.now();
  const timeoutMs = options.timeoutMs ?? 60_000;
  const context = await openLab(global);
  const { state } = context;
  const nodes = runtimeFor(context);
  const node = requireNode(state, name);
  refuseSubscriber(node, 'promoted');
  const conn = { host: nodeAddress(node), port: node.port, user: state.dbUser, connectTimeoutMs: 2000 };
  if (node.role === 'primary') throw new LabError('STATE', `Node "${name}" is already the lab's primary: promote a replica`);
  if (node.role === 'restored') throw new LabError('STATE', `Node "${name}" is a restored node (\`lab node restore\`): it stands alone on a timeline of its own and joins no replication; remove it with \`lab replica remove ${name}\``);
  requireBuilt(node, 're-add it first');
  if (node.rewindNeeded) {
    throw new LabError('STATE', `Node "${name}" is a former primary that may have diverged: rewind it first (\`lab node rewind ${name}\`)`);
  }
  if (!(await nodes.livePid(node))) {
    throw new LabError('STATE', `Node "${name}" is not running: start it first (\`lab node start ${name}\`), a stopped standby cannot be promoted`);
  }
  const before = await serverRole(conn, state.pg.major);
  if (!before.inRecovery) {
    throw new LabError('STATE', `Node "${name}" is already a primary (not in recovery) on timeline ${before.timeline}: rewind it (\`lab node rewind ${name}\`) or promote another replica`);
  }
  const old = primaryOf(state);
  if (old && (await nodes.livePid(old))) {
    const oldRole = await serverRole({ host: nodeAddress(old), port: old.port, user: state.dbUser, connectTimeoutMs: 2000 }, state.pg.major).catch(() => undefined);
    if (oldRole && !oldRole.inRecovery) {
      throw new LabError(
        'STATE',
        `The primary "${old.name}" is still running: promoting "${name}" would give the lab two primaries; stop it first (\`lab node stop ${old.name}\`)`,
      );
    }
  }

  const dialect = dialectFor(state.pg.major);
  const [wal] = await queryRows<{ received: string | null; replayed: string | null; unapplied: string | null }>(
    conn,
    `SELECT r::text AS received, p::text AS replayed, greatest(${dialect.lsnDiff}(r, p), 0)::bigint AS unapplied FROM (SELECT ${dialect.lastReceiveLsn} AS r, ${dialect.lastReplayLsn} AS p) x`,
  );

  const after = await promoteServer(context, node, timeoutMs);

  // The new primary waits for the other synchronous standbys the lab has (ALTER SYSTEM: a copy of the
  // old primary may carry its list, naming itself).
  const syncNames = state.nodes.filter((n) => n.sync && n.name !== name && !n.rewindNeeded && n.name !== old?.name).map((n) => n.name);
  const synchronousStandbyNames = await applySyncStandbys(conn, syncNames);
  const timelineStartLsn = await switchPoint(conn, after.timeline, state.pg.major);
  const appliedAllReceived = wal?.received && timelineStartLsn ? lsnValue(timelineStartLsn) >= lsnValue(wal.received) : null;
  // A primary applies nothing late: its recovery_min_apply_delay goes (recovery.conf is recovery.done already before 12).
  if (node.applyDelayMs !== undefined && state.pg.major >= 12) {
    await withClient(conn, async (client) => {
      await client.query('ALTER SYSTEM RESET recovery_min_apply_delay');
      await client.query('SELECT pg_reload_conf()');
    });
  }
  const walAtPromote: WalAtPromote = {
    receivedLsn: wal?.received ?? null,
    replayedLsn: wal?.replayed ?? null,
    unappliedBytes: wal?.unapplied === null || wal?.unapplied === undefined ? null : Number(wal.unapplied),
    timelineStartLsn,
    appliedAllReceived,
    applyDelayMs: node.applyDelayMs ?? null,
  };

  await updateState(context.labDir, (s) => {
    for (const n of s.nodes) {
      if (n.role === 'primary' && n.name !== name) {
        n.role = 'replica';
        n.rewindNeeded = true;
        delete n.upstream;
      }
    }
    const promoted = requireNode(s, name);
    promoted.role = 'primary';
    promoted.timeline = after.timeline;
    delete promoted.upstream;
    delete promoted.rewindNeeded;
    delete promoted.applyDelayMs;
  });
  return { name, port: node.port, previousPrimary: old?.name ?? null, timeline: after.timeline, synchronousStandbyNames, walAtPromote, elapsedMs: Date.now() - started };
}

/**
 * The LSN where `timeline` begins: the last line of its history file (`parent TLI, switch point, reason`),
 * written at the promote with the end of the WAL recovery replayed (EndOfLog). null when unreadable.
 */
async function switchPoint(conn: ConnectOptions, timeline: number, major: number): Promise<string | null> {
  const file = `${major >= 10 ? 'pg_wal' : 'pg_xlog'}/${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
  const rows = await queryRows<{ text: string }>(conn, 'SELECT pg_read_file($1) AS text', [file]).catch(() => []);
  const lines = (rows[0]?.text ?? '').split('\n').filter((line) => /^\d+\s/.test(line));
  return /^\d+\s+([0-9A-F]{1,8}\/[0-9A-F]{1,8})/i.exec(lines.at(-1) ?? '')?.[1] ?? null;
}

/** "16/B374D848" as a number of bytes. */
function lsnValue(lsn: string): bigint {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

/** walAtPromote as one line for people: what a (delayed) standby had, applied and did not have. */
export function describeWalAtPromote(wal: WalAtPromote): string {
  const delayed = wal.applyDelayMs !== null ? `delayed standby (apply delay ${formatApplyDelay(wal.applyDelayMs)}, gone now that it is the primary): ` : '';
  if (wal.receivedLsn === null) return `${delayed}it had applied WAL up to ${wal.replayedLsn ?? 'unknown'}; it had received nothing by streaming since it started`;
  const unapplied = wal.unappliedBytes ?? 0;
  const applied = unapplied > 0
    ? `it applied the ${unapplied} bytes of WAL it had received but held back (replayed up to ${wal.replayedLsn}, received up to ${wal.receivedLsn})`
    : `it had applied everything it received (up to ${wal.receivedLsn})`;
  const check = wal.appliedAllReceived === false ? `; WARNING: its new timeline begins at ${wal.timelineStartLsn}, before the end of what it had received` : '';
  const start = wal.timelineStartLsn && wal.appliedAllReceived !== false ? `; its new timeline begins at ${wal.timelineStartLsn}` : '';
  return `${delayed}${applied}${start}${check}; WAL its upstream had not sent it is not there`;
}
