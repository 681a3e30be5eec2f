// A balancer in a process of its own: the built-in one as `lab balancer start` runs it (a detached
// daemon), or Debian's HAProxy with the same settings. Its stats come over HTTP; it outlives the program
// that started it unless stopped (the lab's destroy stops it too). The drills measure through these: a
// balancer in the drill's own process would share its event loop with the load it measures.
import { LabError } from '../common/errors.js';
import { findFreePorts } from '../common/ports.js';
import { isRunning, startTimeOf } from '../common/processes.js';
import { pollUntil } from '../common/poll.js';
import { fetchBalancerStats, startBalancer as startDetached, stopBalancer, type StartedBalancer } from '../commands/balancer.js';
import type { BalancerServerStats, BalancerStats, ServerState } from '../balancer/stats-types.js';
import { Connectable, type ConnectionAccess } from './connection.js';
import { startOptionsFor } from './balancer.js';
import type { BalancerProcessOptions } from './options.js';
import type { LabCore } from './core.js';

export class BalancerProcess extends Connectable implements AsyncDisposable {
  private stopped = false;

  /** @internal lab.balancerProcess() makes them. */
  constructor(
    private readonly lab: LabCore,
    /** @internal What lab.json records of it (pid, start time, listen and stats addresses, log). */
    readonly record: StartedBalancer,
    /** What the settings asked that the engine cannot do (HAProxy has no sql check, a fixed pool...). */
    readonly warnings: string[],
  ) {
    super();
  }

  get name(): string {
    return this.record.name;
  }

  get engine(): 'builtin' | 'haproxy' {
    return this.record.engine === 'haproxy' ? 'haproxy' : 'builtin';
  }

  get pid(): number {
    return this.record.pid;
  }

  get host(): string {
    return this.listen().host;
  }

  get port(): number {
    return this.listen().port;
  }

  /** Its log (the built-in engine: every state change of a server, with the check's reason). */
  get logFile(): string | undefined {
    return this.record.logFile;
  }

  /** The stats page (HTML; ?format=json, ;csv, /metrics for Prometheus on the built-in engine). */
  get statsUrl(): string {
    return `http://${this.record.stats}/`;
  }

  protected endpoint(): { host: string; port: number } {
    const { host, port } = this.listen();
    return { host: host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host, port };
  }

  protected connectionAccess(): ConnectionAccess {
    return this.lab.access();
  }

  /** Its stats page as JSON (either engine): each server's status, check, sessions. */
  stats(options: { timeoutMs?: number } = {}): Promise<BalancerStats> {
    return fetchBalancerStats(this.record, options.timeoutMs ?? 3000);
  }

  /** One server's row of stats(); an unknown name is an error listing the pool. */
  async server(name: string): Promise<BalancerServerStats> {
    const servers = (await this.stats()).servers;
    const found = servers.find((s) => s.name === name);
    if (!found) throw new LabError('NOT_FOUND', `Balancer ${this.name} has no server "${name}" (its pool: ${servers.map((s) => s.name).join(', ') || 'empty'})`);
    return found;
  }

  /**
   * Waits until the server has `status` (a stats read that fails counts as not yet); on timeout a
   * TIMEOUT LabError whose facts hold the pool's last stats. Resolves with the moment it was seen (Date.now()).
   */
  async waitFor(server: string, status: ServerState, options: { timeoutMs?: number; intervalMs?: number; signal?: AbortSignal } = {}): Promise<number> {
    const timeoutMs = options.timeoutMs ?? 15_000;
    const deadline = Date.now() + timeoutMs;
    let servers: BalancerServerStats[] | undefined;
    for (;;) {
      options.signal?.throwIfAborted();
      servers = (await this.stats({ timeoutMs: 1000 }).catch(() => undefined))?.servers ?? servers;
      const row = servers?.find((s) => s.name === server);
      if (row?.status === status) return Date.now();
      if (Date.now() >= deadline) {
        this.lab.markFailed();
        throw new LabError('TIMEOUT', `Balancer ${this.name}: server ${server} not ${status} within ${timeoutMs} ms (${row ? `${row.status}, ${row.checkStatus} ${row.checkMessage}`.trim() : 'not in the pool'})`, {
          facts: { server, wanted: status, servers },
        });
      }
      await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 20));
    }
  }

  /**
   * Until at least `count` servers are UP; `checked`: UP after a completed check (HAProxy starts its
   * servers UP before it checked them, check status INI).
   */
  async waitUp(count: number, options: { timeoutMs?: number; checked?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 15_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      options.signal?.throwIfAborted();
      const servers = (await this.stats({ timeoutMs: 1000 }).catch(() => undefined))?.servers;
      const up = servers?.filter((s) => s.status === 'UP' && !(options.checked && s.checkStatus === 'INI')).length ?? 0;
      if (up >= count) return;
      if (Date.now() >= deadline) {
        this.lab.markFailed();
        throw new LabError('TIMEOUT', `Balancer ${this.name}: ${up} of the ${count} server(s) wanted UP${options.checked ? ' after a check' : ''} within ${timeoutMs} ms`, { facts: { servers } });
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /**
   * SIGKILL (what `docker kill` does to a balancer's container), only to the process the lab started;
   * resolves once it is gone. Its record stays, as after a crash. False when it was no longer running.
   */
  async kill(): Promise<boolean> {
    const pid = this.record.pid;
    if (startTimeOf(pid) !== this.record.startTime || !(await isRunning(pid))) return false;
    process.kill(pid, 'SIGKILL');
    await pollUntil(async () => ((await isRunning(pid)) ? undefined : true), { timeoutMs: 10_000, intervalMs: 10, what: `balancer ${this.name} (pid ${pid}) to exit after SIGKILL` });
    return true;
  }

  /** Stops it (SIGTERM, then SIGKILL after a grace) and forgets it in lab.json. Twice is a no-op. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.lab.run(() => stopBalancer(this.lab.globalOptions, this.name));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop().catch(() => undefined);
  }

  private listen(): { host: string; port: number } {
    const at = this.record.listen.lastIndexOf(':');
    return { host: this.record.listen.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(this.record.listen.slice(at + 1)) };
  }
}

/** Starts one in a process of its own (a balancer of that name that was killed is started again). */
export async function startBalancerProcess(lab: LabCore, name: string, options: BalancerProcessOptions): Promise<BalancerProcess> {
  const [listenPort, statsPort] = await findFreePorts(2);
  const start = { ...startOptionsFor(name, options, options.port ?? listenPort!, options.statsPort ?? statsPort!), ...(options.engine === 'haproxy' ? { engine: 'haproxy' as const } : {}) };
  const started = await lab.run(() => startDetached(lab.globalOptions, start));
  return new BalancerProcess(lab, started, started.warnings);
}
