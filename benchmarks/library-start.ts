// How long a test suite waits for a lab: `Lab.start({ replicas: 2 })` plus its disposal, beside one bare
// server made by hand in the same run (initdb, `pg_ctl start -w`, `pg_ctl stop`, rm: the floor any harness
// pays for a server) and the CLI's three commands (`lab master start`, `lab replica add` twice) and
// `lab destroy --yes`. Rounds alternate the three, so load on the machine falls on each alike. Medians.
//   node dist/benchmarks/library-start.js            (BENCH_ROUNDS=10 by default)
import { chmod, chown, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { Lab } from '../src/index.js';
import { findFreePorts } from '../src/common/ports.js';
import { resolveInstallation } from '../src/postgres/installation.js';
import { resolveRunAs } from '../src/postgres/os-user.js';
import { runPg } from '../src/postgres/run.js';
import { median } from './median.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 10);
const labBin = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'lab.js');

async function tempDir(root = tmpdir()): Promise<string> {
  const dir = await mkdtemp(path.join(root, 'pglab-bench-'));
  await chmod(dir, 0o755);
  return dir;
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

const installation = await resolveInstallation(undefined);
const runAs = await resolveRunAs(undefined);
const tool = (name: string) => path.join(installation.bindir, name);

async function bareServer(root?: string): Promise<number> {
  const dir = await tempDir(root);
  const datadir = path.join(dir, 'data');
  const [port] = await findFreePorts(1);
  try {
    return await timed(async () => {
      await mkdir(datadir, { mode: 0o700 });
      if (runAs) await chown(datadir, runAs.uid, runAs.gid);
      await runPg(tool('initdb'), ['-D', datadir, '-U', 'postgres', '--no-locale', '-E', 'UTF8', '-A', 'trust'], { runAs });
      await runPg(tool('pg_ctl'), ['-D', datadir, '-l', path.join(datadir, 'log'), '-w', '-o', `-p ${port} -k /tmp -c listen_addresses=127.0.0.1`, 'start'], { runAs });
      await runPg(tool('pg_ctl'), ['-D', datadir, '-m', 'fast', '-w', 'stop'], { runAs });
      await rm(dir, { recursive: true, force: true });
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function library(): Promise<number> {
  return timed(async () => {
    const lab = await Lab.start({ replicas: 2 });
    await lab.close();
  });
}

async function cli(): Promise<{ commands: number; destroy: number }> {
  const dir = await tempDir();
  const [m, r1, r2] = await findFreePorts(3);
  const lab = (...args: string[]) => execa('node', [labBin, '--lab-dir', dir, ...args], { env: { NO_COLOR: '1' } });
  try {
    const commands = await timed(async () => {
      await lab('master', 'start', '--port', String(m));
      await lab('replica', 'add', 'replica1', path.join(dir, 'replica1'), String(r1));
      await lab('replica', 'add', 'replica2', path.join(dir, 'replica2'), String(r2));
    });
    const destroy = await timed(async () => {
      await lab('destroy', '--yes');
    });
    return { commands, destroy };
  } finally {
    await execa('node', [labBin, '--lab-dir', dir, 'destroy', '--yes'], { reject: false });
    await rm(dir, { recursive: true, force: true });
  }
}

// One round of each first, not counted: the initdb template and the OS's caches are made then.
await library();
await bareServer();
const bare: number[] = [];
const bareShm: number[] = [];
const lib: number[] = [];
const cliCommands: number[] = [];
const cliWithDestroy: number[] = [];
for (let round = 0; round < rounds; round += 1) {
  bare.push(await bareServer());
  bareShm.push(await bareServer('/dev/shm'));
  lib.push(await library());
  const c = await cli();
  cliCommands.push(c.commands);
  cliWithDestroy.push(c.commands + c.destroy);
  console.error(`round ${round + 1}/${rounds}: bare ${bare.at(-1)!.toFixed(0)} ms (/dev/shm ${bareShm.at(-1)!.toFixed(0)} ms), library ${lib.at(-1)!.toFixed(0)} ms, cli ${c.commands.toFixed(0)} + destroy ${c.destroy.toFixed(0)} ms`);
}
const b = median(bare)!;
const rows: [string, number][] = [
  ['one bare server by hand (initdb, pg_ctl start -w, stop, rm)', b],
  ['the same bare server in /dev/shm (memory, where Lab.start puts temp labs)', median(bareShm)!],
  ['Lab.start({ replicas: 2 }) + close()', median(lib)!],
  ['CLI: master start + replica add x2', median(cliCommands)!],
  ['CLI: the three commands + destroy --yes', median(cliWithDestroy)!],
];
console.log(`PostgreSQL ${installation.version}, ${rounds} rounds, medians:`);
for (const [what, ms] of rows) console.log(`  ${what.padEnd(76)} ${ms.toFixed(0).padStart(6)} ms  ${(ms / b).toFixed(2)} x bare`);
