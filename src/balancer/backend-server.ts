// One server of the pool at run time: its health (HAProxy's rise/fall state machine), what its last
// check saw, and the counters the stats page shows. Sessions on it are tracked so a server marked
// DOWN can close them at once instead of leaving clients hanging.
import type { ServerConfig } from './config.js';
import type { BalancerServerStats, ServerState } from './stats-types.js';

export interface CheckOutcome {
  ok: boolean;
  /** L4OK, L4CON, L4TOUT, L7OK, L7STS, L7RSP */
  status: string;
  message: string;
  /** A healthy server that must not take new sessions (lag): DRAIN. */
  drain?: boolean;
  role?: 'primary' | 'replica' | null;
  lagBytes?: number | null;
  /** sql check of a primary: the timeline it writes WAL on (fencing a second primary). */
  timeline?: number | null;
  /**
   * A new connection got no answer within the check's timeout (a SIGSTOPped postmaster, a full accept
   * queue): DOWN at once, as a lost check connection is, not after `fall` checks.
   */
  hung?: boolean;
  /**
   * With `hung`, sql check: the check's own established session got no answer either, so the server's
   * existing backends do not run (a frozen host or a SIGSTOPped node), not just its postmaster.
   */
  backendsSilent?: boolean;
  /** sql check: connections an ordinary client may open (max_connections - superuser_reserved_connections). */
  clientSlots?: number | null;
  /**
   * The server answered a new connection with 57P03 (starting up, in recovery mode, shutting down): its
   * postmaster runs, so a DOWN server is checked again at fastinter rather than downinter.
   */
  cannotConnectNow?: boolean;
}

export interface LiveSession {
  /** Bytes from the client, bytes to the client, so far. */
  bytes(): [number, number];
  /** Ends both sides, recording why in the connection's log line. */
  close(reason: string): void;
  /**
   * Ends the session now if no query is in flight; otherwise once the answer is back, or after
   * `graceMs` at most. A SIGKILLed postmaster's backends still finish the query they run: cutting
   * it would turn an answer the client was about to get into an error.
   */
  closeWhenIdle(reason: string, graceMs: number): void;
  /** TLS or GSSAPI from the client to the server: opaque bytes, its BackendKeyData unseen. */
  encrypted?: boolean;
}

export class BackendServer {
  readonly config: ServerConfig;
  /** UP, DOWN, or DRAIN (healthy but out of the pool); MAINT comes from `disabled`. */
  private health: 'UP' | 'DOWN' | 'DRAIN';
  /** Consecutive results against the current state: successes while DOWN, failures while UP. */
  private streak = 0;
  private changedAt = Date.now();
  private downSince: number | null;
  private downMs = 0;
  /** False until the first check result: the first success admits the server at once. */
  private checked = false;
  checkStatus = 'INI';
  /** The last check that marked it DOWN found its established backends silent too (CheckOutcome.backendsSilent). */
  backendsSilent = false;
  checkMessage = 'not checked yet';
  role: 'primary' | 'replica' | null = null;
  lagBytes: number | null = null;
  checksFailed = 0;
  downTransitions = 0;
  sessionsMax = 0;
  sessionsTotal = 0;
  bytesIn = 0;
  bytesOut = 0;
  connectionErrors = 0;
  retries = 0;
  redispatches = 0;
  /**
   * CancelRequests relayed to this server (cancel-limit.ts): connections of ours open now, opened in
   * all, and cancels not sent to it because it had too many open.
   */
  cancelsInFlight = 0;
  cancelsSent = 0;
  cancelsDropped = 0;
  /**
   * When a new connection of ours last got an answer from it, and which: a cancel connection it closed
   * after reading, a client's connection its first byte (its postmaster accepts and forks: busy, not hung).
   */
  answeredAt = 0;
  private answeredWhat = '';
  readonly sessions = new Set<LiveSession>();
  /** Server connections of clients still in their connection phase (early, attempts, after 'N'). */
  connecting = 0;
  /** maxconn of this server (server line, --server-maxconn, or from the sql check); null: no limit. */
  maxconn: number | null = null;
  /**
   * Accepts TLS: known from the lab (its servers have TLS), or learned from its answer to an SSLRequest
   * or the sql check's TLS login; null while unknown.
   */
  acceptsTls: boolean | null;
  /** The server said "too many clients": no new connection until one of ours closes, or for a second. */
  private saturated = false;
  private saturatedSince = 0;
  /** Told when a slot frees (a connection closed): queued clients may go on. */
  onSlotFree: () => void = () => undefined;
  /** Told when the server goes DOWN (its sessions get closed) or comes back. */
  onChange: (server: BackendServer, from: ServerState, to: ServerState, why: string) => void = () => undefined;

