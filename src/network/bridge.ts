// The lab's bridge `pgl<N>` (src/network/namespaces.ts says how a lab's network is laid out): which index
// N is free, claiming it by making the bridge with a MAC derived from the lab's id (the mark of a bridge
// this lab made), and refusing, in one line, to touch a bridge of that name that is another lab's.
import { createHash } from 'node:crypto';
import { LabError, messageOf } from '../common/errors.js';
import { gatewayOf, type LabHosts } from './address.js';
import { ip, linkNames, links, netnsNames } from './ip.js';

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
 * Hold the lab's bridge for a destroy: when absent, claimed (so no lab takes N while the lab's prefix is
 * swept; destroy removes it at the end). True when the lab holds it; false when another lab's bridge does.
 */
export async function holdBridge(labId: string, hosts: LabHosts): Promise<boolean> {
  const held = await bridgeHolder(labId, hosts);
  if (held.holder === 'ours') return true;
  return held.holder === 'absent' && claimBridge(labId, hosts);
}
