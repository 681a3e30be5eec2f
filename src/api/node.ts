// A node of a lab: its address and role, SQL on it, its life (kill, stop, start), its faults.
import { LabError } from '../common/errors.js';
import { nodeAddress } from '../network/address.js';
import type { NodeRecord } from '../lab/state.js';
import { queryRows } from '../postgres/client.js';
import { crashNode, nodeAction, type CrashResult, type NodeActionResult } from '../commands/node.js';
import { replicaFollow, type FollowResult } from '../commands/follow.js';
import { nodeRewind, type RewindResult } from '../commands/rewind.js';
import { faultDelay, faultHeal, faultLag, faultLoss, faultPartition, faultPause, type FaultResult, type HealResult } from '../commands/fault.js';
import type { FaultKind } from '../lab/state.js';
import { Connectable, type ConnectionAccess } from './connection.js';
import { wholeNumber, type PromoteOptions } from './options.js';
import type { LabCore } from './core.js';

export class LabNode extends Connectable {
  /** @internal Lab.node(name) makes them. */
  constructor(
    private readonly lab: LabCore,
    readonly name: string,
  ) {
    super();
  }

  private get current(): NodeRecord {
    return this.lab.record(this.name);
  }

  get role(): NodeRecord['role'] {
    return this.current.role;
  }

  get port(): number {
    return this.current.port;
  }

  /** 127.0.0.1, or the node's own address in a lab with hosts. */
  get host(): string {
    return nodeAddress(this.current);
  }

  get datadir(): string {
    return this.current.datadir;
  }

  /** The node this replica streams from (undefined for the primary). */
  get upstream(): string | undefined {
    return this.current.upstream ?? undefined;
  }

  /** A delayed standby's recovery_min_apply_delay in ms (`addReplica({ applyDelayMs })`); undefined when it has none. */
  get applyDelayMs(): number | undefined {
    return this.current.applyDelayMs;
  }

  protected endpoint(): { host: string; port: number } {
    return { host: this.host, port: this.port };
  }

  protected connectionAccess(): ConnectionAccess {
    return this.lab.access();
  }

  /** Rows of one statement, on a connection of its own (3 s to connect). */
  query<R extends Record<string, unknown> = Record<string, unknown>>(sql: string, params: unknown[] = [], options: { database?: string; timeoutMs?: number } = {}): Promise<R[]> {
    const record = this.current;
    return this.lab.run(() =>
      queryRows<R>({ host: nodeAddress(record), port: record.port, user: this.lab.access().user, database: options.database, ...(options.timeoutMs ? { queryTimeoutMs: options.timeoutMs } : {}) }, sql, params),
    );
  }

  /** A WAL position of this node: its insert/flush position on a primary, receive/replay on a replica. */
  async lsn(which: 'insert' | 'flush' | 'receive' | 'replay'): Promise<string | null> {
    const fn = { insert: 'pg_current_wal_insert_lsn()', flush: 'pg_current_wal_flush_lsn()', receive: 'pg_last_wal_receive_lsn()', replay: 'pg_last_wal_replay_lsn()' }[which];
    if (!fn) throw new LabError('USAGE', `node.lsn: which must be 'insert', 'flush', 'receive' or 'replay', got ${JSON.stringify(which)}`);
    const [row] = await this.query<{ lsn: string | null }>(`SELECT ${fn}::text AS lsn`);
    return row?.lsn ?? null;
  }

  /** SIGKILL to the postmaster (the lab still expects it running: `lab status` says crashed). */
  kill(): Promise<NodeActionResult> {
    return this.lab.run(() => nodeAction(this.lab.globalOptions, this.name, 'kill'));
  }

  /**
   * A host crash: SIGKILL to the postmaster and every process it started at once (kill() signals the
   * postmaster only, as the seed did, and its backends linger). `isolateMs`: its walsenders are frozen
   * that long first: its standbys hear nothing more while it still acknowledges commits (a partition, then the crash).
   */
  crash(options: { isolateMs?: number } = {}): Promise<CrashResult> {
    wholeNumber('node.crash', 'isolateMs', options.isolateMs, 0, 600_000);
    return this.lab.run(() => crashNode(this.lab.globalOptions, this.name, options.isolateMs ?? 0));
  }

