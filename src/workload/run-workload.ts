// The load generator: N workers, each on its own connection, running pgbench's transactions through
// the URLs it is given. A connection error moves a worker on to the next URL (seed 004's lesson: give
// clients several balancers); with tolerateErrors errors are counted and the worker reconnects.
// One sample per second; bounded by the duration and the AbortSignal.
import pg from 'pg';
import { labClientConfig } from '../postgres/client.js';
import { performance } from 'node:perf_hooks';
import { LabError, messageOf } from '../common/errors.js';
import { LatencyHistogram } from './latency-histogram.js';
import { ACCOUNTS_PER_SCALE, transactionFor, type Transaction } from './transactions.js';
import type { StopReason, WorkloadError, WorkloadHooks, WorkloadOptions, WorkloadResult, WorkloadSample } from './types.js';

const STOP_GRACE_MS = 2000;

interface Interval {
  ops: number;
  errors: number;
  latency: LatencyHistogram;
  byPort: Record<string, number>;
  byUrl: Record<string, number>;
}

function newInterval(): Interval {
  return { ops: 0, errors: 0, latency: new LatencyHistogram(), byPort: {}, byUrl: {} };
}

function addCounts(target: Record<string, number>, source: Record<string, number>): void {
  for (const [key, value] of Object.entries(source)) target[key] = (target[key] ?? 0) + value;
}

function errorCode(error: unknown): string | null {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : null;
}

