// A host crash for one node: SIGKILL the postmaster and every process it started, at once. Killing
// only the postmaster (the seed's demo) leaves its backends and walsenders running until they notice,
// so commits acknowledged after the "kill" still reach the standbys; a dead machine sends nothing more.
import { readdir, readFile } from 'node:fs/promises';
import { LabError } from '../common/errors.js';
import { pollUntil } from '../common/poll.js';
import { isRunning } from '../common/processes.js';
import { livePostmasterPid } from './server.js';

async function childrenOf(pid: number): Promise<number[]> {
  const children: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // pid (comm) state ppid ...: comm may contain spaces, so read after the last ')'
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === pid) children.push(Number(entry));
  }
  return children;
}

export async function crashServer(spec: { datadir: string; name: string }): Promise<{ pid: number; killedAtMs: number; processes: number }> {
  const pid = await livePostmasterPid(spec.datadir);
  if (!pid) throw new LabError('STATE', `${spec.name} is not running (no live postmaster for ${spec.datadir})`);
  const children = await childrenOf(pid);
  // Stop everyone first so no process acts between the kills, then kill them.
  for (const p of [pid, ...children]) process.kill(p, 'SIGSTOP');
  const killedAtMs = Date.now();
  for (const p of [pid, ...children]) process.kill(p, 'SIGKILL');
  await pollUntil(async () => ((await isRunning(pid)) ? undefined : true), { timeoutMs: 10_000, intervalMs: 20, what: `postmaster ${pid} of ${spec.name} to exit after SIGKILL` });
  return { pid, killedAtMs, processes: 1 + children.length };
}
