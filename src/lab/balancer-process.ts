// Balancer processes the lab started (pid recorded in the state): stopped by pid, after checking the
// pid still belongs to a balancer (never signal a stranger that reused it).
import { commandLine, isRunning, terminateProcess } from '../common/processes.js';
import type { BalancerRecord } from './state.js';

/** What a balancer's command line contains: `lab ... balancer start --foreground`, or haproxy. */
function commandWord(record: BalancerRecord): string {
  return record.engine === 'haproxy' ? 'haproxy' : 'balancer';
}

export async function isBalancerAlive(record: BalancerRecord): Promise<boolean> {
  if (!(await isRunning(record.pid))) return false;
  return ((await commandLine(record.pid)) ?? '').includes(commandWord(record));
}

/** SIGTERM, a bounded wait, then SIGKILL. True if it was running. */
export function stopBalancerProcess(record: BalancerRecord, graceMs = 5000): Promise<boolean> {
  return terminateProcess(record.pid, commandWord(record), graceMs);
}
