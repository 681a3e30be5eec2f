// CPU time a process has used, all its threads, from the scheduler's own count
// (/proc/PID/task/TID/schedstat, first field, in ns): exact, where /proc/PID/stat counts in ticks.
import { readFile, readdir } from 'node:fs/promises';

/** Null when the process cannot be read (gone, or another user's where /proc hides it). */
export async function cpuNs(pid: number): Promise<number | null> {
  const tids = await readdir(`/proc/${pid}/task`).catch(() => null);
  if (tids === null) return null;
  let total = 0;
  for (const tid of tids) {
    const line = await readFile(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').catch(() => '0'); // a thread may end meanwhile
    total += Number(line.split(' ')[0]);
  }
  return total;
}
