// The library's options, checked once at the edge: a wrong property is a one-line LabError naming it
// (the CLI checks its flags the same way in src/cli/).
import type { RestoreTarget } from '../commands/restore.js';
import { LabError } from '../common/errors.js';
import { checkApplyDelayMs } from '../lab/apply-delay.js';
import type { AuthMethod, TlsMode } from '../lab/access.js';
import type { RuntimeName } from '../lab/global-options.js';
import type { CheckType, PoolKind } from '../balancer/config.js';
import type { WorkloadOptions, WorkloadSample } from '../workload/types.js';

/** What the lab tells a caller while it works: steps, progress of a long step, programs' output, log lines. */
export type LabEvent =
  | { type: 'step'; message: string }
  | { type: 'progress'; fraction: number; message: string }
  | { type: 'detail'; message: string }
  | { type: 'log'; message: string };

export interface LabStartOptions {
  /**
   * The lab dir. Default: a new temporary dir, removed with the lab: /dev/shm/pglab-* when /dev/shm is a
   * tmpfs with 2 GiB free (the data dirs in memory), else $TMPDIR/pglab-*. A dir that already holds a lab
   * is refused (use Lab.open).
   */
  dir?: string;
  /** Streaming replicas of the primary, named replica1..N (default 0). */
  replicas?: number;
  /** The primary's port. Default: a free port (each replica gets one too). */
  port?: number;
  /** A PostgreSQL major (11-18) or a bin dir. Default: the machine's own PostgreSQL (pg_config, else Debian's), as the CLI picks it. */
  pg?: number | string;
  /** scram (default, a generated password) or trust. */
  auth?: AuthMethod;
  /** on (default), required (TCP only over TLS) or off. */
  tls?: TlsMode;
  /** process (default) or docker. */
  runtime?: RuntimeName;
  /** Each node on a host of its own (a network namespace): needed for partition, delay and loss. */
  hosts?: boolean;
  /** Synchronous replicas (synchronous_standby_names). */
  sync?: boolean;
  /** WAL archived into <lab-dir>/archive (`lab master start --archive`): lab.backup(), lab.restorePoint(), lab.restore(). */
  archive?: boolean;
  /** The OS user PostgreSQL runs as when the caller is root (default postgres). */
  osUser?: string;
  /** The image of a docker lab's nodes. */
  image?: string;
  /**
   * Where the cached initdb template of each major and settings lives (the CLI's LAB_INITDB_TEMPLATE):
   * a dir, or false to run initdb every time. Default: /var/cache/pglab/templates as root, else a templates dir beside the user's PostgreSQL cache.
   */
  initdbTemplate?: string | false;
  /**
   * Keep the lab dir when the lab is closed: never (default), always, or on-failure (when a call on the
   * lab failed, or the lab failed to start); its nodes are stopped and `keptDir` says where it is.
   */
  keep?: boolean | 'on-failure';
  /** Bound on each node's start and on the wait for streaming, in ms (default 60000). */
  timeoutMs?: number;
  onEvent?: (event: LabEvent) => void;
}

export interface LabOpenOptions {
  osUser?: string;
  onEvent?: (event: LabEvent) => void;
}

export interface ReplicaOptions {
  /** Default: the first free replicaN. */
  name?: string;
  /** Default: a free port. */
  port?: number;
  /** Default: <lab dir>/<name>. */
  datadir?: string;
  /** A synchronous standby (in the primary's synchronous_standby_names); only a standby of the primary. */
  sync?: boolean;
  /** The node it is copied from and streams from; a replica makes it a cascading standby. Default: the primary. */
  upstream?: string;
  /** A delayed standby: recovery_min_apply_delay in ms (1 to 86400000); not with sync. A re-added replica keeps its own unless given. */
  applyDelayMs?: number;
  timeoutMs?: number;
}

