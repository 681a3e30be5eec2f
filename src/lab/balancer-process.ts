// Balancer processes the lab started (pid recorded in the state): stopped by pid, after checking the
// pid still belongs to a balancer (never signal a stranger that reused it).
import { setTimeout as delay } from 'node:timers/promises';
import { commandLine, isRunning } from '../common/processes.js';
import type { BalancerRecord } from './state.js';

export async function isBalancerAlive(record: BalancerRecord): Promise<boolean> {
  if (!(await isRunning(record.pid))) return false;
  const cmd = (await commandLine(record.pid)) ?? '';
  return record.engine === 'haproxy' ? cmd.includes('haproxy') : cmd.includes('balancer');
}

/** SIGTERM, a bounded wait, then SIGKILL. True if it was running. */
export async function stopBalancerProcess(record: BalancerRecord, graceMs = 5000): Promise<boolean> {
  if (!(await isBalancerAlive(record))) return false;
  process.kill(record.pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!(await isRunning(record.pid))) return true;
    await delay(20);
  }
  process.kill(record.pid, 'SIGKILL');
  return true;
}
