// Bounds on the CancelRequests the balancer relays (issue 22): a cancel is one short connection to a
// server, which forks a backend to read it. A key the balancer saw in a plaintext session goes to that
// session's server alone; a key it never saw (a TLS session's) goes to every server with an encrypted
// session: one CancelRequest, N server connections. Unbounded, 10,000 random keys in 10 s were 20,000
// forks, the postmasters' accept queues filled, the checks' new connections waited over 400 ms and the
// whole pool went DOWN. A cancel past a bound is dropped: its connection is closed, as PostgreSQL closes
// every cancel connection (a cancel gets no answer either way), and it is counted by reason.
import type { BackendServer } from './backend-server.js';
import type { CancelDropReason, CancelDrops } from './stats-types.js';

/**
 * Why these numbers. A client sends one cancel per query it cancels, so a client address that sends
 * more than 20 a second (40 at once) is not cancelling its own queries; the whole balancer relays at
 * most 100 unknown-key cancels a second (200 at once), so the worst a flood from any number of
 * addresses costs a server is 100 extra forks a second, half the ~200 new sessions a second a server
 * here starts (and a cancel's fork is cheaper: no login). A server answers a cancel connection within a
 * millisecond or two on an idle machine (hundreds of ms on this 2-core one under a load of 20), so 4 of
 * ours still open to one server mean it answers slowly (hung, or overloaded), which is when more would
 * hurt: the 5th skips that server. It also bounds what a real client's new connection waits behind in the
 * postmaster's accept queue: 4 cancel forks of ours at most. Each connection gets the startup-answer
 * bound (1 s by default).
 * Known keys have their own budget: they are real sessions of ours (a random key matches one with a
 * chance of 2^-64), so a flood of unknown keys never drops them; one cancel per key in flight at a time
 * bounds them (a second for the same key while the first is open is a duplicate), and since each
 * session has one key, their connections to a server are bounded by its sessions.
 */
export const CANCEL_LIMITS = {
  /** Unknown-key cancels per client address, per second, and at once (token bucket). */
  perClientPerSecond: 20,
  perClientBurst: 40,
  /** Unknown-key cancels of the whole balancer, per second, and at once. */
  perSecond: 100,
  burst: 200,
  /** Unknown-key cancel connections of ours open at once to one server. */
  inFlightPerServer: 4,
  /** Client addresses tracked at once (memory); beyond, a new address has only the balancer-wide bound. */
  trackedClients: 10_000,
} as const;

export type CancelLimits = { [K in keyof typeof CANCEL_LIMITS]: number };

/** What a dropped cancel's connection logs as the reason it ended. */
function dropWords(reason: CancelDropReason, limits: CancelLimits): string {
  switch (reason) {
    case 'clientRate':
      return `cancel request dropped: over ${limits.perClientPerSecond} a second (${limits.perClientBurst} at once) from this client address`;
    case 'totalRate':
      return `cancel request dropped: over ${limits.perSecond} a second (${limits.burst} at once) for the whole balancer`;
    case 'serverInFlight':
      return `cancel request dropped: every server it could be for has ${limits.inFlightPerServer} cancel connections of ours open`;
    case 'duplicate':
      return 'cancel request dropped: a cancel for the same session is still being sent';
    case 'noSession':
      return 'cancel request for an unknown session';
  }
}

/** A cancel the limiter let through: the servers it goes to; `done` once each connection has closed. */
export interface CancelGrant {
  targets: BackendServer[];
  /** The server closed the connection after reading the cancel (`answered`), or it failed or timed out. */
  done(server: BackendServer, answered: boolean): void;
}

export type CancelVerdict = ({ ok: true } & CancelGrant) | { ok: false; reason: CancelDropReason; message: string };

/** A token bucket: `rate` tokens a second, at most `burst` saved. */
class TokenBucket {
  private tokens: number;
  private at: number;

  constructor(private readonly rate: number, private readonly burst: number, now: number) {
    this.tokens = burst;
    this.at = now;
  }

