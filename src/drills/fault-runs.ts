// What `lab demo partition` and benchmarks/faults.ts share (issue 17): the balancer engines they compare,
// readers through a balancer with every request timed, one fault window (apply, time to DOWN from the
// balancer's stats, hold, heal, time to UP), the figures of a replica's fault from the readers'
// requests, and the goals.
import { setTimeout as delay } from 'node:timers/promises';
import { setMaxListeners } from 'node:events';
import pg from 'pg';
import type { BalancerProcess } from '../api/balancer-process.js';
import type { BalancerProcessOptions } from '../api/options.js';
import { LAB_CHECK_DEFAULTS } from '../balancer/config.js';
import { messageOf } from '../common/errors.js';
import { labClientConfig } from '../postgres/client.js';
import { SEED_HAPROXY } from './defaults.js';

/**
 * builtin: the built-in balancer, lab check settings (sql check); haproxy-seed: HAProxy with the seed's
 * haproxy.cfg knobs; haproxy-lab: HAProxy with the built-in's check knobs (what HAProxy can express of them).
 */
export const FAULT_ENGINES = ['builtin', 'haproxy-seed', 'haproxy-lab'] as const;
export type FaultEngine = (typeof FAULT_ENGINES)[number];

/** HAProxy with the lab's check knobs (inter, fastinter, downinter, rise, fall, timeout check); the rest as the seed's. */
export const LAB_CHECK_HAPROXY = {
  ...SEED_HAPROXY,
  interMs: LAB_CHECK_DEFAULTS.interMs, fastinterMs: LAB_CHECK_DEFAULTS.fastinterMs, downinterMs: LAB_CHECK_DEFAULTS.downinterMs,
  rise: LAB_CHECK_DEFAULTS.rise, fall: LAB_CHECK_DEFAULTS.fall, checkTimeoutMs: LAB_CHECK_DEFAULTS.timeoutMs,
} as const;

const c = LAB_CHECK_DEFAULTS;
const LAB_KNOBS = `every ${c.interMs} ms, fastinter ${c.fastinterMs}, downinter ${c.downinterMs}, rise ${c.rise}, fall ${c.fall}, timeout ${c.timeoutMs} ms`;

export function engineLabel(engine: FaultEngine): string {
  switch (engine) {
    case 'builtin':
      return `built-in balancer, lab check settings (sql check ${LAB_KNOBS})`;
    case 'haproxy-seed':
      return 'HAProxy, seed settings (pgsql-check, inter 10s, rise 2, fall 3, timeout check 5s, timeout connect 10s, retries 3)';
    case 'haproxy-lab':
      return `HAProxy, lab check settings (pgsql-check ${LAB_KNOBS}; timeouts and retries as the seed's)`;
  }
}

/** The balancer options of an engine (lab.balancerProcess), for a balancer `name` over `pool`. */
export function engineBalancerOptions(engine: FaultEngine, name: string, pool: 'replicas' | 'primary'): BalancerProcessOptions {
  if (engine === 'builtin') return { name, pool, check: 'sql' };
  return { name, pool, ...(engine === 'haproxy-seed' ? SEED_HAPROXY : LAB_CHECK_HAPROXY) };
}

/** Issue 17's goals, with the lab's check settings. */
export const FAULT_GOALS = {
  /** A partitioned or paused replica is DOWN within this (from the fault in place). */
  downMs: 1500,
  /** No client waits longer than DOWN's goal plus one check timeout. */
  waitMs: 1500 + LAB_CHECK_DEFAULTS.timeoutMs,
  /** Healed: UP within this (from the start of the heal). */
  upMs: 2000,
} as const;

// Readers: a query every READ_EVERY_MS on a persistent session; bounded connect and query timeouts.
export const READ_EVERY_MS = 50;
export const READ_CONNECT_TIMEOUT_MS = 3000;
export const READ_QUERY_TIMEOUT_MS = 3000;
/** A request that took this long or longer counts as a client that hung. */
export const HANG_MS = 200;
/** How often the balancer's stats are read while a node is faulted or healing. */
export const POLL_MS = 20;
/** Pause between two reads of a client that opens a new connection per read. */
const PER_READ_EVERY_MS = 150;

/** One request of a reader: a connect (startup and `SELECT inet_server_port()`) or a query on the session. */
export interface ReadRequest {
  reader: number;
  /** The reader's session number (a new one after each reconnect). */
  session: number;
  kind: 'connect' | 'query';
  start: number;
  end: number;
  /** The server that answered (for a failed connect: 0). */
  port: number;
  error: string | null;
}

