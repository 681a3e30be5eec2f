// `lab bench init` (pgbench -i on the master, with progress) and `lab bench run` (pgbench with any
// arguments, through the balancer or at a port, with its summary read back).
import { LabError } from '../common/errors.js';
import { silentReporter, type Reporter } from '../common/reporter.js';
import { openLab, type GlobalOptions } from '../lab/context.js';
import { clientTool } from '../postgres/installation.js';
import { parseInitProgress, parseInitStep, parsePgbenchSummary, type PgbenchSummary } from '../bench/pgbench-output.js';
import { runPgbench, type PgbenchTarget } from '../bench/run-pgbench.js';
import { balancerAddress, portTarget, requirePrimary, DEFAULT_BALANCER } from '../bench/lab-targets.js';
import { tail } from '../postgres/run.js';
import { nodeAddress } from '../network/address.js';

export interface BenchInitOptions {
  scale?: number;
  database?: string;
  reporter?: Reporter;
  signal?: AbortSignal;
}

export interface BenchInitResult {
  node: string;
  port: number;
  scale: number;
  accounts: number;
  pgbench: string;
  elapsedMs: number;
}

export async function benchInit(global: GlobalOptions, options: BenchInitOptions = {}): Promise<BenchInitResult> {
  const scale = options.scale ?? 10;
  if (!Number.isInteger(scale) || scale < 1) throw new LabError('USAGE', `Expected a scale of 1 or more, got ${scale}`);
  const reporter = options.reporter ?? silentReporter;
  const context = await openLab(global);
  const primary = requirePrimary(context.state);
  const pgbench = await clientTool(context.installation, 'pgbench');
  const target: PgbenchTarget = { host: nodeAddress(primary), port: primary.port, user: context.state.dbUser, database: options.database ?? 'postgres' };
  reporter.step(`pgbench -i -s ${scale} on ${primary.name} (port ${primary.port})`);
  const started = Date.now();
  const result = await runPgbench(pgbench, target, ['-i', '-s', String(scale)], {
    signal: options.signal,
    onLine(line) {
      const progress = parseInitProgress(line);
      if (progress) return reporter.progress(progress.fraction, `${progress.done} of ${progress.total} tuples`);
      const step = parseInitStep(line);
      if (step) return reporter.step(step);
      reporter.detail(line);
    },
  });
  options.signal?.throwIfAborted();
  if (result.exitCode !== 0) {
    const last = result.output.trim().split('\n').pop() ?? '';
    throw new LabError('COMMAND_FAILED', `pgbench -i on ${primary.name} failed (exit ${result.exitCode ?? result.signal}): ${last}`, { detail: tail(result.output, 20) });
  }
  return { node: primary.name, port: primary.port, scale, accounts: scale * 100_000, pgbench, elapsedMs: Date.now() - started };
}

export interface BenchRunOptions {
  /** Send the load to this port instead of a balancer: a node's (at its address), a balancer's, else 127.0.0.1's. */
  port?: number;
  /** Balancer name in the lab's state (default `lb`). */
  balancer?: string;
  database?: string;
  /** Each line pgbench prints, as it prints it. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  signal?: AbortSignal;
}

export interface BenchRunResult {
  target: { host: string; port: number; via: string };
  args: string[];
  exitCode: number | null;
  signal: string | null;
  summary: PgbenchSummary;
  elapsedMs: number;
}

/** Runs pgbench to the end (or until `signal`); a pgbench that aborted clients is a result, not an error. */
export async function benchRun(global: GlobalOptions, args: string[], options: BenchRunOptions = {}): Promise<BenchRunResult> {
  const context = await openLab(global);
  const pgbench = await clientTool(context.installation, 'pgbench');
  let address: { host: string; port: number };
  let via: string;
  if (options.port !== undefined) {
    if (options.balancer) throw new LabError('USAGE', 'Give either --port or --balancer, not both');
    const target = portTarget(context.state, options.port);
    address = { host: target.host, port: target.port };
    via = target.what === `port ${options.port}` ? target.what : `${target.what} (port ${options.port})`;
  } else {
    const name = options.balancer ?? DEFAULT_BALANCER;
    address = balancerAddress(context.state, name);
    via = `balancer ${name}`;
  }
  const started = Date.now();
  const result = await runPgbench(pgbench, { ...address, user: context.state.dbUser, database: options.database ?? 'postgres' }, args, {
    signal: options.signal,
    onLine: options.onLine,
  });
  return {
    target: { ...address, via },
    args,
    exitCode: result.exitCode,
    signal: result.signal,
    summary: parsePgbenchSummary(result.output),
    elapsedMs: Date.now() - started,
  };
}