  /** Tokens now (refilled since the last look). */
  level(now: number): number {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.rate);
    this.at = now;
    return this.tokens;
  }

  take(now: number): void {
    this.level(now);
    this.tokens -= 1;
  }

  /** Full again: the same as a bucket never used, so it can be forgotten. */
  full(now: number): boolean {
    return this.level(now) >= this.burst;
  }
}

export class CancelLimiter {
  /** Cancel requests relayed to at least one server. */
  forwarded = 0;
  readonly dropped: CancelDrops = { clientRate: 0, totalRate: 0, serverInFlight: 0, duplicate: 0, noSession: 0 };
  private readonly total: TokenBucket;
  private readonly clients = new Map<string, TokenBucket>();
  private readonly keysInFlight = new Set<string>();
  private lastSweep: number;

  constructor(private readonly limits: CancelLimits = CANCEL_LIMITS, private readonly now: () => number = Date.now) {
    this.total = new TokenBucket(limits.perSecond, limits.burst, now());
    this.lastSweep = now();
  }

  /**
   * A CancelRequest with `key` from `clientAddress`: `owner` is the server of the plaintext session
   * with that key, if any; else it may be for any of `encrypted` (servers with an encrypted session).
   */
  admit(request: { key: string; clientAddress: string; owner: BackendServer | undefined; encrypted: BackendServer[] }): CancelVerdict {
    const { key, owner } = request;
    if (owner) {
      if (this.keysInFlight.has(key)) return this.drop('duplicate');
      this.keysInFlight.add(key);
      return this.grant([owner], () => this.keysInFlight.delete(key));
    }
    if (request.encrypted.length === 0) return this.drop('noSession');
    const now = this.now();
    this.sweep(now);
    // A client's bucket counts what it sends within its bound, relayed or not (a flood is named as
    // such even while the servers are what stops it); the balancer's counts what it relays.
    const client = this.clientBucket(request.clientAddress, now);
    if (client && client.level(now) < 1) return this.drop('clientRate');
    client?.take(now);
    if (this.total.level(now) < 1) return this.drop('totalRate');
    const targets = request.encrypted.filter((server) => server.cancelsInFlight < this.limits.inFlightPerServer);
    for (const server of request.encrypted) if (!targets.includes(server)) server.cancelsDropped += 1;
    if (targets.length === 0) return this.drop('serverInFlight');
    this.total.take(now);
    return this.grant(targets, () => undefined);
  }

  private grant(targets: BackendServer[], release: () => void): CancelVerdict {
    this.forwarded += 1;
    let open = targets.length;
    for (const server of targets) {
      server.cancelsInFlight += 1;
      server.cancelsSent += 1;
    }
    return {
      ok: true,
      targets,
      done: (server, answered) => {
        server.cancelsInFlight -= 1;
        if (answered) server.noteAnswered('a cancel connection', this.now());
        open -= 1;
        if (open === 0) release();
      },
    };
  }

  private drop(reason: CancelDropReason): CancelVerdict {
    this.dropped[reason] += 1;
    return { ok: false, reason, message: dropWords(reason, this.limits) };
  }

  /** The address's bucket; none when too many addresses are tracked (the balancer-wide bound still applies). */
  private clientBucket(address: string, now: number): TokenBucket | undefined {
    let bucket = this.clients.get(address);
    if (!bucket && this.clients.size < this.limits.trackedClients) {
      bucket = new TokenBucket(this.limits.perClientPerSecond, this.limits.perClientBurst, now);
      this.clients.set(address, bucket);
    }
    return bucket;
  }

  /** Once a second, addresses whose bucket is full again are forgotten: memory follows the recent senders. */
  private sweep(now: number): void {
    if (now - this.lastSweep < 1000) return;
    this.lastSweep = now;
    for (const [address, bucket] of this.clients) if (bucket.full(now)) this.clients.delete(address);
  }

  /** Client addresses tracked now (tests). */
  get trackedClients(): number {
    return this.clients.size;
  }
}
