// The real HAProxy as a lab balancer engine: the pool rendered to <labDir>/balancer/haproxy-<name>.cfg,
// checked with `haproxy -c`, run in the foreground of a detached process (so its per-connection log goes
// to <labDir>/balancer/haproxy-<name>.log without syslog), and stopped by pid. Both files are 0600 in the
// balancer dir (0700, the invoking user's): HAProxy runs as that user, reads its config by path at start
// (the rendered file has no `user`/`chroot`), and logs to the fd it inherits, opened by us.
import { spawn } from 'node:child_process';
import { access } from 'node:fs/promises';
import { execa } from 'execa';
import type { BalancerConfig, ServerConfig } from '../balancer/config.js';
import { LabError } from '../common/errors.js';
import { pollUntil } from '../common/poll.js';
import { isRunning, terminateProcess } from '../common/processes.js';
import { canConnect, listensOn } from '../common/ports.js';
import { logTail } from '../postgres/server.js';
import { openPrivateAppend, writePrivateFile } from '../common/safe-files.js';
import { ensureBalancerDir, haproxyFiles } from '../lab/lab-dir.js';
import { renderHaproxyConfig } from './render-config.js';

export interface HaproxyInstance {
  name: string;
  pid: number;
  configFile: string;
  logFile: string;
  /** "127.0.0.1:15432" */
  listen: string;
  /** Full URL of the stats page (`http://127.0.0.1:8081/`), null without a stats listener. */
  statsUrl: string | null;
}

export interface StartHaproxyOptions {
  labDir: string;
  config: BalancerConfig;
  servers: ServerConfig[];
  statsRefreshS?: number | null;
  /** How long to wait for the listen (and stats) port to accept connections. */
  timeoutMs?: number;
}

const CANDIDATE_BINARIES = ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy', '/usr/bin/haproxy'];

/** The haproxy binary: HAPROXY env, then the usual sbin dirs (not always on a non-root PATH), then PATH. */
export async function findHaproxy(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const candidates = [env.HAPROXY, ...CANDIDATE_BINARIES].filter((c): c is string => Boolean(c));
  for (const candidate of candidates) {
    try {
      await access(candidate);
      return candidate;
    } catch {
      // try the next one
    }
  }
  const which = await execa('sh', ['-c', 'command -v haproxy'], { reject: false });
  const found = String(which.stdout).trim();
  if (which.exitCode === 0 && found) return found;
  throw new LabError('ENVIRONMENT', 'HAProxy is not installed (looked in $HAPROXY, /usr/sbin, /usr/local/sbin, PATH): install it (apt-get install -y haproxy) or use the built-in engine');
}

/** `haproxy -c -f FILE`: a clear error with HAProxy's own words when it rejects the file. */
export async function validateHaproxyConfig(configFile: string): Promise<void> {
  const binary = await findHaproxy();
  const result = await execa(binary, ['-c', '-f', configFile], { reject: false, timeout: 30_000 });
  if (result.exitCode !== 0) {
    throw new LabError('COMMAND_FAILED', `HAProxy rejected ${configFile} (haproxy -c exited ${result.exitCode}): see the messages below`, {
      detail: `${String(result.stderr)}${String(result.stdout)}`.trim(),
    });
  }
}


/** Renders, validates and starts HAProxy; resolves once its listen (and stats) address accepts connections. */
export async function startHaproxy(options: StartHaproxyOptions): Promise<HaproxyInstance> {
  const { labDir, config, servers, timeoutMs = 10_000 } = options;
  const binary = await findHaproxy();
  const { configFile, logFile } = haproxyFiles(labDir, config.name);
  await ensureBalancerDir(labDir);
  await writePrivateFile(configFile, renderHaproxyConfig(config, servers, { logToStdout: true, statsRefreshS: options.statsRefreshS }));
  await validateHaproxyConfig(configFile);

  const log = await openPrivateAppend(logFile);
  let pid: number;
  try {
    // -db: stay in the foreground, so stdout (the per-connection log) is ours to redirect; detached
    // and unref'ed so it outlives the CLI that started it.
    const child = spawn(binary, ['-db', '-f', configFile], { detached: true, stdio: ['ignore', log.fd, log.fd] });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    child.unref();
    pid = child.pid!;
  } finally {
    await log.close();
  }

  const instance: HaproxyInstance = {
    name: config.name,
    pid,
    configFile,
    logFile,
    listen: `${config.listen.host}:${config.listen.port}`,
    statsUrl: config.stats ? `http://${urlHost(config.stats.host)}:${config.stats.port}${config.stats.uri}` : null,
  };
  try {
    const outcome = await pollUntil(
      async () => {
        if (!(await isRunning(pid))) return 'exited' as const;
        // Its own listener: a port held by another process accepts too, while HAProxy fails to bind it and exits.
        const listening = (await canConnect(connectHost(config.listen.host), config.listen.port)) && (await listensOn(pid, config.listen.port));
        const statsUp = !config.stats || (await canConnect(connectHost(config.stats.host), config.stats.port));
        return listening && statsUp ? ('listening' as const) : undefined;
      },
      { timeoutMs, intervalMs: 50, what: `HAProxy '${config.name}' to listen on ${instance.listen}`, detail: () => logTail(logFile) },
    );
    if (outcome === 'exited') {
      throw new LabError('COMMAND_FAILED', `HAProxy '${config.name}' (pid ${pid}) exited at start: see ${logFile}`, { detail: await logTail(logFile) });
    }
  } catch (error) {
    // Whatever went wrong, leave no HAProxy behind.
    await stopHaproxy(pid);
    throw error;
  }
  return instance;
}

/** A wildcard listen address is reached through loopback. */
function connectHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '::1';
  return host;
}

function urlHost(host: string): string {
  const reachable = connectHost(host);
  return reachable.includes(':') ? `[${reachable}]` : reachable;
}

/** SIGTERM (HAProxy's hard stop), a bounded wait, then SIGKILL. True if it was running. Never signals a non-HAProxy pid. */
export function stopHaproxy(pid: number, graceMs = 5000): Promise<boolean> {
  return terminateProcess(pid, 'haproxy', graceMs);
}
