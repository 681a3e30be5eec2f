// Ports: validation, "is it free" by really binding it (like PostgreSQL's TAP harness), and who holds it
// (from /proc, so the error can name the process).
import net from 'node:net';
import { readFile, readdir, readlink } from 'node:fs/promises';
import { LabError } from './errors.js';

export function parsePort(text: string | number, what = 'port'): number {
  const value = typeof text === 'number' ? text : Number(String(text).trim());
  if (!Number.isInteger(value) || value < 1 || value > 65535 || String(text).trim() === '') {
    throw new LabError('USAGE', `Invalid ${what} "${text}": expected an integer from 1 to 65535`);
  }
  return value;
}

/** True when nothing listens on host:port (we could bind it ourselves). */
export function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A port the kernel says is free right now. */
export function findFreePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** `count` distinct ports the kernel says are free right now. */
export async function findFreePorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await findFreePort(host));
  return [...ports];
}

/** "pid 1234 (postgres)" for the process listening on a TCP port, when /proc tells us. */
/** The socket inodes listening on `port` (this network namespace's TCP tables, v4 and v6). */
async function listeningInodes(port: number): Promise<Set<string>> {
  const inodes = new Set<string>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const localPort = parseInt(cols[1]!.split(':')[1] ?? '', 16);
      if (localPort === port && cols[3] === '0A') inodes.add(cols[9]!); // 0A = LISTEN
    }
  }
  return inodes;
}

/** True when process `pid` holds a socket listening on `port` (not merely: something accepts there). */
export async function listensOn(pid: number, port: number): Promise<boolean> {
  const inodes = await listeningInodes(port);
  if (inodes.size === 0) return false;
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
  for (const fd of fds) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const match = /^socket:\[(\d+)\]$/.exec(target);
    if (match && inodes.has(match[1]!)) return true;
  }
  return false;
}

export async function describePortHolder(port: number): Promise<string | undefined> {
  const inodes = await listeningInodes(port);
  if (inodes.size === 0) return undefined;
  let pids: string[];
  try {
    pids = (await readdir('/proc')).filter((entry) => /^\d+$/.test(entry));
  } catch {
    return undefined;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = await readdir(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const target = await readlink(`/proc/${pid}/fd/${fd}`);
        const match = /^socket:\[(\d+)\]$/.exec(target);
        if (match && inodes.has(match[1]!)) {
          const comm = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '?')).trim();
          return `pid ${pid} (${comm})`;
        }
      } catch {
        // the fd went away while we looked
      }
    }
  }
  return 'another process';
}

export async function assertPortFree(port: number, owner: string): Promise<void> {
  if (await isPortFree(port)) return;
  let holder = await describePortHolder(port);
  if (!holder) {
    // Nobody listens: another command's own probe of the port (isPortFree binds it for an instant). Look again.
    await new Promise((resolve) => setTimeout(resolve, 50));
    if (await isPortFree(port)) return;
    holder = await describePortHolder(port);
  }
  throw new LabError(
    'CONFLICT',
    `Port ${port} for ${owner} is already in use${holder ? ` by ${holder}` : ''}: choose another port or stop that process`,
  );
}

/** True when a TCP connection to host:port is accepted within `timeoutMs`. */
export function canConnect(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
