// Hosts of their own (issue 17, `lab master start --hosts`): per lab a bridge `pgl<N>` on this machine
// holding 10.213.N.1/24 (N: the first index 1..250 no other bridge uses); per node a network namespace
// `pglab-<N>-<node>` whose eth0 (a veth whose host side `pgl<N>-<i>` is on the bridge) holds 10.213.N.<i>
// (i from 10 to 250), lo up, default route via 10.213.N.1. Host <-> node and node <-> node traffic crosses
// the bridge (layer 2: no sysctl is changed). Every name is recorded in lab.json before it is made, so
// `lab destroy` removes it by its recorded name, and by the lab's prefix, also after a kill -9.
// N is claimed by making the bridge: `ip link add` of a name that exists fails, so of two labs that picked
// the same N at the same time one gets it and the other takes the next. The bridge is made with a MAC
// address derived from the lab's id (in the same netlink request as its name, so a kill -9 cannot leave a
// bridge of ours without it): that MAC is what says a bridge is this lab's; its alias `pglab:<labId>` is for
// people reading `ip link`. Namespaces and veths are made only on a bridge of the lab's own, and the
// prefix sweeps run only while the lab holds its bridge: another lab's pgl<N> is never touched.
// The network faults live in the node's namespace as iptables rules in chains of pglab's own (PGL-*):
// they touch only that node and vanish with its namespace; the host's iptables is never changed.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { packageRoot } from '../common/package-root.js';
import { commandArgs, startTimeOf } from '../common/processes.js';
import type { RelayConfig, RelayListener } from './delay-relay.js';
import { LabError, messageOf } from '../common/errors.js';
import type { NodeHost } from './address.js';
import type { LabHosts, LabState } from './state.js';

export const SUBNET_PREFIX = '10.213';
const FIRST_HOST = 10;
const LAST_HOST = 250;

export function subnetOf(hosts: LabHosts): string {
  return `${SUBNET_PREFIX}.${hosts.index}.0/24`;
}

export function gatewayOf(hosts: LabHosts): string {
  return `${SUBNET_PREFIX}.${hosts.index}.1`;
}

/** Every address a node of this lab can have (the TLS certificate names them all). */
export function labAddresses(hosts: LabHosts): string[] {
  const all: string[] = [];
  for (let i = FIRST_HOST; i <= LAST_HOST; i++) all.push(`${SUBNET_PREFIX}.${hosts.index}.${i}`);
  return all;
}

async function ip(args: string[], what: string): Promise<string> {
  try {
    const { stdout } = await execa('ip', args, { timeout: 20_000 });
    return stdout;
  } catch (error) {
    const e = error as { code?: string; stderr?: string };
    if (e.code === 'ENOENT') throw new LabError('ENVIRONMENT', 'No `ip` command (iproute2): --hosts needs it (apt-get install iproute2)');
    throw new LabError('COMMAND_FAILED', `${what} failed: ip ${args.join(' ')}: ${(e.stderr ?? messageOf(error)).trim().split('\n').pop()}`);
  }
}

/**
 * --hosts refused in one line where namespaces cannot be made: not root, no `ip`, no iptables, and for
 * processes no setpriv (the docker runtime's servers run as the image's user without it). `instead`:
 * what else the person can do (a drill that would make its lab with --hosts says which phase to leave out).
 */
export async function checkCanMakeHosts(runtime: string, instead = 'drop --hosts'): Promise<void> {
  if (process.geteuid?.() !== 0) throw new LabError('ENVIRONMENT', `--hosts needs root (it makes network namespaces, veth links and a bridge): run lab as root, or ${instead}`);
  const tools: [string, string[]][] = [['ip', ['-V']], ['iptables', ['-V']]];
  if (runtime === 'process') tools.push(['setpriv', ['--version']]);
  for (const [tool, args] of tools) {
    try {
      await execa(tool, [...args], { timeout: 10_000 });
    } catch {
      throw new LabError('ENVIRONMENT', `--hosts needs the \`${tool}\` command (iproute2, iptables, util-linux), which does not run here: install it, or ${instead}`);
    }
  }
}

interface LinkInfo {
  name: string;
  mac?: string;
  alias?: string;
  /** A veth's peer's namespace, by name (`link-netns`). */
  netns?: string;
}