function round(value: number, digits = 2): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/** A URL without its password, for samples and errors. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}

export function validateWorkloadOptions(options: WorkloadOptions): void {
  if (options.urls.length === 0) throw new LabError('USAGE', 'Expected at least one URL for the workload');
  for (const url of options.urls) {
    if (!/^postgres(ql)?:\/\//.test(url)) throw new LabError('USAGE', `Expected a postgresql:// URL, got "${url}"`);
  }
  if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
    throw new LabError('USAGE', `Expected a concurrency of 1 or more, got ${options.concurrency}`);
  }
  if (options.maxTransactions !== undefined && !(Number.isInteger(options.maxTransactions) && options.maxTransactions > 0)) {
    throw new LabError('USAGE', `Expected a positive whole number of transactions, got ${options.maxTransactions}`);
  }
  if (options.maxRate !== undefined && !(options.maxRate > 0)) throw new LabError('USAGE', `Expected a positive max rate, got ${options.maxRate}`);
  if (!(options.durationMs > 0)) throw new LabError('USAGE', `Expected a positive duration, got ${options.durationMs}ms`);
  if (options.mode !== 'select' && options.mode !== 'tpcb') throw new LabError('USAGE', `Expected mode select or tpcb, got "${String(options.mode)}"`);
}

function newClient(url: string, options: WorkloadOptions): pg.Client {
  const client = new pg.Client(labClientConfig({
    connectionString: url,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 3000,
    query_timeout: options.queryTimeoutMs ?? 10_000,
    application_name: 'pglab-workload',
  }));
  // A server killed under us emits 'error' on an idle client; the next query fails and is counted.
  client.on('error', () => undefined);
  return client;
}

/** pgbench's scaling factor, from the first URL that answers. */
async function readScale(options: WorkloadOptions, signal?: AbortSignal): Promise<number> {
  const problems: string[] = [];
  for (const url of options.urls) {
    signal?.throwIfAborted();
    const client = newClient(url, options);
    try {
      await client.connect();
      const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM pgbench_branches');
      const scale = Number(rows[0]?.n ?? 0);
      if (scale < 1) throw new LabError('STATE', `pgbench_branches is empty at ${redactUrl(url)}: run \`lab bench init\``);
      return scale;
    } catch (error) {
      if (error instanceof LabError) throw error;
      if (errorCode(error) === '42P01') {
        throw new LabError('STATE', `No pgbench tables at ${redactUrl(url)}: run \`lab bench init\` first`);
      }
      problems.push(`${redactUrl(url)}: ${messageOf(error)}`);
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  throw new LabError('STATE', `The workload could not reach any URL to read the scale (${problems.join('; ')}): check the balancer or pass --url`);
}

export async function runWorkload(options: WorkloadOptions, hooks: WorkloadHooks = {}): Promise<WorkloadResult> {
  validateWorkloadOptions(options);
  const { signal } = hooks;
  signal?.throwIfAborted();
  const scale = options.scale ?? (await readScale(options, signal));
  if (!Number.isInteger(scale) || scale < 1) throw new LabError('USAGE', `Expected a scale of 1 or more, got ${scale}`);
  const transaction: Transaction = transactionFor(options.mode, scale);
  const urls = options.urls;
  const shownUrls = urls.map(redactUrl);
  const tolerate = Boolean(options.tolerateErrors);
  const maxRecorded = options.maxRecordedErrors ?? 10_000;

  const startedEpoch = Date.now();
  const t0 = performance.now();
  const elapsed = () => performance.now() - t0;

  const samples: WorkloadSample[] = [];
  const errors: WorkloadError[] = [];
  const total = newInterval();
  let current = newInterval();
  let errorsTotal = 0;
  let connections = 0;
  const connectionsByPort: Record<string, number> = {};
  let failovers = 0;
  let stopReason: StopReason | undefined;
  let lastSampleAt = 0;

  // Everything that waits (backoff, the workers' stop) races this promise.
  let wake: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => {
    wake = resolve;
  });
  const stop = (reason: StopReason) => {
    if (stopReason) return;
    stopReason = reason;
    wake();
  };
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      void stopped.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });

  const recordError = (worker: number, urlIndex: number, port: number | null, phase: WorkloadError['phase'], sessionStartedMs: number, error: unknown) => {
    if (stopReason) return; // connections we closed ourselves while stopping
    const entry: WorkloadError = {
      at_ms: Math.round(elapsed()),
      session_started_ms: Math.round(sessionStartedMs),
      worker,
      url: shownUrls[urlIndex]!,
      port,
      phase,
      message: messageOf(error) || String(errorCode(error) ?? 'unknown error'),
      code: errorCode(error),
    };
    errorsTotal += 1;
    current.errors += 1;
    if (errors.length < maxRecorded) errors.push(entry);
    hooks.onError?.(entry);
    if (!tolerate) stop('error');
  };

  const takeSample = () => {
    const now = elapsed();
    const interval = current;
    current = newInterval();
    const intervalMs = now - lastSampleAt;
    lastSampleAt = now;
    total.ops += interval.ops;
    total.errors += interval.errors;
    total.latency.merge(interval.latency);
    addCounts(total.byPort, interval.byPort);
    addCounts(total.byUrl, interval.byUrl);
    const sample: WorkloadSample = {
      second: samples.length + 1,
      elapsed_ms: Math.round(now),
      interval_ms: Math.round(intervalMs),
      ops: interval.ops,
      errors: interval.errors,
      errors_total: errorsTotal,
      ops_per_sec: round(intervalMs > 0 ? (interval.ops * 1000) / intervalMs : 0, 1),
      ops_per_sec_cum: round(now > 0 ? (total.ops * 1000) / now : 0, 1),
      p50_ms: round(interval.latency.percentile(0.5)),
      p95_ms: round(interval.latency.percentile(0.95)),
      p99_ms: round(interval.latency.percentile(0.99)),
      max_ms: round(interval.latency.maxMs),
      by_port: interval.byPort,
      by_url: interval.byUrl,
    };
    samples.push(sample);
    hooks.onSample?.(sample);
  };

  const live = new Set<pg.Client>();
  const drop = async (client: pg.Client | undefined) => {
    if (!client) return;
    live.delete(client);
    await client.end().catch(() => undefined);
  };

  const worker = async (id: number) => {
    let urlIndex = id % urls.length;
    let client: pg.Client | undefined;
    let port: number | null = null;
    let sessionStarted = 0;
    let failedInARow = 0;
    // With a max rate each worker takes its share, at evenly spaced start times; a worker that fell
    // behind (a slow connect) does not burst to catch up.
    const spacingMs = options.maxRate ? (1000 * options.concurrency) / options.maxRate : 0;
    let nextStart = elapsed() + (spacingMs * id) / options.concurrency;
    try {
      while (!stopReason) {
        if (spacingMs > 0) {
          const now = elapsed();
          if (nextStart > now) await pause(nextStart - now);
          if (stopReason) break;
          nextStart = Math.max(nextStart + spacingMs, elapsed() - spacingMs);
        }
        if (!client) {
          const candidate = newClient(urls[urlIndex]!, options);
          live.add(candidate);
          sessionStarted = elapsed();
          try {
            await candidate.connect();
            const { rows } = await candidate.query<{ port: number | null }>('SELECT inet_server_port() AS port');
            port = rows[0]?.port ?? null;
            client = candidate;
            connections += 1;
            connectionsByPort[String(port ?? 'unknown')] = (connectionsByPort[String(port ?? 'unknown')] ?? 0) + 1;
            failedInARow = 0;
          } catch (error) {
            await drop(candidate);
            recordError(id, urlIndex, null, 'connect', sessionStarted, error);
            if (stopReason) break;
            if (urls.length > 1) failovers += 1;
            urlIndex = (urlIndex + 1) % urls.length;
            failedInARow += 1;
            // Every URL refused in turn: back off a little instead of spinning on refused connects.
            if (failedInARow % urls.length === 0) await pause(Math.min(50 * (failedInARow / urls.length), 500));
            continue;
          }
        }
        const started = performance.now();
        try {
          await transaction(client);
        } catch (error) {
          recordError(id, urlIndex, port, 'transaction', sessionStarted, error);
          await drop(client);
          client = undefined;
          continue;
        }
        current.ops += 1;
        current.latency.record(performance.now() - started);
        if (options.maxTransactions !== undefined && total.ops + current.ops >= options.maxTransactions) stop('transactions');
        const portKey = String(port ?? 'unknown');
        current.byPort[portKey] = (current.byPort[portKey] ?? 0) + 1;
        const urlKey = shownUrls[urlIndex]!;
        current.byUrl[urlKey] = (current.byUrl[urlKey] ?? 0) + 1;
        if (options.connectPerTx || stopReason) {
          await drop(client);
          client = undefined;
        }
      }
    } finally {
      await drop(client);
    }
  };

  const onAbort = () => stop('signal');
  signal?.addEventListener('abort', onAbort, { once: true });
  const durationTimer = setTimeout(() => stop('duration'), options.durationMs);
  // One sample per whole second of the run, scheduled against the start so it does not drift.
  let tickTimer: NodeJS.Timeout | undefined;
  const scheduleTick = () => {
    const next = (samples.length + 1) * 1000;
    tickTimer = setTimeout(() => {
      if (stopReason) return;
      takeSample();
      scheduleTick();
    }, Math.max(0, next - elapsed()));
  };
  scheduleTick();

  const workers = Array.from({ length: options.concurrency }, (_, id) => worker(id));
  try {
    await stopped;
    clearTimeout(tickTimer);
    // In-flight transactions get a moment to finish; then their connections are closed under them.
    const graceTimer = new Promise<void>((resolve) => setTimeout(resolve, STOP_GRACE_MS).unref());
    await Promise.race([Promise.allSettled(workers), graceTimer]);
    await Promise.all([...live].map((client) => drop(client)));
    await Promise.allSettled(workers);
  } finally {
    clearTimeout(durationTimer);
    clearTimeout(tickTimer);
    signal?.removeEventListener('abort', onAbort);
  }
  const durationMs = elapsed();
  if (current.ops > 0 || current.errors > 0 || durationMs - lastSampleAt >= 100) takeSample();

  return {
    samples,
    errors,
    summary: {
      mode: options.mode,
      urls: shownUrls,
      concurrency: options.concurrency,
      connect_per_tx: Boolean(options.connectPerTx),
      tolerate_errors: tolerate,
      scale,
      started_epoch_ms: startedEpoch,
      started_at: new Date(startedEpoch).toISOString(),
      duration_ms: Math.round(durationMs),
      ops: total.ops,
      errors: errorsTotal,
      errors_recorded: errors.length,
      ops_per_sec: round(durationMs > 0 ? (total.ops * 1000) / durationMs : 0, 1),
      p50_ms: round(total.latency.percentile(0.5)),
      p95_ms: round(total.latency.percentile(0.95)),
      p99_ms: round(total.latency.percentile(0.99)),
      max_ms: round(total.latency.maxMs),
      connections,
      connections_by_port: connectionsByPort,
      failovers,
      by_port: total.byPort,
      by_url: total.byUrl,
      stopped_by: stopReason ?? 'duration',
    },
  };
}

export { ACCOUNTS_PER_SCALE };
