// The built-in balancer inside the caller's process (serveBalancer, as `lab balancer start --foreground`
// runs it), recorded in lab.json so `lab balancer status` and `lab stat balancer` see it too.
import { LabError, messageOf } from '../common/errors.js';
import { findFreePorts } from '../common/ports.js';
import { serveBalancer } from '../commands/balancer.js';
import type { BalancerStartOptions } from '../balancer/start-options.js';
import type { RunningBalancer } from '../balancer/balancer.js';
import type { BalancerServerStats, BalancerStats, ServerState } from '../balancer/stats-types.js';
import type { GlobalOptions } from '../lab/global-options.js';
import type { BalancerRecord } from '../lab/state.js';
import { Connectable, type ConnectionAccess } from './connection.js';
import type { BalancerOptions } from './options.js';
import type { LabCore } from './core.js';

export class Balancer extends Connectable implements AsyncDisposable {
  /** @internal Told when the balancer stopped (Lab forgets it). */
  onStopped: (() => void) | undefined;
  private stopped = false;

  /** @internal lab.balancer() makes them. */
  constructor(
    private readonly lab: LabCore,
    readonly name: string,
    /** @internal */
    readonly record: BalancerRecord,
    private readonly running: RunningBalancer,
    private readonly controller: AbortController,
    private readonly done: Promise<unknown>,
  ) {
    super();
  }

  /** Where clients connect. */
  get host(): string {
    return this.running.config.listen.host;
  }

  get port(): number {
    return this.running.address().port;
  }

  /** The stats page (HTML; ?format=json, ;csv, /metrics for Prometheus). */
  get statsUrl(): string {
    return `http://${this.record.stats}/`;
  }

  protected endpoint(): { host: string; port: number } {
    return { host: this.host === '0.0.0.0' ? '127.0.0.1' : this.host === '::' ? '::1' : this.host, port: this.port };
  }

  protected connectionAccess(): ConnectionAccess {
    return this.lab.access();
  }

  /** What the stats page serves as JSON: each server's status, check, sessions, and the balancer's counters. */
  stats(): BalancerStats {
    return this.running.stats();
  }

  /** One server's row of stats(); an unknown name is an error listing the pool. */
  server(name: string): BalancerServerStats {
    const found = this.running.stats().servers.find((s) => s.name === name);
    if (!found) throw new LabError('NOT_FOUND', `Balancer ${this.name} has no server "${name}" (its pool: ${this.running.stats().servers.map((s) => s.name).join(', ') || 'empty'})`);
    return found;
  }

  /** Waits until the server has `status` (UP, DOWN...): on timeout a TIMEOUT LabError whose facts hold the pool's stats. */
  async waitFor(server: string, status: ServerState, options: { timeoutMs?: number } = {}): Promise<BalancerServerStats> {
    const timeoutMs = options.timeoutMs ?? 15_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.stopped) throw new LabError('STATE', `Balancer ${this.name} was stopped`);
      const row = this.running.stats().servers.find((s) => s.name === server);
      if (row?.status === status) return row;
      if (Date.now() >= deadline) {
        const servers = this.running.stats().servers;
        this.lab.markFailed();
        throw new LabError('TIMEOUT', `Balancer ${this.name}: server ${server} not ${status} within ${timeoutMs} ms (${row ? `${row.status}, ${row.checkStatus} ${row.checkMessage}`.trim() : 'not in the pool'})`, {
          facts: { server, wanted: status, servers },
        });
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Stops listening, closes its sessions, and leaves lab.json. Twice is a no-op. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.controller.abort();
    await this.done.catch(() => undefined);
    this.onStopped?.();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** Starts one in this process (inside the lab's client scope: its checks log in with the lab's access). */
export async function startBalancer(lab: LabCore, global: GlobalOptions, name: string, options: BalancerOptions): Promise<Balancer> {
  const [listenPort, statsPort] = await findFreePorts(2);
  const start = startOptionsFor(name, options, options.port ?? listenPort!, statsPort!);
  const controller = new AbortController();
  let ready!: (value: { record: BalancerRecord; running: RunningBalancer }) => void;
  const listening = new Promise<{ record: BalancerRecord; running: RunningBalancer }>((resolve) => (ready = resolve));
  const done = serveBalancer(global, start, {
    log: (line) => lab.emit({ type: 'log', message: line }),
    signal: controller.signal,
    inProcess: true,
    onReady: (record, running) => ready({ record, running }),
  });
  done.catch(() => undefined); // awaited by stop(), or raced below
  const first = await Promise.race([
    listening,
    done.then(
      () => {
        throw new LabError('STATE', `Balancer ${name} stopped before it listened`);
      },
      (error: unknown) => {
        throw error instanceof LabError ? error : new LabError('COMMAND_FAILED', `Balancer ${name} did not start: ${messageOf(error)}`, { cause: error });
      },
    ),
  ]);
  return new Balancer(lab, name, first.record, first.running, controller, done);
}

/** The library's typed options as the balancer's start options (what `lab balancer start`'s flags become). */
export function startOptionsFor(name: string, options: BalancerOptions, listenPort: number, statsPort: number): BalancerStartOptions {
  const host = options.host ?? '127.0.0.1';
  return {
    name,
    listen: `${host.includes(':') ? `[${host}]` : host}:${listenPort}`,
    stats: `127.0.0.1:${statsPort}`,
    pool: options.pool ?? 'replicas',
    ...(options.check ? { check: options.check } : {}),
    ...(options.balance ? { balance: options.balance } : {}),
    ...(options.interMs !== undefined ? { inter: options.interMs } : {}),
    ...(options.fastinterMs !== undefined ? { fastinter: options.fastinterMs } : {}),
    ...(options.downinterMs !== undefined ? { downinter: options.downinterMs } : {}),
    ...(options.rise !== undefined ? { rise: options.rise } : {}),
    ...(options.fall !== undefined ? { fall: options.fall } : {}),
    ...(options.checkTimeoutMs !== undefined ? { checkTimeout: options.checkTimeoutMs } : {}),
    ...(options.maxLagBytes !== undefined || options.maxLagMs !== undefined
      ? { maxLag: [...(options.maxLagBytes !== undefined ? [`${options.maxLagBytes}`] : []), ...(options.maxLagMs !== undefined ? [`${options.maxLagMs}ms`] : [])] }
      : {}),
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.connectTimeoutMs !== undefined ? { connectTimeout: options.connectTimeoutMs } : {}),
    ...(options.clientTimeoutMs !== undefined ? { clientTimeout: options.clientTimeoutMs } : {}),
    ...(options.serverTimeoutMs !== undefined ? { serverTimeout: options.serverTimeoutMs } : {}),
    ...(options.retries !== undefined ? { retries: options.retries } : {}),
  };
}