export interface SubscriberOptions {
  /** Tables of the primary's postgres database to publish: ['t1', 'app.t2'] or 't1,app.t2'. */
  tables: string[] | string;
  /** Default: the first free subN. */
  name?: string;
  /** Default: a free port. */
  port?: number;
  /** Default: <lab dir>/<name>. */
  datadir?: string;
  /** The publication made on the primary (default pglab_pub_NAME). */
  publication?: string;
  /** What is published: some of insert, update, delete, truncate (default all). */
  publish?: ('insert' | 'update' | 'delete' | 'truncate')[];
  /** Bound on the initial sync; default 120 s. */
  timeoutMs?: number;
}

export interface BalancerOptions {
  /** Default lb, lb2, ... */
  name?: string;
  /** replicas (default), primary or all. */
  pool?: PoolKind;
  /** sql (default: role and lag aware), pgsql, tcp or none. */
  check?: CheckType;
  balance?: 'roundrobin' | 'leastconn';
  /** Where clients connect. Default 127.0.0.1 on a free port. */
  host?: string;
  port?: number;
  interMs?: number;
  fastinterMs?: number;
  downinterMs?: number;
  rise?: number;
  fall?: number;
  checkTimeoutMs?: number;
  /** A replica further behind than this is taken out of the pool (sql check). */
  maxLagBytes?: number;
  maxLagMs?: number;
  /** passthrough (default) or terminate (reads TLS sessions: routes encrypted cancels by key). */
  tls?: 'passthrough' | 'terminate';
  /** HAProxy's `timeout connect`, `timeout client`, `timeout server` and `retries`. */
  connectTimeoutMs?: number;
  clientTimeoutMs?: number;
  serverTimeoutMs?: number;
  retries?: number;
}

/** A balancer in a process of its own (lab.balancerProcess): it outlives the program unless stopped. */
export interface BalancerProcessOptions extends BalancerOptions {
  /** builtin (default: pglab's balancer, the daemon `lab balancer start` runs) or haproxy (Debian's HAProxy, same settings). */
  engine?: 'builtin' | 'haproxy';
  /** The stats listener's port on 127.0.0.1. Default: a free port. */
  statsPort?: number;
}

/** `lab workload run`'s options (mode 'select' is pgbench -S, 'tpcb' pgbench's default), and where and how to report. */
export interface WorkloadRunOptions
  extends Pick<WorkloadOptions, 'mode' | 'durationMs' | 'connectPerTx' | 'maxRate' | 'maxTransactions' | 'tolerateErrors' | 'connectTimeoutMs' | 'queryTimeoutMs'> {
  /** Concurrent clients (default 4). */
  clients?: number;
  /** Default 'postgres' (where lab.initBench() made pgbench's tables). */
  database?: string;
  signal?: AbortSignal;
  /** Each second's figures (ops, errors, latency, per server). */
  onSample?: (sample: WorkloadSample) => void;
}

export interface PromoteOptions {
  /** The other replicas follow the new primary (default), or are left as they are. */
  others?: 'follow' | 'leave';
  /** The former primary: left stopped, waiting for a rewind (default), or rewound now to follow the new one. */
  formerPrimary?: 'leave' | 'rewind';
  timeoutMs?: number;
}

export interface SwitchoverOptions {
  /** Refused when the target's replay is further behind than this many bytes; default 1 MiB. */
  maxLagBytes?: number;
  /** Bound on each step's wait; default 60000. */
  timeoutMs?: number;
}

const START_KEYS = ['dir', 'replicas', 'port', 'pg', 'auth', 'tls', 'runtime', 'hosts', 'sync', 'archive', 'osUser', 'image', 'initdbTemplate', 'keep', 'timeoutMs', 'onEvent'];
const OPEN_KEYS = ['osUser', 'onEvent'];
const REPLICA_KEYS = ['name', 'port', 'datadir', 'sync', 'upstream', 'applyDelayMs', 'timeoutMs'];
const BALANCER_KEYS = ['name', 'pool', 'check', 'balance', 'host', 'port', 'interMs', 'fastinterMs', 'downinterMs', 'rise', 'fall', 'checkTimeoutMs', 'maxLagBytes', 'maxLagMs', 'tls', 'connectTimeoutMs', 'clientTimeoutMs', 'serverTimeoutMs', 'retries'];
const BALANCER_PROCESS_KEYS = [...BALANCER_KEYS, 'engine', 'statsPort'];
const SUBSCRIBER_KEYS = ['tables', 'name', 'port', 'datadir', 'publication', 'publish', 'timeoutMs'];

