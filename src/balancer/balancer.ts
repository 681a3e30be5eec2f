// A running balancer: the client listener, the pool with its health checks, and the stats listener.
// `runBalancer` returns it started; `stop()` is idempotent and closes everything it opened.
import net from 'node:net';
import type http from 'node:http';
import { BackendServer, type CheckOutcome } from './backend-server.js';
import { LAB_LIMIT_DEFAULTS, type BalancerConfig, type CheckSettings, type ServerConfig } from './config.js';
import { CancelLimiter } from './cancel-limit.js';
import { answerBound, handleClient, type ClientSession, type QueueWaiter, type SessionContext } from './client-session.js';
import { errorResponse } from './protocol.js';
import { raiseOpenFilesLimit } from './open-files.js';
import { KERNEL_RELAY_AFTER, relayFor } from './kernel-relay.js';
import { createChecker, type Checker, type ExpectedRole } from './health-check.js';
import { watchLabPool, type LabPrimary, type PoolWatcher } from './lab-pool.js';
import { PrimaryLsnSampler } from './primary-lsn.js';
import { clientEnv } from '../postgres/client-env.js';
import { ServerPicker } from './pick-server.js';
import { createStatsServer } from './stats-server.js';
import { loadTerminatingTls } from './tls-terminate.js';
import type { BalancerStats, ServerState } from './stats-types.js';

interface PoolMember {
  server: BackendServer;
  checker: Checker | null;
  settings: CheckSettings;
  timer: NodeJS.Timeout | null;
  running: boolean;
  removed: boolean;
  /** The timeline its last check saw it write WAL on as a primary; null when not a healthy primary. */
  primaryTimeline: number | null;
}

export type LogSink = (line: string) => void;

/** Descriptors kept out of the listener's share: checks, the stats listener's cap, logs, the state file. */
const FD_RESERVE = 128;

/** How long a query in flight on a server marked DOWN may take to answer when `timeout server` is 0. */
const DOWN_GRACE_MS = 30_000;

export class RunningBalancer {
  private readonly members = new Map<string, PoolMember>();
  private readonly picker: ServerPicker;
  private readonly sessionContext: SessionContext;
  private readonly keys = new Map<string, BackendServer>();
  private readonly cancels = new CancelLimiter();
  private readonly clients = new Set<ClientSession>();
  private readonly startedAt = Date.now();
  private proxy: net.Server | null = null;
  private statsServer: http.Server | null = null;
  private watcher: PoolWatcher | null = null;
  private sessionsCurrent = 0;
  private sessionsTotal = 0;
  private stopped = false;
  /** Clients waiting for a server slot, oldest first, with their `timeout queue` timers. */
  private readonly queue = new Map<QueueWaiter, NodeJS.Timeout>();
  private queueMax = 0;
  private queueTimeouts = 0;
  private dequeuing = false;
  private earlyInUse = 0;
  /**
   * Clients waiting for an early-connect slot for their TLS handshake, with their `timeout queue` timers,
   * and the same clients newest last (one that left stays there until popped, then is skipped).
   */
  private readonly slotWaiters = new Map<QueueWaiter, NodeJS.Timeout>();
  private readonly slotStack: QueueWaiter[] = [];
  /** When each server's last "not marked down" line was logged, and how many were not since. */
  private readonly busyLogged = new Map<BackendServer, { at: number; unlogged: number }>();
  /** TLS sessions whose first request had a CancelRequest's size, closed by their server unanswered. */
  private encryptedCancels = 0;
  /** Client connections held at once: the configured maxconn, lowered to what the open-files limit allows. */
  private maxconn: number = LAB_LIMIT_DEFAULTS.maxconn;
  private refusedOverMaxconn = 0;
  /** The primary's WAL end, sampled each check interval when a --max-lag is set and the primary is known. */
  private primarySampler: PrimaryLsnSampler | null = null;
  private primaryTimer: NodeJS.Timeout | null = null;

  /** The lab's client environment where the balancer started: its checks log in with it, from any callback. */
  private readonly clientEnv = clientEnv();

  constructor(readonly config: BalancerConfig, private readonly log: LogSink) {
    this.picker = new ServerPicker(config.algorithm);
    this.sessionContext = this.makeSessionContext();
  }

