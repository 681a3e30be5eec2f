// `lab fault delay` in a node's namespace (no netem here): a relay of pglab's own (src/children/delay-relay.ts,
// src/network/delay-relay.ts), started detached so it outlives the CLI, and nat rules (PGL-DELAY-*) that
// send the node's connections through it. Relays are found again from /proc by their command line.
import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { LabError } from '../common/errors.js';
import { packageRoot } from '../common/package-root.js';
import { commandArgs, startTimeOf } from '../common/processes.js';
import type { RelayConfig, RelayListener } from './delay-relay.js';
import { inNetns, netnsExists } from './ip.js';

const DELAY_CHAINS = { pre: 'PGL-DELAY-PRE', out: 'PGL-DELAY-OUT' };
const RELAY_SCRIPT = path.join(packageRoot, 'dist', 'src', 'children', 'delay-relay.js');
/** Where the relay's process lived before src/children/: a relay started by an older pglab is still found and stopped. */
const FORMER_RELAY_SCRIPT = path.join(packageRoot, 'dist', 'src', 'lab', 'delay-relay.js');

function isRelayCommand(args: string[]): boolean {
  return args.includes(RELAY_SCRIPT) || args.includes(FORMER_RELAY_SCRIPT);
}

export interface DelayTarget {
  /** The delayed node's address and port (connections to it). */
  address: string;
  port: number;
  /** The other nodes (the node's own connections to them: replication, rewind). */
  peers: { address: string; port: number }[];
  /** Only this OS user's outgoing connections are redirected (the servers'), not the relay's own. */
  uid: number;
}

/** The relay's listeners and the nat rules that send the traffic there. */
export function delayPlan(target: DelayTarget, delayMs: number, jitterMs: number): { config: RelayConfig; rules: string } {
  const taken = new Set([target.port, ...target.peers.map((p) => p.port)]);
  let next = 47100;
  const freePort = () => {
    while (taken.has(next)) next++;
    return next++;
  };
  const listeners: RelayListener[] = [{ port: freePort(), target: { host: target.address, port: target.port }, delay: 'toClient' }];
  const lines = ['*nat', `:${DELAY_CHAINS.pre} - [0:0]`, `:${DELAY_CHAINS.out} - [0:0]`];
  lines.push(`-A ${DELAY_CHAINS.pre} -p tcp -d ${target.address} --dport ${target.port} -j REDIRECT --to-ports ${listeners[0]!.port}`);
  for (const peer of target.peers) {
    const port = freePort();
    listeners.push({ port, target: { host: peer.address, port: peer.port }, delay: 'toTarget' });
    lines.push(`-A ${DELAY_CHAINS.out} -p tcp -d ${peer.address} --dport ${peer.port} -m owner --uid-owner ${target.uid} -j REDIRECT --to-ports ${port}`);
  }
  lines.push(`-I PREROUTING 1 -j ${DELAY_CHAINS.pre}`, `-I OUTPUT 1 -j ${DELAY_CHAINS.out}`, 'COMMIT', '');
  return { config: { delayMs, jitterMs, listeners }, rules: lines.join('\n') };
}

/** Start the relay in the namespace (it outlives this CLI), then the rules; returns its pid and start time. */
export async function applyDelay(netns: string, target: DelayTarget, delayMs: number, jitterMs: number): Promise<{ pid: number; startTime: number }> {
  await removeDelay(netns);
  const { config, rules } = delayPlan(target, delayMs, jitterMs);
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, RELAY_SCRIPT, JSON.stringify(config), netns], {
    detached: true, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  const ready = await new Promise<string | undefined>((resolve) => {
    let errors = '';
    const timer = setTimeout(() => resolve('it did not say ready within 5 s'), 5000);
    child.stdout!.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready')) {
        clearTimeout(timer);
        resolve(undefined);
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => (errors += chunk.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(`it exited (${code}): ${errors.trim()}`);
    });
  });
  child.stdout!.destroy();
  child.stderr!.destroy();
  child.unref();
  if (ready || !pid) {
    if (pid) await terminateRelay(pid);
    throw new LabError('COMMAND_FAILED', `The delay relay in ${netns} did not start: ${ready ?? 'no pid'}`);
  }
  const startTime = startTimeOf(pid) ?? 0;
  await inNetns(netns, 'iptables-restore', ['--noflush'], rules);
  return { pid, startTime };
}

/** A pid that runs pglab's delay relay for `netns` (its command line says so), else false. */
async function isRelayOf(pid: number, netns: string): Promise<boolean> {
  const args = await commandArgs(pid);
  return Boolean(args && isRelayCommand(args) && args[args.length - 1] === netns);
}

async function terminateRelay(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

/** Every delay relay of a namespace name starting with `prefix`, from /proc (a CLI killed before recording its pid included). */
export async function relaysOf(prefix: string): Promise<{ pid: number; netns: string }[]> {
  const found: { pid: number; netns: string }[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const args = await commandArgs(Number(entry));
    const netns = args?.[args.length - 1];
    if (args && isRelayCommand(args) && netns?.startsWith(prefix)) found.push({ pid: Number(entry), netns });
  }
  return found;
}

/** The nat rules, then the relay of a namespace's delay (new connections go direct at once); false when there was nothing. */
export async function removeDelay(netns: string): Promise<boolean> {
  let removed = false;
  if (await netnsExists(netns)) {
    const rules = (await inNetns(netns, 'iptables', ['-t', 'nat', '-S'])).split('\n');
    const lines = ['*nat'];
    for (const [builtin, chain] of [['PREROUTING', DELAY_CHAINS.pre], ['OUTPUT', DELAY_CHAINS.out]] as const) {
      for (const rule of rules) if (rule === `-A ${builtin} -j ${chain}`) lines.push(`-D ${builtin} -j ${chain}`);
      if (rules.includes(`-N ${chain}`)) lines.push(`-F ${chain}`, `-X ${chain}`);
    }
    if (lines.length > 1) {
      lines.push('COMMIT', '');
      await inNetns(netns, 'iptables-restore', ['--noflush'], lines.join('\n'));
      removed = true;
    }
  }
  for (const relay of await relaysOf(netns)) {
    if (relay.netns !== netns || !(await isRelayOf(relay.pid, netns))) continue;
    await terminateRelay(relay.pid);
    removed = true;
  }
  return removed;
}

/** The delay rules in force in a namespace (nat table), for tests. */
export async function delayRules(netns: string): Promise<string[]> {
  if (!(await netnsExists(netns))) return [];
  return (await inNetns(netns, 'iptables', ['-t', 'nat', '-S'])).split('\n').filter((line) => line.includes('PGL-'));
}