  constructor(config: ServerConfig) {
    this.config = config;
    this.acceptsTls = config.tls ?? null;
    // Without a check the server is always UP (HAProxy); with one it waits for its first check.
    this.health = config.check ? 'DOWN' : 'UP';
    this.downSince = config.check ? Date.now() : null;
    if (!config.check) {
      this.checkStatus = '';
      this.checkMessage = 'no check';
    }
  }

  get name(): string {
    return this.config.name;
  }

  get address(): string {
    return `${this.config.host}:${this.config.port}`;
  }

  get status(): ServerState {
    return this.config.disabled ? 'MAINT' : this.health;
  }

  /** May take new sessions. */
  get usable(): boolean {
    return this.status === 'UP';
  }

  /** Server connections open now: connecting and established. */
  get active(): number {
    return this.connecting + this.sessions.size;
  }

  /** One more server connection fits: under maxconn, and not just told "too many clients". */
  get hasRoom(): boolean {
    if (this.maxconn !== null && this.active >= this.maxconn) return false;
    if (this.saturated) {
      // Other clients (not ours) may leave at any time: try again after a second at most.
      if (Date.now() - this.saturatedSince < 1000) return false;
      this.saturated = false;
    }
    return true;
  }

  /** 53300 on one of our connections: take no more until one of ours closes (or a second passed). */
  noteFull(): void {
    this.saturated = true;
    this.saturatedSince = Date.now();
  }

  /** A server connection closed or became a session that closed: a queued client may take it. */
  released(): void {
    this.saturated = false;
    this.onSlotFree();
  }

  /** The check should run at fastinter: the state is about to change. */
  get transitioning(): boolean {
    return this.streak > 0;
  }

  /**
   * When to check again after `outcome`: HAProxy's inter / fastinter / downinter, except that a DOWN
   * server is not kept waiting once it answers. One that passed a check (fewer than `rise` so far) is
   * checked again at once, so `rise` checks run back to back; one whose postmaster answered "starting
   * up" is checked at fastinter (if that is the shorter): it is coming back. One that refuses
   * connections, does not answer or refuses the login still waits downinter.
   */
  nextCheckMs(outcome: CheckOutcome, knobs: { interMs: number; fastinterMs: number; downinterMs: number }): number {
    if (this.status === 'DOWN') {
      if (this.streak > 0) return 0;
      return outcome.cannotConnectNow ? Math.min(knobs.fastinterMs, knobs.downinterMs) : knobs.downinterMs;
    }
    return this.transitioning ? knobs.fastinterMs : knobs.interMs;
  }

  /** Apply one check result with rise/fall. */
  record(outcome: CheckOutcome, rise: number, fall: number): void {
    this.backendsSilent = false;
    this.checkStatus = outcome.status;
    this.checkMessage = outcome.message;
    if (outcome.role !== undefined) this.role = outcome.role;
    if (outcome.lagBytes !== undefined) this.lagBytes = outcome.lagBytes;
    const first = !this.checked;
    this.checked = true;
    if (!outcome.ok) {
      this.checksFailed += 1;
      // A failed check knows the role only when the role was the problem.
      this.role = outcome.role ?? null;
      if (this.health === 'DOWN') {
        this.streak = 0;
        return;
      }
      this.streak += 1;
      if (this.streak >= fall) this.setHealth('DOWN', outcome.message);
      return;
    }
    const target = outcome.drain ? 'DRAIN' : 'UP';
    if (this.health !== 'DOWN') {
      // UP <-> DRAIN follows the lag at once: it is a measurement, not a flapping link.
      this.streak = 0;
      if (this.health !== target) this.setHealth(target, outcome.message);
      return;
    }
    this.streak += 1;
    if (first || this.streak >= rise) this.setHealth(target, outcome.message);
  }

