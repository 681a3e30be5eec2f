// A `lab replica add` that fails after it began (a full disk, a server that does not start, a master that
// stops answering, Ctrl-C) undoes what it made, so the same command can simply be run again: the server it
// started is stopped, its replication slot dropped on the master (else the master keeps WAL for it), the
// files it copied removed (only from the dir it created, or found empty, or emptied: all in it is its own),
// and a new node's record removed from lab.json. What cannot be undone (a master that does not answer
// keeps the slot) is named in the same line, and the record stays so `lab replica remove` finishes it.
import { rm } from 'node:fs/promises';
import { fileSystemError, LabError, messageOf } from '../common/errors.js';
import type { Reporter } from '../common/reporter.js';
import { nodeLogFile, type LabContext } from '../lab/context.js';
import { undoDatadir, type PreparedDatadir } from '../lab/datadir.js';
import { removeNodeHost } from '../network/namespaces.js';
import { ANSWER_TIMEOUT_MS, boundedConn } from '../lab/node-answers.js';
import { connectProblem } from '../postgres/connect-problem.js';
import { requireState, updateState, type NodeRecord } from '../lab/state.js';
import { baseBackupSpaceError, dropSlot } from '../postgres/base-backup.js';
import { applySyncStandbys } from '../postgres/sync-standbys.js';
import type { NodeRuntime, RuntimeNode } from '../runtime/node-runtime.js';

/** What the add made so far, in the order it makes it. */
export interface AddMade {
  /** The data dir was created, or found empty, or emptied (a rebuild) for the copy. */
  datadir?: PreparedDatadir;
  /** The slot was (or may have been) created on the upstream. */
  slot?: boolean;
  /** The server was (or may have been) started. */
  server?: boolean;
  /** A new synchronous standby was listed in the primary's synchronous_standby_names. */
  sync?: boolean;
}

export interface AddToUndo {
  context: LabContext;
  nodes: NodeRuntime;
  primary: NodeRecord;
  /** The node it was copied from, where its slot is: the primary, or a standby (a cascade). */
  upstream: NodeRecord;
  node: RuntimeNode;
  slot: string;
  /** The record the add rebuilds (undefined: a new node). */
  existing?: NodeRecord;
  made: AddMade;
  reporter: Reporter;
}

/** The failure as one line: a file system error (a full disk included) is exit 10; a foreign error stays as it is. */
function asLabError(error: unknown, datadir: string): unknown {
  return baseBackupSpaceError(fileSystemError(error) ?? error, datadir);
}

/**
 * Undo what the add made (AddMade), then the error to throw: the failure's own line (and detail, e.g. the
 * server's log tail) with what was undone and what was not appended.
 */
export async function undoAdd(add: AddToUndo, error: unknown): Promise<unknown> {
  const { context, nodes, primary, upstream, node, slot, existing, made, reporter } = add;
  const { state, labDir } = context;
  const { name, datadir } = node;
  const failure = asLabError(error, datadir);
  reporter.step(`undoing what the add of ${name} made`);
  const undone: string[] = [];
  const left: string[] = [];
  let serverRuns = false;
  if (made.server) {
    try {
      if (await nodes.livePid(node)) {
        await nodes.stop(node, 'immediate', 15_000);
        undone.push('server stopped');
      }
    } catch (stopError) {
      serverRuns = true;
      left.push(`its server still runs (${messageOf(stopError)})`);
    }
  }
  let slotLeft = false;
  if (made.sync) {
    // The primary's synchronous_standby_names without it: COMMIT would wait for a standby that is gone.
    const current = await requireState(labDir).catch(() => state);
    const names = current.nodes.filter((n) => n.sync && n.role === 'replica' && !n.rewindNeeded && n.name !== name).map((n) => n.name);
    await applySyncStandbys(boundedConn(state, primary), names).catch((syncError: unknown) => {
      left.push(`synchronous_standby_names on ${primary.name} still names it (${connectProblem(syncError, ANSWER_TIMEOUT_MS)})`);
    });
  }
  if (made.slot) {
    try {
      if (await dropSlot(boundedConn(state, upstream), slot)) undone.push(`slot ${slot} dropped`);
    } catch (slotError) {
      slotLeft = true;
      left.push(`slot ${slot} may still be on ${upstream.name} (${connectProblem(slotError, ANSWER_TIMEOUT_MS)})`);
    }
  }
  if (made.datadir && !serverRuns) {
    try {
      const outcome = await undoDatadir(datadir, made.datadir);
      undone.push(outcome === 'kept' ? `${datadir} kept (not a directory now)` : `data dir ${outcome}`);
    } catch (dirError) {
      left.push(`data dir ${datadir} not cleared (${(fileSystemError(dirError) ?? dirError as Error).message})`);
    }
  }
  // A new node fully undone is forgotten, with its log and namespace; otherwise its record stays, not built,
  // for `lab replica remove` (which drops the slot once the master answers) or the same add again.
  const forget = !existing && left.length === 0;
  if (forget) {
    await rm(nodeLogFile(labDir, name), { force: true }).catch(() => undefined);
    if (node.host && state.hosts) await removeNodeHost(state.labId, state.hosts, node.host).catch(() => undefined);
  }
  await updateState(labDir, (s) => {
    const claimed = s.nodes.find((n) => n.name === name);
    if (claimed?.builder?.pid !== process.pid) return; // taken over meanwhile: not ours to change
    if (forget) {
      s.nodes = s.nodes.filter((n) => n !== claimed);
      return;
    }
    claimed.phase = 'building';
    claimed.expected = 'stopped';
    delete claimed.builder;
  }).then(
    () => undone.push(forget ? `${name} removed from lab.json` : `${name} stays in lab.json, not built`),
    (stateError: unknown) => left.push(`lab.json still lists ${name} (${messageOf(stateError)})`),
  );
  if (!(failure instanceof LabError)) return failure;
  const remedy = slotLeft
    ? `; \`lab replica remove ${name}\` drops it once ${upstream.name} answers`
    : existing || left.length > 0
      ? `; run this command again, or \`lab replica remove ${name}\``
      : '';
  const summary = `${failure.message}; undone: ${undone.join(', ') || 'nothing was made'}${left.length > 0 ? `; not undone: ${left.join('; ')}` : ''}${remedy}`;
  return new LabError(failure.code, summary, { detail: failure.detail, cause: error });
}
