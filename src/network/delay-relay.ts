// `lab fault delay`'s relay (this kernel has no netem): a process of pglab's own in the delayed node's
// namespace. iptables REDIRECTs there the connections to the node (nat PREROUTING) and the node's own
// connections to the other nodes (nat OUTPUT, the postgres OS user's only: the relay's are not caught
// again); the relay forwards every byte, and holds what the node sends for D ms (± jitter, order kept):
// a round trip to or from the node takes about D more, like netem on the node's egress.
// This file is the relay; the process is src/children/delay-relay.ts, started by src/network/delay.ts.
import net from 'node:net';

export interface RelayListener {
  /** Port the relay listens on (in the namespace). */
  port: number;
  target: { host: string; port: number };
  /** Which way the node's data goes: to the client (connections to the node) or to the target (its own). */
  delay: 'toClient' | 'toTarget';
}

export interface RelayConfig {
  delayMs: number;
  jitterMs: number;
  listeners: RelayListener[];
}

/**
 * A one-way pipe that delivers each chunk `delayMs` (± jitter) after it came, never out of order: one
 * queue and one timer per pipe. (A timer per chunk, each set to `due - Date.now()`, could fire a later
 * chunk first: Node times a timer from the loop's cached clock, and Date.now() moves meanwhile, so two
 * chunks a millisecond apart could swap; a swapped TLS record ends the session: "bad record mac".)
 */
function delayedPipe(from: net.Socket, to: net.Socket, config: RelayConfig): void {
  const queue: { due: number; chunk: Buffer | null }[] = [];
  let timer: NodeJS.Timeout | null = null;
  let lastDue = 0;
  const flush = () => {
    timer = null;
    while (queue.length > 0 && queue[0]!.due <= Date.now()) {
      const { chunk } = queue.shift()!;
      if (to.destroyed) continue;
      if (chunk === null) to.end();
      else to.write(chunk);
    }
    if (queue.length > 0) timer = setTimeout(flush, Math.max(1, queue[0]!.due - Date.now()));
  };
  /** `chunk` null: the end of the stream, after everything before it. */
  const push = (chunk: Buffer | null) => {
    if (config.delayMs === 0 && !config.jitterMs && queue.length === 0) {
      // The undelayed way: nothing waits before it.
      if (!to.destroyed) chunk === null ? to.end() : to.write(chunk);
      return;
    }
    const jitter = config.jitterMs ? (Math.random() * 2 - 1) * config.jitterMs : 0;
    lastDue = Math.max(lastDue, Date.now() + Math.max(0, config.delayMs + jitter));
    queue.push({ due: lastDue, chunk });
    if (timer === null) timer = setTimeout(flush, Math.max(1, lastDue - Date.now()));
  };
  from.on('data', (chunk: Buffer) => push(chunk));
  from.on('end', () => push(null));
}

function serve(listener: RelayListener, config: RelayConfig): Promise<void> {
  const server = net.createServer((client) => {
    const target = net.connect(listener.target);
    const close = () => {
      client.destroy();
      target.destroy();
    };
    client.on('error', close);
    target.on('error', close);
    client.on('close', () => target.end());
    target.on('close', () => client.end());
    const instant: RelayConfig = { ...config, delayMs: 0, jitterMs: 0 };
    if (listener.delay === 'toClient') {
      delayedPipe(target, client, config);
      delayedPipe(client, target, instant);
    } else {
      delayedPipe(client, target, config);
      delayedPipe(target, client, instant);
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listener.port, '0.0.0.0', () => resolve());
  });
}

export async function runRelay(config: RelayConfig): Promise<void> {
  for (const listener of config.listeners) await serve(listener, config);
}
