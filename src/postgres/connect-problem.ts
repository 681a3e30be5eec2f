// A failed connection to a server in the words a person needs: refused, reset, closed, no answer in
// time, or the server's own message (src/stats/down-reason.ts adds what the lab knows of the node).
import { messageOf } from '../common/errors.js';

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
