// Balancer processes the lab started (pid recorded in the state): stopped by pid, after checking the
// pid still belongs to a balancer (never signal a stranger that reused it).
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { commandLine, isRunning, terminateProcess } from '../common/processes.js';
import { updateState, type BalancerRecord } from './state.js';

/** `<lab-dir>/balancer-NAME.pid`, beside lab.json, for people and scripts that look for a pid file. */
export function balancerPidFile(labDir: string, name: string): string {
  return path.join(labDir, `balancer-${name}.pid`);
}

/** A started balancer goes into the lab state (replacing a dead one of the same name) and its pid file. */
export async function recordBalancer(labDir: string, record: BalancerRecord): Promise<void> {
  await updateState(labDir, (state) => {
    state.balancers = [...state.balancers.filter((b) => b.name !== record.name), record];
  });
  await writeFile(balancerPidFile(labDir, record.name), `${record.pid}\n`);
}

/** A stopped balancer leaves the lab state, with the files the lab made for it (its log stays). */
export async function forgetBalancer(labDir: string, record: BalancerRecord): Promise<void> {
  await updateState(labDir, (state) => {
    state.balancers = state.balancers.filter((b) => !(b.name === record.name && b.pid === record.pid));
  });
  await removeBalancerFiles(labDir, record);
}

/** The pid file, the haproxy.cfg the lab rendered (never a --config file of the user's own), and the log if asked. */
export async function removeBalancerFiles(labDir: string, record: BalancerRecord, options: { log?: boolean } = {}): Promise<void> {
  await rm(balancerPidFile(labDir, record.name), { force: true });
  if (record.engine === 'haproxy' && record.configFile) await rm(record.configFile, { force: true });
  if (options.log) await rm(record.logFile, { force: true });
}

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
