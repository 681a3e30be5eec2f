import type { AuthMethod, TlsMode } from '../lab/access.js';

/** --auth / --tls of a drill: the lab it builds for itself. */
export interface DemoAccess {
  auth?: AuthMethod;
  tls?: TlsMode;
}

// The demos' options and defaults, apart from the drills so the CLI can show them without loading the drills.

export interface FailoverDrillOptions {
  replicas: number;
  scale: number;
  durationMs: number;
  kill: string;
  killAtMs: number;
  recoverAtMs: number;
  concurrency: number;
  reportDir: string;
  keep: boolean;
  /** Print the xact table every this many ms while the load runs (the seed's ut-stat-xact: 3 s). */
  xactEveryMs: number;
  /** Print the workload's per-second lines too. */
  verbose: boolean;
  /** Build the lab here instead of a temporary dir. */
  labDir?: string;
  /** The drill lab's authentication and TLS (default: a new lab's, scram and TLS on). */
  access?: DemoAccess;
}

export const FAILOVER_DEFAULTS: FailoverDrillOptions = {
  replicas: 3, scale: 10, durationMs: 60_000, kill: 'replica2', killAtMs: 20_000, recoverAtMs: 35_000,
  concurrency: 16, reportDir: 'report-failover', keep: false, xactEveryMs: 3000, verbose: false,
};

export interface LbHaDrillOptions {
  replicas: number;
  scale: number;
  durationMs: number;
  concurrency: number;
  reportDir: string;
  keep: boolean;
  labDir?: string;
  /** The drill lab's authentication and TLS (default: a new lab's, scram and TLS on). */
  access?: DemoAccess;
}

export const LB_HA_DEFAULTS: LbHaDrillOptions = { replicas: 2, scale: 1, durationMs: 60_000, concurrency: 8, reportDir: 'report-lb-ha', keep: false };


export interface PrimaryFailoverDrillOptions {
  replicas: number;
  /** Replicas are synchronous standbys (synchronous_standby_names = ANY 1 (...)). */
  sync: boolean;
  durationMs: number;
  killAtMs: number;
  /** The master's walsenders freeze this long before it dies (a network partition, then the crash). */
  partitionMs: number;
  /** Clients inserting acknowledged rows through the `rw` balancer. */
  writers: number;
  /** Clients reading through the `lb` balancer. */
  readers: number;
  reportDir: string;
  keep: boolean;
  verbose: boolean;
  labDir?: string;
  /** The drill lab's authentication and TLS (default: a new lab's, scram and TLS on). */
  access?: DemoAccess;
  /**
   * `lab demo switchover`: a planned switchover to replica1 at this time (from the start of the load)
   * before the crash, which then kills the new primary: both on one clock, for contrast.
   */
  switchoverAtMs?: number;
}

export const SWITCHOVER_DEFAULTS: PrimaryFailoverDrillOptions = {
  replicas: 2, sync: false, durationMs: 40_000, switchoverAtMs: 10_000, killAtMs: 25_000, partitionMs: 0, writers: 8, readers: 4, reportDir: 'report-switchover', keep: false, verbose: false,
};

export const PRIMARY_FAILOVER_DEFAULTS: PrimaryFailoverDrillOptions = {
  replicas: 2, sync: false, durationMs: 60_000, killAtMs: 20_000, partitionMs: 200, writers: 8, readers: 4, reportDir: 'report-primary-failover', keep: false, verbose: false,
};

export interface StaleReadsDrillOptions {
  replicas: number;
  /** The replica delayed, then paused, then lagging. */
  node: string;
  /** The sql check's --max-lag of the bounded run: bytes (1MB), seconds (1s) or both (1MB,1s). */
  maxLag: string;
  /** How long each fault lasts; the baseline and each recovery last half of it. */
  phaseMs: number;
  /**
   * The faults, in order: delay, pause, lag. Unset: all three, the delay left out (in one line) where the
   * drill's lab cannot be made with --hosts; named, a delay there is refused.
   */
  faults?: string;
  /** The delay phase's delay on the node's links (`lab fault delay NODE D`): 300ms. */
  delay: string;
  /** The runs: bounded, unbounded, haproxy. */
  runs: string;
  readers: number;
  reportDir: string;
  keep: boolean;
  labDir?: string;
  /** The drill lab's authentication and TLS (default: a new lab's, scram and TLS on). */
  access?: DemoAccess;
}

export const STALE_READS_DEFAULTS: StaleReadsDrillOptions = {
  replicas: 2, node: 'replica2', maxLag: '1MB', phaseMs: 10_000, faults: 'delay,pause,lag', delay: '300ms', runs: 'bounded,unbounded,haproxy', readers: 4, reportDir: 'report-stale-reads', keep: false,
};

export interface PartitionDrillOptions {
  /** How long each partition lasts; the baseline and each recovery last half of it. */
  phaseMs: number;
  /** builtin, haproxy or both (one after the other on the same lab). */
  engines: string;
  /** Clients reading through `lb` on persistent sessions (reconnecting after an error). */
  readers: number;
  /** Clients inserting acknowledged rows through `rw`. */
  writers: number;
  /** Partition master1 too (the primary half). */
  primary: boolean;
  reportDir: string;
  keep: boolean;
  labDir?: string;
  access?: DemoAccess;
}

export const PARTITION_DEFAULTS: PartitionDrillOptions = {
  phaseMs: 10_000, engines: 'builtin,haproxy', readers: 4, writers: 2, primary: true, reportDir: 'report-partition', keep: false,
};

/** The seed's haproxy.cfg knobs (REFERENCE 1) for a drill's HAProxy run: pgsql-check every 10 s, rise 2, fall 3, timeout check 5 s. */
export const SEED_HAPROXY = {
  engine: 'haproxy', check: 'pgsql', interMs: 10_000, fastinterMs: 10_000, downinterMs: 10_000, rise: 2, fall: 3, checkTimeoutMs: 5000,
  connectTimeoutMs: 10_000, clientTimeoutMs: 60_000, serverTimeoutMs: 60_000, retries: 3,
} as const;
