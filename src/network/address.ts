// Where a node is reached: the one function every client of a node (pglab's own SQL, the balancer's pool,
// primary_conninfo, pg_basebackup, pg_rewind, `lab env`, the watchers and drills) asks. Without --hosts
// every node listens on loopback; in a lab made with --hosts (issue 17) each node lives in a network
// namespace of its own with its own address on the lab's bridge (src/lab/hosts.ts).

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
