// `lab fault pause|lag|list|heal` (issue 17, the faults that work on every lab). A fault is recorded in
// lab.json (phase `applying`) before it is applied, then marked `applied`: a CLI killed in between leaves a
// record that heal and destroy treat as possibly applied, never a paused node nobody knows about.
//   pause: SIGSTOP the node's postmaster, then its children (heal: SIGCONT children, then postmaster).
//   lag:   pg_wal_replay_pause() on a standby: WAL is received, not replayed (heal: pg_wal_replay_resume()).
// partition, delay and loss need a lab whose nodes live in network namespaces (--hosts), not available yet.
import { LabError, messageOf } from '../common/errors.js';
import { openLab, type GlobalOptions, type LabContext } from '../lab/context.js';
import { faultsOf, continueNodeProcesses, resumeNode, stopNodeProcesses } from '../lab/faults.js';
import { requireBuilt, requireNode, runtimeOf, updateState, type FaultKind, type FaultRecord, type LabState, type NodeRecord } from '../lab/state.js';
import { queryRows } from '../postgres/client.js';
import { livePostmasterPid } from '../postgres/server.js';
import { runtimeFor } from '../runtime/node-runtime.js';

export const NETWORK_FAULTS = ['partition', 'delay', 'loss'] as const;

export interface FaultResult {
  node: string;
  kind: FaultKind;
  /** pause: the postmaster stopped, and how many processes (it and its children). */
  pid?: number;
  processes?: number;
}

export interface HealResult {
  healed: { node: string; kind: FaultKind; outcome: string }[];
}

const CONNECT_MS = 3000;

function faultWords(kind: FaultKind): string {
  return kind === 'pause' ? 'paused (SIGSTOP)' : 'lagging (WAL replay paused)';
}

/** The node, built and running, or a one-line refusal. */
async function runningNode(context: LabContext, name: string): Promise<{ node: NodeRecord; pid: number }> {
  const node = requireNode(context.state, name);
  requireBuilt(node, `re-run the command that created it (\`lab replica add ${name} ...\`)`);
  const pid = await runtimeFor(context).livePid(node);
  if (!pid) throw new LabError('STATE', `Node "${name}" is not running: start it first (\`lab node start ${name}\`)`);
  return { node, pid };
}

function refuseTwice(state: LabState, name: string, kind: FaultKind): void {
  const fault = faultsOf(state, name).find((f) => f.kind === kind);
  if (fault) {
    const maybe = fault.phase === 'applying' ? ' (maybe: a `lab fault` was interrupted while applying it)' : '';
    throw new LabError('CONFLICT', `Node "${name}" is already ${faultWords(kind)} since ${fault.since}${maybe}: \`lab fault heal ${name}\` first`);
  }
}

/** Record the fault (phase `applying`) under the lock, refusing a second one of the same kind. */
async function recordFault(context: LabContext, fault: FaultRecord): Promise<void> {
  await updateState(context.labDir, (state) => {
    requireNode(state, fault.node);
    refuseTwice(state, fault.node, fault.kind);
    (state.faults ??= []).push(fault);
  });
}

async function setPhase(context: LabContext, name: string, kind: FaultKind, phase: 'applied'): Promise<void> {
  await updateState(context.labDir, (state) => {
    const fault = faultsOf(state, name).find((f) => f.kind === kind);
    if (fault) fault.phase = phase;
  });
}

async function forgetFault(context: LabContext, name: string, kind: FaultKind): Promise<void> {
  await updateState(context.labDir, (state) => {
    state.faults = faultsOf(state).filter((f) => !(f.node === name && f.kind === kind));
    if (state.faults.length === 0) delete state.faults;
  });
}

export async function faultPause(global: GlobalOptions, name: string): Promise<FaultResult> {
  const context = await openLab(global);
  if (runtimeOf(context.state) !== 'process') {
    throw new LabError('USAGE', `lab fault pause works on the process runtime only for now (docker pause of a node's container is not done yet)`);
  }
  requireNode(context.state, name);
  refuseTwice(context.state, name, 'pause');
  const { node } = await runningNode(context, name);
  // The pid proved the node's own: a postgres whose -D is this data dir (livePostmasterPid).
  const pid = await livePostmasterPid(node.datadir);
  if (!pid) throw new LabError('STATE', `Node "${name}" is not running: start it first (\`lab node start ${name}\`)`);
  await recordFault(context, { node: name, kind: 'pause', phase: 'applying', since: new Date().toISOString(), pid });
  try {
    const { stopped } = await stopNodeProcesses(pid);
    await setPhase(context, name, 'pause', 'applied');
    return { node: name, kind: 'pause', pid, processes: stopped };
  } catch (error) {
    // Nothing half-applied: resume what was stopped, forget the record.
    await continueNodeProcesses(pid).catch(() => undefined);
    await forgetFault(context, name, 'pause');
    throw new LabError('COMMAND_FAILED', `Could not pause "${name}": ${messageOf(error)}; it was resumed`);
  }
}

