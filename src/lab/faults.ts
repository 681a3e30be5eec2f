// The process side of `lab fault pause`: SIGSTOP / SIGCONT every process of a node (its postmaster, proved
// the node's own by livePostmasterPid, and the postmaster's children from /proc; the docker runtime pauses
// the node's container instead), and what every command that stops or removes a node does first: resume a
// node that is (or may be) paused through its runtime, else a stop waits forever on a server that cannot
// run, and forget the node's faults (a restarted server replays).
import { setTimeout as delay } from 'node:timers/promises';
import { childrenOf, procStat } from '../common/processes.js';
import { LabError } from '../common/errors.js';
import { refuseOtherLabsBridge } from '../network/bridge.js';
import { removeDelay } from '../network/delay.js';
import { removeNetworkFault } from '../network/iptables-faults.js';
import { updateState, type FaultRecord, type LabState, type NodeRecord } from './state.js';

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error; // a child that just exited
  }
}

/** Until the process is stopped (state T) or gone, at most `timeoutMs`; false if it still runs. */
async function waitStopped(pid: number, timeoutMs = 2000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const stat = await procStat(pid);
    if (!stat || stat.state === 'T' || stat.state === 'Z') return true;
    if (Date.now() > deadline) return false;
    await delay(10);
  }
}

/**
 * SIGSTOP the postmaster first (a stopped postmaster forks no new backend), then each of its children.
 * Returns the postmaster's pid and how many processes were stopped.
 */
export async function stopNodeProcesses(postmaster: number): Promise<{ stopped: number }> {
  signal(postmaster, 'SIGSTOP');
  if (!(await waitStopped(postmaster))) throw new Error(`postmaster ${postmaster} did not stop after SIGSTOP`);
  const children = await childrenOf(postmaster);
  for (const child of children) signal(child, 'SIGSTOP');
  for (const child of children) {
    if (!(await waitStopped(child))) throw new Error(`process ${child} (a child of postmaster ${postmaster}) did not stop after SIGSTOP`);
  }
  return { stopped: children.length + 1 };
}

/** SIGCONT the children first, then the postmaster. Returns how many processes were signalled. */
export async function continueNodeProcesses(postmaster: number): Promise<number> {
  const children = await childrenOf(postmaster);
  for (const child of children) signal(child, 'SIGCONT');
  signal(postmaster, 'SIGCONT');
  return children.length + 1;
}

export function faultsOf(state: LabState, node?: string): FaultRecord[] {
  return (state.faults ?? []).filter((fault) => node === undefined || fault.node === node);
}

/**
 * Before a node is stopped, killed, rebuilt or removed: a pause recorded on it (applied or maybe applied)
 * is undone, and the node's faults are forgotten (a server that restarts replays WAL again).
 */
export async function releaseFaults(labDir: string, state: LabState, node: NodeRecord, runtime: { resume(node: NodeRecord): Promise<unknown> }): Promise<void> {
  const faults = faultsOf(state, node.name);
  if (faults.length === 0) return;
  if (faults.some((fault) => fault.kind === 'pause')) await runtime.resume(node);
  if (node.host && state.hosts && faults.some((fault) => fault.kind !== 'pause' && fault.kind !== 'lag')) await refuseOtherLabsBridge(state.labId, state.hosts);
  for (const fault of faults) {
    if ((fault.kind === 'partition' || fault.kind === 'loss') && node.host) await removeNetworkFault(node.host.netns, fault.kind);
    if (fault.kind === 'delay' && node.host) await removeDelay(node.host.netns);
  }
  await updateState(labDir, (s) => {
    s.faults = faultsOf(s).filter((fault) => fault.node !== node.name);
    if (s.faults.length === 0) delete s.faults;
  });
}

/** A fault's delay or jitter: "200ms", "1.5s", a whole number of ms from 1 to 60000. */
export function parseDelay(text: string, what = 'delay'): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(text.trim());
  const ms = match ? Number(match[1]) * (match[2] === 's' ? 1000 : 1) : NaN;
  if (!Number.isFinite(ms) || ms < 1 || ms > 60_000 || !Number.isInteger(ms)) throw new LabError('USAGE', `Invalid ${what} "${text}": expected a duration from 1ms to 60s, e.g. 200ms`);
  return ms;
}
