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
import type { RuntimeName } from './global-options.js';
import { useLabAccess, type LabAccessSettings } from './access.js';
import type { NodeHost } from './address.js';

export type NodeRole = 'primary' | 'replica';

export interface NodeRecord {
  name: string;
  role: NodeRole;
  port: number;
  datadir: string;
  /** The node this one streams from (replicas). */
  upstream?: string;
  /** True when the lab made the directory itself (destroy then removes the directory, not only its content). */
  datadirCreated: boolean;
  /** `building` while initdb / pg_basebackup runs; a crash then leaves a record destroy can clean up. */
  phase: 'building' | 'ready';
  /** What the lab last asked for: a node expected running but not running has crashed. */
  expected: 'running' | 'stopped';
  createdAt: string;
  /**
   * A former primary that another node was promoted over: its WAL may have diverged from the new
   * timeline, so it must be pg_rewind-ed (`lab node rewind`) or rebuilt before it can follow again.
   * Its role is 'replica' meanwhile, so no balancer pool and no command treats it as the primary.
   */
  rewindNeeded?: boolean;
  /** Listed in the primary's synchronous_standby_names (`lab replica add --sync`). */
  sync?: boolean;
  /** Timeline the node started on when it was promoted. */
  timeline?: number;
  /** The command building the node (`lab replica add`) while it runs: see claimBuild. */
  builder?: Builder;
  /** Its host in a lab made with --hosts: recorded before the namespace is made (src/lab/hosts.ts). */
  host?: NodeHost;
}

/**
 * Who builds a node, or applies a fault: taken over only once that process is provably gone (pid and
 * start time).
 */
export interface Builder {
  pid: number;
  /** /proc/PID/stat field 22, clock ticks after boot. */
  startTime: number;
  since: string;
}

export interface BalancerRecord {
  name: string;
  engine: 'builtin' | 'haproxy';
  listen: string;
  stats: string;
  pid: number;
  /** The process's start time (/proc/PID/stat field 22), recorded at launch: destroy and stop signal only that process. */
  startTime?: number;
  pool: string;
  configFile?: string;
  logFile: string;
  startedAt: string;
  /** Started by pglab's library inside a program (its pid): only that program stops it. */
  inProcess?: true;
}

/** Faults `lab fault` applies (issue 17): pause and lag on every lab; partition, loss and delay need --hosts. */
export type FaultKind = 'pause' | 'lag' | 'partition' | 'loss' | 'delay';

/**
 * A fault on a node. Recorded before it is applied (phase `applying`), so a CLI killed half way leaves a
 * record that `lab fault heal` and `lab destroy` treat as possibly applied.
 */
export interface FaultRecord {
  node: string;
  kind: FaultKind;
  phase: 'applying' | 'applied';
  since: string;
  /** pause: the postmaster that was stopped (heal resumes whatever postmaster of the data dir runs); delay: the relay. */
  pid?: number;
  /** delay: the added delay and its jitter, in ms. */
  delayMs?: number;
  jitterMs?: number;
  /** The command applying it, while the phase is `applying`: a record whose applier is gone was left half-applied. */
  applier?: Builder;
  /** partition: only the links to these nodes (absent: cut off from everyone). */
  from?: string[];
  /** loss: the share of packets dropped each way, in percent. */
  percent?: number;
}

/** The lab's network when it was made with --hosts: bridge `pgl<index>` holding 10.213.<index>.1/24. */
export interface LabHosts {
  index: number;
  bridge: string;
}

export interface LabState {
  format: 1;
  labId: string;
  createdAt: string;
  /** True when the lab made its lab dir (destroy removes it if it ends up empty). */
  labDirCreated: boolean;
  /** The servers' PostgreSQL; bindir is the host's installation (its client tools serve every runtime). */
  pg: { bindir: string; version: string; major: number };
  /** Where the nodes run; absent in files written before runtimes existed, which means 'process'. */
  runtime?: RuntimeName;
  /** The image the nodes run (docker runtime). */
  image?: string;
  /** OS user PostgreSQL's programs run as, when the CLI runs as root. */
  osUser?: string;
  /** Database superuser (initdb -U). */
  dbUser: string;
  /** Authentication and TLS of the nodes; absent in labs made before them, which means trust, no TLS. */
  access?: LabAccessSettings;
  nodes: NodeRecord[];
  balancers: BalancerRecord[];
  /** Faults in force (`lab fault`); absent when there are none. */
  faults?: FaultRecord[];
  /** Nodes on hosts of their own (--hosts); recorded before the bridge is made. */
  hosts?: LabHosts;
}

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