/**
 * `clients` readers on persistent sessions: connect, then `SELECT inet_server_port()` every READ_EVERY_MS;
 * reconnect after an error. `perReadClients` more (numbered after them) open a new connection for each
 * read, every PER_READ_EVERY_MS: new clients the balancer must route while a server fails.
 */
export async function runSessionReaders(options: { url: string; clients: number; perReadClients?: number; until: number; maxRequests: number }, signal: AbortSignal): Promise<ReadRequest[]> {
  const perRead = options.perReadClients ?? 0;
  setMaxListeners(options.clients + perRead + 16, signal);
  const requests: ReadRequest[] = [];
  const running = () => !signal.aborted && Date.now() < options.until && requests.length < options.maxRequests;
  const reader = async (id: number, newConnectionPerRead: boolean) => {
    let client: pg.Client | null = null;
    let port = 0;
    let session = 0;
    while (running()) {
      const start = Date.now();
      const kind = client ? 'query' : 'connect';
      try {
        if (!client) {
          session += 1;
          const fresh = new pg.Client(labClientConfig({ connectionString: options.url, connectionTimeoutMillis: READ_CONNECT_TIMEOUT_MS, query_timeout: READ_QUERY_TIMEOUT_MS, application_name: 'lab-demo-reader' }));
          fresh.on('error', () => undefined);
          client = fresh;
          await fresh.connect();
          port = Number((await fresh.query<{ p: number }>('SELECT inet_server_port() AS p')).rows[0]!.p);
        } else {
          port = Number((await client.query<{ p: number }>('SELECT inet_server_port() AS p')).rows[0]!.p);
        }
        requests.push({ reader: id, session, kind, start, end: Date.now(), port, error: null });
        if (newConnectionPerRead) {
          const done = client;
          client = null;
          await done.end().catch(() => undefined);
        }
        await delay(newConnectionPerRead ? PER_READ_EVERY_MS : READ_EVERY_MS, undefined, { signal }).catch(() => undefined);
      } catch (error) {
        requests.push({ reader: id, session, kind, start, end: Date.now(), port: kind === 'connect' ? 0 : port, error: messageOf(error) });
        const dead = client;
        client = null;
        dead?.end().catch(() => undefined);
        await delay(20, undefined, { signal }).catch(() => undefined);
      }
    }
    await client?.end().catch(() => undefined);
  };
  await Promise.all([
    ...Array.from({ length: options.clients }, (_, i) => reader(i + 1, false)),
    ...Array.from({ length: perRead }, (_, i) => reader(options.clients + i + 1, true)),
  ]);
  return requests;
}

/** The figures of a replica's fault, from the readers' requests and the balancer's state times. */
export interface ReplicaFigures {
  detection_ms: number | null;
  readmission_ms: number | null;
  sessions_on_replica: number;
  sessions_closed_at_markdown: number;
  /** null: never DOWN. */
  new_clients_sent_after_down: number | null;
  max_hang_ms: number;
  clients_hung: number;
  read_errors: number;
  errors_saveable: number;
}

/** When a fault window's steps happened (Date.now()); downAt / upAt null: not seen. */
export interface FaultTimes {
  partStart: number;
  downAt: number | null;
  healStart: number;
  upAt: number | null;
  /** The end of the window after the heal. */
  end: number;
}

/**
 * partStart: when the fault was in place; downAt / healStart / upAt: when the balancer marked the replica
 * DOWN, when the heal began, when the balancer had it UP again (null: not seen); end: the end of the
 * window after the heal.
 */