  /** The role the sql check requires, from the pool kind (a fixed pool without `--pool` takes any role). */
  private get expectedRole(): ExpectedRole {
    const kind = this.config.pool.kind ?? 'all';
    if (kind === 'all') return null;
    return kind === 'replicas' ? 'replica' : 'primary';
  }

  async start(): Promise<void> {
    this.chooseRelay();
    this.chooseMaxconn();
    try {
      this.sessionContext.terminate = await loadTerminatingTls(this.config.tls ?? { mode: 'passthrough' });
      this.log(`${this.config.name} ${this.sessionContext.terminate ? 'terminates TLS with the lab\'s certificate (--tls terminate): cancels inside TLS are routed by key' : 'passes TLS through end to end (--tls passthrough)'}`);
      const pool = this.config.pool;
      if (pool.source === 'static') this.setServers(pool.servers);
      else {
        this.watcher = await watchLabPool(pool.labDir, pool.kind, this.config.check.type !== 'none', (servers, primary) => {
          this.setServers(servers);
          this.setPrimary(primary);
        }, (message) =>
          this.log(`${this.config.name} cannot read the lab state: ${message}`),
        );
      }
      this.proxy = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
      await listen(this.proxy, this.config.listen.host, this.config.listen.port);
      if (this.config.stats) {
        this.statsServer = createStatsServer(this.config.stats.uri, () => this.stats());
        await listen(this.statsServer, this.config.stats.host, this.config.stats.port);
      }
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  private accept(socket: net.Socket): void {
    if (this.clients.size >= this.maxconn) {
      // Over the listener's maxconn: one clear FATAL at once (never a silent close), no fd kept.
      this.refusedOverMaxconn += 1;
      socket.on('error', () => undefined);
      socket.end(errorResponse('53300', `lab balancer ${this.config.name}: too many clients (maxconn ${this.maxconn})`));
      setTimeout(() => socket.destroy(), 1000).unref();
      if (this.refusedOverMaxconn === 1 || this.refusedOverMaxconn % 1000 === 0) {
        this.log(`${this.config.name} over maxconn ${this.maxconn}: ${this.refusedOverMaxconn} client(s) refused so far`);
      }
      return;
    }
    handleClient(socket, this.sessionContext);
  }

  /**
   * The open-files soft limit goes up to the hard limit; the listener's maxconn is then kept within it
   * (a client costs two descriptors, its own and its server's), so the balancer never runs out of them.
   */
  private chooseMaxconn(): void {
    const wanted = this.config.maxconn ?? LAB_LIMIT_DEFAULTS.maxconn;
    const limits = raiseOpenFilesLimit();
    if (limits.note) this.log(`${this.config.name} ${limits.note}`);
    const fits = limits.soft === null ? wanted : Math.max(1, Math.floor((limits.soft - FD_RESERVE) / 2));
    this.maxconn = Math.min(wanted, fits);
    if (this.maxconn < wanted) {
      this.log(`${this.config.name} maxconn ${wanted} lowered to ${this.maxconn}: the open-files limit is ${limits.soft} (two per client, ${FD_RESERVE} kept for checks, stats and logs)`);
    }
  }

  private enqueue(waiter: QueueWaiter): void {
    const queueMs = this.config.timeouts.queueMs ?? LAB_LIMIT_DEFAULTS.queueMs;
    const since = Date.now();
    const timer = setTimeout(() => {
      this.queue.delete(waiter);
      this.queueTimeouts += 1;
      waiter.expire(Date.now() - since);
    }, queueMs);
    this.queue.set(waiter, timer);
    this.queueMax = Math.max(this.queueMax, this.queue.size);
  }

  private leaveQueue(waiter: QueueWaiter): void {
    const timer = this.queue.get(waiter);
    if (timer) clearTimeout(timer);
    this.queue.delete(waiter);
  }

  /** Nothing is busy any more: every queued client tries the pool again (or hears why it cannot). */
  private releaseQueue(): void {
    for (const waiter of [...this.queue.keys()]) {
      this.leaveQueue(waiter);
      waiter.resume();
    }
  }

  /** Slots freed: the oldest queued clients go on while a server has room. */
  private dequeue(): void {
    if (this.dequeuing || this.queue.size === 0) return;
    this.dequeuing = true;
    try {
      for (const waiter of [...this.queue.keys()]) {
        if (!this.picker.hasRoom(this.activeServers())) break;
        this.leaveQueue(waiter);
        waiter.resume();
      }
    } finally {
      this.dequeuing = false;
    }
  }

  /** `relay auto` takes the kernel relay when this machine can run it, and says why when it cannot. */
  private chooseRelay(): void {
    const { relay, note } = relayFor(this.config.relay);
    this.sessionContext.relay = relay;
    this.log(`${this.config.name} relays established sessions ${note}`);
  }

  private makeSessionContext(): SessionContext {
    return {
      config: this.config,
      pick: (exclude) => this.picker.pick(this.activeServers(), exclude),
      serverCount: () => this.members.size,
      keyOwner: (key) => this.keys.get(key),
      setKeyOwner: (key, server) => (server ? this.keys.set(key, server) : this.keys.delete(key)),
      encryptedSessionServers: () => [...this.members.values()].map((m) => m.server).filter((server) => server.hasEncryptedSession),
      terminate: null,
      serversAcceptTls: () => {
        let usable = 0;
        for (const { server } of this.members.values()) {
          if (!server.usable) continue;
          if (server.acceptsTls !== true) return false;
          usable += 1;
        }
        return usable > 0;
      },
      encryptedCancelSeen: (server, peer) => {
        this.encryptedCancels += 1;
        if (this.members.size < 2) return;
        this.log(
          `${this.config.name} client=${peer} server=${server.name}: a CancelRequest sent inside TLS (asyncpg, postgres.js, libpq 17) went to ${server.name}, ` +
            `which closed it unanswered; the balancer cannot read its key, so with ${this.members.size} servers it may have missed the session it cancels: ` +
            'start the balancer with --tls terminate to route encrypted cancels by key',
        );
      },
      cancels: this.cancels,
      markDown: (server, status, message) => {
        const member = this.members.get(server.name);
        if (member?.server !== server || !server.config.check) return;
        // A startup left unanswered behind the cancels we relay to the server: the client goes on to the
        // next server, the server stays in the pool (its check decides).
        const busy = status.endsWith('TOUT') ? server.answeringSince(Date.now() - answerBound(this.config)) : null;
        if (busy) return this.logBusy(server, `${message}, but ${busy}`);
        server.markDown(status, `${message} (seen by the proxy)`);
        this.scheduleCheck(member, member.settings.downinterMs);
      },
      log: (line) => this.log(line),
      relay: null,
      kernelRelayAfter: this.config.kernelRelayAfter ?? KERNEL_RELAY_AFTER,
      sessionOpened: (session) => {
        this.clients.add(session);
        this.sessionsCurrent += 1;
        this.sessionsTotal += 1;
      },
      sessionClosed: (session) => {
        this.clients.delete(session);
        this.sessionsCurrent -= 1;
      },
      serversBusy: () => this.picker.busy(this.activeServers()),
      enqueue: (waiter) => this.enqueue(waiter),
      leaveQueue: (waiter) => this.leaveQueue(waiter),
      takeEarlyBudget: () => {
        if (this.earlyInUse >= LAB_LIMIT_DEFAULTS.earlyConnects) return false;
        this.earlyInUse += 1;
        return true;
      },
      releaseEarlyBudget: () => this.releaseEarlyBudget(),
      waitEarlyBudget: (waiter) => {
        const queueMs = this.config.timeouts.queueMs ?? LAB_LIMIT_DEFAULTS.queueMs;
        const since = Date.now();
        const timer = setTimeout(() => {
          this.slotWaiters.delete(waiter);
          waiter.expire(Date.now() - since);
        }, queueMs);
        this.slotWaiters.set(waiter, timer);
        this.slotStack.push(waiter);
      },
      earlyBudgetContended: () => this.slotWaiters.size > 0,
      leaveEarlyBudgetWait: (waiter) => {
        clearTimeout(this.slotWaiters.get(waiter));
        this.slotWaiters.delete(waiter);
      },
    };
  }

  /** "Not marked down" once a second per server at most, with how many were not logged: a flood makes thousands. */
  private logBusy(server: BackendServer, why: string): void {
    const now = Date.now();
    const last = this.busyLogged.get(server) ?? { at: 0, unlogged: 0 };
    if (now - last.at < 1000) {
      last.unlogged += 1;
      this.busyLogged.set(server, last);
      return;
    }
    const more = last.unlogged ? ` (and ${last.unlogged} more such in the last ${Math.round((now - last.at) / 1000)} s)` : '';
    this.busyLogged.set(server, { at: now, unlogged: 0 });
    this.log(`${this.config.name} server ${server.name} not marked down: ${why}${more}`);
  }

  /**
   * A slot freed goes to the newest client waiting for one (its TLS handshake has just begun), not the
   * oldest: when stalled handshakes arrive in a burst, clients that come after them are served first,
   * and the burst's own waiters run out their `timeout queue`.
   */
  private releaseEarlyBudget(): void {
    let newest = this.slotStack.pop();
    while (newest && !this.slotWaiters.has(newest)) newest = this.slotStack.pop();
    if (!newest) {
      this.earlyInUse = Math.max(0, this.earlyInUse - 1);
      return;
    }
    clearTimeout(this.slotWaiters.get(newest));
    this.slotWaiters.delete(newest);
    queueMicrotask(() => newest.resume());
  }

  private *activeServers(): Iterable<BackendServer> {
    for (const member of this.members.values()) yield member.server;
  }

  /** Make the pool exactly `configs`: new servers start their checks, gone ones stop them. */
  setServers(configs: ServerConfig[]): void {
    if (this.stopped) return;
    const wanted = new Map(configs.map((c) => [c.name, c]));
    for (const [name, member] of this.members) {
      const next = wanted.get(name);
      const current = member.server.config;
      if (!next || next.host !== current.host || next.port !== current.port || next.fenced !== current.fenced) this.removeMember(name, member);
    }
    for (const config of configs) {
      if (this.members.has(config.name)) continue;
      this.addMember(config);
    }
  }

  /**
   * A replica's lag is also measured against the primary when a --max-lag is set and the primary is
   * known: the lab's primary node, or in a --config pool the one server whose check says primary.
   */
  private get samplesPrimary(): boolean {
    const { type, maxLagBytes, maxLagSeconds } = this.config.check;
    return type === 'sql' && (maxLagBytes !== null || maxLagSeconds !== null) && this.expectedRole !== 'primary';
  }

  private setPrimary(primary: LabPrimary | null): void {
    if (this.stopped || !this.samplesPrimary) return;
    const current = this.primarySampler;
    if (current && primary && current.name === primary.name && current.target.host === primary.host && current.target.port === primary.port) return;
    if (!current && !primary) return;
    if (this.primaryTimer) clearInterval(this.primaryTimer);
    this.primaryTimer = null;
    current?.close();
    this.primarySampler = null;
    if (!primary) {
      this.log(`${this.config.name} no primary known: replica lag is measured on the replicas alone`);
      return;
    }
    const sampler = new PrimaryLsnSampler(primary.name, { host: primary.host, port: primary.port, clientEnv: this.clientEnv }, this.config.check);
    this.primarySampler = sampler;
    void sampler.sample();
    this.primaryTimer = setInterval(() => void sampler.sample(), this.config.check.interMs);
    this.log(`${this.config.name} replica lag is also measured against the primary ${primary.name} (${primary.host}:${primary.port})`);
  }

  /** A --config pool: the primary is the one server whose last check said so (none, or several: none). */
  private followCheckedPrimary(): void {
    if (this.config.pool.source !== 'static' || !this.samplesPrimary) return;
    const primaries = [...this.members.values()].filter((m) => m.server.role === 'primary');
    const only = primaries.length === 1 ? primaries[0]!.server : null;
    this.setPrimary(only ? { name: only.name, host: only.config.host, port: only.config.port } : null);
  }

  /** maxconn of a server: its own, --server-maxconn, else what its max_connections leaves (sql check). */
  private applyMaxconn(server: BackendServer, clientSlots: number | null | undefined): void {
    const fixed = server.config.maxconn ?? this.config.serverMaxconn;
    if (fixed !== undefined) server.maxconn = fixed > 0 ? fixed : null;
    else if (clientSlots) server.maxconn = Math.max(1, clientSlots - LAB_LIMIT_DEFAULTS.serverMargin);
    if (server.hasRoom) this.dequeue();
  }

  private addMember(wanted: ServerConfig): void {
    const settings: CheckSettings = { ...this.config.check, ...wanted.checkOverrides };
    // `check none` is a server line without `check`: always UP (HAProxy).
    const config = settings.type === 'none' ? { ...wanted, check: false } : wanted;
    const server = new BackendServer(config);
    const member: PoolMember = { server, checker: null, settings, timer: null, running: false, removed: false, primaryTimeline: null };
    server.onChange = (s, from, to, why) => this.onChange(s, from, to, why);
    server.onSlotFree = () => this.dequeue();
    this.applyMaxconn(server, null);
    if (config.fenced) {
      server.markDown('FENCED', config.fenced);
    } else if (config.check && settings.type !== 'none') {
      member.checker = createChecker({ host: config.host, port: config.port, clientEnv: this.clientEnv }, settings, {
        expectedRole: this.expectedRole,
        primary: () => this.primarySampler?.fresh() ?? null,
        busySince: (since) => server.answeringSince(since),
        onLost: (message) => {
          if (member.removed) return;
          server.markDown('L4CON', message);
          this.scheduleCheck(member, settings.downinterMs);
        },
      });
      this.scheduleCheck(member, 0);
    }
    this.members.set(config.name, member);
    this.log(`${this.config.name} server ${config.name} (${config.host}:${config.port}) joins the pool${config.backup ? ' as backup' : ''}`);
  }

  private removeMember(name: string, member: PoolMember): void {
    member.removed = true;
    if (member.timer) clearTimeout(member.timer);
    member.checker?.close();
    this.picker.forget(member.server);
    this.members.delete(name);
    this.log(`${this.config.name} server ${name} leaves the pool (${member.server.sessions.size} session(s) left running)`);
  }

  private onChange(server: BackendServer, from: ServerState, to: ServerState, why: string): void {
    if (from === to) return;
    // Queued clients wait for a slot; with no busy server left (one came UP, or all went DOWN) they go on.
    queueMicrotask(() => (this.picker.busy(this.activeServers()) ? this.dequeue() : this.releaseQueue()));
    this.log(`${this.config.name} server ${server.name} ${from} -> ${to}: ${server.checkStatus} ${why}`);
    if (to === 'DOWN') {
      // Idle sessions close now; a query in flight gets its answer within `timeout server` (a frozen
      // postmaster's backends keep answering), 30 s when none is set. A server marked down because no
      // connection to it completed within the check's timeout (L4TOUT: its host cut off, as `lab fault
      // partition` does) will not answer either: a query in flight gets one more check timeout, then its
      // session closes, so no client waits on it longer than the detection plus one check timeout (issue 17).
      // The same for a server whose established backends are silent too (the sql check's own session got
      // no answer: a frozen host, `lab fault pause`): its backends cannot answer what is in flight.
      this.closeSessionsOf(server, 'marked down');
    }
  }

  private closeSessionsOf(server: BackendServer, why: string): void {
    const cutOff = server.checkStatus === 'L4TOUT' || server.backendsSilent;
    const graceMs = cutOff ? this.config.check.timeoutMs : this.config.timeouts.serverMs > 0 ? this.config.timeouts.serverMs : DOWN_GRACE_MS;
    const closed = server.closeSessions(graceMs);
    if (closed) this.log(`${this.config.name} server ${server.name}: closing ${closed} session(s) of a server ${why} (a query in flight gets ${graceMs} ms)`);
  }

  private scheduleCheck(member: PoolMember, delayMs: number): void {
    if (member.removed || this.stopped || !member.checker) return;
    if (member.timer) clearTimeout(member.timer);
    member.timer = setTimeout(() => void this.runCheck(member), delayMs);
  }

  private async runCheck(member: PoolMember): Promise<void> {
    member.timer = null;
    if (member.running || member.removed || !member.checker) return;
    member.running = true;
    let outcome: CheckOutcome;
    try {
      outcome = await member.checker.run({ down: member.server.status === 'DOWN' });
    } catch (error) {
      outcome = { ok: false, status: 'L7RSP', message: error instanceof Error ? error.message : String(error) };
    } finally {
      member.running = false;
    }
    if (member.removed || this.stopped) return;
    if (this.expectedRole === 'primary') outcome = this.fenceSecondPrimary(member, outcome);
    const { settings, server } = member;
    this.applyMaxconn(server, outcome.clientSlots);
    // A new connection left unanswered is not a flapping link: DOWN now, as a lost check connection is.
    if (outcome.hung) {
      const silentAlready = server.status === 'DOWN' && server.backendsSilent;
      server.markDown(outcome.status, outcome.message, outcome.backendsSilent);
      // Marked down first by the proxy (a new connection unanswered: it cannot tell a frozen postmaster
      // from a frozen host); the check now finds the backends silent too: what is in flight gets one check timeout.
      if (outcome.backendsSilent && !silentAlready && server.status === 'DOWN') this.closeSessionsOf(server, 'its backends are silent too');
    } else server.record(outcome, settings.rise, settings.fall);
    this.followCheckedPrimary();
    if (!member.timer) this.scheduleCheck(member, server.nextCheckMs(outcome, settings));
  }

  /**
   * A primary pool routes to one primary at a time. When two servers answer as primary (an old master
   * restarted by mistake, a second promotion), the one on the higher timeline wins: the other's WAL
   * forked off before that promotion. On the same timeline the one already UP keeps the pool.
   */
  private fenceSecondPrimary(member: PoolMember, outcome: CheckOutcome): CheckOutcome {
    const mine = outcome.ok && outcome.role === 'primary' && outcome.timeline ? outcome.timeline : null;
    member.primaryTimeline = mine;
    if (mine === null) return outcome;
    const fenced = (timeline: number, winner: PoolMember) =>
      `a second primary on timeline ${timeline}: ${winner.server.name} is the primary on timeline ${winner.primaryTimeline}; fenced out of the pool`;
    for (const other of this.members.values()) {
      if (other === member || other.primaryTimeline === null) continue;
      const theirs = other.primaryTimeline;
      if (theirs > mine || (theirs === mine && other.server.status === 'UP' && member.server.status !== 'UP')) {
        return { ok: false, status: 'L7STS', message: fenced(mine, other), role: 'primary', lagBytes: null, timeline: mine };
      }
    }
    for (const other of this.members.values()) {
      if (other === member || other.primaryTimeline === null || other.primaryTimeline >= mine || other.server.status === 'DOWN') continue;
      other.server.markDown('L7STS', fenced(other.primaryTimeline, member));
    }
    return outcome;
  }

  stats(): BalancerStats {
    return {
      name: this.config.name,
      engine: 'builtin',
      listen: `${this.config.listen.host}:${this.address().port}`,
      uptimeS: Math.floor((Date.now() - this.startedAt) / 1000),
      relay: this.sessionContext.relay ? 'kernel' : 'node',
      sessionsCurrent: this.sessionsCurrent,
      sessionsTotal: this.sessionsTotal,
      maxconn: this.maxconn,
      queueCurrent: this.queue.size,
      queueMax: this.queueMax,
      queueTimeouts: this.queueTimeouts,
      tls: this.sessionContext.terminate ? 'terminate' : 'passthrough',
      cancelsInsideTls: this.encryptedCancels,
      cancelsForwarded: this.cancels.forwarded,
      cancelsDropped: { ...this.cancels.dropped },
      servers: [...this.members.values()].map((m) => m.server.stats()),
    };
  }

  /** The ports really bound (useful when the config asked for port 0). */
  address(): { port: number; statsPort: number | null } {
    const port = (this.proxy?.address() as net.AddressInfo | null)?.port ?? this.config.listen.port;
    const statsPort = (this.statsServer?.address() as net.AddressInfo | null)?.port ?? null;
    return { port, statsPort };
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.watcher?.stop();
    if (this.primaryTimer) clearInterval(this.primaryTimer);
    this.primarySampler?.close();
    for (const [name, member] of this.members) this.removeMember(name, member);
    for (const timer of this.queue.values()) clearTimeout(timer);
    this.queue.clear();
    for (const timer of this.slotWaiters.values()) clearTimeout(timer);
    this.slotWaiters.clear();
    this.slotStack.length = 0;
    for (const session of [...this.clients]) session.close('balancer stopped');
    await Promise.all([close(this.proxy), close(this.statsServer)]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

function listen(server: net.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // A burst of clients (pgbench -C, a thousand idle ones) must not overflow the default backlog of 511.
    server.listen({ host, port, exclusive: true, backlog: 4096 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function close(server: net.Server | null): Promise<void> {
  if (!server || !server.listening) return Promise.resolve();
  (server as http.Server).closeAllConnections?.();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Start a balancer in this process (the daemon's body, and the tests' direct use). */
export async function runBalancer(config: BalancerConfig, log: LogSink = () => undefined): Promise<RunningBalancer> {
  const balancer = new RunningBalancer(config, log);
  await balancer.start();
  return balancer;
}