  /** Passive detection or a lost check connection: DOWN now, no waiting for `fall` checks. */
  markDown(status: string, message: string, backendsSilent = false): void {
    this.backendsSilent = backendsSilent;
    this.checkStatus = status;
    this.checkMessage = message;
    this.role = null;
    this.lagBytes = null;
    this.checked = true;
    if (this.health === 'DOWN') {
      this.streak = 0;
      return;
    }
    this.checksFailed += 1;
    this.setHealth('DOWN', message);
  }

  private setHealth(next: 'UP' | 'DOWN' | 'DRAIN', why: string): void {
    const before = this.status;
    const now = Date.now();
    if (next === 'DOWN' && this.health !== 'DOWN') {
      this.downTransitions += 1;
      this.downSince = now;
    }
    if (next !== 'DOWN' && this.downSince !== null) {
      this.downMs += now - this.downSince;
      this.downSince = null;
    }
    this.health = next;
    this.streak = 0;
    this.changedAt = now;
    this.onChange(this, before, this.status, why);
  }

  addSession(session: LiveSession): void {
    this.sessions.add(session);
    this.sessionsTotal += 1;
    this.sessionsMax = Math.max(this.sessionsMax, this.sessions.size);
  }

  removeSession(session: LiveSession): void {
    if (!this.sessions.delete(session)) return;
    const [bytesIn, bytesOut] = session.bytes();
    this.bytesIn += bytesIn;
    this.bytesOut += bytesOut;
    this.released();
  }

  /** Has an encrypted session: a CancelRequest with an unknown key may be for it. */
  get hasEncryptedSession(): boolean {
    for (const session of this.sessions) if (session.encrypted) return true;
    return false;
  }

  /** A new connection of ours got an answer (`what`: a cancel connection, a client's connection). */
  noteAnswered(what: string, at = Date.now()): void {
    this.answeredAt = at;
    this.answeredWhat = what;
  }

  /**
   * Why a new connection left unanswered since `since` does not make this server dead: its postmaster
   * answered another new connection of ours since then (it accepts and forks, behind the cancels and the
   * TLS handshakes we relay); null when it did not. A frozen postmaster answers none.
   */
  answeringSince(since: number): string | null {
    if (this.answeredAt === 0 || this.answeredAt < since) return null;
    return `its postmaster answered ${this.answeredWhat} of ours ${Date.now() - this.answeredAt} ms ago (${this.cancelsInFlight} cancel connection(s) open): busy, not hung`;
  }

  /** Close every established session (the server is gone; clients must not hang): idle ones at once. */
  closeSessions(graceMs: number): number {
    const count = this.sessions.size;
    for (const session of [...this.sessions]) session.closeWhenIdle('server marked down', graceMs);
    return count;
  }

  stats(): BalancerServerStats {
    const now = Date.now();
    let bytesIn = this.bytesIn;
    let bytesOut = this.bytesOut;
    for (const session of this.sessions) {
      const [sessionIn, sessionOut] = session.bytes();
      bytesIn += sessionIn;
      bytesOut += sessionOut;
    }
    return {
      name: this.name,
      address: this.address,
      status: this.status,
      checkStatus: this.checkStatus,
      checkMessage: this.checkMessage,
      lastChangeS: Math.floor((now - this.changedAt) / 1000),
      downtimeS: Math.floor((this.downMs + (this.downSince !== null ? now - this.downSince : 0)) / 1000),
      checksFailed: this.checksFailed,
      downTransitions: this.downTransitions,
      sessionsCurrent: this.sessions.size,
      sessionsMax: this.sessionsMax,
      sessionsTotal: this.sessionsTotal,
      bytesIn,
      bytesOut,
      connectionErrors: this.connectionErrors,
      retries: this.retries,
      redispatches: this.redispatches,
      cancelsSent: this.cancelsSent,
      cancelsDropped: this.cancelsDropped,
      weight: this.config.weight,
      role: this.role,
      lagBytes: this.lagBytes,
      maxconn: this.maxconn,
    };
  }
}
