// Test helpers: a temporary lab dir, free ports, the real CLI run as a child process, and cleanup that
// destroys the lab and checks that no process of it is left behind.
import { mkdtemp, rm, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { execa, type Options } from 'execa';
import { findFreePorts } from '../../src/common/ports.js';
import { accessEnv, forgetLabAccess } from '../../src/lab/access.js';
import { LIBPQ_ACCESS_VARS } from '../../src/postgres/client-env.js';
import { readState } from '../../src/lab/state.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const labBin = path.join(repoRoot, 'bin', 'lab.js');

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Run `lab ...` as a user would, in a child process. Never throws on a non-zero exit. */
export async function runLab(labDir: string, args: string[], options: Options = {}): Promise<CliResult> {
  const result = await execa('node', [labBin, '--lab-dir', labDir, ...args], {
    reject: false,
    timeout: 300_000,
    env: { NO_COLOR: '1', ...(options.env ?? {}) },
    ...options,
  });
  await useLabEnv(labDir);
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

/**
 * The test process logs in as `eval "$(lab env)"` would: the lab's pgpass file, CA and sslmode in its
 * environment, for its own node-postgres clients and the psql / pgbench it starts. (pglab itself never
 * writes process.env; a test, like a user's shell, may.) pglab functions the test calls in-process
 * then read the same variables: no lab scope is left set here.
 */
export async function useLabEnv(labDir: string): Promise<void> {
  forgetLabAccess();
  for (const name of LIBPQ_ACCESS_VARS) delete process.env[name];
  const state = await readState(labDir).catch(() => undefined);
  if (!state) return;
  // Tests pick their sslmode per connection; node-postgres would read PGSSLMODE=verify-full as `ssl: true`
  // against Node's own CAs. psql with no sslmode prefers TLS and, with PGSSLROOTCERT set, verifies the CA.
  const { NODE_EXTRA_CA_CERTS: _forNodePrograms, PGSSLMODE: _perConnection, ...env } = accessEnv(labDir, state);
  Object.assign(process.env, env);
}

/** The one-line refusal of a bad input: exit code, and a single line on stderr. */
export async function refused(labDir: string, args: string[], exitCode: number, pattern: RegExp): Promise<void> {
  const result = await runLab(labDir, args, { timeout: 30_000 });
  assert.equal(result.exitCode, exitCode, `lab ${args.join(' ')}: ${result.stderr}`);
  const lines = result.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line expected from lab ${args.join(' ')}:\n${result.stderr}`);
  assert.match(lines[0]!, pattern);
}

/** Like runLab, but the command must succeed. */
export async function lab(labDir: string, ...args: string[]): Promise<string> {
  const result = await runLab(labDir, args);
  assert.equal(result.exitCode, 0, `lab ${args.join(' ')} failed (exit ${result.exitCode}):\n${result.stderr}\n${result.stdout}`);
  return result.stdout;
}

export async function labJson<T = any>(labDir: string, ...args: string[]): Promise<T> {
  return JSON.parse(await lab(labDir, ...args, '--json')) as T;
}

/** A fresh temporary dir readable by the postgres OS user (tests run as root). */
export async function tempDir(prefix = 'pglab-test-'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  await chmod(dir, 0o755);
  return dir;
}

/** `count` distinct free ports. */
export const freePorts = (count: number): Promise<number[]> => findFreePorts(count);

/** Pids of processes whose command line mentions `needle` (e.g. a temp lab dir). */
export async function processesMentioning(needle: string): Promise<string[]> {
  const { stdout } = await execa('ps', ['-eo', 'pid=,stat=,args='], { reject: false });
  return String(stdout)
    .split('\n')
    .filter((line) => line.includes(needle) && !/^\s*\d+\s+Z/.test(line) && !line.includes(' ps -eo'));
}

/**
 * A temporary lab: `use(labDir)` runs the test, then the lab is destroyed, the dir removed, and the
 * test fails if any process mentioning the lab dir is still alive. `name`: the lab dir's own name.
 */
export async function withTempLab(use: (labDir: string) => Promise<void>, name = 'lab'): Promise<void> {
  const root = await tempDir();
  const labDir = path.join(root, name);
  try {
    await use(labDir);
  } finally {
    const destroyed = await runLab(labDir, ['destroy', '--yes']);
    const left = await processesMentioning(root);
    await rm(root, { recursive: true, force: true });
    if (!/No lab in/.test(destroyed.stderr)) assert.equal(destroyed.exitCode, 0, `destroy failed: ${destroyed.stderr}`);
    assert.deepEqual(left, [], `processes left behind by the test:\n${left.join('\n')}`);
  }
}

/** A PostgreSQL major for a test: Debian's 15 comes from scripts/setup.sh, the others from `lab versions install N`. */
export async function ensureMajor(major: number): Promise<void> {
  const versions = await labJson<{ major: number }[]>('/nonexistent-lab', 'versions');
  if (versions.some((v) => v.major === major)) return;
  const result = await runLab('/nonexistent-lab', ['versions', 'install', String(major)]);
  assert.equal(result.exitCode, 0, `lab versions install ${major}:\n${result.stderr}\n${result.stdout}`);
}

/** `mark(what)` prints, as a test diagnostic, how long after this call `what` happened. */
export function stopwatch(t: { diagnostic(message: string): void }): (what: string) => void {
  const started = performance.now();
  return (what) => t.diagnostic(`${what} at ${Math.round(performance.now() - started)} ms`);
}