/** The links of this machine (`ip -o link show`: one line each, `\\` where ip would break it). */
async function links(): Promise<LinkInfo[]> {
  const out = await ip(['-o', 'link', 'show'], 'listing links');
  const found: LinkInfo[] = [];
  for (const line of out.split('\n')) {
    const name = /^\d+:\s+([^:@\s]+)/.exec(line)?.[1];
    if (!name) continue;
    found.push({
      name,
      mac: /link\/ether ([0-9a-f:]+)/.exec(line)?.[1],
      netns: / link-netns (\S+)/.exec(line)?.[1],
      alias: /\\\s+alias (.*?)\s*$/.exec(line)?.[1],
    });
  }
  return found;
}

async function linkNames(): Promise<string[]> {
  return (await links()).map((link) => link.name);
}

async function netnsNames(): Promise<string[]> {
  const out = await ip(['netns', 'list'], 'listing namespaces');
  return out.split('\n').map((line) => line.split(' ')[0]!).filter(Boolean);
}

/** The first bridge index no link or namespace on this machine uses (another lab's, or one left over), none of `skip`. */
export async function freeBridgeIndex(skip: number[] = []): Promise<number> {
  const used = new Set((await linkNames()).map((name) => /^pgl(\d+)(?:-\d+)?$/.exec(name)?.[1]).filter(Boolean).map(Number));
  for (const netns of await netnsNames()) {
    const index = /^pglab-(\d+)-/.exec(netns)?.[1];
    if (index) used.add(Number(index));
  }
  for (let index = 1; index <= 250; index++) if (!used.has(index) && !skip.includes(index)) return index;
  throw new LabError('ENVIRONMENT', 'Every pglab bridge index 1..250 is in use (pgl1..pgl250): destroy a lab made with --hosts first');
}

export function labHosts(index: number): LabHosts {
  return { index, bridge: `pgl${index}` };
}

/** The host of a new node: the first free address of the lab; its names follow from it. */
export function newNodeHost(state: LabState, node: string): NodeHost {
  const hosts = state.hosts!;
  const taken = new Set(state.nodes.map((n) => n.host?.address).filter(Boolean));
  for (let i = FIRST_HOST; i <= LAST_HOST; i++) {
    const address = `${SUBNET_PREFIX}.${hosts.index}.${i}`;
    if (!taken.has(address)) return { netns: `pglab-${hosts.index}-${node}`, veth: `pgl${hosts.index}-${i}`, address };
  }
  throw new LabError('STATE', `No free address left in ${subnetOf(hosts)} for node "${node}"`);
}

/** The MAC address of the lab's bridge (locally administered, from the lab's id): the mark of a bridge this lab made. */
export function bridgeMac(labId: string): string {
  const hash = createHash('sha256').update(labId).digest('hex');
  return ['02', ...[0, 2, 4, 6, 8].map((i) => hash.slice(i, i + 2))].join(':');
}

/** The alias of the lab's bridge and veths (`ip link` shows it): `pglab:<labId>`. */
export function labAlias(labId: string): string {
  return `pglab:${labId}`;
}

export interface BridgeHolder {
  /** ours: the bridge carries this lab's MAC; absent: no link of that name; other: another lab's (or anything else's). */
  holder: 'ours' | 'absent' | 'other';
  /** The bridge's alias (a lab's `pglab:<labId>`), when it has one. */
  alias?: string;
}

/** Who holds the lab's bridge name now. */
export async function bridgeHolder(labId: string, hosts: LabHosts): Promise<BridgeHolder> {
  const bridge = (await links()).find((link) => link.name === hosts.bridge);
  if (!bridge) return { holder: 'absent' };
  return { holder: bridge.mac === bridgeMac(labId) ? 'ours' : 'other', alias: bridge.alias };
}

function otherLabsBridge(hosts: LabHosts, held: BridgeHolder): string {
  const whose = held.alias?.startsWith('pglab:') ? `another lab's (${held.alias})` : 'not made by this lab';
  return `bridge ${hosts.bridge} is ${whose}, yet this lab.json names index ${hosts.index}`;
}

/** The one-line refusal of a command that would touch the network of another lab's index. */
export async function refuseOtherLabsBridge(labId: string, hosts: LabHosts): Promise<void> {
  const held = await bridgeHolder(labId, hosts);
  if (held.holder === 'other') throw new LabError('UNSAFE', `The ${otherLabsBridge(hosts, held)}: nothing was touched (its namespaces pglab-${hosts.index}-* are not this lab's)`);
}

