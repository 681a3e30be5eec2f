// `lab balancer start|status|stop`: the built-in balancer as a background process of the lab.
// `startBalancer` spawns `lab balancer start --foreground` detached (it survives the CLI), waits until
// it listens and has recorded itself in the lab state, and returns that record. `serveBalancer` is the
// foreground body: run until the signal aborts.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { runBalancer, type LogSink, type RunningBalancer } from '../balancer/balancer.js';
import { poolLabel, type BalancerConfig } from '../balancer/config.js';
import { relayFor } from '../balancer/kernel-relay.js';
import { formatAddress, parseAddress } from '../balancer/settings.js';
import {
  DEFAULT_BALANCER_NAME, balancerWarnings, checkExposure, optionsAsFlags, resolveBalancerConfig, type BalancerStartOptions,
} from '../balancer/start-options.js';
import { statsAddress, type BalancerStats } from '../balancer/stats-types.js';
import { fetchBalancerStats as fetchStats, statsRequestUrl } from '../balancer/fetch-stats.js';
import { LabError, messageOf } from '../common/errors.js';
import { pollUntil } from '../common/poll.js';
import { packageRoot } from '../common/package-root.js';
import { canConnect, describePortHolder, isPortFree } from '../common/ports.js';
import { startTimeOf } from '../common/processes.js';
import { openPrivateAppend } from '../common/safe-files.js';
import { forgetBalancer, isBalancerAlive, recordBalancer, stopBalancerProcess } from '../lab/balancer-process.js';
import { accessOf, hasLabTls } from '../lab/access.js';
import type { GlobalOptions } from '../lab/context.js';
import { balancerLogFile, ensureBalancerDir } from '../lab/lab-dir.js';
import { readState, requireLabState, requireState, type BalancerRecord } from '../lab/state.js';
import { logTail } from '../postgres/server.js';

export { DEFAULT_BALANCER_NAME, balancerConfig, balancerWarnings, resolveBalancerConfig, type BalancerStartOptions } from '../balancer/start-options.js';

/** Refuse a name already running, or a port in use, with what to do instead. */
async function assertStartable(global: GlobalOptions, config: BalancerConfig, insecure: boolean | undefined): Promise<void> {
  const state = await requireLabState(global);
  checkExposure(config, accessOf(state), insecure);
  if (config.tls?.mode === 'terminate' && (accessOf(state).tls === 'off' || !(await hasLabTls(global.labDir)))) {
    throw new LabError('STATE', `--tls terminate serves the lab's own certificate, and this lab has none (made with --tls off, or its tls/ dir is gone): use --tls passthrough, or rebuild the lab with TLS`);
  }
  const existing = state.balancers.find((b) => b.name === config.name);
  if (existing && (await isBalancerAlive(existing))) {
    throw new LabError('CONFLICT', `Balancer "${config.name}" is already running (pid ${existing.pid}, ${existing.listen}): stop it with \`lab balancer stop --name ${config.name}\` or choose another --name`);
  }
  for (const [what, address] of [['--listen', config.listen], ['--stats', config.stats]] as const) {
    if (!address || address.port === 0) continue;
    if (!(await isPortFree(address.port, address.host))) {
      const holder = await describePortHolder(address.port);
      throw new LabError('CONFLICT', `${what} ${formatAddress(address)} is already in use${holder ? ` by ${holder}` : ''}: choose another port with ${what}`);
    }
  }
}

export interface ServeOptions {
  log: LogSink;
  /** Aborted on SIGTERM/SIGINT: the balancer closes and the promise resolves. */
  signal: AbortSignal;
  /** Told once the balancer listens and is recorded (the CLI prints its warnings then). */
  onReady?: (record: BalancerRecord, running: RunningBalancer) => void;
  /** Run inside a program by pglab's library (not `lab balancer start --foreground`): so recorded. */
  inProcess?: boolean;
}

