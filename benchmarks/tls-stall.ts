// Stalled TLS handshakes (issue 22 item 4), for the balancer bench's section 8 and
// test/balancer-tls-modes.test.ts: hostile clients that send an SSLRequest and stop, or send a real
// ClientHello after the 'S' and stop there, while real psql clients connect every 100 ms; what the
// servers hold meanwhile is read from /proc/net/tcp (their established connections).
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { execa } from 'execa';
import { SSL_REQUEST_PACKET } from '../src/balancer/protocol.js';

/** Established TCP connections to `ports` on this machine (the servers' side of them), from /proc/net/tcp. */
export function connectionsTo(ports: number[]): number {
  let count = 0;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 4 || fields[3] !== '01') continue;
    if (ports.includes(parseInt(fields[1]!.split(':')[1]!, 16))) count += 1;
  }
  return count;
}

/** A real TLS ClientHello (ALPN postgresql), captured once from Node's TLS client. */
export async function captureClientHello(): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const client = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, rejectUnauthorized: false, ALPNProtocols: ['postgresql'] });
  client.on('error', () => undefined);
  try {
    const [socket] = (await once(server, 'connection')) as [net.Socket];
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    socket.destroy();
    return chunk;
  } finally {
    client.destroy();
    server.close();
  }
}

/**
 * `count` hostile clients at once: each sends an SSLRequest and, with `hello`, that ClientHello after the
 * server's (or the balancer's) 'S', then nothing more. Returns what destroys those still open.
 */
export function stalledHandshakes(port: number, count: number, hello: Buffer | null): () => void {
  const sockets: net.Socket[] = [];
  for (let i = 0; i < count; i += 1) {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('error', () => undefined);
    socket.once('connect', () => socket.write(SSL_REQUEST_PACKET));
    if (hello) socket.once('data', (chunk: Buffer) => chunk[0] === 0x53 && socket.write(hello));
    sockets.push(socket);
  }
  return () => sockets.forEach((socket) => socket.destroy());
}

export interface StallRun {
  served: number;
  clients: number;
  failed: string[];
  slowestMs: number;
  /** The most established server connections seen beyond the baseline, less the real clients' psql running then. */
  hostileServerConnections: number;
}

/**
 * `clients` real psql clients (verify-full, the lab's environment in `env`), a new one every 100 ms,
 * while the hostile clients `startHostile` opens stall their handshakes; the servers (`serverPorts`)
 * sampled every 20 ms. The psql bound is connect_timeout=10.
 */
export async function realClientsUnderStall(port: number, serverPorts: number[], startHostile: () => () => void, env: Record<string, string> = {}, clients = 30): Promise<StallRun> {
  const baseline = connectionsTo(serverPorts);
  let running = 0;
  let worst = 0;
  const sampler = setInterval(() => {
    worst = Math.max(worst, connectionsTo(serverPorts) - baseline - running);
  }, 20);
  const stopHostile = startHostile();
  try {
    const runs: Promise<{ ok: boolean; ms: number; why: string }>[] = [];
    for (let i = 0; i < clients; i += 1) {
      const started = Date.now();
      running += 1;
      const conninfo = `host=127.0.0.1 port=${port} user=postgres dbname=postgres connect_timeout=10 sslmode=verify-full`;
      runs.push(execa('psql', ['-X', '-Atc', 'SELECT 1', conninfo], { timeout: 20_000, reject: false, all: true, env }).then((r) => {
        running -= 1;
        return { ok: r.exitCode === 0 && String(r.stdout).trim() === '1', ms: Date.now() - started, why: String(r.all).trim() };
      }));
      await delay(100);
    }
    const results = await Promise.all(runs);
    return {
      served: results.filter((r) => r.ok).length,
      clients,
      failed: results.filter((r) => !r.ok).map((r) => r.why),
      slowestMs: Math.max(...results.map((r) => r.ms)),
      hostileServerConnections: worst,
    };
  } finally {
    clearInterval(sampler);
    stopHostile();
  }
}
