// Why a node did not answer, in the words a person watching the demo needs: what the connection
// attempt saw (refused, timed out, the server's own FATAL) and what the lab knows (crashed: expected
// running but no live postmaster; stopped: the lab stopped it; building: pg_basebackup running).
import type { LabState, NodeRecord } from '../lab/state.js';
import { connectProblem } from '../postgres/connect-problem.js';

export type LabNodeState = 'running' | 'stopped' | 'crashed' | 'building';

export async function labNodeState(state: LabState, node: NodeRecord): Promise<LabNodeState> {
  // Loaded only when a node is down: the runtimes bring in the process- and container-running
  // machinery, which a one-shot `lab stat` of a healthy lab should not pay for at start-up.
  const { runtimeFor } = await import('../runtime/runtime-for.js');
  // A status reads no file of the lab dir: the samplers do not know it.
  const { status } = await runtimeFor({ labDir: '', state }).status(node, node.expected);
  if (status !== 'running' && node.phase === 'building') return 'building';
  return status;
}

/** "connection refused (crashed)"; the lab's view is left out when the postmaster runs (e.g. "starting up"). */
export async function downReason(state: LabState, node: NodeRecord, error: unknown, timeoutMs: number): Promise<{ reason: string; labState: LabNodeState }> {
  const problem = connectProblem(error, timeoutMs);
  const labState = await labNodeState(state, node).catch(() => 'crashed' as const);
  return { reason: labState === 'running' ? problem : `${problem} (${labState})`, labState };
}
