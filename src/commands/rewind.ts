// `lab node rewind NAME [--primary P]`: bring a former primary back as a standby of the new primary
// with pg_rewind (only the blocks that changed since the timelines forked are copied), then the lab's
// config files again (pg_rewind copies the source's), the standby configuration, start, and wait until
// it streams. pg_rewind needs a cleanly shut down target: since PostgreSQL 13 it runs the target in
// single-user mode itself to finish crash recovery after a kill -9 (what the TAP tests do by hand).
// The runtime runs pg_rewind: the host's binary as the lab's OS user, or the image's in a one-off container.
import path from 'node:path';
import { LabError } from '../common/errors.js';
import { assertPortFree } from '../common/ports.js';
import { silentReporter, type Reporter } from '../common/reporter.js';
import { readNoFollow, writePrivateFile } from '../common/safe-files.js';
import { nodeLogFile, openLab, type GlobalOptions } from '../lab/context.js';
import { nodeFilesSpec, writeNodeConfig, writeStandbyConfig } from '../lab/node-files.js';
import { primaryOf, requireBuilt, requireNode, updateState } from '../lab/state.js';
import { queryRows, withClient } from '../postgres/client.js';
import { pollUntil } from '../common/poll.js';
import { boundedConn } from '../lab/node-answers.js';
import { serverRole } from '../postgres/recovery.js';
import type { OsUser } from '../postgres/os-user.js';
import { ensureSlot, slotName, type BaseBackupMethod } from '../postgres/base-backup.js';
import { rewindSummary } from '../postgres/pg-rewind.js';
import { runtimeFor } from '../runtime/runtime-for.js';
import { requireRunningPrimary, waitStreaming } from './follow.js';
import { sizeOf } from '../postgres/server.js';
import { replicaAdd } from './replica.js';
import { nodeAddress } from '../network/address.js';
import { refuseSubscriber } from '../lab/subscriber.js';

export interface RewindOptions {
  primary?: string;
  timeoutMs?: number;
  reporter?: Reporter;
}

export interface RewindResult {
  name: string;
  primary: string;
  pid: number;
  /** What pg_rewind said it did ("no rewind required" or the amount copied), or that the node was rebuilt. */
  rewind: string;
  /** Why there was no pg_rewind, when the node was rebuilt from a new base backup instead. */
  rebuilt?: string;
  /** How that new base backup was taken. */
  baseBackup?: BaseBackupMethod;
  elapsedMs: number;
}