/**
 * Claim index N for the lab: make its bridge, with the lab's MAC, then its alias. True when the bridge is
 * the lab's (made now, or by an earlier run of this lab); false when another lab's bridge has the name.
 */
export async function claimBridge(labId: string, hosts: LabHosts): Promise<boolean> {
  try {
    await ip(['link', 'add', 'name', hosts.bridge, 'address', bridgeMac(labId), 'type', 'bridge'], `making bridge ${hosts.bridge}`);
  } catch (error) {
    if (!/File exists/.test(messageOf(error))) throw error;
    if ((await bridgeHolder(labId, hosts)).holder !== 'ours') return false;
  }
  await ip(['link', 'set', hosts.bridge, 'alias', labAlias(labId)], `naming bridge ${hosts.bridge}`);
  return true;
}

/** The lab's bridge with its address, up: made when absent (after a reboot), refused in one line when another lab's holds the name. */
export async function ensureBridge(labId: string, hosts: LabHosts): Promise<void> {
  const held = await bridgeHolder(labId, hosts);
  if (held.holder === 'other' || (held.holder === 'absent' && !(await claimBridge(labId, hosts)))) await refuseOtherLabsBridge(labId, hosts);
  // Ours without its alias: a CLI killed between making the bridge and naming it.
  if (held.holder === 'ours' && held.alias !== labAlias(labId)) await ip(['link', 'set', hosts.bridge, 'alias', labAlias(labId)], `naming bridge ${hosts.bridge}`);
  const addresses = await ip(['-o', 'addr', 'show', 'dev', hosts.bridge], `reading ${hosts.bridge}`);
  if (!addresses.includes(` ${gatewayOf(hosts)}/24`)) await ip(['addr', 'add', `${gatewayOf(hosts)}/24`, 'dev', hosts.bridge], `addressing ${hosts.bridge}`);
  await ip(['link', 'set', hosts.bridge, 'up'], `bringing ${hosts.bridge} up`);
}

/**
 * The node's namespace, veth, address and route, made (again) unless they are all there. With `pid` (a
 * node's container, started with no network) the namespace is that process's, named as the node's
 * (`ip netns attach`); a name holding another one (the container's before a restart: each start of a
 * container gets a new namespace) is removed first, with its veth.
 */
export async function ensureNodeHost(labId: string, hosts: LabHosts, host: NodeHost, pid?: number): Promise<void> {
  // The lab's own bridge, so every pglab-N-* / pglN-* name is the lab's to make and replace.
  await ensureBridge(labId, hosts);
  if ((await netnsNames()).includes(host.netns)) {
    const inside = (await namesNetnsOf(host.netns, pid)) ? await ip(['-n', host.netns, '-o', 'addr', 'show', 'dev', 'eth0'], `reading ${host.netns}`).catch(() => '') : '';
    if (inside.includes(` ${host.address}/24`) && (await linkNames()).includes(host.veth)) return await trackConnections(host.netns);
    await removeNodeHost(labId, hosts, host);
  }
  if ((await linkNames()).includes(host.veth)) await deleteGone(['link', 'del', host.veth], `removing a leftover ${host.veth}`);
  if (pid === undefined) await ip(['netns', 'add', host.netns], `making namespace ${host.netns}`);
  else await ip(['netns', 'attach', host.netns, String(pid)], `naming the namespace of process ${pid} ${host.netns}`);
  await linkNodeHost(labId, hosts, host);
}

/** Whether the named namespace is the one process `pid` runs in (always, without a pid: a namespace of its own). */
async function namesNetnsOf(netns: string, pid: number | undefined): Promise<boolean> {
  if (pid === undefined) return true;
  const [named, of] = await Promise.all([stat(path.join('/run/netns', netns)), stat(`/proc/${pid}/ns/net`)]).catch(() => []);
  return Boolean(named && of && named.ino === of.ino && named.dev === of.dev);
}

