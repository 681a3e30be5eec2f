// A host crash for one node: SIGKILL the postmaster and every process it started, at once. Killing
// only the postmaster (the seed's demo) leaves its backends and walsenders running until they notice,
// so commits acknowledged after the "kill" still reach the standbys; a dead machine sends nothing more.
import { readFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { LabError } from '../common/errors.js';
import { pollUntil } from '../common/poll.js';
import { childrenOf, isRunning } from '../common/processes.js';

/**
 * `pid`: the postmaster's pid as the host sees it (the runtime's livePid: a container's postmaster.pid
 * holds its own namespace's pid); its children in /proc are the server's processes, in a container too.
 * `isolateMs` > 0: the walsenders freeze that long before the rest (the master loses its standbys'
 * network, then dies), the classic split in which asynchronous replication loses acknowledged commits.
 */
export async function crashServer(
  spec: { name: string; pid: number | undefined },
  isolateMs = 0,
): Promise<{ pid: number; killedAtMs: number; isolatedAtMs: number; processes: number; walSenders: number }> {
  const { pid } = spec;
  if (!pid) throw new LabError('STATE', `${spec.name} is not running (no live postmaster)`);
  // Freeze everyone first so no process acts between the kills, then kill them. The walsenders go
  // first: on a real crash the order is arbitrary, and this is the order in which asynchronous
  // replication loses what the backends acknowledge in between (synchronous replication must not).
  const isWalSender = async (p: number) => /walsender/.test(await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => ''));
  const first = await childrenOf(pid);
  const senders = (await Promise.all(first.map(async (p) => ((await isWalSender(p)) ? p : undefined)))).filter((p): p is number => p !== undefined);
  const isolatedAtMs = Date.now();
  for (const p of senders) signal(p, 'SIGSTOP');
  if (isolateMs > 0) await delay(isolateMs);
  // The postmaster frozen forks nothing more: its children listed now are all there will be (a backend
  // that ended meanwhile is simply gone).
  signal(pid, 'SIGSTOP');
  const children = await childrenOf(pid);
  for (const p of children) signal(p, 'SIGSTOP');
  const killedAtMs = Date.now();
  for (const p of [pid, ...children]) signal(p, 'SIGKILL');
  await pollUntil(async () => ((await isRunning(pid)) ? undefined : true), { timeoutMs: 10_000, intervalMs: 20, what: `postmaster ${pid} of ${spec.name} to exit after SIGKILL` });
  return { pid, killedAtMs, isolatedAtMs, processes: 1 + children.length, walSenders: senders.length };
}

/** A signal to a process that may have ended since it was listed (ESRCH): nothing to do then. */
function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}
