// What a balancer instance runs with: built from CLI flags (`lab balancer start`), from a HAProxy
// configuration file (`--config`), and rendered back to haproxy.cfg for `--engine haproxy`.
import type { RelayMode } from './kernel-relay.js';

export type CheckType = 'sql' | 'pgsql' | 'tcp' | 'none';

export interface CheckSettings {
  type: CheckType;
  /** User for the pgsql / sql checks (HAProxy: option pgsql-check user U). */
  user: string;
  database: string;
  /** HAProxy's inter / fastinter / downinter, rise, fall, timeout check. */
  interMs: number;
  fastinterMs: number;
  downinterMs: number;
  rise: number;
  fall: number;
  timeoutMs: number;
  /** sql check: a replica whose replay lag is over either limit leaves the pool until it catches up. */
  maxLagBytes: number | null;
  maxLagSeconds: number | null;
}

export interface ServerConfig {
  name: string;
  host: string;
  port: number;
  weight: number;
  backup: boolean;
  disabled: boolean;
  /** `check` on the server line; without it the server is always considered UP. */
  check: boolean;
  /** Per-server inter/rise/fall/... from the server line. */
  checkOverrides: Partial<CheckSettings>;
  /** Listed but never routed to, with this reason (a lab's former primary that was not rewound). */
  fenced?: string;
  /** HAProxy's `server ... maxconn N`: server connections open at once (connecting or established). */
  maxconn?: number;
  /** Known to accept TLS (a lab with TLS): the balancer may answer a client's SSLRequest itself. */
  tls?: boolean;
}

export type PoolKind = 'replicas' | 'primary' | 'all';

export type PoolSource =
  /** Follow the lab's state file: nodes added, removed or re-added show up without a restart. */
  | { source: 'lab'; labDir: string; kind: PoolKind }
  /**
   * A fixed list (from a HAProxy configuration file). `kind` (`--pool`) makes the sql check admit only
   * that role, as for a lab pool; without it any role is admitted, as HAProxy does.
   */
  | { source: 'static'; servers: ServerConfig[]; kind?: PoolKind };

/** How `lab balancer status` names a pool: the lab's kind, or `static` (with its `--pool` kind). */
export function poolLabel(pool: PoolSource): string {
  if (pool.source === 'lab') return pool.kind;
  return pool.kind ? `static, ${pool.kind}` : 'static';
}

/** `--tls`: what the balancer does with a client's TLS. */
export const BALANCER_TLS_MODES = ['passthrough', 'terminate'] as const;

/**
 * passthrough: TLS end to end, the balancer never holds a key (channel binding with any certificate);
 * terminate: the balancer is the client's TLS server with the lab's own certificate and key, and the
 * servers' TLS client (verified against the lab's CA), so it reads every StartupMessage and
 * CancelRequest and routes each cancel by its key.
 */
export type BalancerTls =
  | { mode: 'passthrough' }
  | { mode: 'terminate'; certFile: string; keyFile: string; caFile: string };

export interface BalancerConfig {
  name: string;
  listen: { host: string; port: number };
  /** Stats HTTP listener; `uri` is the base path (HAProxy's `stats uri`, default "/"). */
  stats: { host: string; port: number; uri: string } | null;
  algorithm: 'roundrobin' | 'leastconn';
  pool: PoolSource;
  check: CheckSettings;
  /** HAProxy's `retries` (connect attempts) and `option redispatch`. */
  retries: number;
  redispatch: boolean;
  /**
   * connectMs: a client's whole connection phase (startup to ReadyForQuery, time queued excluded);
   * answerMs: a server's first answer to a new connection, past which the client is replayed on the
   * next server (shorter than connectMs, so the client is saved, not dropped); queueMs: HAProxy's
   * `timeout queue`, how long a client waits for a server slot before one clear FATAL.
   */
  timeouts: { connectMs: number; clientMs: number; serverMs: number; answerMs?: number; queueMs?: number };
  /** HAProxy's `maxconn` of the listener: client connections held at once (beyond: a FATAL 53300). */
  maxconn?: number;
  /**
   * Server connections per server at once (HAProxy's `server ... maxconn`) for servers without their
   * own; undefined: the server's max_connections minus a margin when the sql check can read it.
   */
  serverMaxconn?: number;
  /** Who relays established sessions: the kernel (BPF sockhash), Node's sockets, or the kernel when it can. */
  relay: RelayMode;
  /** Round trips through Node before the kernel relay takes a session (default KERNEL_RELAY_AFTER). */
  kernelRelayAfter?: number;
  /** What the balancer does with a client's TLS (default passthrough). */
  tls?: BalancerTls;
  /** Directives read from a configuration file that we do not support, named for the user. */
  warnings: string[];
}

/** HAProxy's own defaults (REFERENCE.md 3). */
export const HAPROXY_CHECK_DEFAULTS = { interMs: 2000, rise: 2, fall: 3, timeoutMs: 2000 } as const;

/**
 * The lab's defaults: HAProxy's knobs, tuned for a lab on one host (detect a kill within 1 s, a hung
 * server within inter + timeout = 1.4 s, re-admit within 2 s). Any knob given explicitly, on the
 * command line or in a configuration file, is honoured as given.
 */
export const LAB_CHECK_DEFAULTS: CheckSettings = {
  type: 'sql',
  user: 'postgres',
  database: 'postgres',
  interMs: 1000,
  fastinterMs: 100,
  downinterMs: 250,
  rise: 2,
  fall: 3,
  timeoutMs: 400,
  maxLagBytes: null,
  maxLagSeconds: null,
};

/** The lab's connection limits and bounds (README, "Limits, queue and timeouts"). */
export const LAB_LIMIT_DEFAULTS = {
  /** HAProxy's usual global/frontend maxconn. */
  maxconn: 2000,
  /** A client's connection phase, from its first byte to ReadyForQuery (queue excluded). */
  connectMs: 3000,
  /** A server's first byte to a new connection: a healthy server answers within milliseconds. */
  answerMs: 1000,
  /** HAProxy's `timeout queue`. */
  queueMs: 5000,
  /**
   * Server connections opened at once for clients that have not sent a complete startup packet yet, or
   * whose TLS handshake with the server is not done.
   */
  earlyConnects: 32,
  /**
   * A TLS client's answer to the server's handshake flight (its Finished follows within a round trip):
   * past it the client is closed and its server connection freed, so a client that stalls there holds
   * one of the early connects this long at most; while other TLS clients wait for one, the shorter
   * bound (a client on loopback answers within milliseconds), so that 300 stalled handshakes drain
   * from 32 slots in about 3 s rather than 10.
   */
  handshakeAnswerMs: 1000,
  handshakeAnswerContendedMs: 250,
  /** Per-server maxconn from the sql check: max_connections - superuser_reserved_connections - this margin. */
  serverMargin: 2,
} as const;
