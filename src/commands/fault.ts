// `lab fault pause|lag|list|heal` (issue 17, the faults that work on every lab). A fault is recorded in
// lab.json (phase `applying`) before it is applied, then marked `applied`: a CLI killed in between leaves a
// record that heal and destroy treat as possibly applied, never a paused node nobody knows about.
//   pause: SIGSTOP the node's postmaster, then its children (heal: SIGCONT children, then postmaster);
//          on the docker runtime `docker pause` of the node's container (heal: `docker unpause`).
//   lag:   pg_wal_replay_pause() on a standby: WAL is received, not replayed (heal: pg_wal_replay_resume()).
//   partition, loss: iptables DROP rules in the node's namespace (a lab made with --hosts, src/network/iptables-faults.ts).
//   delay: a relay of pglab's own in the node's namespace (no netem here: src/network/delay.ts, src/network/delay-relay.ts), nat rules send the node's links through it.
import { LabError, messageOf } from '../common/errors.js';
import { openLab, type GlobalOptions, type LabContext } from '../lab/context.js';
import { faultsOf } from '../lab/faults.js';
import { liveClaim, requireBuilt, requireNode, thisBuilder, updateState, type FaultKind, type FaultRecord, type LabState, type NodeRecord } from '../lab/state.js';
import { queryRows } from '../postgres/client.js';
import { runtimeFor } from '../runtime/runtime-for.js';
import type { NodeHost } from '../network/address.js';
import { applyDelay, removeDelay } from '../network/delay.js';
import { applyNetworkFault, removeNetworkFault, type NetworkFault } from '../network/iptables-faults.js';
import { netnsExists } from '../network/ip.js';
import { refuseOtherLabsBridge } from '../network/bridge.js';
import { subnetOf } from '../network/address.js';
import { nodeAddress } from '../network/address.js';

export const NETWORK_FAULTS = ['partition', 'delay', 'loss'] as const;

export interface FaultResult {
  node: string;
  kind: FaultKind;
  /** partition: the peers cut off (addresses); loss: the percentage dropped each way. */
  peers?: string[];
  percent?: number;
  /** pause: the postmaster stopped, how many processes (it and its children), and how (SIGSTOP, docker pause). */
  pid?: number;
  processes?: number;
  how?: string;
}

/** A fault as `lab fault list` shows it: applierGone when it is `applying` and the command applying it is gone. */
export type ListedFault = FaultRecord & { applierGone?: true };

export { parseDelay } from '../lab/faults.js';

export interface HealResult {
  healed: { node: string; kind: FaultKind; outcome: string }[];
}

const CONNECT_MS = 3000;

function faultWords(kind: FaultKind): string {
  return { pause: 'paused (SIGSTOP)', lag: 'lagging (WAL replay paused)', partition: 'partitioned', loss: 'losing packets', delay: 'delayed' }[kind];
}

/** The node, built and running, or a one-line refusal. */
async function runningNode(context: LabContext, name: string): Promise<{ node: NodeRecord; pid: number }> {
  const node = requireNode(context.state, name);
  requireBuilt(node, `re-run the command that created it (\`lab replica add ${name} ...\`)`);
  const pid = await runtimeFor(context).livePid(node);
  if (!pid) throw new LabError('STATE', `Node "${name}" is not running: start it first (\`lab node start ${name}\`)`);
  return { node, pid };
}

function refuseTwice(state: LabState, name: string, kind: FaultKind): void {
  const fault = faultsOf(state, name).find((f) => f.kind === kind);
  const applier = fault?.phase === 'applying' ? liveClaim(fault.applier) : undefined;
  if (applier && applier.pid !== process.pid) {
    throw new LabError('CONFLICT', `Node "${name}" is being ${faultWords(kind)} by pid ${applier.pid} since ${applier.since}: wait for that command to finish`);
  }
  if (fault) {
    const maybe = fault.phase === 'applying' ? ' (maybe: a `lab fault` was interrupted while applying it)' : '';
    throw new LabError('CONFLICT', `Node "${name}" is already ${faultWords(kind)} since ${fault.since}${maybe}: \`lab fault heal ${name}\` first`);
  }
}

/**
 * Record the fault (phase `applying`, this command as its applier) under the lock, refusing a second one
 * of the same kind. A command killed before it marks the fault applied leaves an applier that is gone.
 */
async function recordFault(context: LabContext, fault: FaultRecord): Promise<void> {
  await updateState(context.labDir, (state) => {
    requireNode(state, fault.node);
    refuseTwice(state, fault.node, fault.kind);
    (state.faults ??= []).push({ ...fault, applier: thisBuilder() });
  });
}

