// The library's Lab.start({ replicas }): the standbys that `masterStart` copied cold from the new master
// (MasterStartOptions.standbys: the master's data dir before its first start, their slots made in it)
// start together once the master runs, each waited for until the master shows it streaming, then are
// marked ready. No CHECKPOINT, no base backup: a copy of a cleanly shut down cluster is one. What a lab
// looks like afterwards is what `lab replica add` makes (records, slots, configuration, marker).
import { silentReporter, type Reporter } from '../common/reporter.js';
import { openLab, type GlobalOptions } from '../lab/context.js';
import { boundedConn, onNode } from '../lab/node-answers.js';
import { primaryOf, requireNode, updateState } from '../lab/state.js';
import { applySyncStandbys } from '../postgres/sync-standbys.js';
import { runtimeFor } from '../runtime/runtime-for.js';
import { waitStreaming } from './follow.js';

export async function startColdStandbys(global: GlobalOptions, names: string[], options: { sync?: boolean; timeoutMs?: number; reporter?: Reporter } = {}): Promise<void> {
  const reporter = options.reporter ?? silentReporter;
  const timeoutMs = options.timeoutMs ?? 60_000;
  const context = await openLab(global);
  const { state, labDir } = context;
  const nodes = runtimeFor(context);
  const primary = primaryOf(state)!;
  const standbys = names.map((name) => requireNode(state, name));
  try {
    await Promise.all(
      standbys.map(async (node) => {
        reporter.step(`starting ${node.name} on port ${node.port}`);
        await nodes.start(node, timeoutMs);
        reporter.step(`waiting until ${primary.name} shows ${node.name} streaming`);
        await waitStreaming(context, primary, node.name, timeoutMs);
      }),
    );
    if (options.sync) {
      const after = await updateState(labDir, (s) => {
        for (const node of s.nodes) if (names.includes(node.name)) node.sync = true;
      });
      const syncNames = after.nodes.filter((n) => n.sync && n.role === 'replica' && !n.rewindNeeded).map((n) => n.name);
      reporter.step(`synchronous_standby_names on ${primary.name}`);
      await onNode(state, primary, () => applySyncStandbys(boundedConn(state, primary), syncNames));
      await Promise.all(names.map((name) => waitStreaming(context, primary, name, timeoutMs, true)));
    }
    await updateState(labDir, (s) => {
      for (const node of s.nodes) {
        if (!names.includes(node.name)) continue;
        node.phase = 'ready';
        node.expected = 'running';
        delete node.builder;
      }
    });
  } catch (error) {
    // Not ready, and no longer claimed: `lab destroy` (or Lab.start's own clean-up) removes them.
    await updateState(labDir, (s) => {
      for (const node of s.nodes) if (names.includes(node.name)) delete node.builder;
    }).catch(() => undefined);
    throw error;
  }
}
