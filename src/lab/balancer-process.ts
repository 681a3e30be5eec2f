// Balancer processes the lab started (pid recorded in the state): stopped by pid, after checking the
// pid still belongs to a balancer (never signal a stranger that reused it).
import { rm } from 'node:fs/promises';
import { LabError } from '../common/errors.js';
import path from 'node:path';
import { commandArgs, isRunning, startTimeOf, terminateProcess } from '../common/processes.js';
import { writePrivateFile } from '../common/safe-files.js';
import { allBalancerFiles, balancerPidFile, ensureBalancerDir } from './lab-dir.js';
import { updateState, type BalancerRecord } from './state.js';

/** A started balancer goes into the lab state (replacing a dead one of the same name) and its pid file (0600, in `<lab-dir>/balancer/`). */
export async function recordBalancer(labDir: string, record: BalancerRecord): Promise<void> {
  // The pid file first: `lab balancer start` returns once the record is in lab.json, and the pid file is there then.
  await ensureBalancerDir(labDir);
  await writePrivateFile(balancerPidFile(labDir, record.name), `${record.pid}\n`);
  await updateState(labDir, (state) => {
    state.balancers = [...state.balancers.filter((b) => b.name !== record.name), record];
  });
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

/**
 * Whether the record's pid is the balancer the lab started: `ours` when it runs with the start time
 * recorded at launch and a balancer's command line; `gone` when nothing runs there or something else
 * does (a pid reused later has a later start time); `unproven` when a balancer runs there but the record
 * has no start time (made before start times were recorded, or edited): never signalled.
 */
export async function balancerProcess(record: BalancerRecord): Promise<'ours' | 'gone' | 'unproven'> {
  // A library balancer runs in its program (any command line): that process, started when recorded.
  if (record.inProcess) return record.startTime !== undefined && startTimeOf(record.pid) === record.startTime ? 'ours' : 'gone';
  if (!(await isRunning(record.pid)) || !isBalancerCommand(record, await commandArgs(record.pid))) return 'gone';
  if (record.startTime === undefined) return 'unproven';
  return startTimeOf(record.pid) === record.startTime ? 'ours' : 'gone';
}

/** `lab ... balancer start --foreground ...` (the built-in engine), or haproxy. */
function isBalancerCommand(record: BalancerRecord, args: string[] | undefined): boolean {
  if (!args) return false;
  if (record.engine === 'haproxy') return path.basename(args[0] ?? '') === 'haproxy';
  const at = args.indexOf('balancer');
  return at >= 0 && args[at + 1] === 'start' && args.includes('--foreground');
}

export async function isBalancerAlive(record: BalancerRecord): Promise<boolean> {
  return (await balancerProcess(record)) !== 'gone';
}

/** SIGTERM, a bounded wait, then SIGKILL, only to the process the lab started. True if it was running. */
export async function stopBalancerProcess(record: BalancerRecord, graceMs = 5000): Promise<boolean> {
  if (record.inProcess) {
    // A library balancer lives in its program's own process: signalling that pid would end the program.
    if (record.pid === process.pid || startTimeOf(record.pid) !== record.startTime) return false;
    throw new LabError('CONFLICT', `balancer ${record.name} runs inside the program that started it with pglab's library (pid ${record.pid}): stop it there (balancer.stop()), or end that program`);
  }
  const found = await balancerProcess(record);
  if (found === 'gone') return false;
  if (found === 'unproven') {
    throw new LabError('UNSAFE', `balancer ${record.name}: pid ${record.pid} runs a ${commandWord(record)} but lab.json records no start time for it, so it was not signalled; stop it yourself if it is this lab's`);
  }
  return terminateProcess(record.pid, commandWord(record), graceMs);
}
