// How long one `lab stat xact` of four nodes takes, against the seed's ut-stat-xact body: a bash loop
// of four psql calls. Both run in the same process, interleaved, on the same lab; medians are printed.
//
//   node dist/benchmarks/stat-xact.js [--lab-dir DIR] [--rounds N]
// Without --lab-dir a temporary lab (master + 3 replicas, PostgreSQL 15) is built and destroyed.
import { mkdtemp, rm, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { findFreePort } from '../src/common/ports.js';
import { statXact } from '../src/commands/stat.js';
import { requireState } from '../src/lab/state.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const labBin = path.join(repoRoot, 'bin', 'lab.js');
const DEBIAN_PSQL = '/usr/lib/postgresql/15/bin/psql';

const { values } = parseArgs({ options: { 'lab-dir': { type: 'string' }, rounds: { type: 'string', default: '15' } } });
const rounds = Number(values.rounds);

async function lab(labDir: string, ...args: string[]): Promise<void> {
  await execa('node', [labBin, '--lab-dir', labDir, ...args]);
}

async function buildLab(): Promise<{ labDir: string; root: string }> {
  const root = await mkdtemp(path.join(tmpdir(), 'pglab-bench-'));
  await chmod(root, 0o755);
  const labDir = path.join(root, 'lab');
  const ports: number[] = [];
  while (ports.length < 4) {
    const port = await findFreePort();
    if (!ports.includes(port)) ports.push(port);
  }
  await lab(labDir, 'master', 'start', '--port', String(ports[0]));
  for (const [i, port] of ports.slice(1).entries()) await lab(labDir, 'replica', 'add', `replica${i + 1}`, path.join(labDir, `replica${i + 1}`), String(port));
  return { labDir, root };
}

/** The seed's loop, as its bash script ran it: four psql calls one after the other. */
function seedLoop(psql: string, ports: number[]): string {
  const sql = 'select $port as port, datname, numbackends, xact_commit, xact_rollback from pg_stat_database where datname=current_database()';
  return `for port in ${ports.join(' ')}; do ${psql} -h 127.0.0.1 -p $port -U postgres -d postgres -c "${sql}"; done`;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const built = values['lab-dir'] ? undefined : await buildLab();
const labDir = path.resolve(values['lab-dir'] ?? built!.labDir);
try {
  const state = await requireState(labDir);
  const ports = state.nodes.map((n) => n.port).sort((a, b) => a - b);
  if (ports.length !== 4) console.error(`note: this lab has ${ports.length} nodes, not 4`);
  const runs: Record<string, number[]> = { lab: [], psqlPath: [], psqlDirect: [], inProcess: [] };
  // One warm-up of each, then interleaved rounds so both see the same machine.
  await execa('node', [labBin, '--lab-dir', labDir, 'stat', 'xact']);
  await execa('bash', ['-c', seedLoop('psql', ports)]);
  for (let i = 0; i < rounds; i++) {
    runs.lab!.push(await timed(() => execa('node', [labBin, '--lab-dir', labDir, 'stat', 'xact'], { env: { NO_COLOR: '1' } })));
    runs.psqlPath!.push(await timed(() => execa('bash', ['-c', seedLoop('psql', ports)])));
    runs.psqlDirect!.push(await timed(() => execa('bash', ['-c', seedLoop(DEBIAN_PSQL, ports)])));
    runs.inProcess!.push(await timed(() => statXact({ labDir })));
  }
  const lab = median(runs.lab!);
  const seed = median(runs.psqlPath!);
  const direct = median(runs.psqlDirect!);
  const inProcess = median(runs.inProcess!);
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
  console.log(`nodes: ${ports.length} (ports ${ports.join(', ')}), rounds: ${rounds}, medians:`);
  console.log(`  A  lab stat xact, a new CLI process, one sample of all nodes at once: ${lab.toFixed(1)} ms`);
  console.log(`  B  seed loop, 4 x psql from PATH (Debian's pg_wrapper):              ${seed.toFixed(1)} ms`);
  console.log(`  C  seed loop, 4 x ${DEBIAN_PSQL}:                  ${direct.toFixed(1)} ms`);
  console.log(`  D  one sample inside a running \`lab stat xact --watch\`:             ${inProcess.toFixed(1)} ms`);
  console.log(`  A/B = ${ratio(lab, seed)}, A/C = ${ratio(lab, direct)}, D/B = ${ratio(inProcess, seed)}, D/C = ${ratio(inProcess, direct)} (below 1 = lab faster)`);
} finally {
  if (built) {
    await execa('node', [labBin, '--lab-dir', labDir, 'destroy', '--yes'], { reject: false });
    await rm(built.root, { recursive: true, force: true });
  }
}
