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
// This file: the namespaces and veths (address plan: address.ts; bridge: bridge.ts; the `ip` commands:
// ip.ts; faults: iptables-faults.ts, delay.ts).
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { gatewayOf, type LabHosts, type NodeHost } from './address.js';
import { bridgeHolder, ensureBridge, holdBridge, labAlias } from './bridge.js';
import { relaysOf } from './delay.js';
import { deleteGone, inNetns, ip, linkNames, links, netnsNames } from './ip.js';

/** What of a lab's record the network needs: its id, its bridge, its nodes' hosts (a LabState is one). */
export interface NetworkedLab {
  labId: string;
  hosts?: LabHosts;
  nodes: { host?: NodeHost }[];
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
 * Everything of the lab's network. While the lab holds its bridge: the recorded nodes' hosts, then whatever
 * still carries the lab's prefix (pglab-N-*, pglN-*: a namespace made by a CLI killed before its node was
 * recorded cannot be, as every name is recorded first, but a record removed by hand can), then the bridge.
 * While another lab's bridge holds the name (a lab killed before its claim, or a lab.json edited by hand):
 * only the recorded names that are provably the lab's, and `kept` says what was left.
 */
export async function removeLabNetwork(state: NetworkedLab): Promise<{ removed: string[]; kept?: { path: string; why: string } }> {
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

/** The command line that runs `file args` in a node's namespace as `user` (uid/gid): ip netns exec + setpriv. */
export function inHostCommand(netns: string, user: { uid: number; gid: number } | undefined, file: string, args: string[]): { file: string; args: string[] } {
  const as = user ? ['setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups'] : [];
  return { file: 'ip', args: ['netns', 'exec', netns, ...as, file, ...args] };
}
