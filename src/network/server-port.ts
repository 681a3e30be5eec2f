// The port a node's server will listen on, checked where it will listen before anything is built for it.
// PostgreSQL binds it as an unprivileged OS user: a port below net.ipv4.ip_unprivileged_port_start, or one
// another process listens on, would otherwise fail only after the whole base backup, in the server's log
// ("could not create any TCP/IP sockets").
import { readFile } from 'node:fs/promises';
import { execa } from 'execa';
import { LabError } from '../common/errors.js';
import { assertPortFree } from '../common/ports.js';
import { nodeAddress, type NodeHost } from './address.js';
import { netnsExists } from './ip.js';

const PORT_START_FILE = '/proc/sys/net/ipv4/ip_unprivileged_port_start';
/** The kernel's default (PROT_SOCK): a new network namespace starts with it, not with the host's value. */
const DEFAULT_PORT_START = 1024;

/** Where the server runs: its runtime, its host (--hosts), and the OS user it runs as (for the message). */
export interface ServerPlace {
  runtime: 'process' | 'docker';
  host?: NodeHost;
  user: string;
}

/** ip_unprivileged_port_start where the server binds, or undefined when the runtime lifts it. */
async function unprivilegedPortStart(place: ServerPlace): Promise<number | undefined> {
  // The docker engine sets it to 0 in a container's own network namespace (with --hosts the container has one).
  if (place.host && place.runtime === 'docker') return undefined;
  if (!place.host) {
    const text = await readFile(PORT_START_FILE, 'utf8').catch(() => undefined); // kernels before 4.11: fixed at 1024
    return text === undefined ? DEFAULT_PORT_START : Number(text.trim());
  }
  if (!(await netnsExists(place.host.netns))) return DEFAULT_PORT_START; // made by the start, with the default
  const { stdout } = await execa('ip', ['netns', 'exec', place.host.netns, 'cat', PORT_START_FILE], { timeout: 20_000, reject: false });
  return Number(stdout.trim()) || DEFAULT_PORT_START;
}

/**
 * Refuses, in one line, a port the server's OS user cannot bind (exit 2) and, with `free`, a port another
 * process listens on where the server will listen (exit 3): 127.0.0.1 here, or the node's address in its
 * namespace (--hosts; a namespace not made yet has no listener).
 */
export async function assertServerPort(port: number, owner: string, place: ServerPlace, options: { free: boolean }): Promise<void> {
  const start = await unprivilegedPortStart(place);
  if (start !== undefined && port < start) {
    throw new LabError(
      'USAGE',
      `Port ${port} for ${owner} is below ${start} (net.ipv4.ip_unprivileged_port_start${place.host ? ` in ${place.host.netns}` : ''}): PostgreSQL runs as ${place.user}, who cannot bind it; choose a port from ${start} to 65535`,
    );
  }
  if (!options.free) return;
  if (!place.host) return assertPortFree(port, owner);
  if (place.runtime === 'docker' || !(await netnsExists(place.host.netns))) return; // a container's namespace lives and dies with it
  const { stdout } = await execa('ip', ['netns', 'exec', place.host.netns, 'ss', '-Hltn', `sport = :${port}`], { timeout: 20_000, reject: false });
  if (stdout.trim()) {
    throw new LabError('CONFLICT', `Port ${port} for ${owner} is already in use on ${nodeAddress(place)} in namespace ${place.host.netns}: choose another port or stop that process`);
  }
}
