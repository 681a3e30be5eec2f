// Processes by pid: alive or not, and what they are (from /proc), so we never signal a stranger that
// reused a pid.
import { readFileSync } from 'node:fs';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The arguments of a process (argv[0] first), or undefined if it is gone. */
export async function commandArgs(pid: number): Promise<string[] | undefined> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter(Boolean);
  } catch {
    return undefined;
  }
}

/** The command line of a process, or undefined if it is gone. */
export async function commandLine(pid: number): Promise<string | undefined> {
  return (await commandArgs(pid))?.join(' ');
}

/**
 * When the process started: field 22 of /proc/PID/stat, in clock ticks after boot (undefined when it is
 * gone). With the pid it names one process for good: a pid reused later has a later start time.
 */
export function startTimeOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which ends at the last ')': field 3 is the first of them.
    const value = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[22 - 3]);
    return Number.isInteger(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** True while the process that had `startTime` under `pid` still runs (not a zombie). */
export async function isSameProcess(pid: number, startTime: number): Promise<boolean> {
  return startTimeOf(pid) === startTime && (await isRunning(pid));
}

/** Zombie processes still answer kill(0); /proc says they are dead. */
export async function isRunning(pid: number): Promise<boolean> {
  if (!isAlive(pid)) return false;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/**
 * Stop a process we started: SIGTERM, a bounded wait, then SIGKILL. Only if its command line still
 * contains `expect` (a pid reused by a stranger is never signalled). True if it was running.
 */
export async function terminateProcess(pid: number, expect: string, graceMs = 5000): Promise<boolean> {
  if (!(await isRunning(pid))) return false;
  if (!((await commandLine(pid)) ?? '').includes(expect)) return false;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!(await isRunning(pid))) return true;
    await delay(20);
  }
  process.kill(pid, 'SIGKILL');
  return true;
}

/** State letter (field 3) and parent pid (field 4) of /proc/PID/stat, or undefined when it is gone. */
export async function procStat(pid: number): Promise<{ state: string; ppid: number } | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0]!, ppid: Number(fields[1]) };
  } catch {
    return undefined;
  }
}

/** The live (not zombie) children of `parent`, from /proc. */
export async function childrenOf(parent: number): Promise<number[]> {
  // Read at once: one by one, a few hundred /proc reads take a second on a loaded machine (a drill's
  // kill -9 came that much late).
  const pids = (await readdir('/proc')).filter((entry) => /^\d+$/.test(entry)).map(Number);
  const stats = await Promise.all(pids.map((pid) => procStat(pid)));
  return pids.filter((_, i) => {
    const stat = stats[i];
    return stat !== undefined && stat.ppid === parent && stat.state !== 'Z' && stat.state !== 'X';
  });
}

/** Live processes whose working directory is `dir` (an absolute, resolved path) and whose program is named `program`, from /proc. */
export async function processesWorkingIn(dir: string, program: string): Promise<number[]> {
  // Every cwd at once (a server start asks this of each new data dir); the few in `dir` are looked at closer.
  const pids = (await readdir('/proc')).filter((entry) => /^\d+$/.test(entry)).map(Number);
  const cwds = await Promise.all(pids.map((pid) => readlink(`/proc/${pid}/cwd`).catch(() => '')));
  const inDir = pids.filter((_, i) => cwds[i] === dir);
  const found = await Promise.all(
    inDir.map(async (pid) => {
      const exe = await readlink(`/proc/${pid}/exe`).catch(() => '');
      if (exe.split('/').pop() !== program) return undefined;
      const stat = await procStat(pid);
      return stat && stat.state !== 'Z' && stat.state !== 'X' ? pid : undefined;
    }),
  );
  return found.filter((pid): pid is number => pid !== undefined);
}
