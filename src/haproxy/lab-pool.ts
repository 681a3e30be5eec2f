// The lab's nodes as HAProxy server lines. HAProxy's pool is fixed at start, so `--engine haproxy` and
// the bench resolve the lab's state once, here, and render it.
import type { PoolKind, ServerConfig } from '../balancer/config.js';
import { requireState } from '../lab/state.js';

export async function labPoolServers(labDir: string, kind: PoolKind): Promise<ServerConfig[]> {
  const state = await requireState(labDir);
  return state.nodes
    .filter((node) => node.phase === 'ready')
    .filter((node) => kind === 'all' || (kind === 'primary' ? node.role === 'primary' : node.role === 'replica'))
    .map((node) => ({
      name: node.name,
      host: '127.0.0.1',
      port: node.port,
      weight: 1,
      backup: false,
      disabled: false,
      check: true,
      checkOverrides: {},
    }));
}