/** The balancer in this process until `signal` aborts; records itself in the lab state once listening. */
export async function serveBalancer(global: GlobalOptions, options: BalancerStartOptions, serve: ServeOptions): Promise<BalancerRecord> {
  if (options.engine === 'haproxy') throw new LabError('USAGE', '--foreground runs the built-in balancer; HAProxy (--engine haproxy) always runs in the background');
  const config = await resolveBalancerConfig(global, options);
  await assertStartable(global, config, options.insecure);
  for (const warning of balancerWarnings(config)) serve.log(`warning: ${warning}`);
  const balancer = await runBalancer(config, serve.log);
  try {
    const { port, statsPort } = balancer.address();
    const record: BalancerRecord = {
      name: config.name,
      engine: 'builtin',
      listen: formatAddress({ host: config.listen.host, port }),
      stats: config.stats ? `${formatAddress({ host: config.stats.host, port: statsPort ?? config.stats.port })}${config.stats.uri === '/' ? '' : config.stats.uri}` : '',
      pid: process.pid,
      startTime: startTimeOf(process.pid),
      pool: poolLabel(config.pool),
      ...(options.config ? { configFile: path.resolve(options.config) } : {}),
      logFile: balancerLogFile(global.labDir, config.name),
      startedAt: new Date().toISOString(),
      ...(serve.inProcess ? { inProcess: true as const } : {}),
    };
    await recordBalancer(global.labDir, record);
    const checks = config.check.type === 'none' ? 'no check' : `${config.check.type} check every ${config.check.interMs} ms (fastinter ${config.check.fastinterMs}, downinter ${config.check.downinterMs}, rise ${config.check.rise}, fall ${config.check.fall})`;
    serve.log(`${config.name} listening on ${record.listen}, stats on http://${record.stats}/, pool ${record.pool}, ${config.algorithm}, ${checks}, pid ${process.pid}`);
    serve.onReady?.(record, balancer);
    if (!serve.signal.aborted) await new Promise((resolve) => serve.signal.addEventListener('abort', resolve, { once: true }));
    serve.log(`${config.name} stopping`);
    // A clean stop (Ctrl-C in the foreground, SIGTERM from anyone): the lab stops listing this instance.
    // Only while the lab exists: taking the lock would recreate a lab dir deleted under us.
    if (await readState(global.labDir).catch(() => undefined)) {
      await forgetBalancer(global.labDir, record).catch((error) => serve.log(`${config.name} could not leave the lab state: ${messageOf(error)}`));
    }
    return record;
  } finally {
    await balancer.stop();
  }
}

/** The lab's own CLI, for the detached child. */
function labBin(): string {
  // dist/src/commands/balancer.js -> <repo>/bin/lab.js
  return path.join(packageRoot, 'bin', 'lab.js');
}

/** "host:port" accepts a TCP connection. */
function accepts(address: string): Promise<boolean> {
  const { host, port } = parseAddress(address, 'address');
  return canConnect(host, port);
}

export interface StartedBalancer extends BalancerRecord {
  warnings: string[];
}

/** Start a balancer in the background: it keeps running after this process exits. */
export async function startBalancer(global: GlobalOptions, options: BalancerStartOptions = {}): Promise<StartedBalancer> {
  const config = await resolveBalancerConfig(global, options);
  await assertStartable(global, config, options.insecure);
  if (options.engine === 'haproxy') return startHaproxyBalancer(global, config);
  // Refused here in one line rather than by the background process, whose error only reaches its log.
  if (config.relay === 'kernel') relayFor('kernel');
  // The log (the child's stdout and stderr: it writes batched lines through this fd) in the balancer
  // dir, 0700: opened here once, never through a link, never a file of another user.
  const logFile = balancerLogFile(global.labDir, config.name);
  await ensureBalancerDir(global.labDir);
  const log = await openPrivateAppend(logFile);
  const args = [labBin(), '--lab-dir', global.labDir, ...(global.pg ? ['--pg', global.pg] : []), 'balancer', 'start', '--foreground', ...optionsAsFlags(options)];
  let exited: string | null = null;
  const gone = new AbortController();
  try {
    // The child rotates the log it is given by size (src/common/rotating-log.ts), only if its stdout is that file.
    const env = { ...process.env, LAB_BALANCER_LOG_FILE: logFile };
    const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', log.fd, log.fd], env });
    child.once('exit', (code, signal) => {
      exited = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      gone.abort();
    });
    child.once('error', (error) => {
      exited = `could not start: ${error.message}`;
      gone.abort();
    });
    child.unref();
    const pid = child.pid ?? -1;
    try {
      return await pollUntil(
        async () => {
          const state = await requireState(global.labDir);
          const record = state.balancers.find((b) => b.name === config.name && b.pid === pid);
          if (!record) return undefined;
          if (!(await accepts(record.listen)) || (record.stats && !(await accepts(statsAddress(record.stats))))) return undefined;
          return { ...record, warnings: balancerWarnings(config) };
        },
        { timeoutMs: options.timeoutMs ?? 15_000, intervalMs: 50, what: `balancer ${config.name} to listen on ${formatAddress(config.listen)}`, signal: gone.signal, detail: () => logTail(logFile) },
      );
    } catch (error) {
      if (exited !== null) {
        throw new LabError('COMMAND_FAILED', `Balancer ${config.name} ${exited} before it was ready: see ${logFile}`, { detail: await logTail(logFile) });
      }
      // Never leave a half-started daemon behind.
      if (pid > 0) process.kill(pid, 'SIGKILL');
      throw error;
    }
  } finally {
    await log.close();
  }
}

