// Logical subscribers (`lab logical add`, src/commands/logical.ts) are nodes of the lab but clusters of
// their own: no command that moves, re-points or rebuilds standbys takes one.
import { LabError } from '../common/errors.js';
import type { NodeRecord } from './state-types.js';

/** A one-line refusal when `node` is a logical subscriber; `what` is the command's verb ("promoted"). */
export function refuseSubscriber(node: NodeRecord, what: string): void {
  if (node.role !== 'subscriber') return;
  throw new LabError('STATE', `Node "${node.name}" is a logical subscriber (\`lab logical add\`), a cluster of its own, not a standby: it cannot be ${what}; remove it with \`lab logical remove ${node.name}\``);
}
