// The lab's nodes as HAProxy server lines. HAProxy's pool is fixed at start, so `--engine haproxy` and
// the bench resolve the lab's state once, here, and render it.
import type { PoolKind, ServerConfig } from '../balancer/config.js';
import { labServers } from '../balancer/lab-pool.js';
import { requireState } from '../lab/state.js';

export async function labPoolServers(labDir: string, kind: PoolKind): Promise<ServerConfig[]> {
  const state = await requireState(labDir);
  // HAProxy has no fencing: a former primary that was not rewound is rendered `disabled` (MAINT).
  return labServers(state.nodes.filter((node) => node.phase === 'ready'), kind, true).map((server) => (server.fenced ? { ...server, disabled: true } : server));
}
