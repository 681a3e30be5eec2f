// The balancer's open-files limit: raised from the soft limit to the hard one at start, so that its
// maxconn (two descriptors per client) fits. Node has no setrlimit; prlimit(1) from util-linux, run on
// our own pid, sets it for the running process. It is there wherever the lab runs (Linux), unlike the
// optional native addon, which is not built on a machine without a C compiler.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface OpenFilesLimit {
  /** The soft limit now in force; null when it cannot be read (not Linux). */
  soft: number | null;
  hard: number | null;
  /** What happened, for the log; empty when nothing needed doing. */
  note: string;
}

/** "Max open files  1024  4096  files" from /proc/<pid>/limits. */
export function readOpenFilesLimit(pid: number | 'self' = 'self'): { soft: number | null; hard: number | null } {
  try {
    const line = readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const [soft, hard] = (line ?? '').slice('Max open files'.length).trim().split(/\s+/);
    const value = (text: string | undefined) => (text === undefined ? null : text === 'unlimited' ? Infinity : Number(text));
    return { soft: value(soft), hard: value(hard) };
  } catch {
    return { soft: null, hard: null };
  }
}

export function raiseOpenFilesLimit(): OpenFilesLimit {
  const { soft, hard } = readOpenFilesLimit();
  if (soft === null || hard === null || soft >= hard || !Number.isFinite(hard)) return { soft, hard, note: '' };
  try {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${hard}:${hard}`], { stdio: 'ignore', timeout: 5000 });
  } catch (error) {
    return { soft, hard, note: `kept its open-files limit at ${soft} (prlimit could not raise it to ${hard}: ${(error as Error).message.split('\n')[0]})` };
  }
  const now = readOpenFilesLimit();
  return { soft: now.soft, hard: now.hard, note: `raised its open-files limit from ${soft} to ${now.soft}` };
}
