// `lab destroy --yes`: stop every node and balancer, remove only what the lab created. Nothing is taken
// from lab.json as it stands: a data dir is emptied only if it carries this lab's marker, a process is
// signalled only if it is provably the lab's (a postmaster of a marked data dir with that dir as -D; a
// balancer with the start time recorded at launch), and the other files are the ones the lab's naming
// rules give for the (checked) names: `log/NODE.log`, `balancer/...`, `pgpass`, `tls/`. lab.json goes
// last, so a destroy killed at any moment is finished by running it again.
import { lstat, readdir, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import type { StopMode } from '../postgres/server.js';
import { LabError, messageOf } from '../common/errors.js';
import { pgpassPath, removeLabAccessFiles, tlsPaths } from '../lab/access.js';
import { logDir, nodeLogFile, type GlobalOptions } from '../lab/context.js';
import { archiveDir, backupsDir } from '../lab/archive.js';
import { inspectDatadir, removeDatadir, type DatadirCondition } from '../lab/datadir.js';
import { allBalancerFiles, balancerDir } from '../lab/lab-dir.js';
import { faultsOf } from '../lab/faults.js';
import { checkRuntime, readState, refuseWhileBuilding, runtimeOf, statePath, updateState, withLock, type NodeRecord } from '../lab/state.js';
import { removeBalancerFiles, stopBalancerProcess } from '../lab/balancer-process.js';
import { inspectBindir } from '../postgres/installation.js';
import { resolveRunAs } from '../postgres/os-user.js';
import { runtimeFor } from '../runtime/runtime-for.js';
import { holdBridge } from '../network/bridge.js';
import { ownNamespaces, removeLabNetwork } from '../network/namespaces.js';
import { relaysOf, removeDelay } from '../network/delay.js';
import { removeNetworkFault, type NetworkFault } from '../network/iptables-faults.js';

export interface DestroyResult {
  labDir: string;
  stopped: string[];
  /** Every path removed (a data dir that was yours before the lab is emptied: listed with `(emptied)`). */
  removed: string[];
  /** What was left where it is, and why. */
  kept: { path: string; why: string }[];
  problems: string[];
}

const KEPT_BECAUSE: Partial<Record<DatadirCondition, string>> = {
  foreign: 'it does not carry this lab\'s marker (not made by this lab, or its build was interrupted before the marker was written)',
  'not-a-directory': 'it is not a directory (a link is never followed)',
  empty: 'an empty dir that was yours before the lab',
};

async function exists(file: string): Promise<boolean> {
  return lstat(file).then(
    () => true,
    () => false,
  );
}

async function existing(files: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const file of files) if (await exists(file)) found.push(file);
  return found;
}

/** rm of the paths that exist, each listed as removed. */
async function removeListed(files: string[], result: DestroyResult): Promise<void> {
  for (const file of await existing(files)) {
    await rm(file, { recursive: true, force: true });
    result.removed.push(file);
  }
}

/**
 * `stopMode`: how the nodes stop (default fast: a clean shutdown). The library's disposal of a lab it
 * made passes immediate: the data dirs are removed next, so a shutdown checkpoint is time for nothing.
 */
