// The shape of a balancer's statistics, as served at `<stats address>/?format=json` and read by
// `lab stat balancer`. Field names follow HAProxy's stats where one exists.

/** Why a cancel was not relayed (src/balancer/cancel-limit.ts). */
export type CancelDropReason = 'clientRate' | 'totalRate' | 'serverInFlight' | 'duplicate' | 'noSession';

export type CancelDrops = Record<CancelDropReason, number>;

export type ServerState = 'UP' | 'DOWN' | 'MAINT' | 'DRAIN' | 'NOLB';

export interface BalancerServerStats {
  name: string;
  /** "127.0.0.1:5433" */
  address: string;
  status: ServerState;
  /** L4OK, L4CON, L4TOUT, L7OK, L7STS, L7RSP, ... (HAProxy's check_status vocabulary) */
  checkStatus: string;
  /** The last check's message, e.g. the server's FATAL text, or "connection refused". */
  checkMessage: string;
  /** Seconds since the last UP/DOWN change. */
  lastChangeS: number;
  /** Total seconds spent DOWN. */
  downtimeS: number;
  checksFailed: number;
  /** Number of UP -> DOWN transitions. */
  downTransitions: number;
  sessionsCurrent: number;
  sessionsMax: number;
  sessionsTotal: number;
  bytesIn: number;
  bytesOut: number;
  connectionErrors: number;
  retries: number;
  redispatches: number;
  /** Built-in engine: CancelRequests relayed to the server, and those not sent to it because it had its cap of them open. */
  cancelsSent?: number;
  cancelsDropped?: number;
  weight: number;
  /** What the sql check saw: primary or replica; null when unknown (pgsql/tcp check, or down). */
  role: 'primary' | 'replica' | null;
  /** Replay lag the sql check measured, in bytes; null when unknown. */
  lagBytes: number | null;
  /** Server connections allowed at once (HAProxy's slim); null or absent: no limit. */
  maxconn?: number | null;
}

export interface BalancerStats {
  name: string;
  engine: 'builtin' | 'haproxy';
  /** "127.0.0.1:15432" */
  listen: string;
  uptimeS: number;
  /** Built-in engine: who relays established sessions (kernel: BPF sockhash; node: Node's sockets). */
  relay?: 'kernel' | 'node';
  sessionsCurrent: number;
  sessionsTotal: number;
  /** Client connections allowed at once (the listener's maxconn). */
  maxconn?: number;
  /** Clients waiting for a server slot now, and the most at once (HAProxy's qcur / qmax). */
  queueCurrent?: number;
  queueMax?: number;
  /** Clients that waited past `timeout queue` and got "all servers busy". */
  queueTimeouts?: number;
  /** Built-in engine: what it does with a client's TLS (`--tls`). */
  tls?: 'passthrough' | 'terminate';
  /**
   * Built-in engine, passthrough: TLS sessions whose first request had a CancelRequest's size and that
   * their server closed unanswered: cancels sent inside TLS, which only `--tls terminate` can route.
   */
  cancelsInsideTls?: number;
  /** Built-in engine: CancelRequests relayed to at least one server, and those dropped, by reason (cancel-limit.ts). */
  cancelsForwarded?: number;
  cancelsDropped?: CancelDrops;
  servers: BalancerServerStats[];
}

/**
 * A balancer record's stats address is "host:port", or "host:port/uri" when a configuration file set
 * `stats uri`: the address part, and the page URL.
 */
export function statsAddress(stats: string): string {
  const slash = stats.indexOf('/');
  return slash < 0 ? stats : stats.slice(0, slash);
}

export function statsPageUrl(stats: string): string {
  const slash = stats.indexOf('/');
  return `http://${statsAddress(stats)}${slash < 0 ? '/' : stats.slice(slash)}`;
}