/** The veth (its end in the namespace named eth0), the node's address, lo and eth0 up, the default route, the host end on the bridge. */
async function linkNodeHost(labId: string, hosts: LabHosts, host: NodeHost): Promise<void> {
  await ip(['link', 'add', host.veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.netns], `making veth ${host.veth}`);
  await ip(['link', 'set', host.veth, 'alias', labAlias(labId)], `naming veth ${host.veth}`);
  await ip(['-n', host.netns, 'addr', 'add', `${host.address}/24`, 'dev', 'eth0'], `addressing ${host.netns}`);
  await ip(['-n', host.netns, 'link', 'set', 'lo', 'up'], `bringing lo up in ${host.netns}`);
  await ip(['-n', host.netns, 'link', 'set', 'eth0', 'up'], `bringing eth0 up in ${host.netns}`);
  await ip(['-n', host.netns, 'route', 'add', 'default', 'via', gatewayOf(hosts)], `routing ${host.netns}`);
  await ip(['link', 'set', host.veth, 'master', hosts.bridge, 'up'], `attaching ${host.veth} to ${hosts.bridge}`);
  await trackConnections(host.netns);
}

/** A conntrack match with no verdict: it only turns connection tracking on in the namespace. */
const TRACK_RULE = ['INPUT', '-m', 'conntrack', '--ctstate', 'INVALID', '-m', 'comment', '--comment', 'pglab: connections tracked from the start'];

/**
 * Connection tracking on in the node's namespace from its start, so that a delay's nat REDIRECT applies
 * to new connections only, as documented. Without it tracking began with the delay's first nat rule and
 * picked up every open connection mid-stream as a new one: redirected to the relay, which knew nothing of
 * it, each was reset (the balancer's kept check connection, clients' sessions).
 */
async function trackConnections(netns: string): Promise<void> {
  const present = await execa('ip', ['netns', 'exec', netns, 'iptables', '-C', ...TRACK_RULE], { reject: false, timeout: 20_000 });
  if (present.exitCode !== 0) await inNetns(netns, 'iptables', ['-A', ...TRACK_RULE]);
}

/** `ip link del` / `ip netns del` of something that may vanish meanwhile (a veth goes with its namespace, asynchronously). */
async function deleteGone(args: string[], what: string): Promise<boolean> {
  try {
    await ip(args, what);
    return true;
  } catch (error) {
    if (/Cannot find device|No such file or directory/.test(messageOf(error))) return false;
    throw error;
  }
}

/**
 * The namespace (its veth goes with it) and the host side if left; nothing when already gone. While another
 * lab's bridge holds the lab's name, only what is provably this lab's: a veth with the lab's alias, and the
 * namespace such a veth leads into.
 */
export async function removeNodeHost(labId: string, hosts: LabHosts, host: Pick<NodeHost, 'netns' | 'veth'>): Promise<string[]> {
  const held = await bridgeHolder(labId, hosts);
  return held.holder === 'other' ? removeProvablyOurs(labId, host) : removeNodeNames(host);
}

async function removeNodeNames(host: Pick<NodeHost, 'netns' | 'veth'>): Promise<string[]> {
  const removed: string[] = [];
  if ((await netnsNames()).includes(host.netns)) {
    if (await deleteGone(['netns', 'del', host.netns], `removing namespace ${host.netns}`)) removed.push(`namespace ${host.netns}`);
  }
  if ((await linkNames()).includes(host.veth)) {
    if (await deleteGone(['link', 'del', host.veth], `removing ${host.veth}`)) removed.push(`link ${host.veth}`);
  }
  return removed;
}

async function removeProvablyOurs(labId: string, host: Pick<NodeHost, 'netns' | 'veth'>): Promise<string[]> {
  const ours = (await links()).filter((link) => link.alias === labAlias(labId));
  return removeNodeNames({
    netns: ours.some((link) => link.netns === host.netns) ? host.netns : '',
    veth: ours.some((link) => link.name === host.veth) ? host.veth : '',
  });
}

/** The recorded namespaces of the lab a command may touch: all while the lab holds its bridge (or none is there), else the provably ours. */
export async function ownNamespaces(labId: string, hosts: LabHosts, netns: string[]): Promise<string[]> {
  if ((await bridgeHolder(labId, hosts)).holder !== 'other') return netns;
  const ours = (await links()).filter((link) => link.alias === labAlias(labId));
  return netns.filter((name) => ours.some((link) => link.netns === name));
}

/**
 * Hold the lab's bridge for a destroy: when absent, claimed (so no lab takes N while the lab's prefix is
 * swept; destroy removes it at the end). True when the lab holds it; false when another lab's bridge does.
 */