/** The fault is in force: phase `applied`, with what only applying it told (the delay relay's pid). */
async function markApplied(context: LabContext, name: string, kind: FaultKind, facts: Pick<FaultRecord, 'pid'> = {}): Promise<void> {
  await updateState(context.labDir, (state) => {
    const fault = faultsOf(state, name).find((f) => f.kind === kind);
    if (!fault) return;
    Object.assign(fault, { phase: 'applied' }, facts);
    delete fault.applier;
  });
}

async function forgetFault(context: LabContext, name: string, kind: FaultKind): Promise<void> {
  await updateState(context.labDir, (state) => {
    state.faults = faultsOf(state).filter((f) => !(f.node === name && f.kind === kind));
    if (state.faults.length === 0) delete state.faults;
  });
}

export async function faultPause(global: GlobalOptions, name: string): Promise<FaultResult> {
  const context = await openLab(global);
  requireNode(context.state, name);
  refuseTwice(context.state, name, 'pause');
  // The pid proved the node's own: a postgres whose -D is this data dir, or its container's PID 1.
  const { node, pid } = await runningNode(context, name);
  const runtime = runtimeFor(context);
  await recordFault(context, { node: name, kind: 'pause', phase: 'applying', since: new Date().toISOString(), pid });
  try {
    const { processes, how } = await runtime.pause(node, pid);
    await markApplied(context, name, 'pause');
    return { node: name, kind: 'pause', pid, processes, how };
  } catch (error) {
    // Nothing half-applied: resume what was stopped, forget the record.
    await runtime.resume(node).catch(() => undefined);
    await forgetFault(context, name, 'pause');
    throw new LabError('COMMAND_FAILED', `Could not pause "${name}": ${messageOf(error)}; it was resumed`);
  }
}

export async function faultLag(global: GlobalOptions, name: string): Promise<FaultResult> {
  const context = await openLab(global);
  requireNode(context.state, name);
  refuseTwice(context.state, name, 'lag');
  if (faultsOf(context.state, name).some((f) => f.kind === 'pause')) {
    throw new LabError('STATE', `Node "${name}" is paused (SIGSTOP) and cannot answer: \`lab fault heal ${name}\` first`);
  }
  const { node } = await runningNode(context, name);
  const conn = { host: nodeAddress(node), port: node.port, user: context.state.dbUser, connectTimeoutMs: CONNECT_MS };
  const [row] = await queryRows<{ standby: boolean }>(conn, 'SELECT pg_is_in_recovery() AS standby');
  if (!row?.standby) {
    throw new LabError('STATE', `Node "${name}" is a primary (not in recovery): lag pauses WAL replay on a standby only`);
  }
  await recordFault(context, { node: name, kind: 'lag', phase: 'applying', since: new Date().toISOString() });
  try {
    await queryRows(conn, 'SELECT pg_wal_replay_pause()');
  } catch (error) {
    await queryRows(conn, 'SELECT pg_wal_replay_resume()').catch(() => undefined);
    await forgetFault(context, name, 'lag');
    throw new LabError('COMMAND_FAILED', `Could not pause WAL replay on "${name}": ${messageOf(error)}`);
  }
  await markApplied(context, name, 'lag');
  return { node: name, kind: 'lag' };
}

/** The lab's faults; one left `applying` by a command that is gone (killed half-way) says so. */
export async function faultList(global: GlobalOptions): Promise<ListedFault[]> {
  const context = await openLab(global);
  return faultsOf(context.state).map((fault) => (fault.phase === 'applying' && fault.applier && !liveClaim(fault.applier) ? { ...fault, applierGone: true } : fault));
}

/** Undo one fault; the record is dropped once it is undone (or moot: the node no longer runs). */
async function healOne(context: LabContext, fault: FaultRecord): Promise<string> {
  const node = requireNode(context.state, fault.node);
  // Rules and relays of namespaces on another lab's bridge are not this lab's to remove.
  if (node.host && context.state.hosts && ['delay', 'partition', 'loss'].includes(fault.kind)) await refuseOtherLabsBridge(context.state.labId, context.state.hosts);
  if (fault.kind === 'delay') {
    if (!node.host) return 'no host: nothing to remove';
    return (await removeDelay(node.host.netns)) ? `relay stopped and nat rules removed in ${node.host.netns}` : `no relay or rules left in ${node.host.netns}: nothing to remove`;
  }
  if (fault.kind === 'partition' || fault.kind === 'loss') {
    if (!node.host) return 'no host: nothing to remove';
    return (await removeNetworkFault(node.host.netns, fault.kind)) ? `iptables rules removed in ${node.host.netns}` : `no rules left in ${node.host.netns}: nothing to remove`;
  }
  if (fault.kind === 'pause') {
    return (await runtimeFor(context).resume(node)) ?? 'not running: nothing to resume';
  }
  if (!(await runtimeFor(context).livePid(node))) return 'not running: replay resumes when it starts';
  try {
    await queryRows({ host: nodeAddress(node), port: node.port, user: context.state.dbUser, connectTimeoutMs: CONNECT_MS }, 'SELECT pg_wal_replay_resume()');
    return 'WAL replay resumed';
  } catch (error) {
    if (/recovery is not in progress/i.test(messageOf(error))) return 'no longer in recovery (promoted): nothing to resume';
    throw new LabError('COMMAND_FAILED', `Could not resume WAL replay on "${node.name}": ${messageOf(error)}; the fault stays recorded`);
  }
}

