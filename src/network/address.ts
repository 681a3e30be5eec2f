// Where a node is reached: the one function every client of a node (pglab's own SQL, the balancer's pool,
// primary_conninfo, pg_basebackup, pg_rewind, `lab env`, the watchers and drills) asks. Without --hosts
// every node listens on loopback; in a lab made with --hosts (issue 17) each node lives in a network
// namespace of its own with its own address on the lab's bridge (src/network/namespaces.ts).
// Also the lab's address plan: 10.213.N.0/24 for the lab of bridge index N, .1 the bridge, .10-.250 the nodes.
import { LabError } from '../common/errors.js';

/** A node's host (lab made with --hosts): its namespace, the host side of its veth, its address. */
export interface NodeHost {
  netns: string;
  veth: string;
  address: string;
}

export const LOOPBACK = '127.0.0.1';

/** The address a node listens on and is reached at: its namespace's address, else 127.0.0.1. */
export function nodeAddress(node: { host?: NodeHost }): string {
  return node.host?.address ?? LOOPBACK;
}

/** The lab's network when it was made with --hosts: bridge `pgl<index>` holding 10.213.<index>.1/24. */
export interface LabHosts {
  index: number;
  bridge: string;
}

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

export function labHosts(index: number): LabHosts {
  return { index, bridge: `pgl${index}` };
}

/** The host of a new node: the first free address of the lab; its names follow from it. */
export function newNodeHost(state: { hosts?: LabHosts; nodes: { host?: NodeHost }[] }, node: string): NodeHost {
  const hosts = state.hosts!;
  const taken = new Set(state.nodes.map((n) => n.host?.address).filter(Boolean));
  for (let i = FIRST_HOST; i <= LAST_HOST; i++) {
    const address = `${SUBNET_PREFIX}.${hosts.index}.${i}`;
    if (!taken.has(address)) return { netns: `pglab-${hosts.index}-${node}`, veth: `pgl${hosts.index}-${i}`, address };
  }
  throw new LabError('STATE', `No free address left in ${subnetOf(hosts)} for node "${node}"`);
}