export async function nodeRewind(global: GlobalOptions, name: string, options: RewindOptions = {}): Promise<RewindResult> {
  const started = Date.now();
  const timeoutMs = options.timeoutMs ?? 60_000;
  const reporter = options.reporter ?? silentReporter;
  const context = await openLab(global);
  const { state } = context;
  const nodes = runtimeFor(context);
  const node = requireNode(state, name);
  if (node.role === 'restored') throw new LabError('STATE', `Node "${name}" is a restored node (\`lab node restore\`): it stands alone on a timeline of its own and joins no replication; remove it with \`lab replica remove ${name}\``);
  if (node.role === 'primary') {
    throw new LabError('STATE', `Node "${name}" is the lab's current primary: pg_rewind would throw its data away; promote another node first (\`lab promote NAME\`)`);
  }
  refuseSubscriber(node, 'rewound');
  requireBuilt(node, 're-add it instead');
  const missing = await nodes.rewindMissing();
  const primary = await requireRunningPrimary(context, options.primary);
  if (primary.name === name) throw new LabError('USAGE', `Node "${name}" cannot be rewound from itself`);
  if (missing) {
    // pg_rewind only rewinds its own major: without one, what a DBA does, a new base backup in its place.
    if (primary.name !== primaryOf(state)?.name) throw new LabError('USAGE', `No pg_rewind here (${missing}): "${name}" can only be rebuilt from the lab's primary; run without --primary`);
    reporter.step(`${missing}: rebuilding ${name} from a new base backup of ${primary.name}`);
    const added = await replicaAdd(global, name, node.datadir, node.port, { reporter, timeoutMs });
    return { name, primary: primary.name, pid: added.pid, rewind: `rebuilt from a new base backup (${added.baseBackup})`, rebuilt: missing, baseBackup: added.baseBackup, elapsedMs: Date.now() - started };
  }

  // A just promoted primary records its new timeline in pg_control only at its next checkpoint; before
  // that, pg_rewind (<= 15) reads both on the same timeline and says "no rewind required" wrongly.
  reporter.step(`CHECKPOINT on ${primary.name}`);
  const checkpointLsn = await withClient({ host: nodeAddress(primary), port: primary.port, user: state.dbUser }, async (client) => {
    await client.query('CHECKPOINT');
    return (await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
  });
  if (await nodes.livePid(node)) {
    // A standby already on the new timeline (re-pointed by a reload) that has replayed no checkpoint on it
    // still names the old timeline in pg_control, and pg_rewind then looks for the fork in WAL it never had.
    // Once it replayed the CHECKPOINT above, its shutdown restartpoint records the new timeline.
    const conn = boundedConn(state, node);
    const role = await serverRole(conn, state.pg.major).catch(() => undefined);
    if (role?.inRecovery) {
      await pollUntil(
        async () => ((await queryRows<{ ok: boolean }>(conn, 'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [checkpointLsn]))[0]?.ok ? true : undefined),
        { timeoutMs: 10_000, intervalMs: 20, what: `${name} to replay ${primary.name}'s CHECKPOINT` },
      ).catch(() => undefined); // not streaming from it: pg_rewind finds what it finds
    }
    reporter.step(`stopping ${name} (pg_rewind needs it shut down)`);
    await nodes.stop(node, 'fast');
  }
  await updateState(context.labDir, (s) => {
    requireNode(s, name).expected = 'stopped';
  });
  reporter.step(`pg_rewind ${name} from ${primary.name} (port ${primary.port})`);
  const rewind = rewindSummary(await nodes.rewind(node, primary.port, reporter, nodeAddress(primary)));

  // pg_rewind copied the source's postgresql.conf, pg_hba.conf, postgresql.auto.conf and our marker.
  const owner = await nodes.dataOwner();
  const files = nodeFilesSpec(context.labDir, state, node, owner);
  await writeNodeConfig(files);
  await dropPrimaryOnlySettings(node.datadir, owner);
  await writeStandbyConfig({ ...files, upstreamPort: primary.port, upstreamHost: nodeAddress(primary) });

  await ensureSlot({ host: nodeAddress(primary), port: primary.port, user: state.dbUser }, slotName(name));
  reporter.step(`starting ${name} as a standby of ${primary.name}`);
  await assertPortFree(node.port, `node "${name}"`);
  const logFrom = await sizeOf(nodeLogFile(context.labDir, name));
  const pid = await nodes.start(node, timeoutMs);
  await updateState(context.labDir, (s) => {
    const n = requireNode(s, name);
    n.expected = 'running';
    n.upstream = primary.name;
    delete n.rewindNeeded;
  });
  await waitStreaming(context, primary, name, timeoutMs, false, logFrom);
  return { name, primary: primary.name, pid, rewind, elapsedMs: Date.now() - started };
}

/** A standby must not carry the primary's synchronous_standby_names (it would apply on its next promotion). */
async function dropPrimaryOnlySettings(datadir: string, owner: OsUser | undefined): Promise<void> {
  const file = path.join(datadir, 'postgresql.auto.conf');
  // The data dir is the postgres OS user's: read without following a link, written as a new file given to it.
  const text = await readNoFollow(file);
  if (text === undefined) return;
  const kept = text.split('\n').filter((line) => !/^\s*synchronous_standby_names\s*=/.test(line));
  await writePrivateFile(file, kept.join('\n'), 0o600, owner);
}

/** Why this lab's nodes cannot be rewound with pg_rewind (they are rebuilt instead), or undefined. */
export async function rewindMissing(global: GlobalOptions): Promise<string | undefined> {
  return runtimeFor(await openLab(global)).rewindMissing();
}
