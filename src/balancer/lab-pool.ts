// The pool follows the lab: lab.json is polled by mtime (it is replaced atomically by rename, so a read
// sees either the old or the new topology) and the servers of the wanted kind are handed on.
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { readState, statePath } from '../lab/state.js';
import type { PoolKind, ServerConfig } from './config.js';
import { nodeAddress, type NodeHost } from '../network/address.js';
import { accessOf } from '../lab/access.js';

const POLL_MS = 250;

/**
 * The lab's nodes of the wanted kind. A former primary that was not rewound is listed in the primary
 * pool as fenced: it shows as DOWN with the reason, and no client is ever sent to it. `tls`: the lab's
 * servers accept TLS (the balancer may then answer an SSLRequest itself).
 */
export function labServers(
  nodes: { name: string; role: string; port: number; rewindNeeded?: boolean; host?: NodeHost }[],
  kind: PoolKind,
  check: boolean,
  tls = false,
): ServerConfig[] {
  return nodes
    // Restored nodes (`lab node restore`) stand alone on their own timeline: in no pool.
    .filter((node) => node.role !== 'restored')
    .filter((node) => kind === 'all' || (kind === 'replicas' ? node.role === 'replica' : node.role === 'primary' || node.rewindNeeded))
    // Logical subscribers (`lab logical add`) are clusters of their own: in no pool.
    .filter((node) => node.role !== 'subscriber')
    .map((node) => ({
      name: node.name,
      host: nodeAddress(node),
      port: node.port,
      weight: 1,
      backup: false,
      disabled: false,
      check,
      checkOverrides: {},
      ...(tls ? { tls } : {}),
      ...(kind === 'primary' && node.rewindNeeded
        ? { fenced: `former primary, not rewound since a promotion: fenced out of the pool (\`lab node rewind ${node.name}\`)` }
        : {}),
    }));
}

/** The node lab.json names as the primary (not one fenced for a rewind), where a check can reach it. */
export interface LabPrimary {
  name: string;
  host: string;
  port: number;
}

export function labPrimary(nodes: { name: string; role: string; port: number; rewindNeeded?: boolean; host?: NodeHost }[]): LabPrimary | null {
  const node = nodes.find((n) => n.role === 'primary' && !n.rewindNeeded);
  return node ? { name: node.name, host: nodeAddress(node), port: node.port } : null;
}

export interface PoolWatcher {
  stop(): void;
}

/** Calls `apply` with the pool now and whenever lab.json changes. */
export async function watchLabPool(
  labDir: string,
  kind: PoolKind,
  check: boolean,
  apply: (servers: ServerConfig[], primary: LabPrimary | null) => void,
  onError: (message: string) => void,
): Promise<PoolWatcher> {
  const stateFile = statePath(labDir);
  let lastStamp = '';
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let lastError = '';
  let running = false;
  let again = false;
  const poll = async (): Promise<void> => {
    if (running) {
      again = true; // a change seen while reading: read once more right after
      return;
    }
    running = true;
    clearTimeout(timer);
    try {
      const info = await stat(stateFile);
      const stamp = `${info.mtimeMs}:${info.ino}:${info.size}`;
      if (stamp !== lastStamp) {
        const state = await readState(labDir);
        lastStamp = stamp;
        if (state) apply(labServers(state.nodes, kind, check, accessOf(state).tls !== 'off'), labPrimary(state.nodes));
      }
      lastError = '';
    } catch (error) {
      // A lab being destroyed or a transient read error: keep the pool we have, try again, say it once.
      const message = error instanceof Error ? error.message : String(error);
      if (message !== lastError) onError(message);
      lastError = message;
    }
    running = false;
    if (!stopped) timer = setTimeout(() => void poll(), again ? 0 : POLL_MS);
    again = false;
  };
  // lab.json is replaced by rename: inotify on the lab dir says so at once (a switchover's new primary is
  // routed to without waiting for the next poll); the poll stays for file systems without it.
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(labDir, { persistent: false }, (_event, file) => {
      if (!stopped && (!file || file === path.basename(stateFile))) void poll();
    });
    watcher.on('error', () => watcher?.close());
  } catch {
    watcher = undefined;
  }
  await poll();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      watcher?.close();
    },
  };
}
