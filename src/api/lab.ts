// The lab as objects: a program (a test suite) starts a primary with replicas, a balancer in front, faults,
// a promotion, and disposes of it all. Each call runs in the lab's own client scope
// (src/postgres/client-env.ts): two labs in one process each log in with their own password and CA, and
// the caller's PG* variables are never touched. The CLI's commands (src/commands/) do the work; this
// layer adds temp dirs, free ports, typed options, waits, events and disposal.
import { chmod, mkdtemp, readFile, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LabError, messageOf } from '../common/errors.js';
import { findFreePorts } from '../common/ports.js';
import type { Reporter } from '../common/reporter.js';
import { accessEnv, accessOf, labPassword, tlsPaths } from '../lab/access.js';
import { nodeAddress } from '../network/address.js';
import { primaryOf, readState, type LabState, type NodeRecord } from '../lab/state.js';
import { refuseSubscriber } from '../lab/subscriber.js';
import type { GlobalOptions } from '../lab/global-options.js';
import { withClientScope } from '../postgres/client-env.js';
import { queryRows } from '../postgres/client.js';
import { startColdStandbys } from '../commands/cold-standbys.js';
import { masterStart } from '../commands/master.js';
import { replicaAdd, replicaRemove } from '../commands/replica.js';
import { destroyLab } from '../commands/destroy.js';
import { nodeAction } from '../commands/node.js';
import { promoteNode, type PromoteResult } from '../commands/promote.js';
import { switchover, type SwitchoverResult } from '../commands/switchover.js';
import { benchInit, type BenchInitResult } from '../commands/bench.js';
import { replicaFollow } from '../commands/follow.js';
import { nodeRewind, rewindMissing } from '../commands/rewind.js';
import { labStatus, type LabStatus } from '../commands/status.js';
import { statBalancer, statReplication, statXact, type BalancersSample } from '../commands/stat.js';
import { faultList, type ListedFault } from '../commands/fault.js';
import type { ReplicationSample } from '../stats/replication-sample.js';
import type { XactSample } from '../stats/xact-sample.js';
import { Balancer, startBalancer } from './balancer.js';
import { forLibrary } from './remedies.js';
import { BalancerProcess, startBalancerProcess } from './balancer-process.js';
import { LabNode } from './node.js';
import { checkBalancerOptions, checkBalancerProcessOptions, checkCatchupOptions, checkOpenOptions, checkPromoteOptions, checkReplicaOptions, checkRestoreOptions, checkStartOptions, checkSwitchoverOptions, checkWorkloadOptions, wholeNumber, type BalancerOptions, type WorkloadRunOptions, type BalancerProcessOptions, type LabEvent, type LabOpenOptions, type LabStartOptions, type PromoteOptions, type ReplicaOptions, type RestoreNodeOptions, type SwitchoverOptions } from './options.js';
import { labBackup, labRestorePoint, pruneArchive, type BackupResult, type PruneResult, type RestorePointResult } from '../commands/archive.js';
import { nodeRestore, type RestoreResult } from '../commands/restore.js';

export type { PromoteOptions } from './options.js';
export type { SwitchoverResult } from '../commands/switchover.js';
import { Connectable, type ConnectionAccess } from './connection.js';
import { checkSubscriberOptions, type SubscriberOptions } from './options.js';
import { runWorkload } from '../workload/run-workload.js';
import type { WorkloadResult } from '../workload/types.js';

export interface CatchupOptions {
  /** Default 30000. */
  timeoutMs?: number;
}

export class Lab implements AsyncDisposable {
  /** The lab dir: lab.json, logs, and (by default) the data dirs. */
  readonly dir: string;
  /** Set when the lab was closed with its dir kept (keep: true, or 'on-failure' after a failure). */
  keptDir: string | undefined;
  private snapshot: LabState;
  private password: string | undefined;
  private ca: Buffer | undefined;
  private closed = false;
  private failed = false;
  private readonly balancers = new Set<Balancer>();
  private readonly global: GlobalOptions;