export async function destroyLab(global: GlobalOptions, options: { yes?: boolean; stopMode?: StopMode } = {}): Promise<DestroyResult> {
  const state = await readState(global.labDir);
  if (!state) {
    throw new LabError('NOT_FOUND', `No lab in ${global.labDir}: nothing to destroy (pass --lab-dir for another lab)`);
  }
  checkRuntime(state, global.labDir, global.runtime);
  if (!options.yes) {
    const dirs = state.nodes.map((n) => n.datadir).join(', ') || 'no data dirs';
    throw new LabError('USAGE', `destroy stops ${state.nodes.length} node(s) and ${state.balancers.length} balancer(s) and removes ${dirs}: pass --yes to confirm`);
  }
  for (const node of state.nodes) refuseWhileBuilding(node);
  const labDir = global.labDir;
  const result: DestroyResult = { labDir, stopped: [], removed: [], kept: [], problems: [] };
  const installation = await inspectBindir(state.pg.bindir, 'lab');
  const runAs = await resolveRunAs(global.osUser ?? state.osUser).catch(() => undefined);
  const runtime = runtimeFor({ labDir, state, installation, runAs });

  // What could not be stopped or removed stays listed in lab.json, so `lab destroy --yes` can finish later.
  const keptBalancers = new Set<string>();
  const keptNodes = new Set<string>();
  for (const balancer of state.balancers) {
    try {
      if (await stopBalancerProcess(balancer)) result.stopped.push(`balancer ${balancer.name}`);
    } catch (error) {
      result.problems.push(messageOf(error));
      keptBalancers.add(balancer.name);
    }
  }
  // A data dir is the lab's only while it carries the lab's marker; only then is its postmaster signalled.
  const conditions = new Map<string, DatadirCondition>();
  const isOurs = async (node: NodeRecord) => {
    const condition = await inspectDatadir(node.datadir, state.labId);
    conditions.set(node.name, condition);
    return condition === 'ours';
  };
  // Replicas first, so the master does not log their disconnects as errors.
  const nodes = [...state.nodes].sort((a, b) => (a.role === b.role ? 0 : a.role === 'replica' ? -1 : 1));
  const docker = runtimeOf(state) === 'docker';
  // A node paused by `lab fault pause` (or maybe paused: recorded `applying`) is resumed before it is
  // stopped, else pg_ctl stop waits on a postmaster that cannot run (and a frozen container cannot stop).
  const paused = new Set(faultsOf(state).filter((fault) => fault.kind === 'pause').map((fault) => fault.node));
  // The lab's namespaces: all its recorded ones and its prefix while it holds its bridge pgl<N> (claimed
  // now when absent, so no lab takes N during the sweep); while another lab's bridge has the name (this
  // lab was killed before its claim, or its lab.json names another lab's index) only the provably its own.
  const recordedNetns = [...new Set(state.nodes.map((n) => n.host?.netns).filter((n): n is string => Boolean(n)))];
  const holdsBridge = state.hosts ? await holdBridge(state.labId, state.hosts) : false;
  const ownNetns = new Set(state.hosts ? (holdsBridge ? recordedNetns : await ownNamespaces(state.labId, state.hosts, recordedNetns)) : []);
  // A partitioned node is let out first: a primary's walsenders would otherwise wait on a standby that
  // cannot answer (wal_sender_timeout) before it shuts down.
  for (const fault of faultsOf(state)) {
    const host = (fault.kind === 'partition' || fault.kind === 'loss') && state.nodes.find((n) => n.name === fault.node)?.host;
    if (host && ownNetns.has(host.netns)) await removeNetworkFault(host.netns, fault.kind as NetworkFault).catch((error) => result.problems.push(`${fault.node}: ${messageOf(error)}`));
  }
  // Delay relays: every one running for a namespace of this lab (recorded or not: a CLI killed before
  // recording its pid), so the namespaces can go.
  if (state.hosts) {
    for (const netns of ownNetns) {
      await removeDelay(netns).then(
        (removed) => removed && result.stopped.push(`delay relay of ${netns}`),
        (error) => result.problems.push(`${netns}: ${messageOf(error)}`),
      );
    }
    for (const relay of holdsBridge ? await relaysOf(`pglab-${state.hosts.index}-`) : []) {
      try {
        process.kill(relay.pid, 'SIGKILL');
        result.stopped.push(`delay relay of ${relay.netns}`);
      } catch {
        // gone meanwhile
      }
    }
  }
  // Logical subscribers: subscription, slot on the primary and publication dropped while both still run.
  if (state.nodes.some((n) => n.role === 'subscriber')) result.removed.push(...await (await import('./logical.js')).dropSubscriberLinks({ labDir, state }, runtime).catch(() => []));
  await Promise.all(
    nodes.map(async (node) => {
      try {
        if (!docker && !(await isOurs(node))) return;
        if (!(await runtime.livePid(node))) return;
        if (paused.has(node.name)) await runtime.resume(node);
      } catch (error) {
        result.problems.push(`${node.name}: ${messageOf(error)}`);
        keptNodes.add(node.name);
        return;
      }
      try {
        await runtime.stop(node, options.stopMode ?? 'fast', 30_000);
      } catch {
        await runtime.kill(node).catch((error) => result.problems.push(`${node.name}: ${messageOf(error)}`));
      }
      result.stopped.push(node.name);
    }),
  );
  const containersGone = !docker || (await removeContainers(state.labId, result));
  for (const node of nodes) {
    if (keptNodes.has(node.name)) continue;
    const running = (!docker && conditions.get(node.name) !== 'ours') ? undefined : await runtime.livePid(node).catch(() => -1);
    if (running || !containersGone) {
      result.problems.push(`${node.name} ${running ? 'is still running' : 'may still have a container'}; its data dir ${node.datadir} was kept`);
      keptNodes.add(node.name);
      continue;
    }
    try {
      const before = await inspectDatadir(node.datadir, state.labId);
      const outcome = await removeDatadir(node.datadir, state.labId, node.datadirCreated);
      if (outcome === 'kept') result.kept.push({ path: node.datadir, why: KEPT_BECAUSE[before] ?? before });
      else if (before !== 'missing') result.removed.push(outcome === 'emptied' ? `${node.datadir} (emptied: the dir was there before the lab)` : node.datadir);
    } catch (error) {
      result.problems.push(`${node.name}: ${messageOf(error)}`);
      keptNodes.add(node.name);
      continue;
    }
    await removeListed([nodeLogFile(labDir, node.name)], result);
  }
  for (const balancer of state.balancers) {
    const { pidFiles, configFiles, logFiles } = allBalancerFiles(labDir, balancer.name);
    // The record's own paths are never used: a logFile or configFile elsewhere is only reported.
    for (const [field, file] of [['logFile', balancer.logFile], ['configFile', balancer.configFile]] as const) {
      if (file && ![...configFiles, ...logFiles].includes(file)) {
        result.kept.push({ path: file, why: `named by balancer ${balancer.name}'s ${field} in lab.json, not by the lab's naming rules` });
      }
    }
    if (keptBalancers.has(balancer.name)) continue;
    const files = [...pidFiles, ...(balancer.engine === 'haproxy' ? configFiles : []), ...logFiles];
    const present = await existing(files);
    await removeBalancerFiles(labDir, balancer, { log: true });
    result.removed.push(...present);
  }
  // The lab's hosts (--hosts): namespaces, veths and bridge by their recorded names and the lab's prefix,
  // once no node of the lab runs in them.
  if (result.problems.length === 0 && state.hosts) {
    try {
      const network = await removeLabNetwork(state);
      result.removed.push(...network.removed);
      if (network.kept) result.kept.push(network.kept);
    } catch (error) {
      result.problems.push(`network: ${messageOf(error)}`);
    }
  }
  if (result.problems.length > 0) {
    await updateState(labDir, (s) => {
      s.nodes = s.nodes.filter((n) => keptNodes.has(n.name));
      s.balancers = s.balancers.filter((b) => keptBalancers.has(b.name));
      s.faults = faultsOf(s).filter((fault) => keptNodes.has(fault.node));
      if (s.faults.length === 0) delete s.faults;
    });
    throw new LabError('STATE', `destroy left something behind: ${result.problems.join('; ')}; lab.json still lists it: run \`lab destroy --yes\` again once that is fixed`, {
      detail: [`lab dir: ${path.resolve(labDir)}`, ...result.removed.map((p) => `removed: ${p}`), ...result.kept.map((k) => `kept: ${k.path} (${k.why})`)].join('\n'),
    });
  }
  // Everything else first, lab.json last: a destroy killed before that point is finished by the next one.
  // Every file in the balancer dir (0700, checked ours and no link on every read) is the lab's.
  const { dir: tlsDir } = tlsPaths(labDir);
  const access = [pgpassPath(labDir), tlsDir];
  const accessPresent = await existing(access);
  await removeLabAccessFiles(labDir);
  for (const file of accessPresent) {
    if (await exists(file)) result.kept.push({ path: file, why: 'holds files the lab did not make' });
    else result.removed.push(file);
  }
  await removeListed([balancerDir(labDir), ...(state.archive ? [archiveDir(labDir), backupsDir(labDir)] : [])], result);
  const logs = logDir(labDir);
  if (await exists(logs)) {
    await rmdir(logs).then(
      () => result.removed.push(logs),
      () => result.kept.push({ path: logs, why: 'holds files the lab did not make' }),
    );
  }
  await withLock(labDir, async () => {
    await rm(statePath(labDir), { force: true });
  });
  result.removed.push(statePath(labDir));
  if (state.labDirCreated) {
    const left = await readdir(labDir).catch(() => ['?']);
    if (left.length === 0 && (await rmdir(labDir).then(() => true, () => false))) result.removed.push(labDir);
    else result.kept.push({ path: labDir, why: `not empty: ${left.join(', ')}` });
  }
  return result;
}

/** Every container labelled with this lab (servers, leftover one-offs), and nothing else; false when some may remain. */
async function removeContainers(labId: string, result: DestroyResult): Promise<boolean> {
  try {
    const { listLabContainers, removeLabContainers } = await import('../runtime/docker/lab.js');
    for (const name of await removeLabContainers(labId)) result.stopped.push(`container ${name}`);
    const left = await listLabContainers(labId);
    if (left.length === 0) return true;
    result.problems.push(`containers ${left.map((c) => c.name).join(', ')} could not be removed`);
  } catch (error) {
    result.problems.push(`containers: ${messageOf(error)}`);
  }
  return false;
}
