// Whether a node answers SQL within a bound, and a failed exchange with it in one line. A frozen server
// (`lab fault pause`: SIGSTOP, docker pause) accepts TCP connections in the kernel's backlog but never
// answers: node-postgres then says only "timeout expired" (login) or "Query read timeout" (a query).
import { LabError, messageOf } from '../common/errors.js';
import { withClient, type ConnectOptions } from '../postgres/client.js';
import { connectProblem } from '../postgres/connect-problem.js';
import { nodeAddress } from '../network/address.js';
import type { LabState, NodeRecord } from './state.js';

/** How long a node has to answer a trivial query before a command gives up on it. */
export const ANSWER_TIMEOUT_MS = 3000;

/** The lab's connection to `node`, every login and query bounded by ANSWER_TIMEOUT_MS. */
export function boundedConn(state: LabState, node: NodeRecord): ConnectOptions {
  return { host: nodeAddress(node), port: node.port, user: state.dbUser, connectTimeoutMs: ANSWER_TIMEOUT_MS, queryTimeoutMs: ANSWER_TIMEOUT_MS };
}

function isTimeout(error: unknown): boolean {
  return /^(timeout expired|Query read timeout)$/.test(messageOf(error));
}

/**
 * A failed exchange with `node` (`what`: "the base backup's CHECKPOINT") as a LabError: no answer in time
 * (exit 7, naming a pause the lab applied), a refused or broken connection (exit 6), or the server's own
 * error (exit 8). A LabError passes through unchanged.
 */
export function nodeFailure(state: LabState, node: NodeRecord, error: unknown): LabError {
  if (error instanceof LabError) return error;
  const who = `the ${node.role === 'primary' ? 'master' : 'node'} ${node.name} (${nodeAddress(node)}:${node.port})`;
  if (isTimeout(error)) {
    const paused = state.faults?.some((f) => f.node === node.name && f.kind === 'pause');
    const hint = paused
      ? `it is paused (\`lab fault list\`): heal it (\`lab fault heal ${node.name}\`), then run the command again`
      : `is it paused (\`lab fault list\`) or overloaded? heal it (\`lab fault heal ${node.name}\`) or wait until it answers, then run the command again`;
    return new LabError('TIMEOUT', `${who} did not answer within ${ANSWER_TIMEOUT_MS / 1000} s: ${hint}`, { cause: error });
  }
  if ((error as { severity?: string }).severity) return new LabError('COMMAND_FAILED', `${who} refused: ${messageOf(error)}`, { cause: error });
  return new LabError('STATE', `${who} cannot be reached (${connectProblem(error, ANSWER_TIMEOUT_MS)}): check it with \`lab status\`, then run the command again`, { cause: error });
}

/** A step talking to `node` whose failure is nodeFailure's one line. */
export async function onNode<T>(state: LabState, node: NodeRecord, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    throw nodeFailure(state, node, error);
  }
}

/** `node` answers `SELECT 1` within ANSWER_TIMEOUT_MS, else nodeFailure's line. */
export async function assertAnswers(state: LabState, node: NodeRecord): Promise<void> {
  await onNode(state, node, () => withClient(boundedConn(state, node), (client) => client.query('SELECT 1')));
}