function usage(where: string, message: string): LabError {
  return new LabError('USAGE', `${where}: ${message}`);
}

function known(where: string, options: object, keys: string[]): void {
  if (options === null || typeof options !== 'object') throw usage(where, `options must be an object, got ${options === null ? 'null' : typeof options}`);
  for (const key of Object.keys(options)) {
    if (!keys.includes(key)) throw usage(where, `unknown option "${key}" (known: ${keys.join(', ')})`);
  }
}

function oneOf<T extends string>(where: string, name: string, value: unknown, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !allowed.includes(value as T)) throw usage(where, `${name} must be ${allowed.map((a) => `'${a}'`).join(' or ')}, got ${JSON.stringify(value)}`);
  return value as T;
}

export function wholeNumber(where: string, name: string, value: unknown, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw usage(where, `${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`);
  return value;
}

function bool(where: string, name: string, value: unknown): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw usage(where, `${name} must be true or false, got ${JSON.stringify(value)}`);
  return value;
}

function text(where: string, name: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '') throw usage(where, `${name} must be a non-empty string, got ${JSON.stringify(value)}`);
  return value;
}

function callback(where: string, name: string, value: unknown): ((event: LabEvent) => void) | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') throw usage(where, `${name} must be a function, got ${typeof value}`);
  return value as (event: LabEvent) => void;
}

export function checkStartOptions(options: LabStartOptions): LabStartOptions {
  const where = 'Lab.start';
  known(where, options, START_KEYS);
  const pg = options.pg;
  if (pg !== undefined && !(typeof pg === 'number' && Number.isInteger(pg) && pg >= 9) && !(typeof pg === 'string' && pg !== '')) {
    throw usage(where, `pg must be a major version (e.g. 17) or a bin dir, got ${JSON.stringify(pg)}`);
  }
  const keep = options.keep;
  if (keep !== undefined && typeof keep !== 'boolean' && keep !== 'on-failure') throw usage(where, `keep must be true, false or 'on-failure', got ${JSON.stringify(keep)}`);
  return {
    dir: text(where, 'dir', options.dir),
    replicas: wholeNumber(where, 'replicas', options.replicas, 0, 16),
    port: wholeNumber(where, 'port', options.port, 1, 65535),
    pg,
    auth: oneOf(where, 'auth', options.auth, ['scram', 'trust'] as const),
    tls: oneOf(where, 'tls', options.tls, ['on', 'off', 'required'] as const),
    runtime: oneOf(where, 'runtime', options.runtime, ['process', 'docker'] as const),
    hosts: bool(where, 'hosts', options.hosts),
    sync: bool(where, 'sync', options.sync),
    archive: bool(where, 'archive', options.archive),
    osUser: text(where, 'osUser', options.osUser),
    image: text(where, 'image', options.image),
    initdbTemplate: options.initdbTemplate === false ? false : text(where, 'initdbTemplate', options.initdbTemplate),
    keep,
    timeoutMs: wholeNumber(where, 'timeoutMs', options.timeoutMs, 1, 3_600_000),
    onEvent: callback(where, 'onEvent', options.onEvent),
  };
}

export function checkOpenOptions(options: LabOpenOptions): LabOpenOptions {
  known('Lab.open', options, OPEN_KEYS);
  return { osUser: text('Lab.open', 'osUser', options.osUser), onEvent: callback('Lab.open', 'onEvent', options.onEvent) };
}

export interface RestoreNodeOptions {
  /** The new node's name (default: the first free restoredN). */
  name?: string;
  /** Default: a free port. */
  port?: number;
  /** Default: <lab dir>/<name>. */
  datadir?: string;
  /** Exactly one: { name } (a restore point), { time }, { lsn }, { xid }, or { immediate: true }. */
  target: RestoreTarget;
  /** Stay in recovery, replay paused at the target. */
  pause?: boolean;
  /** Bound on the start and the wait for the target, in ms (default 120000). */
  timeoutMs?: number;
}

