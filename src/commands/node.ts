// `lab node start|stop|restart|kill NAME`.
import { assertPortFree } from '../common/ports.js';
import { openLab, type GlobalOptions } from '../lab/context.js';
import { releaseFaults } from '../lab/faults.js';
import { requireBuilt, requireNode, updateState, type NodeRecord } from '../lab/state.js';
import type { StopMode } from '../postgres/server.js';
import { runtimeFor } from '../runtime/runtime-for.js';
import { crashServer } from '../postgres/crash.js';

export type NodeAction = 'start' | 'stop' | 'restart' | 'kill';

export interface NodeActionResult {
  name: string;
  action: NodeAction;
  /** pid of the postmaster started, or killed */
  pid?: number;
  /** kill: Date.now() when SIGKILL was sent */
  killedAtMs?: number;
  /** false when the node was already in the wanted state */
  changed: boolean;
  /** start/restart of a former primary that was not rewound: it runs as a second primary. */
  warning?: string;
}

export async function nodeAction(global: GlobalOptions, name: string, action: NodeAction, options: { mode?: StopMode; timeoutMs?: number } = {}): Promise<NodeActionResult> {
  const context = await openLab(global);
  const node = requireNode(context.state, name);
  requireBuilt(node, 're-run the command that created it');
  const nodes = runtimeFor(context);
  const setExpected = (expected: 'running' | 'stopped') =>
    updateState(context.labDir, (state) => {
      requireNode(state, name).expected = expected;
    });
  // A paused node cannot stop (pg_ctl would wait forever) and a killed one would leave its children stopped.
  if (action !== 'start') await releaseFaults(context.labDir, context.state, node, nodes);
  const running = await nodes.livePid(node);

  switch (action) {
    case 'kill': {
      const { pid, killedAtMs } = await nodes.kill(node); // the lab still expects it running: status shows "crashed"
      return { name, action, pid, killedAtMs, changed: true };
    }
    case 'stop': {
      // Not running (stopped, or crashed): the runtime's stop is a no-op then (the processes a killed
      // postmaster left are ended); the lab no longer expects it to run.
      await nodes.stop(node, options.mode ?? 'fast');
      await setExpected('stopped');
      return { name, action, changed: Boolean(running) };
    }
    case 'start': {
      if (running) {
        await setExpected('running');
        return { name, action, pid: running, changed: false };
      }
      await assertPortFree(node.port, `node "${name}"`);
      const pid = await nodes.start(node, options.timeoutMs);
      await setExpected('running');
      return { name, action, pid, changed: true, ...splitBrainWarning(node) };
    }
    case 'restart': {
      await nodes.stop(node, options.mode ?? 'fast');
      await assertPortFree(node.port, `node "${name}"`);
      const pid = await nodes.start(node, options.timeoutMs);
      await setExpected('running');
      return { name, action, pid, changed: true, ...splitBrainWarning(node) };
    }
  }
}

/** Starting is allowed (nothing is destroyed), but the user must hear that this is a second primary. */
function splitBrainWarning(node: NodeRecord): { warning?: string } {
  if (!node.rewindNeeded) return {};
  return {
    warning: `${node.name} was the primary before a promotion and was not rewound: it runs as a second primary on its old timeline (balancers of the lab route only to the lab's primary); rewind it with \`lab node rewind ${node.name}\``,
  };
}

export interface CrashResult {
  name: string;
  /** The postmaster's pid. */
  pid: number;
  /** Date.now() when every process of the server was killed. */
  killedAtMs: number;
  /** Date.now() when its walsenders were frozen (isolateMs before the kill). */
  isolatedAtMs: number;
  /** The postmaster and its children, all killed. */
  processes: number;
  walSenders: number;
}

/**
 * A host crash of node `name`: SIGKILL to the postmaster and every process it started at once (the lab
 * still expects it running: status says crashed). `isolateMs` > 0: its walsenders are frozen that long
 * first, so its standbys hear nothing more while its backends still acknowledge commits.
 */
export async function crashNode(global: GlobalOptions, name: string, isolateMs = 0): Promise<CrashResult> {
  const context = await openLab(global);
  const node = requireNode(context.state, name);
  requireBuilt(node, 're-run the command that created it');
  const nodes = runtimeFor(context);
  await releaseFaults(context.labDir, context.state, node, nodes);
  const crashed = await crashServer({ name, pid: await nodes.livePid(node) }, isolateMs);
  return { name, ...crashed };
}
