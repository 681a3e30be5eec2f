// Where bench and workload send their load in a lab: the master (writes, pgbench -i) or a balancer
// recorded in the lab's state (reads), by the address it listens on.
import { LabError } from '../common/errors.js';
import { nodeAddress } from '../network/address.js';
import { primaryOf, type LabState, type NodeRecord } from '../lab/state.js';

export interface HostPort {
  host: string;
  port: number;
}

export const DEFAULT_BALANCER = 'lb';

export function requirePrimary(state: LabState): NodeRecord {
  const primary = primaryOf(state);
  if (!primary) throw new LabError('STATE', 'This lab has no master: run `lab master start` first');
  return primary;
}

/** "127.0.0.1:15432", "[::1]:15432", "0.0.0.0:15432" (we then connect to 127.0.0.1), ":15432". */
export function parseListen(listen: string): HostPort {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen.trim());
  if (!match) throw new LabError('STATE', `Balancer address "${listen}" in the lab state is not host:port: restart the balancer`);
  let host = match[1] ?? match[2] ?? '';
  if (host === '' || host === '0.0.0.0' || host === '*') host = '127.0.0.1';
  if (host === '::') host = '::1';
  return { host, port: Number(match[3]) };
}

/** The address of balancer `name` (default `lb`), or an error saying how to start one. */
export function balancerAddress(state: LabState, name: string = DEFAULT_BALANCER): HostPort {
  const balancer = state.balancers.find((b) => b.name === name);
  if (!balancer) {
    const known = state.balancers.map((b) => b.name).join(', ');
    throw new LabError(
      'NOT_FOUND',
      `No balancer "${name}" in this lab${known ? ` (balancers: ${known})` : ''}: start one with \`lab balancer start\`, or give --port (bench) / --url (workload)`,
    );
  }
  return parseListen(balancer.listen);
}

/**
 * Where `--port P` points in this lab: the node that listens on P (at its address: its host's in a lab made
 * with --hosts), else the balancer that listens on P, else 127.0.0.1:P (a server of the user's own).
 */
export function portTarget(state: LabState, port: number): HostPort & { what: string } {
  const node = state.nodes.find((n) => n.port === port);
  if (node) return { host: nodeAddress(node), port, what: `node ${node.name}` };
  for (const balancer of state.balancers) {
    const address = parseListen(balancer.listen);
    if (address.port === port) return { ...address, what: `balancer ${balancer.name}` };
  }
  return { host: '127.0.0.1', port, what: `port ${port}` };
}

export function postgresUrl(address: HostPort, user: string, database = 'postgres'): string {
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return `postgresql://${encodeURIComponent(user)}@${host}:${address.port}/${encodeURIComponent(database)}`;
}