export async function faultLag(global: GlobalOptions, name: string): Promise<FaultResult> {
  const context = await openLab(global);
  requireNode(context.state, name);
  refuseTwice(context.state, name, 'lag');
  if (faultsOf(context.state, name).some((f) => f.kind === 'pause')) {
    throw new LabError('STATE', `Node "${name}" is paused (SIGSTOP) and cannot answer: \`lab fault heal ${name}\` first`);
  }
  const { node } = await runningNode(context, name);
  const conn = { port: node.port, user: context.state.dbUser, connectTimeoutMs: CONNECT_MS };
  const [row] = await queryRows<{ standby: boolean }>(conn, 'SELECT pg_is_in_recovery() AS standby');
  if (!row?.standby) {
    throw new LabError('STATE', `Node "${name}" is a primary (not in recovery): lag pauses WAL replay on a standby only`);
  }
  await recordFault(context, { node: name, kind: 'lag', phase: 'applying', since: new Date().toISOString() });
  try {
    await queryRows(conn, 'SELECT pg_wal_replay_pause()');
  } catch (error) {
    await queryRows(conn, 'SELECT pg_wal_replay_resume()').catch(() => undefined);
    await forgetFault(context, name, 'lag');
    throw new LabError('COMMAND_FAILED', `Could not pause WAL replay on "${name}": ${messageOf(error)}`);
  }
  await setPhase(context, name, 'lag', 'applied');
  return { node: name, kind: 'lag' };
}

export async function faultList(global: GlobalOptions): Promise<FaultRecord[]> {
  const context = await openLab(global);
  return faultsOf(context.state);
}

/** Undo one fault; the record is dropped once it is undone (or moot: the node no longer runs). */
async function healOne(context: LabContext, fault: FaultRecord): Promise<string> {
  const node = requireNode(context.state, fault.node);
  if (fault.kind === 'pause') {
    const pid = await resumeNode(node);
    return pid ? `resumed (SIGCONT) postmaster ${pid} and its children` : 'not running: nothing to resume';
  }
  if (!(await runtimeFor(context).livePid(node))) return 'not running: replay resumes when it starts';
  try {
    await queryRows({ port: node.port, user: context.state.dbUser, connectTimeoutMs: CONNECT_MS }, 'SELECT pg_wal_replay_resume()');
    return 'WAL replay resumed';
  } catch (error) {
    if (/recovery is not in progress/i.test(messageOf(error))) return 'no longer in recovery (promoted): nothing to resume';
    throw new LabError('COMMAND_FAILED', `Could not resume WAL replay on "${node.name}": ${messageOf(error)}; the fault stays recorded`);
  }
}

export async function faultHeal(global: GlobalOptions, name?: string): Promise<HealResult> {
  const context = await openLab(global);
  if (name !== undefined) requireNode(context.state, name);
  // Pauses first: a paused node cannot answer the SQL that ends a lag.
  const faults = faultsOf(context.state, name).sort((a, b) => (a.kind === b.kind ? 0 : a.kind === 'pause' ? -1 : 1));
  if (faults.length === 0) {
    throw new LabError('STATE', name ? `Node "${name}" has no fault to heal (see \`lab fault list\`)` : 'No fault to heal in this lab (see `lab fault list`)');
  }
  const healed: HealResult['healed'] = [];
  for (const fault of faults) {
    const outcome = await healOne(context, fault);
    await forgetFault(context, fault.node, fault.kind);
    healed.push({ node: fault.node, kind: fault.kind, outcome });
  }
  return { healed };
}

/** partition / delay / loss: one line, exit 2, until labs with --hosts exist. */
export function networkFault(kind: string): never {
  throw new LabError('USAGE', `lab fault ${kind} needs a lab made with --hosts (nodes in network namespaces), which is not available yet: pause and lag work on every lab`);
}
