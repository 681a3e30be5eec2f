// The network faults of `lab fault partition` and `lab fault loss`: iptables chains of pglab's own (PGL-*)
// in the node's namespace, applied and removed in one iptables-restore transaction each. They touch only
// that node and vanish with its namespace; the host's iptables is never changed.
import { inNetns, netnsExists } from './ip.js';

export type NetworkFault = 'partition' | 'loss';
const CHAINS: Record<NetworkFault, { in: string; out: string }> = {
  partition: { in: 'PGL-PART-IN', out: 'PGL-PART-OUT' },
  loss: { in: 'PGL-LOSS-IN', out: 'PGL-LOSS-OUT' },
};

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