export async function faultHeal(global: GlobalOptions, name?: string): Promise<HealResult> {
  const context = await openLab(global);
  if (name !== undefined) requireNode(context.state, name);
  // Network faults, then pauses first: a cut off or paused node cannot answer the SQL that ends a lag.
  const order: Record<FaultKind, number> = { partition: 0, loss: 1, delay: 2, pause: 3, lag: 4 };
  const faults = faultsOf(context.state, name).sort((a, b) => order[a.kind] - order[b.kind]);
  if (faults.length === 0) {
    throw new LabError('STATE', name ? `Node "${name}" has no fault to heal (see \`lab fault list\`)` : 'No fault to heal in this lab (see `lab fault list`)');
  }
  const healed: HealResult['healed'] = [];
  for (const fault of faults) {
    const outcome = await healOne(context, fault);
    await forgetFault(context, fault.node, fault.kind);
    healed.push({ node: fault.node, kind: fault.kind, outcome });
  }
  return { healed };
}

/** A lab made with --hosts, and the node (built, with its namespace there), or a one-line refusal. */
async function hostedNode(context: LabContext, name: string, kind: string): Promise<NodeRecord & { host: NodeHost }> {
  if (!context.state.hosts) {
    throw new LabError('USAGE', `lab fault ${kind} needs a lab made with --hosts (nodes in network namespaces): \`lab destroy --yes\`, then \`lab master start --hosts\`; pause and lag work on every lab`);
  }
  const node = requireNode(context.state, name);
  requireBuilt(node, `re-run the command that created it (\`lab replica add ${name} ...\`)`);
  await refuseOtherLabsBridge(context.state.labId, context.state.hosts);
  if (!node.host || !(await netnsExists(node.host.netns))) {
    throw new LabError('STATE', `Node "${name}" has no host (network namespace) now: start it first (\`lab node start ${name}\`)`);
  }
  return node as NodeRecord & { host: NodeHost };
}

/** Record, apply, mark applied; on failure the rules are removed and the record forgotten (nothing half-applied). */
async function applyRecorded(context: LabContext, node: NodeRecord & { host: NodeHost }, fault: FaultRecord, peers: string[]): Promise<void> {
  const kind = fault.kind as NetworkFault;
  await recordFault(context, fault);
  try {
    await applyNetworkFault(node.host.netns, kind, peers, fault.percent);
  } catch (error) {
    await removeNetworkFault(node.host.netns, kind).catch(() => undefined);
    await forgetFault(context, node.name, kind);
    throw new LabError('COMMAND_FAILED', `Could not apply ${kind} to "${node.name}": ${messageOf(error)}; nothing is left applied`);
  }
  await markApplied(context, node.name, kind);
}

/**
 * `lab fault partition NODE [--from A,B]`: DROP, in the node's namespace, every packet from and to the lab's
 * subnet (or only the --from nodes' addresses), both ways. Sockets stay open: peers see silence, not a reset.
 */
export async function faultPartition(global: GlobalOptions, name: string, from?: string): Promise<FaultResult> {
  const context = await openLab(global);
  const node = await hostedNode(context, name, 'partition');
  let peers = [subnetOf(context.state.hosts!)];
  let fromNodes: string[] | undefined;
  if (from !== undefined) {
    fromNodes = [...new Set(from.split(',').map((n) => n.trim()).filter(Boolean))];
    if (fromNodes.length === 0) throw new LabError('USAGE', `--from needs node names separated by commas, e.g. --from replica1,replica2`);
    peers = fromNodes.map((peer) => {
      if (peer === name) throw new LabError('USAGE', `--from ${peer}: a node cannot be partitioned from itself`);
      const other = requireNode(context.state, peer);
      if (!other.host) throw new LabError('STATE', `Node "${peer}" has no host address in this lab`);
      return other.host.address;
    });
  }
  refuseTwice(context.state, name, 'partition');
  await applyRecorded(context, node, { node: name, kind: 'partition', phase: 'applying', since: new Date().toISOString(), ...(fromNodes ? { from: fromNodes } : {}) }, peers);
  return { node: name, kind: 'partition', peers };
}