export async function holdBridge(labId: string, hosts: LabHosts): Promise<boolean> {
  const held = await bridgeHolder(labId, hosts);
  if (held.holder === 'ours') return true;
  return held.holder === 'absent' && claimBridge(labId, hosts);
}

/**
 * Everything of the lab's network. While the lab holds its bridge: the recorded nodes' hosts, then whatever
 * still carries the lab's prefix (pglab-N-*, pglN-*: a namespace made by a CLI killed before its node was
 * recorded cannot be, as every name is recorded first, but a record removed by hand can), then the bridge.
 * While another lab's bridge holds the name (a lab killed before its claim, or a lab.json edited by hand):
 * only the recorded names that are provably the lab's, and `kept` says what was left.
 */
export async function removeLabNetwork(state: LabState): Promise<{ removed: string[]; kept?: { path: string; why: string } }> {
  const hosts = state.hosts;
  if (!hosts) return { removed: [] };
  const removed: string[] = [];
  if (!(await holdBridge(state.labId, hosts))) {
    for (const node of state.nodes) if (node.host) removed.push(...(await removeProvablyOurs(state.labId, node.host)));
    const held = await bridgeHolder(state.labId, hosts);
    const whose = held.alias?.startsWith('pglab:') ? `another lab's (${held.alias})` : 'not made by this lab';
    const left = `bridge ${hosts.bridge}, namespaces pglab-${hosts.index}-*, links pgl${hosts.index}-*`;
    return { removed, kept: { path: left, why: `the bridge is ${whose}, not this lab's: only names provably this lab's were removed` } };
  }
  for (const node of state.nodes) if (node.host) removed.push(...(await removeNodeNames(node.host)));
  for (const netns of await netnsNames()) {
    if (netns.startsWith(`pglab-${hosts.index}-`)) {
      if (await deleteGone(['netns', 'del', netns], `removing namespace ${netns}`)) removed.push(`namespace ${netns}`);
    }
  }
  for (const link of await linkNames()) {
    if (link.startsWith(`pgl${hosts.index}-`)) {
      if (await deleteGone(['link', 'del', link], `removing ${link}`)) removed.push(`link ${link}`);
    }
  }
  if ((await bridgeHolder(state.labId, hosts)).holder === 'ours') {
    await ip(['link', 'del', hosts.bridge], `removing bridge ${hosts.bridge}`);
    removed.push(`bridge ${hosts.bridge}`);
  }
  return { removed };
}

/** What of a lab's network is still on this machine: namespaces, links (veths, bridge) and delay relays of its prefix. */
export async function labNetworkLeft(hosts: LabHosts): Promise<string[]> {
  const left = (await netnsNames()).filter((n) => n.startsWith(`pglab-${hosts.index}-`)).map((n) => `namespace ${n}`);
  left.push(...(await linkNames()).filter((l) => l === hosts.bridge || l.startsWith(`pgl${hosts.index}-`)).map((l) => `link ${l}`));
  left.push(...(await relaysOf(`pglab-${hosts.index}-`)).map((r) => `delay relay ${r.pid} (${r.netns})`));
  return left;
}

/** Whether the namespace exists now. */
export async function netnsExists(netns: string): Promise<boolean> {
  return (await netnsNames()).includes(netns);
}

// ---- network faults: iptables chains of pglab's own in the node's namespace ----

export type NetworkFault = 'partition' | 'loss';
const CHAINS: Record<NetworkFault, { in: string; out: string }> = {
  partition: { in: 'PGL-PART-IN', out: 'PGL-PART-OUT' },
  loss: { in: 'PGL-LOSS-IN', out: 'PGL-LOSS-OUT' },
};

async function inNetns(netns: string, file: string, args: string[], input?: string): Promise<string> {
  try {
    const { stdout } = await execa('ip', ['netns', 'exec', netns, file, ...args], { input, timeout: 20_000 });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string };
    throw new LabError('COMMAND_FAILED', `${file} in ${netns} failed: ${(e.stderr ?? messageOf(error)).trim().split('\n').pop()}`);
  }
}

