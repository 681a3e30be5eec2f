// CPU time a process has used, all its threads, from the scheduler's own count
// (/proc/PID/task/TID/schedstat, first field, in ns): exact, where /proc/PID/stat counts in ticks.
import { readFile, readdir } from 'node:fs/promises';

export async function cpuNs(pid: number): Promise<number> {
  let total = 0;
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    const line = await readFile(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').catch(() => '0'); // a thread may end meanwhile
    total += Number(line.split(' ')[0]);
  }
  return total;
}
