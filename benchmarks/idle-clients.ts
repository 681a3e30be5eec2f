// A balancer's footprint with many idle clients: VmRSS and open file descriptors of its process (from
// /proc) before, with N connected clients that send nothing, and after they close.
import net from 'node:net';
import { readFile, readdir } from 'node:fs/promises';
import { pollUntil } from '../src/common/poll.js';

export async function rssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
}

export async function fdCount(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

export interface IdleFootprint {
  clients: number;
  /** Clients still connected when RSS was read (a balancer may close clients that stay silent). */
  stillOpen: number;
  baselineRssKb: number;
  loadedRssKb: number;
  baselineFds: number;
  loadedFds: number;
  afterFds: number;
  /** True when the fd count came back to the baseline after the clients closed. */
  fdsBackToBaseline: boolean;
}

function connect(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connect to ${host}:${port} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/**
 * Opens `clients` idle connections to host:port (in batches, each connect bounded), waits until the
 * balancer holds them (fd count up by at least `clients`), reads RSS, closes them all, and waits until
 * the fd count is back to the baseline.
 */
export async function measureIdleClients(pid: number, host: string, port: number, clients: number): Promise<IdleFootprint> {
  const baselineRssKb = await rssKb(pid);
  const baselineFds = await fdCount(pid);
  const sockets: net.Socket[] = [];
  let closedByPeer = 0;
  try {
    for (let i = 0; i < clients; i += 100) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(100, clients - i) }, () => connect(host, port, 5000)),
      );
      for (const socket of batch) {
        socket.on('error', () => undefined);
        socket.once('close', () => closedByPeer++);
        sockets.push(socket);
      }
    }
    const loadedFds = await pollUntil(
      async () => {
        const fds = await fdCount(pid);
        return fds >= baselineFds + clients ? fds : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 50, what: `the balancer (pid ${pid}) to hold ${clients} client connections` },
    ).catch(async () => fdCount(pid));
    const loadedRssKb = await rssKb(pid);
    const stillOpen = sockets.length - closedByPeer;
    for (const socket of sockets) socket.destroy();
    sockets.length = 0;
    const afterFds = await pollUntil(
      async () => {
        const fds = await fdCount(pid);
        return fds <= baselineFds ? fds : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 50, what: `the balancer (pid ${pid}) to release the closed clients' descriptors` },
    ).catch(async () => fdCount(pid));
    return {
      clients, stillOpen, baselineRssKb, loadedRssKb, baselineFds, loadedFds, afterFds, fdsBackToBaseline: afterFds <= baselineFds,
    };
  } finally {
    for (const socket of sockets) socket.destroy();
  }
}

/** A TCP server that accepts and holds connections: the backend for HAProxy's footprint run. */
export async function startSink(): Promise<{ port: number; close(): Promise<void> }> {
  const held = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    held.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => held.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    close: () => new Promise<void>((resolve) => {
      for (const socket of held) socket.destroy();
      server.close(() => resolve());
    }),
  };
}