const RESTORE_KEYS = ['name', 'port', 'datadir', 'target', 'pause', 'timeoutMs'];

export function checkRestoreOptions(options: RestoreNodeOptions): RestoreNodeOptions {
  const where = 'lab.restore';
  known(where, options, RESTORE_KEYS);
  if (typeof options.target !== 'object' || options.target === null) throw usage(where, 'target must be one of { name }, { time }, { lsn }, { xid }, { immediate: true }');
  return {
    name: text(where, 'name', options.name),
    port: wholeNumber(where, 'port', options.port, 1, 65535),
    datadir: text(where, 'datadir', options.datadir),
    target: options.target,
    pause: bool(where, 'pause', options.pause),
    timeoutMs: wholeNumber(where, 'timeoutMs', options.timeoutMs, 1, 3_600_000),
  };
}

export function checkReplicaOptions(options: ReplicaOptions): ReplicaOptions {
  const where = 'lab.addReplica';
  known(where, options, REPLICA_KEYS);
  return {
    name: text(where, 'name', options.name),
    port: wholeNumber(where, 'port', options.port, 1, 65535),
    datadir: text(where, 'datadir', options.datadir),
    sync: bool(where, 'sync', options.sync),
    upstream: text(where, 'upstream', options.upstream),
    applyDelayMs: options.applyDelayMs === undefined ? undefined : checkApplyDelayMs(options.applyDelayMs, `${where}: applyDelayMs`),
    timeoutMs: wholeNumber(where, 'timeoutMs', options.timeoutMs, 1, 3_600_000),
  };
}

export function checkSubscriberOptions(options: SubscriberOptions): SubscriberOptions {
  const where = 'lab.addSubscriber';
  known(where, options, SUBSCRIBER_KEYS);
  const list = (name: string, value: unknown) => {
    if (value === undefined) return undefined;
    if (typeof value === 'string' && value !== '') return value;
    if (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'string' && v !== '')) return value as string[];
    throw usage(where, `${name} must be a non-empty list of names, got ${JSON.stringify(value)}`);
  };
  const tables = list('tables', options.tables);
  if (tables === undefined) throw usage(where, 'tables is required: the primary\'s tables to publish, e.g. { tables: [\'t1\'] }');
  return {
    tables,
    name: text(where, 'name', options.name),
    port: wholeNumber(where, 'port', options.port, 1, 65535),
    datadir: text(where, 'datadir', options.datadir),
    publication: text(where, 'publication', options.publication),
    publish: list('publish', options.publish) as SubscriberOptions['publish'],
    timeoutMs: wholeNumber(where, 'timeoutMs', options.timeoutMs, 1, 3_600_000),
  };
}

export function checkBalancerOptions(options: BalancerOptions, where = 'lab.balancer', keys = BALANCER_KEYS): BalancerOptions {
  known(where, options, keys);
  const ms = (name: keyof BalancerOptions, min = 1) => wholeNumber(where, name, options[name], min, 86_400_000);
  return {
    name: text(where, 'name', options.name),
    pool: oneOf(where, 'pool', options.pool, ['replicas', 'primary', 'all'] as const),
    check: oneOf(where, 'check', options.check, ['sql', 'pgsql', 'tcp', 'none'] as const),
    balance: oneOf(where, 'balance', options.balance, ['roundrobin', 'leastconn'] as const),
    host: text(where, 'host', options.host),
    port: wholeNumber(where, 'port', options.port, 1, 65535),
    interMs: ms('interMs'),
    fastinterMs: ms('fastinterMs'),
    downinterMs: ms('downinterMs'),
    rise: wholeNumber(where, 'rise', options.rise, 1, 1000),
    fall: wholeNumber(where, 'fall', options.fall, 1, 1000),
    checkTimeoutMs: ms('checkTimeoutMs'),
    maxLagBytes: wholeNumber(where, 'maxLagBytes', options.maxLagBytes, 0, Number.MAX_SAFE_INTEGER),
    maxLagMs: ms('maxLagMs', 0),
    tls: oneOf(where, 'tls', options.tls, ['passthrough', 'terminate'] as const),
    connectTimeoutMs: ms('connectTimeoutMs'),
    clientTimeoutMs: ms('clientTimeoutMs'),
    serverTimeoutMs: ms('serverTimeoutMs'),
    retries: wholeNumber(where, 'retries', options.retries, 0, 1000),
  };
}