/** "20%" or "20": an integer percentage from 1 to 100, else a one-line refusal. */
export function parsePercent(text: string): number {
  const match = /^(\d{1,3})%?$/.exec(text.trim());
  const value = match ? Number(match[1]) : NaN;
  if (!Number.isInteger(value) || value < 1 || value > 100) throw new LabError('USAGE', `Invalid loss "${text}": expected a percentage from 1% to 100%, e.g. 20%`);
  return value;
}

/** `lab fault loss NODE P%`: each packet between the node and the lab's subnet dropped with probability P, each way. */
export async function faultLoss(global: GlobalOptions, name: string, percent: number): Promise<FaultResult> {
  if (!Number.isInteger(percent) || percent < 1 || percent > 100) throw new LabError('USAGE', `Invalid loss ${percent}: expected a whole percentage from 1 to 100`);
  const context = await openLab(global);
  const node = await hostedNode(context, name, 'loss');
  refuseTwice(context.state, name, 'loss');
  const peers = [subnetOf(context.state.hosts!)];
  await applyRecorded(context, node, { node: name, kind: 'loss', phase: 'applying', since: new Date().toISOString(), percent }, peers);
  return { node: name, kind: 'loss', peers, percent };
}

/** "200ms", "1s", "0.5s": milliseconds from 1 to 60000, else a one-line refusal. */

/**
 * `lab fault delay NODE D [--jitter J]`: a relay of pglab's own in the node's namespace (no netem here)
 * holds what the node sends for D ms (± J): connections to it (clients, checks, its standbys) and its own
 * to the other nodes (replication) take about D more per round trip. Heal stops the relay (its
 * connections are cut; clients and walreceivers reconnect) and removes the nat rules.
 */
export async function faultDelay(global: GlobalOptions, name: string, delayMs: number, jitterMs = 0): Promise<FaultResult> {
  for (const [what, ms] of [['delay', delayMs], ['jitter', jitterMs]] as const) {
    if (!Number.isInteger(ms) || ms < (what === 'delay' ? 1 : 0) || ms > 60_000) throw new LabError('USAGE', `Invalid ${what} ${ms} ms: expected whole milliseconds up to 60000`);
  }
  if (jitterMs > delayMs) throw new LabError('USAGE', `The jitter ${jitterMs} ms is more than the delay ${delayMs} ms: a packet cannot arrive before it is sent`);
  const context = await openLab(global);
  const node = await hostedNode(context, name, 'delay');
  refuseTwice(context.state, name, 'delay');
  // The servers' OS user (the host's postgres user, or the image's in containers): only its connections are redirected.
  const uid = (await runtimeFor(context).dataOwner())?.uid;
  if (uid === undefined) throw new LabError('ENVIRONMENT', 'lab fault delay needs the servers to run as their own OS user (run lab as root)');
  const peers = context.state.nodes.filter((n) => n.name !== name && n.host).map((n) => ({ address: n.host!.address, port: n.port }));
  await recordFault(context, { node: name, kind: 'delay', phase: 'applying', since: new Date().toISOString(), delayMs, ...(jitterMs ? { jitterMs } : {}) });
  let pid: number;
  try {
    ({ pid } = await applyDelay(node.host.netns, { address: node.host.address, port: node.port, peers, uid }, delayMs, jitterMs));
  } catch (error) {
    await removeDelay(node.host.netns).catch(() => undefined);
    await forgetFault(context, name, 'delay');
    throw new LabError('COMMAND_FAILED', `Could not delay "${name}": ${messageOf(error)}; nothing is left applied`);
  }
  await markApplied(context, name, 'delay', { pid });
  // Replication sessions open now bypass the relay (their NAT was decided when they began): their walsenders
  // are ended so the standbys reconnect through it. Other open sessions keep their undelayed path.
  const user = context.state.dbUser;
  const upstream = node.upstream ? context.state.nodes.find((n) => n.name === node.upstream) : undefined;
  if (upstream) {
    await queryRows({ host: nodeAddress(upstream), port: upstream.port, user, connectTimeoutMs: CONNECT_MS }, 'SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = $1', [name]).catch(() => undefined);
  }
  // Its own walsenders, when it has standbys: this login goes through the relay (seconds at 300 ms a
  // message), so a replica nobody streams from is spared it and the fault is in force sooner.
  if (node.role === 'primary' || context.state.nodes.some((n) => n.upstream === name)) {
    await queryRows({ host: nodeAddress(node), port: node.port, user, connectTimeoutMs: CONNECT_MS + 2 * delayMs }, 'SELECT pg_terminate_backend(pid) FROM pg_stat_replication').catch(() => undefined);
  }
  return { node: name, kind: 'delay', pid, peers: peers.map((p) => `${p.address}:${p.port}`) };
}