  private constructor(
    global: GlobalOptions,
    snapshot: LabState,
    private readonly own: { madeDir: boolean; removeOnClose: boolean; keep: boolean | 'on-failure'; onEvent?: (event: LabEvent) => void },
  ) {
    this.global = global;
    this.dir = global.labDir;
    this.snapshot = snapshot;
  }

  /**
   * A new lab: a primary (master1) and `replicas` streaming replicas, each on a free port, scram + TLS
   * unless asked otherwise. A start that fails releases what it had started (and says where the dir is
   * when kept).
   */
  static async start(options: LabStartOptions = {}): Promise<Lab> {
    const opts = checkStartOptions(options);
    const madeDir = opts.dir === undefined;
    const labDir = madeDir ? await makeTempLabDir() : path.resolve(opts.dir!);
    if (!madeDir && (await readState(labDir).catch(() => undefined))) {
      throw new LabError('CONFLICT', `Lab.start: ${labDir} already holds a lab: attach to it with Lab.open(dir), or pass another dir`, { facts: { labDir } });
    }
    const global: GlobalOptions = {
      labDir, notice: noticeFor(opts.onEvent),
      ...(opts.pg !== undefined ? { pg: String(opts.pg) } : {}), ...(opts.osUser ? { osUser: opts.osUser } : {}), ...(opts.runtime ? { runtime: opts.runtime } : {}),
      ...(opts.initdbTemplate !== undefined ? { initdbTemplate: opts.initdbTemplate } : {}),
    };
    const reporter = reporterFor(opts.onEvent);
    const timeoutMs = opts.timeoutMs ?? 60_000;
    let lab: Lab | undefined;
    try {
      const count = opts.replicas ?? 0;
      const free = (await findFreePorts(count + 1)).filter((p) => p !== opts.port);
      const port = opts.port ?? free.pop()!;
      const names = Array.from({ length: count }, (_, i) => `replica${i + 1}`);
      const standbys = names.map((name, i) => ({ name, port: free[i]! }));
      // The replicas are copies of the master's data dir made before its first start (process runtime,
      // initdb template): no checkpoint or base backup to wait for. Elsewhere masterStart makes none.
      const made = await withClientScope(() =>
        masterStart(global, { port, reporter, timeoutMs, auth: opts.auth, tls: opts.tls, hosts: opts.hosts, archive: opts.archive, standbys, ...(opts.image ? { image: opts.image } : {}) }),
      );
      lab = new Lab(global, (await readState(labDir))!, { madeDir, removeOnClose: true, keep: opts.keep ?? false, onEvent: opts.onEvent });
      await lab.refresh();
      const cold = made.standbys ?? [];
      if (cold.length > 0) await lab.run(() => startColdStandbys(global, cold, { sync: opts.sync, timeoutMs, reporter }));
      // The others in parallel: each add takes its own base backup and slot; lab.json is updated under its lock.
      const rest = standbys.filter((s) => !cold.includes(s.name));
      const results = await Promise.allSettled(rest.map((s) => lab!.addReplica({ name: s.name, port: s.port, sync: opts.sync, timeoutMs })));
      const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failure) throw failure.reason;
      return lab;
    } catch (error) {
      const kept = opts.keep === true || opts.keep === 'on-failure';
      if (lab) {
        lab.failed = true;
        await lab.close().catch(() => undefined);
      } else if (!kept) {
        // No Lab yet: what lab.json recorded (a master, standbys) is this start's (a given dir held no lab,
        // checked above) and goes; a temp dir is ours too.
        await withClientScope(() => destroyLab(global, { yes: true, stopMode: 'immediate' })).catch(() => undefined);
        if (madeDir) await rm(labDir, { recursive: true, force: true }).catch(() => undefined);
      }
      throw withFacts(forLibrary(error), { labDir, ...(kept ? { keptDir: labDir } : {}) });
    }
  }

  /** A lab that exists (made by the CLI or by another program). Closing it detaches; destroy() removes it. */
  static async open(dir: string, options: LabOpenOptions = {}): Promise<Lab> {
    const opts = checkOpenOptions(options);
    if (typeof dir !== 'string' || dir === '') throw new LabError('USAGE', `Lab.open: dir must be a lab dir path, got ${JSON.stringify(dir)}`);
    const labDir = path.resolve(dir);
    const state = await readState(labDir);
    if (!state) throw new LabError('NOT_FOUND', `Lab.open: no lab in ${labDir} (no lab.json): make one with Lab.start({ dir }) or \`lab master start\``, { facts: { labDir } });
    const lab = new Lab({ labDir, notice: noticeFor(opts.onEvent), ...(opts.osUser ? { osUser: opts.osUser } : {}) }, state, { madeDir: false, removeOnClose: false, keep: true, onEvent: opts.onEvent });
    await lab.refresh();
    return lab;
  }

  /** The lab's primary. */
  get primary(): LabNode {
    const record = primaryOf(this.snapshot);
    if (!record) throw new LabError('STATE', `The lab in ${this.dir} has no primary`);
    return new LabNode(this, record.name);
  }

  /** The replicas, in the order they were added. */
  get replicas(): LabNode[] {
    return this.snapshot.nodes.filter((n) => n.role === 'replica').map((n) => new LabNode(this, n.name));
  }

  get nodes(): LabNode[] {
    return this.snapshot.nodes.map((n) => new LabNode(this, n.name));
  }

  /** A node by name; an unknown name is an error listing the lab's nodes. */
  node(name: string): LabNode {
    this.record(name);
    return new LabNode(this, name);
  }

  /** PostgreSQL's version of the lab's nodes ("17.2") and its major. */
  get version(): { version: string; major: number } {
    return { version: this.snapshot.pg.version, major: this.snapshot.pg.major };
  }

  /** The libpq environment for this lab's primary: what `lab env` prints (PGHOST, PGPORT, PGPASSFILE, PGSSLMODE...). */
  env(): Record<string, string> {
    const primary = primaryOf(this.snapshot);
    return { ...(primary ? { PGHOST: nodeAddress(primary), PGPORT: String(primary.port) } : {}), ...accessEnv(this.dir, this.snapshot) };
  }

  /** A new streaming replica of the primary. */
  async addReplica(options: ReplicaOptions = {}): Promise<LabNode> {
    const opts = checkReplicaOptions(options);
    const name = opts.name ?? this.freeReplicaName();
    // A replica the lab has (a rebuild): its recorded port and data dir unless others are given.
    const known = this.snapshot.nodes.find((n) => n.name === name);
    const port = opts.port ?? known?.port ?? (await findFreePorts(1))[0]!;
    await this.run(() => replicaAdd(this.global, name, opts.datadir ?? known?.datadir ?? path.join(this.dir, name), port, { reporter: reporterFor(this.own.onEvent), sync: opts.sync, upstream: opts.upstream, applyDelayMs: opts.applyDelayMs, timeoutMs: opts.timeoutMs }));
    return new LabNode(this, name);
  }

  /** A base backup of the primary into <lab dir>/backups/<id> (a lab started with archive: true), its end archived. */
  async backup(): Promise<BackupResult> {
    return this.run(() => labBackup(this.global, { reporter: reporterFor(this.own.onEvent) }));
  }

  /** pg_create_restore_point(name) on the primary, archived when this returns. */
  async restorePoint(name: string): Promise<RestorePointResult> {
    return this.run(() => labRestorePoint(this.global, name));
  }

  /** The archive's WAL files before backup `before` (b1, b2...), the older backups and their restore points removed. */
  async pruneArchive(before: string): Promise<PruneResult> {
    return this.run(() => pruneArchive(this.global, before));
  }

  /**
   * Point-in-time recovery into a new standalone node (role 'restored'): the newest base backup before the
   * target, WAL from the archive, promoted at the target (or paused there with pause: true).
   */
  async restore(options: RestoreNodeOptions): Promise<LabNode & { restored: RestoreResult }> {
    const opts = checkRestoreOptions(options);
    const taken = new Set(this.snapshot.nodes.map((n) => n.name));
    let name = opts.name;
    for (let i = 1; name === undefined; i++) if (!taken.has(`restored${i}`)) name = `restored${i}`;
    const port = opts.port ?? (await findFreePorts(1))[0]!;
    const restored = await this.run(() => nodeRestore(this.global, name, opts.datadir ?? path.join(this.dir, name), port, { target: opts.target, pause: opts.pause, timeoutMs: opts.timeoutMs, reporter: reporterFor(this.own.onEvent) }));
    return Object.assign(new LabNode(this, name), { restored });
  }

  /** Stops a replica and removes it (its data dir, its slot) from the lab. */
  async removeReplica(name: string): Promise<void> {
    await this.run(() => replicaRemove(this.global, name));
  }

  /**
   * A logical subscriber: a new cluster with the tables' definitions, subscribed to a new publication of
   * them on the primary; returns once the initial sync ended (every table ready).
   */
  async addSubscriber(options: SubscriberOptions): Promise<LabNode> {
    const opts = checkSubscriberOptions(options);
    const name = opts.name ?? this.freeName('sub');
    const port = opts.port ?? (await findFreePorts(1))[0]!;
    const { logicalAdd } = await import('../commands/logical.js');
    await this.run(() => logicalAdd(this.global, name, opts.datadir ?? path.join(this.dir, name), port, { tables: opts.tables, publication: opts.publication, publish: opts.publish, timeoutMs: opts.timeoutMs, reporter: reporterFor(this.own.onEvent) }));
    return new LabNode(this, name);
  }

  /** Drops a subscriber's subscription (and its slot on the primary) and publication, then the node. */
  async removeSubscriber(name: string): Promise<void> {
    const { logicalRemove } = await import('../commands/logical.js');
    await this.run(() => logicalRemove(this.global, name));
  }

  /** The logical subscribers, in the order they were added. */
  get subscribers(): LabNode[] {
    return this.snapshot.nodes.filter((n) => n.role === 'subscriber').map((n) => new LabNode(this, n.name));
  }

  /**
   * Waits until every running replica has replayed the primary's WAL as of this call. On timeout: a
   * TIMEOUT LabError whose facts hold the primary's pg_stat_replication rows and the replicas behind.
   */
  async waitForCatchup(options: CatchupOptions = {}): Promise<void> {
    const timeoutMs = checkCatchupOptions(options).timeoutMs ?? 30_000;
    await this.refresh(); // another program (the CLI) may have moved the primary
    const primary = this.primary;
    const [{ lsn: target }] = await primary.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    const deadline = Date.now() + timeoutMs;
    const replicas = this.snapshot.nodes.filter((n) => n.role === 'replica' && n.phase === 'ready' && n.expected !== 'stopped' && !n.rewindNeeded);
    let behind = replicas.map((n) => n.name);
    while (behind.length > 0) {
      const still: string[] = [];
      for (const name of behind) {
        // A replica not answering yet is polled again, not a failure of the lab's (keep: 'on-failure').
        const record = this.record(name);
        const done = await this.run(() => queryRows<{ ok: boolean }>({ host: nodeAddress(record), port: record.port, user: this.snapshot.dbUser }, 'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [target]), { probe: true })
          .then((rows) => rows[0]?.ok === true, () => false);
        if (!done) still.push(name);
      }
      behind = still;
      if (behind.length === 0) return;
      if (Date.now() >= deadline) {
        const replication = await primary
          .query('SELECT application_name, client_addr::text, state, sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text, sync_state FROM pg_stat_replication ORDER BY application_name')
          .catch((error) => [{ error: messageOf(error) }]);
        this.failed = true;
        throw new LabError('TIMEOUT', `waitForCatchup: ${behind.join(', ')} did not replay up to ${target} within ${timeoutMs} ms`, {
          facts: { target, behind, replication },
          detail: replication.map((row) => JSON.stringify(row)).join('\n'),
        });
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  /**
   * Makes `name` the primary: the former primary is stopped first when it runs (a switchover), the
   * replica promoted, and the others follow it. The former primary waits for a rewind unless asked.
   * Resolves with the new primary, which also says what the promotion did (timeline, time taken).
   */
  async promote(name: string, options: PromoteOptions = {}): Promise<Promotion> {
    checkPromoteOptions(options);
    const others = options.others ?? 'follow';
    const former = primaryOf(this.snapshot);
    // Refused before the former primary is stopped.
    refuseSubscriber(this.record(name), 'promoted');
    const result = await this.run(async () => {
      if (former && former.name !== name) await nodeAction(this.global, former.name, 'stop');
      return promoteNode(this.global, name, { timeoutMs: options.timeoutMs });
    });
    const followed: string[] = [];
    if (others === 'follow') {
      // The former primary's standbys; a cascade stays with its upstream and follows the new timeline through it.
      const ownUpstream = (n: NodeRecord) => n.upstream !== undefined && n.upstream !== former?.name && this.snapshot.nodes.some((u) => u.name === n.upstream);
      for (const replica of this.snapshot.nodes.filter((n) => n.role === 'replica' && n.name !== name && !n.rewindNeeded && n.phase === 'ready' && !ownUpstream(n))) {
        await this.run(() => replicaFollow(this.global, replica.name, { primary: name, timeoutMs: options.timeoutMs }));
        followed.push(replica.name);
      }
    }
    if (former && options.formerPrimary === 'rewind') await this.run(() => nodeRewind(this.global, former.name, { primary: name, timeoutMs: options.timeoutMs, reporter: reporterFor(this.own.onEvent) }));
    return new Promotion(this, name, result, followed);
  }

  /**
   * A planned switchover (`lab switchover NAME`): the primary shut down cleanly, `name` promoted once it
   * has replayed the shutdown checkpoint, the old primary started again as its standby with no rewind,
   * the old primary's other standbys re-pointed. Refused (nothing touched) when `name` is not streaming
   * from the primary, lags more than maxLagBytes, is delayed or has its replay paused. Resolves with each
   * step's time and how long the lab had no primary.
   */
  async switchover(name: string, options: SwitchoverOptions = {}): Promise<SwitchoverResult> {
    checkSwitchoverOptions(options);
    this.record(name);
    return this.run(() => switchover(this.global, name, { ...options, reporter: this.reporter() }));
  }

  /** The built-in balancer, in this process, in front of the replicas (by default). Stopped with the lab. */
  async balancer(options: BalancerOptions = {}): Promise<Balancer> {
    const opts = checkBalancerOptions(options);
    const name = opts.name ?? this.freeBalancerName();
    const balancer = await this.run(() => startBalancer(this, this.global, name, opts));
    this.balancers.add(balancer);
    balancer.onStopped = () => this.balancers.delete(balancer);
    return balancer;
  }

  /**
   * The built-in balancer in a process of its own (the daemon `lab balancer start` runs), or HAProxy
   * (engine: 'haproxy') with the same settings: for measuring, where a balancer in this process would
   * share its event loop with the load. It outlives this program unless stopped; the lab's removal stops it.
   */
  async balancerProcess(options: BalancerProcessOptions = {}): Promise<BalancerProcess> {
    const opts = checkBalancerProcessOptions(options);
    return startBalancerProcess(this, opts.name ?? this.freeBalancerName(), opts);
  }

  /**
   * pglab's load generator (`lab workload run`) against `through`: a node, a balancer, or several (each
   * client starts at its own and moves to the next on a connection error, as seed 004's clients do).
   * pgbench's tables must exist (initBench). Resolves with every second's figures, the errors and a
   * summary (transactions per server, latency percentiles).
   */
  workload(through: Connectable | Connectable[], options: WorkloadRunOptions): Promise<WorkloadResult> {
    const opts = checkWorkloadOptions(options);
    const targets = Array.isArray(through) ? through : [through];
    if (targets.length === 0 || !targets.every((t) => t instanceof Connectable)) throw new LabError('USAGE', 'lab.workload: through must be a node or a balancer of this lab, or a list of them');
    const database = opts.database ?? 'postgres';
    // URLs without the password: the workload's clients log in with the lab's access (its client scope).
    const urls = targets.map((target) => {
      const { host, port, user } = target.connectionConfig({ database });
      return `postgresql://${encodeURIComponent(user)}@${host.includes(':') ? `[${host}]` : host}:${port}/${encodeURIComponent(database)}`;
    });
    return this.run(() =>
      runWorkload(
        {
          urls, concurrency: opts.clients ?? 4, durationMs: opts.durationMs, mode: opts.mode, connectPerTx: opts.connectPerTx, maxRate: opts.maxRate,
          maxTransactions: opts.maxTransactions, tolerateErrors: opts.tolerateErrors, connectTimeoutMs: opts.connectTimeoutMs, queryTimeoutMs: opts.queryTimeoutMs,
        },
        { signal: opts.signal, onSample: opts.onSample },
      ),
    );
  }

  /** Why this lab's nodes have no pg_rewind (node.rewind() then rebuilds from a new base backup), or undefined. */
  pgRewindMissing(): Promise<string | undefined> {
    return this.run(() => rewindMissing(this.global), { probe: true });
  }

  /** pgbench -i on the primary (pgbench's tables, `scale` x 100,000 accounts), with progress as events. */
  initBench(options: { scale?: number; database?: string; signal?: AbortSignal } = {}): Promise<BenchInitResult> {
    wholeNumber('lab.initBench', 'scale', options.scale, 1, 100_000);
    return this.run(() => benchInit(this.global, { scale: options.scale ?? 1, database: options.database, reporter: reporterFor(this.own.onEvent), signal: options.signal }));
  }

  /** Samples: the rows `lab stat replication` and `lab stat xact` print, and the lab's balancers' stats. */
  readonly stat = {
    replication: (): Promise<ReplicationSample> => this.run(() => statReplication(this.global)),
    xact: (options: { database?: string; previous?: XactSample; timeoutMs?: number } = {}): Promise<XactSample> =>
      this.run(() => statXact(this.global, { dbname: options.database, previous: options.previous, ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}) }), { probe: true }),
    balancers: (): Promise<BalancersSample> => this.run(() => statBalancer(this.global, { required: false })),
  };

  /** What `lab status` shows. */
  status(): Promise<LabStatus> {
    return this.run(() => labStatus(this.global));
  }

  /** Faults in force (`lab fault list`). */
  faults(): Promise<ListedFault[]> {
    return this.run(() => faultList(this.global));
  }

  /** Keep the lab dir when the lab is closed (as keep: true would). */
  keep(): void {
    this.own.keep = true;
  }

  /**
   * Stops the lab's balancers, then removes the lab (nodes, data dirs, lab dir) unless it is kept; a lab
   * attached with Lab.open is only detached (its nodes keep running). Twice is a no-op.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const balancer of [...this.balancers]) await balancer.stop().catch(() => undefined);
    if (!this.own.removeOnClose) return;
    const keep = this.own.keep === true || (this.own.keep === 'on-failure' && this.failed);
    if (keep) {
      for (const node of [...this.snapshot.nodes].reverse()) await withClientScope(() => nodeAction(this.global, node.name, 'stop')).catch(() => undefined);
      this.keptDir = this.dir;
      this.emit({ type: 'log', message: `lab kept in ${this.dir} (its nodes are stopped; \`lab --lab-dir ${this.dir} destroy --yes\` removes it)` });
      return;
    }
    await this.removeAll();
  }

  /** Removes the lab whatever its keep setting, also one attached with Lab.open. */
  async destroy(): Promise<void> {
    if (!this.closed) for (const balancer of [...this.balancers]) await balancer.stop().catch(() => undefined);
    this.closed = true;
    this.keptDir = undefined;
    await this.removeAll();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---- for LabNode, Balancer and Fault (same package) ----

  /** @internal Runs a command in the lab's client scope; a failure marks the lab failed (keep: 'on-failure'). */
  async run<T>(fn: () => Promise<T>, options: { probe?: boolean } = {}): Promise<T> {
    if (this.closed) throw new LabError('STATE', `This lab (${this.dir}) was closed: start a new one, or Lab.open() a kept dir`);
    try {
      return await withClientScope(fn, this.clientVars());
    } catch (error) {
      if (!options.probe) this.failed = true;
      throw forLibrary(error);
    } finally {
      // A probe (a poll's read) changes nothing in lab.json: no re-read after it.
      if (!options.probe) await this.refresh().catch(() => undefined);
    }
  }

  /** @internal */
  record(name: string): NodeRecord {
    const record = this.snapshot.nodes.find((n) => n.name === name);
    if (!record) throw new LabError('NOT_FOUND', `Unknown node "${name}" (nodes in this lab: ${this.snapshot.nodes.map((n) => n.name).join(', ') || 'none'})`);
    return record;
  }

  /** @internal */
  access(): ConnectionAccess {
    const tls = accessOf(this.snapshot).tls !== 'off';
    return { user: this.snapshot.dbUser, password: this.password, ca: tls ? this.ca : undefined, caFile: tls ? tlsPaths(this.dir).caCert : undefined, env: accessEnv(this.dir, this.snapshot) };
  }

  /** @internal A wait that timed out (Balancer.waitFor): the lab failed, for keep: 'on-failure'. */
  markFailed(): void {
    this.failed = true;
  }

  /**
   * @internal Runs `fn` (and every call, timer and socket it starts) with this lab's client access:
   * a drill's own clients (its load) log in with the lab's password and CA.
   */
  within<T>(fn: () => T): T {
    return withClientScope(fn, this.clientVars());
  }

  /** @internal */
  reporter(): Reporter {
    return reporterFor(this.own.onEvent);
  }

  /** @internal */
  emit(event: LabEvent): void {
    tell(this.own.onEvent, event);
  }

  /** @internal */
  get globalOptions(): GlobalOptions {
    return this.global;
  }

  private clientVars(): Record<string, string> {
    const { NODE_EXTRA_CA_CERTS: _forNodePrograms, ...env } = accessEnv(this.dir, this.snapshot);
    return env;
  }

  private async refresh(): Promise<void> {
    const state = await readState(this.dir);
    if (!state) return;
    this.snapshot = state;
    this.password = await labPassword(this.dir, state).catch(() => undefined);
    this.ca = accessOf(state).tls === 'off' ? undefined : await readFile(tlsPaths(this.dir).caCert).catch(() => undefined);
  }

  private async removeAll(): Promise<void> {
    const exists = await readState(this.dir).catch(() => undefined);
    // Immediate: the data dirs go next, a shutdown checkpoint would be time for nothing.
    if (exists) await withClientScope(() => destroyLab(this.global, { yes: true, stopMode: 'immediate' }));
    if (this.own.madeDir) await rm(this.dir, { recursive: true, force: true });
  }

  private freeReplicaName(): string {
    for (let i = 1; ; i += 1) if (!this.snapshot.nodes.some((n) => n.name === `replica${i}`)) return `replica${i}`;
  }

  private freeName(prefix: string): string {
    for (let i = 1; ; i += 1) if (!this.snapshot.nodes.some((n) => n.name === `${prefix}${i}`)) return `${prefix}${i}`;
  }

  private freeBalancerName(): string {
    const taken = new Set(this.snapshot.balancers.map((b) => b.name));
    if (!taken.has('lb')) return 'lb';
    for (let i = 2; ; i += 1) if (!taken.has(`lb${i}`)) return `lb${i}`;
  }
}

/** The new primary, and what its promotion did. */
export class Promotion extends LabNode {
  /** @internal Lab.promote makes it. */
  constructor(
    lab: Lab,
    name: string,
    private readonly result: PromoteResult,
    /** The replicas re-pointed to it (others: 'follow'). */
    readonly followed: string[],
  ) {
    super(lab, name);
  }

  /** Its timeline after the promotion. */
  get timeline(): number {
    return this.result.timeline;
  }

  /** synchronous_standby_names set on it ('' when asynchronous). */
  get synchronousStandbyNames(): string {
    return this.result.synchronousStandbyNames;
  }

  /** The promotion itself (pg_promote until it accepts writes), in ms. */
  get elapsedMs(): number {
    return this.result.elapsedMs;
  }

  /**
   * The WAL it had received and applied when promoted (the receive and replay LSNs just before), and the
   * apply delay it had: a delayed standby applies what it held back at the promote (unappliedBytes).
   */
  get walAtPromote(): PromoteResult['walAtPromote'] {
    return this.result.walAtPromote;
  }

  /** The primary before it (left stopped, waiting for a rewind, unless formerPrimary: 'rewind'). */
  get previousPrimary(): string | null {
    return this.result.previousPrimary;
  }
}

const SHARED_TMPFS = '/dev/shm';
const TMPFS_ROOM = 2 * 1024 ** 3;

/**
 * Where a temp lab goes: /dev/shm (memory: a data dir is ~1,000 files, and creating them costs ~0.3 ms each
 * on this machine's disk, nothing in memory) when it is a tmpfs with 2 GiB free, else the system's temp dir.
 */
async function tempRoot(): Promise<string> {
  const fs = await statfs(SHARED_TMPFS).catch(() => undefined);
  const TMPFS_MAGIC = 0x01021994;
  return fs && fs.type === TMPFS_MAGIC && fs.bavail * fs.bsize >= TMPFS_ROOM ? SHARED_TMPFS : tmpdir();
}

/** A fresh lab dir under /dev/shm or the system's temp dir, traversable by the servers' OS user. */
async function makeTempLabDir(): Promise<string> {
  const dir = await mkdtemp(path.join(await tempRoot(), 'pglab-'));
  await chmod(dir, 0o755);
  return dir;
}

/** An event to the caller's onEvent: a caller's renderer failing is not the lab's failure. */
function tell(onEvent: ((event: LabEvent) => void) | undefined, event: LabEvent): void {
  try {
    onEvent?.(event);
  } catch {
    // ignored
  }
}

/** A line for the person (a docker image built before first use) as a step event. */
function noticeFor(onEvent: ((event: LabEvent) => void) | undefined): (message: string) => void {
  return (message) => tell(onEvent, { type: 'step', message });
}

function reporterFor(onEvent: ((event: LabEvent) => void) | undefined): Reporter {
  const emit = (event: LabEvent) => tell(onEvent, event);
  return {
    step: (message) => emit({ type: 'step', message }),
    progress: (fraction, message) => emit({ type: 'progress', fraction, message }),
    detail: (message) => emit({ type: 'detail', message }),
  };
}

function withFacts(error: unknown, facts: Record<string, unknown>): unknown {
  if (error instanceof LabError) return new LabError(error.code, error.message, { detail: error.detail, cause: error.cause, facts: { ...error.facts, ...facts } });
  return error;
}
