// Fake PostgreSQL peers for the balancer's tests: a TCP server that answers a startup message the way
// a server would in one situation (accepting, starting up, silent), and records what it received.
import net from 'node:net';
import { errorResponse } from '../../src/balancer/protocol.js';

export type FakeBehaviour =
  /** AuthenticationOk, BackendKeyData, ReadyForQuery; then waits for Terminate. */
  | 'accept'
  /** FATAL with this SQLSTATE and message, then close (e.g. 57P03 "the database system is starting up"). */
  | { sqlstate: string; message: string }
  /** Accepts the TCP connection and never answers. */
  | 'silent'
  /** Accepts the TCP connection and resets it at once (a server that will not take connections, counted). */
  | 'reset'
  /** Asks for a cleartext password; any PasswordMessage is accepted. */
  | 'password'
  /** As accept, with a NoticeResponse right after ReadyForQuery in the same write. */
  | 'accept-then-notice';

export interface FakeServer {
  port: number;
  /** First bytes of each connection's messages after the startup packet ('X' for Terminate). */
  received: { startup: boolean; after: string[]; closedCleanly: boolean }[];
  connections: number;
  /** Refuse new connections but keep the established ones (a server whose listener died). */
  stopListening(): void;
  close(): Promise<void>;
}

function message(type: string, body: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.write(type, 0, 'latin1');
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}

export function readyAnswer(): Buffer {
  const auth = Buffer.alloc(4);
  const key = Buffer.alloc(8);
  key.writeInt32BE(4242, 0);
  key.writeInt32BE(7, 4);
  return Buffer.concat([message('R', auth), message('K', key), message('Z', Buffer.from('I'))]);
}

/** A simple query's answer: CommandComplete and ReadyForQuery, no rows. */
function queryAnswer(): Buffer {
  return Buffer.concat([message('C', Buffer.from('SELECT 0\0')), message('Z', Buffer.from('I'))]);
}

/** `port`: listen there (a port a test's balancer already checks, say one closedPort() gave), else any free one. */
export async function fakePostgres(behaviour: FakeBehaviour, options: { queryDelayMs?: number; port?: number } = {}): Promise<FakeServer> {
  const sockets = new Set<net.Socket>();
  const fake: FakeServer = { port: 0, received: [], connections: 0, stopListening: () => undefined, close: async () => undefined };
  const server = net.createServer((socket) => {
    fake.connections += 1;
    if (behaviour === 'reset') {
      socket.resetAndDestroy();
      return;
    }
    sockets.add(socket);
    const record = { startup: false, after: [] as string[], closedCleanly: false };
    fake.received.push(record);
    let input = Buffer.alloc(0);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    socket.on('end', () => {
      record.closedCleanly = true;
    });
    socket.on('data', (chunk) => {
      input = Buffer.concat([input, chunk]);
      if (!record.startup) {
        if (input.length < 8 || input.length < input.readInt32BE(0)) return;
        const code = input.readInt32BE(4);
        const length = input.readInt32BE(0);
        input = input.subarray(length);
        if (code === 80877103) {
          socket.write('N');
          return;
        }
        record.startup = true;
        if (behaviour === 'silent') return;
        if (behaviour === 'accept') socket.write(readyAnswer());
        else if (behaviour === 'accept-then-notice') socket.write(Buffer.concat([readyAnswer(), message('N', Buffer.from('SNOTICE\0C00000\0Mright after ReadyForQuery\0\0'))]));
        else if (behaviour === 'password') {
          const ask = Buffer.alloc(4);
          ask.writeInt32BE(3, 0);
          socket.write(message('R', ask));
        }
        else socket.end(errorResponse(behaviour.sqlstate, behaviour.message));
      }
      while (input.length >= 5 && input.length >= input.readInt32BE(1) + 1) {
        record.after.push(String.fromCharCode(input[0]!));
        if (behaviour === 'password' && input[0] === 0x70) socket.write(readyAnswer());
        if (input[0] === 0x51) {
          const timer = setTimeout(() => !socket.destroyed && socket.write(queryAnswer()), options.queryDelayMs ?? 0);
          socket.once('close', () => clearTimeout(timer));
        }
        input = input.subarray(input.readInt32BE(1) + 1);
      }
    });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen({ host: '127.0.0.1', port: options.port ?? 0 }, resolve));
  fake.port = (server.address() as net.AddressInfo).port;
  fake.stopListening = () => server.close();
  fake.close = () =>
    new Promise((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  return fake;
}

/** A port nothing listens on (bound then released). */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

import type { BalancerConfig, CheckSettings, ServerConfig } from '../../src/balancer/config.js';
import { LAB_CHECK_DEFAULTS } from '../../src/balancer/config.js';
import { loadKernelRelay } from '../../src/balancer/kernel-relay.js';

/** Why a kernel-relay test cannot run on this machine (printed as the skip reason), or false. */
export function kernelRelaySkip(): string | false {
  const loaded = loadKernelRelay();
  return 'reason' in loaded ? `the kernel relay cannot run here: ${loaded.reason}` : false;
}

export function serverLine(name: string, port: number, extra: Partial<ServerConfig> = {}): ServerConfig {
  return { name, host: '127.0.0.1', port, weight: 1, backup: false, disabled: false, check: true, checkOverrides: {}, ...extra };
}

/** A balancer on free ports (port 0) in front of a fixed list of servers. */
export function staticBalancerConfig(servers: ServerConfig[], check: Partial<CheckSettings> = {}, extra: Partial<BalancerConfig> = {}): BalancerConfig {
  return {
    name: 'lbtest',
    listen: { host: '127.0.0.1', port: 0 },
    stats: { host: '127.0.0.1', port: 0, uri: '/' },
    algorithm: 'roundrobin',
    pool: { source: 'static', servers },
    check: { ...LAB_CHECK_DEFAULTS, ...check },
    retries: 3,
    redispatch: true,
    timeouts: { connectMs: 1000, clientMs: 0, serverMs: 0 },
    relay: 'auto',
    warnings: [],
    ...extra,
  };
}

/** A balancer on a free port in front of a lab's replicas (the pool follows lab.json), no stats listener. */
export function labBalancerConfig(labDir: string, check: Partial<CheckSettings> = {}, extra: Partial<BalancerConfig> = {}): BalancerConfig {
  return staticBalancerConfig([], check, {
    pool: { source: 'lab', labDir, kind: 'replicas' },
    stats: null,
    timeouts: { connectMs: 3000, clientMs: 0, serverMs: 0 },
    ...extra,
  });
}
