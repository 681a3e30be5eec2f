// The lab's state file: the topology every later command reads. Written atomically (temp file, fsync,
// rename) so a kill -9 of the CLI at any moment leaves either the old or the new file, never half of one.
// Read-modify-write goes through a lock file so replicas can be added in parallel.
import { constants } from 'node:fs';
import { open, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { LabError, withPath } from '../common/errors.js';
import { isAlive, startTimeOf } from '../common/processes.js';
import { readNoFollow, writePrivateFile } from '../common/safe-files.js';
import { checkLabDir, STATE_FILE } from './lab-dir.js';
import { checkStateFile } from './state-check.js';
import { useLabAccess } from './access.js';
import type { RuntimeName } from './global-options.js';
import type { Builder, LabState, NodeRecord } from './state-types.js';

export type { NodeRole, NodeRecord, Builder, BalancerRecord, FaultKind, FaultRecord, LabState } from './state-types.js';

export { STATE_FILE };
const LOCK_FILE = 'lab.lock';

export function statePath(labDir: string): string {
  return path.join(labDir, STATE_FILE);
}

/**
 * The lab's state, undefined when there is none; a lab dir or lab.json others could tamper with is refused
 * (lab-dir.ts), and so is a field the lab would not have written (state-check.ts).
 */
export async function readState(labDir: string): Promise<LabState | undefined> {
  if (!(await checkLabDir(labDir))) return undefined;
  let text: string;
  try {
    text = await readFile(statePath(labDir), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new LabError('STATE', `The lab state file ${statePath(labDir)} is not valid JSON: fix or remove it`);
  }
  return checkStateFile(parsed);
}

/** The state, or a clear error when there is no lab in that dir. */
export async function requireState(labDir: string): Promise<LabState> {
  const state = await readState(labDir);
  if (!state) {
    throw new LabError('NOT_FOUND', `No lab in ${labDir} (no ${STATE_FILE}): run \`lab master start\` first, or pass --lab-dir`);
  }
  return state;
}

/** lab.json replaced atomically: a 0600 temp file (O_EXCL | O_NOFOLLOW), fsync, rename. */
export async function writeState(labDir: string, state: LabState): Promise<void> {
  await writePrivateFile(statePath(labDir), `${JSON.stringify(state, null, 2)}\n`);
}

export function newState(fields: Pick<LabState, 'labDirCreated' | 'pg' | 'osUser' | 'dbUser' | 'runtime' | 'image' | 'access' | 'hosts'>): LabState {
  return { format: 1, labId: randomUUID(), createdAt: new Date().toISOString(), nodes: [], balancers: [], ...fields };
}

const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = constants;

/**
 * Run `fn` while holding the lab's lock file (created O_EXCL | O_NOFOLLOW, 0600); a lock left by a dead
 * process is taken over. The lab dir must exist (`lab master start` creates it): a lock never creates it.
 */
export async function withLock<T>(labDir: string, fn: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  if (!(await checkLabDir(labDir))) {
    throw new LabError('NOT_FOUND', `No lab in ${labDir} (no such directory): run \`lab master start\` first, or pass --lab-dir`);
  }
  const lockPath = path.join(labDir, LOCK_FILE);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const handle = await open(lockPath, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
      try {
        await handle.writeFile(String(process.pid));
      } catch (error) {
        await handle.close();
        await unlink(lockPath).catch(() => undefined);
        throw withPath(error, lockPath);
      }
      await handle.close();
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = Number(((await readNoFollow(lockPath).catch(() => '')) ?? '').trim());
      if (holder && !isAlive(holder)) {
        await unlink(lockPath).catch(() => undefined);
        continue;
      }
      if (Date.now() > deadline) {
        throw new LabError('TIMEOUT', `The lab in ${labDir} is locked by pid ${holder || '?'} for over ${timeoutMs / 1000}s: wait for that command to finish`);
      }
      await delay(50);
    }
  }
  try {
    return await fn();
  } finally {
    await unlink(lockPath).catch(() => undefined);
  }
}

/** Read, change and write the state under the lock. `change` may throw to leave the file untouched. */
export async function updateState(labDir: string, change: (state: LabState) => void | Promise<void>): Promise<LabState> {
  return withLock(labDir, async () => {
    const state = await requireState(labDir);
    await change(state);
    await writeState(labDir, state);
    return state;
  });
}

export function runtimeOf(state: LabState): RuntimeName {
  return state.runtime ?? 'process';
}

/** Mixing runtimes in one lab is refused: the runtime the user asked for must be the lab's. */
export function checkRuntime(state: LabState, labDir: string, wanted: RuntimeName | undefined): void {
  const recorded = runtimeOf(state);
  if (!wanted || wanted === recorded) return;
  throw new LabError(
    'CONFLICT',
    `The lab in ${labDir} runs its nodes on the ${recorded} runtime, not ${wanted}: drop --runtime/LAB_RUNTIME for this lab, or use another --lab-dir for a ${wanted} lab`,
  );
}

/** The lab's state for a command the user ran with these global options (runtime mixing refused). */
export async function requireLabState(global: { labDir: string; runtime?: RuntimeName }): Promise<LabState> {
  const state = await requireState(global.labDir);
  checkRuntime(state, global.labDir, global.runtime);
  useLabAccess(global.labDir, state);
  return state;
}

export function findNode(state: LabState, name: string): NodeRecord | undefined {
  return state.nodes.find((node) => node.name === name);
}

export function requireNode(state: LabState, name: string): NodeRecord {
  const node = findNode(state, name);
  if (!node) {
    const names = state.nodes.map((n) => n.name).join(', ') || 'none';
    throw new LabError('NOT_FOUND', `Unknown node "${name}" (nodes in this lab: ${names}): see \`lab status\``);
  }
  return node;
}

/** `claim` while its process provably runs (its pid with the start time recorded), else undefined. */
export function liveClaim(claim: Builder | undefined): Builder | undefined {
  return claim && startTimeOf(claim.pid) === claim.startTime ? claim : undefined;
}

/** The command building `node` while it provably runs, else undefined. */
export function liveBuilder(node: NodeRecord): Builder | undefined {
  return liveClaim(node.builder);
}

/** A node another command is building is refused (exit 3) while that command runs. */
export function refuseWhileBuilding(node: NodeRecord): void {
  const builder = liveBuilder(node);
  if (builder && builder.pid !== process.pid) {
    throw new LabError('CONFLICT', `Node "${node.name}" is being built by pid ${builder.pid} since ${builder.since}: wait for that command to finish, then run this one again`);
  }
}

/** This process as a node's builder. */
export function thisBuilder(): Builder {
  return { pid: process.pid, startTime: startTimeOf(process.pid) ?? 0, since: new Date().toISOString() };
}

/** A node whose build was interrupted (phase not 'ready') is refused; `remedy` says what to do instead. */
export function requireBuilt(node: NodeRecord, remedy: string): void {
  refuseWhileBuilding(node);
  if (node.phase !== 'ready') throw new LabError('STATE', `Node "${node.name}" was never finished (its build was interrupted): ${remedy}`);
}

export function primaryOf(state: LabState): NodeRecord | undefined {
  return state.nodes.find((node) => node.role === 'primary');
}
