// Balancer processes the lab started (pid recorded in the state): stopped by pid, after checking the
// pid still belongs to a balancer (never signal a stranger that reused it).
import { rm } from 'node:fs/promises';
import { commandLine, isRunning, terminateProcess } from '../common/processes.js';
import { writePrivateFile } from '../common/safe-files.js';
import { allBalancerFiles, balancerPidFile, ensureBalancerDir } from './lab-dir.js';
import { updateState, type BalancerRecord } from './state.js';

/** A started balancer goes into the lab state (replacing a dead one of the same name) and its pid file (0600, in `<lab-dir>/balancer/`). */
export async function recordBalancer(labDir: string, record: BalancerRecord): Promise<void> {
  await updateState(labDir, (state) => {
    state.balancers = [...state.balancers.filter((b) => b.name !== record.name), record];
  });
  await ensureBalancerDir(labDir);
  await writePrivateFile(balancerPidFile(labDir, record.name), `${record.pid}\n`);
}

/** A stopped balancer leaves the lab state, with the files the lab made for it (its log stays). */
export async function forgetBalancer(labDir: string, record: BalancerRecord): Promise<void> {
  await updateState(labDir, (state) => {
    state.balancers = state.balancers.filter((b) => !(b.name === record.name && b.pid === record.pid));
  });
  await removeBalancerFiles(labDir, record);
}

/**
 * The pid file, the haproxy.cfg the lab rendered (never a --config file of the user's own), and the log if
 * asked; also where labs made before `<lab-dir>/balancer/` kept them (rm unlinks a planted link, never
 * writes through it; what cannot be removed there, a directory planted in log/, is left alone).
 */
export async function removeBalancerFiles(labDir: string, record: BalancerRecord, options: { log?: boolean } = {}): Promise<void> {
  const { pidFiles, configFiles, logFiles } = allBalancerFiles(labDir, record.name);
  const files = [...pidFiles, ...(record.engine === 'haproxy' ? configFiles : []), ...(options.log ? logFiles : [])];
  for (const file of files) await rm(file, { force: true }).catch(() => undefined);
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
