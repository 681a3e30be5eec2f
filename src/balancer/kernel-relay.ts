// The kernel relay (src/balancer/native/kernel-relay.c, built by scripts/build-native.mjs into
// dist/native/kernel-relay.node): an established session's bytes go from one socket to the other inside
// the kernel (a BPF sockhash), instead of through Node's streams. Loaded through require (a native
// addon), once; `relayFor` decides, when a balancer starts, whether its sessions use it.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { LabError, messageOf } from '../common/errors.js';
import { packageRoot } from '../common/package-root.js';

/** An established session handed to the kernel. */
export type RelayHandle = { readonly __relay: unique symbol };

export interface KernelRelay {
  /**
   * Puts the two sockets (their fds are duplicated: the caller then drops its own) in the sockhash,
   * then sends `toServer` and `toClient` (what Node held back), each before what had arrived after it;
   * `onDisconnect` is called once per side that hangs up (0 = client, 1 = server) with the socket's
   * errno (0 for an orderly close), and whether the client had sent its FIN by then.
   */
  open(
    clientFd: number,
    serverFd: number,
    toClient: Buffer | null,
    onDisconnect: (side: 0 | 1, errno: number, clientClosed: boolean) => void,
    toServer?: Buffer | null,
  ): RelayHandle;
  /** Bytes received on one socket and not yet sent on the other. */
  pending(handle: RelayHandle): number;
  /** The client sent data after the server's last chunk ending with ReadyForQuery (noted by the BPF program). */
  inFlight(handle: RelayHandle): boolean;
  /**
   * [ms since the client's last bytes arrived, ms since the server's]: the BPF program's timestamps
   * (TCP_INFO's last_data_recv for a socket that received nothing since the handoff). What an
   * encrypted session's "in flight" is judged from, where framing means nothing.
   */
  lastReceived(handle: RelayHandle): [number, number];
  /**
   * [bytes from the client, bytes to the client] since the connection began, then the ms since data
   * last went through the client's socket and through the server's (TCP_INFO: the idle timeouts).
   */
  info(handle: RelayHandle): [number, number, number, number];
  /** Closes both sockets, after sending `farewell` to the client when given; the last info(). */
  close(handle: RelayHandle, farewell?: Buffer): [number, number, number, number];
}

interface Addon extends KernelRelay {
  unavailable(): string | undefined;
}

/** Who relays established sessions (`--relay`): the kernel when it can, the kernel or refuse, Node. */
export const RELAY_MODES = ['auto', 'kernel', 'node'] as const;
export type RelayMode = (typeof RELAY_MODES)[number];

/**
 * Round trips a session makes through Node before the kernel takes it. Handing a session over costs
 * ~100 us of CPU (sockhash entries, duplicated descriptors, the hang-up bookkeeping), Node costs ~10 us
 * more per round trip than the kernel: with a new connection per transaction (pgbench -C) the kernel
 * relay cost more than it saved (balancer CPU 775-875 vs 715 us per connection, this VM).
 */
export const KERNEL_RELAY_AFTER = 16;

const addonPath = path.join(packageRoot, 'dist', 'native', 'kernel-relay.node');

/**
 * The relay a balancer started with `mode` uses (null: Node's sockets), and how its log says so.
 * `kernel` on a machine that cannot run the kernel relay is refused in one line.
 */
export function relayFor(mode: RelayMode): { relay: KernelRelay | null; note: string } {
  if (mode === 'node') return { relay: null, note: "through Node's sockets (--relay node)" };
  const loaded = loadKernelRelay();
  if ('relay' in loaded) return { relay: loaded.relay, note: 'in the kernel (BPF sockhash) once a session has made its first round trips (a TLS one at its first request, a GSS one at the server\'s G)' };
  if (mode === 'kernel') throw new LabError('USAGE', `--relay kernel: ${loaded.reason}; use --relay node or auto`);
  return { relay: null, note: `through Node's sockets: ${loaded.reason}` };
}

let loaded: { relay: KernelRelay } | { reason: string } | undefined;

/** The kernel relay, or why this machine cannot run it (one phrase). */
export function loadKernelRelay(): { relay: KernelRelay } | { reason: string } {
  if (loaded) return loaded;
  if (process.platform !== 'linux') loaded = { reason: 'the kernel relay needs Linux' };
  else if (!existsSync(addonPath)) loaded = { reason: `the kernel relay is not built (${addonPath} is missing: run npm run build with a C compiler)` };
  else {
    try {
      const addon = createRequire(import.meta.url)(addonPath) as Addon;
      const why = addon.unavailable();
      loaded = why ? { reason: why } : { relay: addon };
    } catch (error) {
      loaded = { reason: `the kernel relay could not be loaded: ${messageOf(error)}` };
    }
  }
  return loaded;
}