/** The rules for a fault: DROP (with a probability for loss) of the peers' packets, both ways, lo spared. */
export function faultRules(kind: NetworkFault, peers: string[], percent?: number): string {
  const chains = CHAINS[kind];
  const match = kind === 'loss' ? ` -m statistic --mode random --probability ${((percent ?? 0) / 100).toFixed(4)}` : '';
  const lines = ['*filter', `:${chains.in} - [0:0]`, `:${chains.out} - [0:0]`];
  for (const peer of peers) {
    lines.push(`-A ${chains.in} ! -i lo -s ${peer}${match} -j DROP`);
    lines.push(`-A ${chains.out} ! -o lo -d ${peer}${match} -j DROP`);
  }
  lines.push(`-I INPUT 1 -j ${chains.in}`, `-I OUTPUT 1 -j ${chains.out}`, 'COMMIT', '');
  return lines.join('\n');
}

/** Apply a fault's rules in one iptables-restore transaction (after removing any left by an interrupted run). */
export async function applyNetworkFault(netns: string, kind: NetworkFault, peers: string[], percent?: number): Promise<void> {
  await removeNetworkFault(netns, kind);
  await inNetns(netns, 'iptables-restore', ['--noflush'], faultRules(kind, peers, percent));
}

/** Remove a fault's chains and the jumps to them; nothing when they are not there (or the namespace is gone). */
export async function removeNetworkFault(netns: string, kind: NetworkFault): Promise<boolean> {
  if (!(await netnsExists(netns))) return false;
  const chains = CHAINS[kind];
  const rules = await inNetns(netns, 'iptables', ['-S']);
  const lines = ['*filter'];
  for (const [builtin, chain] of [['INPUT', chains.in], ['OUTPUT', chains.out]] as const) {
    const jumps = rules.split('\n').filter((rule) => rule === `-A ${builtin} -j ${chain}`).length;
    for (let i = 0; i < jumps; i++) lines.push(`-D ${builtin} -j ${chain}`);
    if (rules.split('\n').includes(`-N ${chain}`)) lines.push(`-F ${chain}`, `-X ${chain}`);
  }
  if (lines.length === 1) return false;
  lines.push('COMMIT', '');
  await inNetns(netns, 'iptables-restore', ['--noflush'], lines.join('\n'));
  return true;
}

/** The pglab rules in force in a namespace (`iptables -S` lines naming a PGL- chain), for tests and list. */
export async function networkRules(netns: string): Promise<string[]> {
  if (!(await netnsExists(netns))) return [];
  return (await inNetns(netns, 'iptables', ['-S'])).split('\n').filter((line) => line.includes('PGL-'));
}

/** The command line that runs `file args` in a node's namespace as `user` (uid/gid): ip netns exec + setpriv. */
export function inHostCommand(netns: string, user: { uid: number; gid: number } | undefined, file: string, args: string[]): { file: string; args: string[] } {
  const as = user ? ['setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups'] : [];
  return { file: 'ip', args: ['netns', 'exec', netns, ...as, file, ...args] };
}

// ---- delay: a relay of pglab's own (no netem here), in the node's namespace ----

const DELAY_CHAINS = { pre: 'PGL-DELAY-PRE', out: 'PGL-DELAY-OUT' };
const RELAY_SCRIPT = path.join(packageRoot, 'dist', 'src', 'lab', 'delay-relay.js');

export interface DelayTarget {
  /** The delayed node's address and port (connections to it). */
  address: string;
  port: number;
  /** The other nodes (the node's own connections to them: replication, rewind). */
  peers: { address: string; port: number }[];
  /** Only this OS user's outgoing connections are redirected (the servers'), not the relay's own. */
  uid: number;
}

/** The relay's listeners and the nat rules that send the traffic there. */
export function delayPlan(target: DelayTarget, delayMs: number, jitterMs: number): { config: RelayConfig; rules: string } {
  const taken = new Set([target.port, ...target.peers.map((p) => p.port)]);
  let next = 47100;
  const freePort = () => {
    while (taken.has(next)) next++;
    return next++;
  };
  const listeners: RelayListener[] = [{ port: freePort(), target: { host: target.address, port: target.port }, delay: 'toClient' }];
  const lines = ['*nat', `:${DELAY_CHAINS.pre} - [0:0]`, `:${DELAY_CHAINS.out} - [0:0]`];
  lines.push(`-A ${DELAY_CHAINS.pre} -p tcp -d ${target.address} --dport ${target.port} -j REDIRECT --to-ports ${listeners[0]!.port}`);
  for (const peer of target.peers) {
    const port = freePort();
    listeners.push({ port, target: { host: peer.address, port: peer.port }, delay: 'toTarget' });
    lines.push(`-A ${DELAY_CHAINS.out} -p tcp -d ${peer.address} --dport ${peer.port} -m owner --uid-owner ${target.uid} -j REDIRECT --to-ports ${port}`);
  }
  lines.push(`-I PREROUTING 1 -j ${DELAY_CHAINS.pre}`, `-I OUTPUT 1 -j ${DELAY_CHAINS.out}`, 'COMMIT', '');
  return { config: { delayMs, jitterMs, listeners }, rules: lines.join('\n') };
}

