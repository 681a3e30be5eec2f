// pglab's own base backup (pg_backup_start, kernel file copy as the data's owner, pg_backup_stop) against
// pg_basebackup 15 (-X stream --checkpoint=fast) on the same PostgreSQL 15 master, in the same run,
// alternating, into fresh dirs; prints seconds, the ratio, and the lab process's peak RSS during pglab's
// backup (this process's resident size, sampled, plus the copying child's peak).
//
//   node dist/benchmarks/base-backup.js [--scale 70] [--rounds 2]
// A throwaway lab is built (pgbench -i -s SCALE, ~15 MB per unit: 70 is ~1 GB) and destroyed.
import { chmod, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { silentReporter } from '../src/common/reporter.js';
import { findFreePort } from '../src/common/ports.js';
import { toolEnv, useLabAccess } from '../src/lab/access.js';
import { requireState } from '../src/lab/state.js';
import { dropSlot, ensureSlot, ownBaseBackup } from '../src/postgres/base-backup.js';
import { queryRows } from '../src/postgres/client.js';
import { giveTo, resolveRunAs } from '../src/postgres/os-user.js';
import { runPg } from '../src/postgres/run.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const labBin = path.join(repoRoot, 'bin', 'lab.js');
const PG_BASEBACKUP = '/usr/lib/postgresql/15/bin/pg_basebackup';
const PGBENCH = '/usr/lib/postgresql/15/bin/pgbench';

const { values } = parseArgs({ options: { scale: { type: 'string', default: '70' }, rounds: { type: 'string', default: '2' } } });
const scale = Number(values.scale);
const rounds = Number(values.rounds);

async function lab(labDir: string, ...args: string[]): Promise<void> {
  await execa('node', [labBin, '--lab-dir', labDir, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
}

async function rssKb(field: 'VmRSS' | 'VmHWM', pid: number | 'self' = 'self'): Promise<number> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(text)?.[1] ?? 0);
}

const root = await mkdtemp(path.join(tmpdir(), 'pglab-bench-bb-'));
await chmod(root, 0o755);
const labDir = path.join(root, 'lab');
const port = await findFreePort();
const runAs = await resolveRunAs(undefined);
try {
  await lab(labDir, '--pg', '15', 'master', 'start', '--port', String(port));
  const state = await requireState(labDir);
  useLabAccess(labDir, state);
  const master = state.nodes[0]!;
  const conn = { port, user: state.dbUser };
  process.stderr.write(`pgbench -i -s ${scale} on PostgreSQL 15 (port ${port})...\n`);
  await execa(PGBENCH, ['-i', '-s', String(scale), '-h', '127.0.0.1', '-p', String(port), '-U', state.dbUser, 'postgres'], { stdout: 'ignore', stderr: 'inherit' });
  const size = (await queryRows<{ s: string }>(conn, 'SELECT pg_size_pretty(sum(pg_database_size(datname))) AS s FROM pg_database'))[0]!.s;
  process.stderr.write(`databases: ${size}\n`);
  // The load's dirty pages are flushed before the first round, which would pay for them otherwise.
  await queryRows(conn, 'CHECKPOINT');
  const pgEnv = await toolEnv(labDir, state); // what replica add gives pg_basebackup (PGPASSWORD)

  const times: Record<'pglab' | 'pg_basebackup', number[]> = { pglab: [], pg_basebackup: [] };
  let parentPeakKb = 0;
  let childPeakKb = 0;
  const before = await rssKb('VmRSS');
  let n = 0;
  for (let round = 1; round <= rounds; round += 1) {
    const order = round % 2 === 1 ? (['pglab', 'pg_basebackup'] as const) : (['pg_basebackup', 'pglab'] as const);
    for (const method of order) {
      n += 1;
      const target = path.join(root, `copy${n}`);
      await mkdir(target, { mode: 0o700 });
      await giveTo(target, runAs);
      await execa('sync');
      const started = process.hrtime.bigint();
      if (method === 'pglab') {
        await ensureSlot(conn, 'bench_slot', { fresh: true });
        let sampling = true;
        const sampler = (async () => {
          while (sampling) {
            parentPeakKb = Math.max(parentPeakKb, await rssKb('VmRSS'));
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        })();
        const t0 = process.hrtime.bigint();
        const result = await ownBaseBackup({ conn, major: 15, sourceDatadir: master.datadir, targetDatadir: target, owner: runAs, label: 'bench', reporter: silentReporter });
        times.pglab.push(Number(process.hrtime.bigint() - t0) / 1e9);
        sampling = false;
        await sampler;
        childPeakKb = Math.max(childPeakKb, result.childPeakRssKb ?? 0);
        process.stderr.write(`  pg_backup_start ${result.phasesMs.start} ms, copy ${result.phasesMs.copy} ms (${result.files} files), pg_backup_stop ${result.phasesMs.stop} ms\n`);
        await dropSlot(conn, 'bench_slot');
      } else {
        await runPg(PG_BASEBACKUP, ['-h', '127.0.0.1', '-p', String(port), '-U', state.dbUser, '-D', target, '-X', 'stream', '--checkpoint=fast'], {
          runAs, env: pgEnv, timeoutMs: 30 * 60_000,
        });
        times.pg_basebackup.push(Number(process.hrtime.bigint() - started) / 1e9);
      }
      const seconds = times[method][times[method].length - 1]!;
      process.stderr.write(`round ${round}: ${method.padEnd(13)} ${seconds.toFixed(2)} s\n`);
      await rm(target, { recursive: true, force: true });
    }
  }
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const own = sum(times.pglab);
  const ref = sum(times.pg_basebackup);
  console.log(`base backup of a PostgreSQL 15 master, pgbench -i -s ${scale} (${size}), ${rounds} alternating rounds`);
  console.log(`pg_basebackup 15 -X stream --checkpoint=fast: ${times.pg_basebackup.map((t) => t.toFixed(2)).join(' s, ')} s (reference)`);
  console.log(`pglab's own (low-level API + kernel copy):    ${times.pglab.map((t) => t.toFixed(2)).join(' s, ')} s`);
  console.log(`ratio pglab / pg_basebackup (sum of rounds):   ${(own / ref).toFixed(2)}x`);
  console.log(`lab process RSS during pglab's backup: peak ${(parentPeakKb / 1024).toFixed(0)} MB (${(before / 1024).toFixed(0)} MB before), copy child peak ${(childPeakKb / 1024).toFixed(0)} MB`);
} finally {
  await execa('node', [labBin, '--lab-dir', labDir, 'destroy', '--yes'], { reject: false });
  await rm(root, { recursive: true, force: true });
}
