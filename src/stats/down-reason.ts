// Why a node did not answer, in the words a person watching the demo needs: what the connection
// attempt saw (refused, timed out, the server's own FATAL) and what the lab knows (crashed: expected
// running but no live postmaster; stopped: the lab stopped it; building: pg_basebackup running).
import type { LabState, NodeRecord } from '../lab/state.js';
import { messageOf } from '../common/errors.js';

export type LabNodeState = 'running' | 'stopped' | 'crashed' | 'building';

/** The connection error as a short phrase: "connection refused", "timeout after 1s", or the server's message. */
export function connectProblem(error: unknown, timeoutMs: number): string {
  const code = (error as { code?: string } | undefined)?.code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ECONNRESET') return 'connection reset';
  if (code === 'EPIPE') return 'connection closed';
  const message = messageOf(error);
  if (/timeout|timed out/i.test(message)) return `not answering: no answer within ${timeoutMs / 1000}s`;
  if (/Connection terminated/i.test(message)) return 'connection closed';
  return message.split('\n')[0] ?? message;
}

export async function labNodeState(state: LabState, node: NodeRecord): Promise<LabNodeState> {
  // Loaded only when a node is down: the runtimes bring in the process- and container-running
  // machinery, which a one-shot `lab stat` of a healthy lab should not pay for at start-up.
  const { runtimeFor } = await import('../runtime/node-runtime.js');
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
