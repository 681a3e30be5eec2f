// One PostgreSQL server process, driven through pg_ctl: start, stop, kill -9, and what it is doing.
// The model is PostgreSQL's own TAP harness node (start / stop(mode) / kill9 / poll_query_until).
import { constants } from 'node:fs';
import { readFile, open, realpath, rm, stat } from 'node:fs/promises';
import { LabError } from '../common/errors.js';
import { checkShellSafePath, checkShellSafeProgram } from '../common/shell-safe-path.js';
import { pollUntil } from '../common/poll.js';
import path from 'node:path';
import { commandArgs, isRunning, processesWorkingIn } from '../common/processes.js';
import { withClient } from './client.js';
import type { Installation } from './installation.js';
import type { OsUser } from './os-user.js';
import { runPg } from './run.js';

export type ServerStatus = 'running' | 'stopped' | 'crashed';
export type StopMode = 'smart' | 'fast' | 'immediate';

export interface ServerSpec {
  name: string;
  datadir: string;
  port: number;
  logFile: string;
  installation: Installation;
  runAs?: OsUser;
  dbUser: string;
  /** Where it is reached (nodeAddress) and, with --hosts, the namespace it runs in. */
  host: string;
  netns?: string;
}

/** The postmaster's pid from postmaster.pid, if the file exists. */
export async function postmasterPid(datadir: string): Promise<number | undefined> {
  try {
    const first = (await readFile(`${datadir}/postmaster.pid`, 'utf8')).split('\n')[0];
    const pid = Number(first);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The pid of a live postmaster for this data dir, checked against /proc, not just the file (which the
 * postgres OS user could write): a running `postgres` (or `postmaster`) whose `-D` is this data dir.
 */
export async function livePostmasterPid(datadir: string): Promise<number | undefined> {
  const pid = await postmasterPid(datadir);
  if (!pid || !(await isRunning(pid))) return undefined;
  return isPostmasterOf(await commandArgs(pid), datadir) ? pid : undefined;
}

export function isPostmasterOf(args: string[] | undefined, datadir: string): boolean {
  if (!args || !['postgres', 'postmaster'].includes(path.basename(args[0] ?? ''))) return false;
  const at = args.indexOf('-D');
  const dir = at >= 0 ? args[at + 1] : args.find((arg) => arg.startsWith('-D'))?.slice(2);
  return dir !== undefined && path.resolve(dir) === path.resolve(datadir);
}

/** The last lines of a log, for an error's detail; a link (planted in the postgres-owned log dir) is not followed. */
export async function logTail(logFile: string, lines = 20): Promise<string | undefined> {
  try {
    const handle = await open(logFile, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const { size } = await handle.stat();
      const length = Math.min(size, 16_384);
      const buffer = Buffer.alloc(length);
      await handle.read(buffer, 0, length, size - length);
      const text = buffer.toString('utf8').trimEnd().split('\n').slice(-lines).join('\n');
      return text ? `last lines of ${logFile}:\n${text}` : undefined;
    } finally {
      await handle.close();
    }
  } catch {
    return undefined;
  }
}

/** A file's size, 0 if it does not exist: where a log's next lines will start. */
export async function sizeOf(file: string): Promise<number> {
  return (await stat(file).catch(() => ({ size: 0 }))).size;
}

/** What a log got from `offset` on (at most the last 64 kB of it), '' when there is none. */
export async function readLogFrom(file: string, offset: number): Promise<string> {
  try {
    const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const { size } = await handle.stat();
      const from = Math.max(offset, size - 65_536);
      const buffer = Buffer.alloc(Math.max(0, size - from));
      await handle.read(buffer, 0, buffer.length, from);
      return buffer.toString('utf8');
    } finally {
      await handle.close();
    }
  } catch {
    return '';
  }
}

/** The Unix socket dir the lab's templates configure. */
export const SOCKET_DIR = '/tmp';

/**
 * A postmaster killed with SIGKILL leaves postmaster.pid and the socket lock file behind, naming a pid
 * that may linger as a zombie until init reaps it; PostgreSQL then refuses to start ("lock file already
 * exists"). Remove those files when the pid in them is not a running process.
 */
export async function clearStaleLocks(spec: Pick<ServerSpec, 'datadir' | 'port'>): Promise<void> {
  for (const file of [`${spec.datadir}/postmaster.pid`, `${SOCKET_DIR}/.s.PGSQL.${spec.port}.lock`]) {
    let pid: number;
    try {
      pid = Number((await readFile(file, 'utf8')).split('\n')[0]);
    } catch {
      continue;
    }
    if (Number.isInteger(pid) && pid > 0 && !(await isRunning(pid))) await rm(file, { force: true });
  }
}

/**
 * The server processes a killed postmaster left behind in its data dir (backends, the startup process,
 * the walreceiver: each works in the data dir), SIGKILLed and waited for. They notice their postmaster's
 * death on their own, usually at once; on a loaded machine some took over 9 s, holding the shared memory
 * a new server of the same data dir refuses to start beside ("pre-existing shared memory block is still
 * in use"), what PostgreSQL's hint asks a person to do by hand. Only while no postmaster runs there.
 */
export async function endOrphanedServerProcesses(spec: Pick<ServerSpec, 'datadir' | 'name'>): Promise<number> {
  if (await livePostmasterPid(spec.datadir)) return 0;
  const dir = await realpath(spec.datadir).catch(() => undefined);
  if (!dir) return 0;
  const orphans = await processesWorkingIn(dir, 'postgres');
  for (const pid of orphans) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  if (orphans.length > 0) {
    await pollUntil(async () => ((await processesWorkingIn(dir, 'postgres')).length === 0 ? true : undefined), {
      timeoutMs: 10_000, intervalMs: 20, what: `the server processes ${spec.name}'s killed postmaster left in ${spec.datadir} to exit`,
    });
  }
  return orphans.length;
}

export async function startServer(spec: ServerSpec, timeoutMs = 60_000, signal?: AbortSignal): Promise<number> {
  const pgCtl = spec.installation.tools.pg_ctl;
  if (!pgCtl) throw new LabError('ENVIRONMENT', `No pg_ctl in ${spec.installation.bindir}: pass --pg with a complete installation`);
  // pg_ctl starts the server through /bin/sh with these paths in double quotes. Commands refuse new
  // paths up front; this keeps one from lab.json (hand-edited, or a lab of an earlier pglab) out too.
  checkShellSafePath(spec.datadir, 'data dir');
  checkShellSafePath(spec.logFile, 'log file');
  await checkShellSafeProgram(pgCtl);
  await endOrphanedServerProcesses(spec);
  await clearStaleLocks(spec);
  const logFrom = await sizeOf(spec.logFile);
  try {
    await runPg(pgCtl, ['-w', '-t', String(Math.ceil(timeoutMs / 1000)), '-D', spec.datadir, '-l', spec.logFile, '-o', `-p ${spec.port}`, 'start'], {
      runAs: spec.runAs,
      netns: spec.netns,
      timeoutMs: timeoutMs + 10_000,
      signal,
    });
  } catch (error) {
    if (error instanceof LabError && error.code !== 'INTERRUPTED') {
      // The server's own last word ("FATAL: could not create any TCP/IP sockets") says more than pg_ctl's
      // "Examine the log output."; the log's tail comes under the line.
      const tail = await logTail(spec.logFile);
      const fatal = [...(await readLogFrom(spec.logFile, logFrom)).matchAll(/\b(?:FATAL|PANIC):\s+(.+)$/gm)].pop()?.[1];
      throw new LabError('COMMAND_FAILED', `${spec.name} did not start on port ${spec.port}: ${fatal ? `${fatal} (its log below)` : error.message}`, {
        detail: tail ?? error.detail,
        cause: error,
      });
    }
    throw error;
  }
  await waitAcceptingConnections(spec, timeoutMs, signal);
  const pid = await livePostmasterPid(spec.datadir);
  if (!pid) {
    throw new LabError('COMMAND_FAILED', `${spec.name} started but its postmaster is gone`, { detail: await logTail(spec.logFile) });
  }
  return pid;
}

export async function waitAcceptingConnections(spec: ServerSpec, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  await pollUntil(
    () => withClient({ host: spec.host, port: spec.port, user: spec.dbUser, connectTimeoutMs: 2000 }, async (client) => (await client.query('SELECT 1'), true)),
    { timeoutMs, intervalMs: 100, signal, what: `${spec.name} to accept connections on ${spec.host}:${spec.port}`, detail: () => logTail(spec.logFile) },
  );
}

export async function stopServer(spec: ServerSpec, mode: StopMode = 'fast', timeoutMs = 60_000): Promise<void> {
  const pid = await livePostmasterPid(spec.datadir);
  if (!pid) {
    await endOrphanedServerProcesses(spec); // not running: stop is idempotent, and leaves no orphan of a kill -9
    return;
  }
  const pgCtl = spec.installation.tools.pg_ctl!;
  try {
    // pg_ctl signals only (-W); the exit is polled here every 10 ms, where pg_ctl's own wait polls every 100 ms.
    await runPg(pgCtl, ['-W', '-D', spec.datadir, '-m', mode, 'stop'], { runAs: spec.runAs, timeoutMs: timeoutMs + 10_000 });
    await pollUntil(async () => ((await isRunning(pid)) ? undefined : true), { timeoutMs, intervalMs: 10, what: `${spec.name} (postmaster ${pid}) to exit after pg_ctl stop -m ${mode}` });
  } catch (error) {
    if (mode === 'immediate') throw error;
    // A stuck shutdown: fall back to immediate, then to SIGKILL.
    await stopServer(spec, 'immediate', 15_000).catch(() => killServer(spec));
  }
}

/** SIGKILL the postmaster, exactly what the seed's demo does. Returns the pid and when it was signalled. */
export async function killServer(spec: Pick<ServerSpec, 'datadir' | 'name'>): Promise<{ pid: number; killedAtMs: number }> {
  const pid = await livePostmasterPid(spec.datadir);
  if (!pid) throw new LabError('STATE', `${spec.name} is not running (no live postmaster for ${spec.datadir})`);
  const killedAtMs = Date.now();
  process.kill(pid, 'SIGKILL');
  await pollUntil(async () => ((await isRunning(pid)) ? undefined : true), {
    timeoutMs: 10_000,
    intervalMs: 20,
    what: `postmaster ${pid} of ${spec.name} to exit after SIGKILL`,
  });
  return { pid, killedAtMs };
}

export async function serverStatus(datadir: string, expected: 'running' | 'stopped'): Promise<{ status: ServerStatus; pid?: number }> {
  const pid = await livePostmasterPid(datadir);
  if (pid) return { status: 'running', pid };
  const stalePid = await postmasterPid(datadir);
  if (stalePid || expected === 'running') return { status: 'crashed' };
  return { status: 'stopped' };
}