  /** Starts it (again) and waits until it accepts connections. */
  start(options: { timeoutMs?: number } = {}): Promise<NodeActionResult> {
    return this.lab.run(() => nodeAction(this.lab.globalOptions, this.name, 'start', { timeoutMs: options.timeoutMs }));
  }

  stop(options: { mode?: 'smart' | 'fast' | 'immediate' } = {}): Promise<NodeActionResult> {
    return this.lab.run(() => nodeAction(this.lab.globalOptions, this.name, 'stop', { mode: options.mode }));
  }

  restart(): Promise<NodeActionResult> {
    return this.lab.run(() => nodeAction(this.lab.globalOptions, this.name, 'restart'));
  }

  /** Makes this replica the primary (Lab.promote: the former primary stopped, the others follow). */
  async promote(options: PromoteOptions = {}): Promise<LabNode> {
    await this.lab.promote(this.name, options);
    return this;
  }

  /**
   * This replica streams from `upstream` from now on: the lab's primary (the default), or a standby (a
   * cascade); says how it streams (sync state), whether a reload did it (13+) and how long it took.
   */
  follow(upstream?: string): Promise<FollowResult> {
    return this.lab.run(() => replicaFollow(this.lab.globalOptions, this.name, { ...(upstream ? { upstream } : {}) }));
  }

  /**
   * A former primary rewound (pg_rewind, or rebuilt when it cannot be) to stream from `primary` (default
   * the lab's primary); says which way it went and how long it took.
   */
  rewind(options: { primary?: string; timeoutMs?: number } = {}): Promise<RewindResult> {
    return this.lab.run(() => nodeRewind(this.lab.globalOptions, this.name, { ...(options.primary ? { primary: options.primary } : {}), ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}), reporter: this.lab.reporter() }));
  }

  /** SIGSTOP to its processes: a hung server (connections accepted, never answered). */
  pause(): Promise<Fault> {
    return this.fault('pause', () => faultPause(this.lab.globalOptions, this.name));
  }

  /** Its replay paused: it falls behind while it keeps receiving. */
  lag(): Promise<Fault> {
    return this.fault('lag', () => faultLag(this.lab.globalOptions, this.name));
  }

  /** Cut off from the lab's other hosts (a lab with hosts), or from one node only. */
  partition(options: { from?: string } = {}): Promise<Fault> {
    return this.fault('partition', () => faultPartition(this.lab.globalOptions, this.name, options.from));
  }

  /** What it sends held for `ms` (± jitterMs) (a lab with hosts). */
  async delay(ms: number, options: { jitterMs?: number } = {}): Promise<Fault> {
    wholeNumber('node.delay', 'ms', ms, 1, 60_000);
    wholeNumber('node.delay', 'jitterMs', options.jitterMs, 0, 60_000);
    return this.fault('delay', () => faultDelay(this.lab.globalOptions, this.name, ms, options.jitterMs ?? 0));
  }

  /** A share of its packets dropped each way (a lab with hosts). */
  async loss(percent: number): Promise<Fault> {
    wholeNumber('node.loss', 'percent', percent, 1, 100);
    return this.fault('loss', () => faultLoss(this.lab.globalOptions, this.name, percent));
  }

  /** Heals every fault on this node (`lab fault heal NODE`); says what each heal did. */
  heal(): Promise<HealResult> {
    return this.lab.run(() => faultHeal(this.lab.globalOptions, this.name));
  }

  private async fault(kind: FaultKind, apply: () => Promise<FaultResult>): Promise<Fault> {
    const result = await this.lab.run(apply);
    return new Fault(this, kind, result);
  }
}

/** A fault in force on a node; healed by heal() or when disposed (`await using cut = await node.partition()`). */
export class Fault implements AsyncDisposable {
  private healed = false;

  /** @internal LabNode's fault methods make them. */
  constructor(
    readonly node: LabNode,
    readonly kind: FaultKind,
    readonly detail: FaultResult,
  ) {}

  /** Heals the node: every fault on it, not only this one (`lab fault heal NODE`). Twice is a no-op. */
  async heal(): Promise<void> {
    if (this.healed) return;
    this.healed = true;
    await this.node.heal();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.heal().catch(() => undefined);
  }
}