/** Start the relay in the namespace (it outlives this CLI), then the rules; returns its pid and start time. */
export async function applyDelay(netns: string, target: DelayTarget, delayMs: number, jitterMs: number): Promise<{ pid: number; startTime: number }> {
  await removeDelay(netns);
  const { config, rules } = delayPlan(target, delayMs, jitterMs);
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, RELAY_SCRIPT, JSON.stringify(config), netns], {
    detached: true, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  const ready = await new Promise<string | undefined>((resolve) => {
    let errors = '';
    const timer = setTimeout(() => resolve('it did not say ready within 5 s'), 5000);
    child.stdout!.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready')) {
        clearTimeout(timer);
        resolve(undefined);
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => (errors += chunk.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(`it exited (${code}): ${errors.trim()}`);
    });
  });
  child.stdout!.destroy();
  child.stderr!.destroy();
  child.unref();
  if (ready || !pid) {
    if (pid) await terminateRelay(pid);
    throw new LabError('COMMAND_FAILED', `The delay relay in ${netns} did not start: ${ready ?? 'no pid'}`);
  }
  const startTime = startTimeOf(pid) ?? 0;
  await inNetns(netns, 'iptables-restore', ['--noflush'], rules);
  return { pid, startTime };
}

/** A pid that runs pglab's delay relay for `netns` (its command line says so), else false. */
async function isRelayOf(pid: number, netns: string): Promise<boolean> {
  const args = await commandArgs(pid);
  return Boolean(args && args.includes(RELAY_SCRIPT) && args[args.length - 1] === netns);
}

async function terminateRelay(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

/** Every delay relay of a namespace name starting with `prefix`, from /proc (a CLI killed before recording its pid included). */
export async function relaysOf(prefix: string): Promise<{ pid: number; netns: string }[]> {
  const found: { pid: number; netns: string }[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const args = await commandArgs(Number(entry));
    const netns = args?.[args.length - 1];
    if (args?.includes(RELAY_SCRIPT) && netns?.startsWith(prefix)) found.push({ pid: Number(entry), netns });
  }
  return found;
}

/** The nat rules, then the relay of a namespace's delay (new connections go direct at once); false when there was nothing. */
export async function removeDelay(netns: string): Promise<boolean> {
  let removed = false;
  if (await netnsExists(netns)) {
    const rules = (await inNetns(netns, 'iptables', ['-t', 'nat', '-S'])).split('\n');
    const lines = ['*nat'];
    for (const [builtin, chain] of [['PREROUTING', DELAY_CHAINS.pre], ['OUTPUT', DELAY_CHAINS.out]] as const) {
      for (const rule of rules) if (rule === `-A ${builtin} -j ${chain}`) lines.push(`-D ${builtin} -j ${chain}`);
      if (rules.includes(`-N ${chain}`)) lines.push(`-F ${chain}`, `-X ${chain}`);
    }
    if (lines.length > 1) {
      lines.push('COMMIT', '');
      await inNetns(netns, 'iptables-restore', ['--noflush'], lines.join('\n'));
      removed = true;
    }
  }
  for (const relay of await relaysOf(netns)) {
    if (relay.netns !== netns || !(await isRelayOf(relay.pid, netns))) continue;
    await terminateRelay(relay.pid);
    removed = true;
  }
  return removed;
}

/** The delay rules in force in a namespace (nat table), for tests. */
export async function delayRules(netns: string): Promise<string[]> {
  if (!(await netnsExists(netns))) return [];
  return (await inNetns(netns, 'iptables', ['-t', 'nat', '-S'])).split('\n').filter((line) => line.includes('PGL-'));
}
