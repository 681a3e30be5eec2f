// `lab destroy --yes`: stop every node and balancer, remove only what the lab created.
import { readdir, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { LabError, messageOf } from '../common/errors.js';
import { removeLabAccessFiles } from '../lab/access.js';
import { logDir, nodeLogFile, type GlobalOptions } from '../lab/context.js';
import { removeDatadir } from '../lab/datadir.js';
import { balancerDir } from '../lab/lab-dir.js';
import { checkRuntime, readState, runtimeOf, statePath, updateState, withLock } from '../lab/state.js';
import { removeBalancerFiles, stopBalancerProcess } from '../lab/balancer-process.js';
import { inspectBindir } from '../postgres/installation.js';
import { resolveRunAs } from '../postgres/os-user.js';
import { runtimeFor } from '../runtime/node-runtime.js';

export interface DestroyResult {
  labDir: string;
  stopped: string[];
  removed: { path: string; outcome: 'removed' | 'emptied' | 'kept' }[];
  problems: string[];
}

export async function destroyLab(global: GlobalOptions, options: { yes?: boolean } = {}): Promise<DestroyResult> {
  const state = await readState(global.labDir);
  if (!state) {
    throw new LabError('NOT_FOUND', `No lab in ${global.labDir}: nothing to destroy (pass --lab-dir for another lab)`);
  }
  checkRuntime(state, global.labDir, global.runtime);
  if (!options.yes) {
    const dirs = state.nodes.map((n) => n.datadir).join(', ') || 'no data dirs';
    throw new LabError('USAGE', `destroy stops ${state.nodes.length} node(s) and ${state.balancers.length} balancer(s) and removes ${dirs}: pass --yes to confirm`);
  }
  const result: DestroyResult = { labDir: global.labDir, stopped: [], removed: [], problems: [] };
  const installation = await inspectBindir(state.pg.bindir, 'lab');
  const runAs = await resolveRunAs(global.osUser ?? state.osUser).catch(() => undefined);
  const runtime = runtimeFor({ labDir: global.labDir, state, installation, runAs });

  // What could not be stopped or removed stays listed in lab.json, so `lab destroy --yes` can finish later.
  const keptBalancers = new Set<string>();
  const keptNodes = new Set<string>();
  for (const balancer of state.balancers) {
    try {
      if (await stopBalancerProcess(balancer)) result.stopped.push(`balancer ${balancer.name}`);
    } catch (error) {
      result.problems.push(`balancer ${balancer.name}: ${messageOf(error)}`);
      keptBalancers.add(balancer.name);
    }
  }
  // Replicas first, so the master does not log their disconnects as errors.
  const nodes = [...state.nodes].sort((a, b) => (a.role === b.role ? 0 : a.role === 'replica' ? -1 : 1));
  await Promise.all(
    nodes.map(async (node) => {
      try {
        if (!(await runtime.livePid(node))) return;
      } catch (error) {
        result.problems.push(`${node.name}: ${messageOf(error)}`);
        return;
      }
      try {
        await runtime.stop(node, 'fast', 30_000);
      } catch {
        await runtime.kill(node).catch((error) => result.problems.push(`${node.name}: ${messageOf(error)}`));
      }
      result.stopped.push(node.name);
    }),
  );
  const containersGone = runtimeOf(state) !== 'docker' || (await removeContainers(state.labId, result));
  for (const node of nodes) {
    const running = await runtime.livePid(node).catch(() => -1);
    if (running || !containersGone) {
      result.problems.push(`${node.name} ${running ? 'is still running' : 'may still have a container'}; its data dir ${node.datadir} was kept`);
      keptNodes.add(node.name);
      continue;
    }
    result.removed.push({ path: node.datadir, outcome: await removeDatadir(node.datadir, state.labId, node.datadirCreated) });
    await rm(nodeLogFile(global.labDir, node.name), { force: true });
  }
  for (const balancer of state.balancers) {
    if (!keptBalancers.has(balancer.name)) await removeBalancerFiles(global.labDir, balancer, { log: true });
  }
  if (result.problems.length > 0) {
    await updateState(global.labDir, (s) => {
      s.nodes = s.nodes.filter((n) => keptNodes.has(n.name));
      s.balancers = s.balancers.filter((b) => keptBalancers.has(b.name));
    });
    throw new LabError('STATE', `destroy left something behind: ${result.problems.join('; ')}; lab.json still lists it: run \`lab destroy --yes\` again once that is fixed`, {
      detail: `lab dir: ${path.resolve(global.labDir)}`,
    });
  }
  await removeLabAccessFiles(global.labDir);
  await withLock(global.labDir, async () => {
    await rm(statePath(global.labDir), { force: true });
  });
  // Every file in the balancer dir (0700, ours) is the lab's, logs of balancers stopped earlier included.
  await rm(balancerDir(global.labDir), { recursive: true, force: true });
  await rmdir(logDir(global.labDir)).catch(() => undefined); // only if empty
  if (state.labDirCreated && (await readdir(global.labDir).catch(() => ['?'])).length === 0) {
    await rmdir(global.labDir).catch(() => undefined);
  }
  return result;
}

/** Every container labelled with this lab (servers, leftover one-offs), and nothing else; false when some may remain. */
async function removeContainers(labId: string, result: DestroyResult): Promise<boolean> {
  try {
    const { listLabContainers, removeLabContainers } = await import('../runtime/docker-lab.js');
    for (const name of await removeLabContainers(labId)) result.stopped.push(`container ${name}`);
    const left = await listLabContainers(labId);
    if (left.length === 0) return true;
    result.problems.push(`containers ${left.map((c) => c.name).join(', ')} could not be removed`);
  } catch (error) {
    result.problems.push(`containers: ${messageOf(error)}`);
  }
  return false;
}