export function replicaFigures(requests: ReadRequest[], replicaPort: number, t: FaultTimes): ReplicaFigures {
  const during = requests.filter((r) => r.start >= t.partStart - READ_QUERY_TIMEOUT_MS && r.end >= t.partStart && r.start < t.end);
  // Sessions on the replica when it was cut off: their request in flight at (or after) the fault, up to their end.
  const sessionKey = (r: ReadRequest) => `${r.reader}/${r.session}`;
  const onReplica = new Set(requests.filter((r) => r.port === replicaPort && r.end >= t.partStart && r.start <= t.partStart + READ_EVERY_MS * 4 && r.start < t.healStart).map(sessionKey));
  // Closed at mark-down: the session's failing request ended within 500 ms after DOWN, before its own query timeout.
  const closedAtDown = t.downAt === null ? 0 : [...onReplica].filter((key) => {
    const failed = requests.find((r) => sessionKey(r) === key && r.error !== null && r.end >= t.partStart);
    return failed !== undefined && failed.end >= t.downAt! - 50 && failed.end <= t.downAt! + 500 && failed.end - failed.start < READ_QUERY_TIMEOUT_MS - 100;
  }).length;
  const afterDown = t.downAt === null ? [] : requests.filter((r) => r.kind === 'connect' && r.start >= t.downAt! && r.start < (t.upAt ?? t.end));
  const hung = during.filter((r) => r.end - r.start >= HANG_MS);
  const errors = during.filter((r) => r.error !== null && r.start < t.end);
  return {
    detection_ms: t.downAt === null ? null : t.downAt - t.partStart,
    // Only a replica that went DOWN is re-admitted; one kept UP throughout has no figure.
    readmission_ms: t.upAt === null || t.downAt === null ? null : t.upAt - t.healStart,
    sessions_on_replica: onReplica.size,
    sessions_closed_at_markdown: closedAtDown,
    new_clients_sent_after_down: t.downAt === null ? null : afterDown.filter((r) => r.port === replicaPort).length,
    max_hang_ms: during.reduce((m, r) => Math.max(m, r.end - r.start), 0),
    clients_hung: new Set(hung.map((r) => r.reader)).size,
    read_errors: errors.length,
    // A new connection another replica could have taken (the session was not yet on the faulted replica).
    errors_saveable: errors.filter((r) => r.kind === 'connect' && r.start >= t.partStart && r.start < t.healStart).length,
  };
}

/** Poll a balancer's stats until `server` has a status that `wanted` accepts; Date.now() then, or null at `until`. */
export async function whenStatus(balancer: BalancerProcess, server: string, wanted: (status: string) => boolean, until: number, signal: AbortSignal): Promise<number | null> {
  while (Date.now() < until && !signal.aborted) {
    const stats = await balancer.stats({ timeoutMs: 1000 }).catch(() => null);
    const status = stats?.servers.find((s) => s.name === server)?.status;
    if (status && wanted(status)) return Date.now();
    await delay(POLL_MS, undefined, { signal }).catch(() => undefined);
  }
  return null;
}

export interface FaultWindowOptions {
  /** Puts the fault in place (returns once it is). */
  apply: () => Promise<unknown>;
  heal: () => Promise<unknown>;
  balancer: BalancerProcess;
  server: string;
  /** The fault lasts at least holdMs, and afterDownMs past DOWN, but never more than maxHoldMs. */
  holdMs: number;
  maxHoldMs: number;
  afterDownMs: number;
  /** After the heal: UP is awaited up to maxUpMs; the window ends afterMs after the heal, and not before afterUpMs past UP. */
  maxUpMs: number;
  afterMs: number;
  afterUpMs: number;
  signal: AbortSignal;
  /** Told as each step happens (narration). */
  on?: { applied?(at: number): void; down?(at: number | null): void; healing?(at: number): void; up?(at: number | null): void };
}

/**
 * One fault on `server`: apply, time to DOWN in the balancer's stats (polled every POLL_MS), hold, heal,
 * time to UP, the rest of the window. The fault is healed whatever happens. Every wait is bounded by
 * maxHoldMs, maxUpMs and afterMs.
 */
export async function faultWindow(o: FaultWindowOptions): Promise<FaultTimes> {
  const sleepUntil = (at: number) => delay(Math.max(0, at - Date.now()), undefined, { signal: o.signal });
  let healed = false;
  await o.apply();
  try {
    const partStart = Date.now();
    o.on?.applied?.(partStart);
    const lastHeal = partStart + o.maxHoldMs;
    const downAt = await whenStatus(o.balancer, o.server, (s) => s !== 'UP', lastHeal, o.signal);
    o.on?.down?.(downAt);
    await sleepUntil(Math.min(lastHeal, Math.max(partStart + o.holdMs, (downAt ?? 0) + o.afterDownMs)));
    const healStart = Date.now();
    healed = true;
    await o.heal();
    o.on?.healing?.(healStart);
    const upAt = await whenStatus(o.balancer, o.server, (s) => s === 'UP', healStart + o.maxUpMs, o.signal);
    o.on?.up?.(upAt);
    const end = Math.max(healStart + o.afterMs, (upAt ?? healStart) + o.afterUpMs);
    await sleepUntil(end);
    return { partStart, downAt, healStart, upAt, end };
  } finally {
    if (!healed) await o.heal().catch(() => undefined);
  }
}