/**
 * `--engine haproxy`: the same configuration rendered to haproxy.cfg and run by the real HAProxy, for
 * comparison. HAProxy's pool is fixed when it starts: it is the lab's nodes at that moment.
 */
async function startHaproxyBalancer(global: GlobalOptions, config: BalancerConfig): Promise<StartedBalancer> {
  const { startHaproxy } = await import('../haproxy/engine.js');
  const { labPoolServers } = await import('../haproxy/lab-pool.js');
  const servers = config.pool.source === 'lab' ? await labPoolServers(global.labDir, config.pool.kind) : config.pool.servers;
  const instance = await startHaproxy({ labDir: global.labDir, config, servers });
  const record: BalancerRecord = {
    name: config.name,
    engine: 'haproxy',
    listen: instance.listen,
    stats: config.stats ? `${formatAddress({ host: config.stats.host, port: config.stats.port })}${config.stats.uri === '/' ? '' : config.stats.uri}` : '',
    pid: instance.pid,
    startTime: startTimeOf(instance.pid),
    pool: poolLabel(config.pool),
    configFile: instance.configFile,
    logFile: instance.logFile,
    startedAt: new Date().toISOString(),
  };
  await recordBalancer(global.labDir, record);
  const warnings = balancerWarnings(config);
  if (config.pool.source === 'lab') warnings.push(`HAProxy's pool is fixed at start (${servers.map((s) => s.name).join(', ') || 'empty'}); the built-in engine follows the lab`);
  if (config.check.type === 'sql') warnings.push('HAProxy has no sql check: it runs pgsql-check (it cannot see role or lag)');
  if (config.pool.source === 'static' && config.pool.kind) warnings.push(`HAProxy cannot tell a primary from a replica: --pool ${config.pool.kind} is applied by the built-in engine only`);
  return { ...record, warnings };
}

export interface BalancerStopResult {
  name: string;
  pid: number;
  wasRunning: boolean;
}

export async function stopBalancer(global: GlobalOptions, name = DEFAULT_BALANCER_NAME): Promise<BalancerStopResult> {
  const state = await requireLabState(global);
  const record = state.balancers.find((b) => b.name === name);
  if (!record) {
    const names = state.balancers.map((b) => b.name).join(', ') || 'none';
    throw new LabError('NOT_FOUND', `No balancer named "${name}" in this lab (balancers: ${names}): see \`lab balancer status\``);
  }
  const wasRunning = await stopBalancerProcess(record);
  await forgetBalancer(global.labDir, record);
  return { name, pid: record.pid, wasRunning };
}

/** A running balancer's stats (either engine), or a clear error. */
export async function fetchBalancerStats(record: Pick<BalancerRecord, 'stats' | 'name' | 'engine'>, timeoutMs = 3000): Promise<BalancerStats> {
  if (!record.stats) throw new LabError('STATE', `Balancer ${record.name} has no stats listener`);
  try {
    return await fetchStats(record, timeoutMs);
  } catch (error) {
    throw new LabError('STATE', `Cannot read the stats of balancer ${record.name} at ${statsRequestUrl(record)}: ${messageOf(error)}`);
  }
}

export interface BalancerStatus extends BalancerRecord {
  running: boolean;
  stats: string;
  servers: BalancerStats['servers'] | null;
  /** Built-in engine: who relays established sessions (from its stats). */
  relay?: BalancerStats['relay'];
  tls?: BalancerStats['tls'];
  /** Why servers is null while the process runs. */
  problem?: string;
}

export async function balancerStatus(global: GlobalOptions, name?: string): Promise<BalancerStatus[]> {
  const state = await requireLabState(global);
  const records = name ? state.balancers.filter((b) => b.name === name) : state.balancers;
  if (name && records.length === 0) {
    throw new LabError('NOT_FOUND', `No balancer named "${name}" in this lab: start one with \`lab balancer start --name ${name}\``);
  }
  return Promise.all(
    records.map(async (record) => {
      const running = await isBalancerAlive(record);
      if (!running) return { ...record, running, servers: null };
      try {
        const stats = await fetchBalancerStats(record);
        return { ...record, running, servers: stats.servers, ...(stats.relay ? { relay: stats.relay } : {}), ...(stats.tls ? { tls: stats.tls } : {}) };
      } catch (error) {
        return { ...record, running, servers: null, problem: messageOf(error) };
      }
    }),
  );
}