export function checkBalancerProcessOptions(options: BalancerProcessOptions): BalancerProcessOptions {
  const where = 'lab.balancerProcess';
  return {
    ...checkBalancerOptions(options, where, BALANCER_PROCESS_KEYS),
    engine: oneOf(where, 'engine', options.engine, ['builtin', 'haproxy'] as const),
    statsPort: wholeNumber(where, 'statsPort', options.statsPort, 1, 65535),
  };
}

export function checkCatchupOptions(options: { timeoutMs?: number }): { timeoutMs?: number } {
  known('lab.waitForCatchup', options, ['timeoutMs']);
  return { timeoutMs: wholeNumber('lab.waitForCatchup', 'timeoutMs', options.timeoutMs, 1, 3_600_000) };
}

export function checkPromoteOptions<T extends { others?: string; formerPrimary?: string; timeoutMs?: number }>(options: T): T {
  const where = 'lab.promote';
  known(where, options, ['others', 'formerPrimary', 'timeoutMs']);
  oneOf(where, 'others', options.others, ['follow', 'leave'] as const);
  oneOf(where, 'formerPrimary', options.formerPrimary, ['leave', 'rewind'] as const);
  wholeNumber(where, 'timeoutMs', options.timeoutMs, 1, 3_600_000);
  return options;
}

export function checkSwitchoverOptions(options: SwitchoverOptions): SwitchoverOptions {
  const where = 'lab.switchover';
  known(where, options, ['maxLagBytes', 'timeoutMs']);
  wholeNumber(where, 'maxLagBytes', options.maxLagBytes, 0, Number.MAX_SAFE_INTEGER);
  wholeNumber(where, 'timeoutMs', options.timeoutMs, 1, 3_600_000);
  return options;
}

export function checkWorkloadOptions(options: WorkloadRunOptions): WorkloadRunOptions {
  const where = 'lab.workload';
  known(where, options, ['mode', 'clients', 'durationMs', 'database', 'connectPerTx', 'maxRate', 'maxTransactions', 'tolerateErrors', 'connectTimeoutMs', 'queryTimeoutMs', 'signal', 'onSample']);
  const mode = oneOf(where, 'mode', options.mode, ['select', 'tpcb'] as const);
  if (!mode) throw usage(where, "mode must be 'select' or 'tpcb', got undefined");
  const durationMs = wholeNumber(where, 'durationMs', options.durationMs, 1, 86_400_000);
  if (durationMs === undefined) throw usage(where, 'durationMs must be a whole number from 1 to 86400000, got undefined');
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw usage(where, 'signal must be an AbortSignal');
  if (options.onSample !== undefined && typeof options.onSample !== 'function') throw usage(where, `onSample must be a function, got ${typeof options.onSample}`);
  return {
    ...options,
    mode,
    durationMs,
    clients: wholeNumber(where, 'clients', options.clients, 1, 10_000),
    database: text(where, 'database', options.database),
    connectPerTx: bool(where, 'connectPerTx', options.connectPerTx),
    maxRate: wholeNumber(where, 'maxRate', options.maxRate, 1, 10_000_000),
    maxTransactions: wholeNumber(where, 'maxTransactions', options.maxTransactions, 1, Number.MAX_SAFE_INTEGER),
    tolerateErrors: bool(where, 'tolerateErrors', options.tolerateErrors),
    connectTimeoutMs: wholeNumber(where, 'connectTimeoutMs', options.connectTimeoutMs, 1, 3_600_000),
    queryTimeoutMs: wholeNumber(where, 'queryTimeoutMs', options.queryTimeoutMs, 1, 3_600_000),
  };
}
