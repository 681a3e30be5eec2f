// pgbench as the bench runs it: select-only against a host:port, bounded in time, its summary read
// from stdout and its aborted clients counted from stderr ("client 3 aborted while establishing
// connection"). Its password comes from the environment's PGPASSFILE (the bench sets the lab's), its
// sslmode from the run (plaintext unless asked).
import { execa } from 'execa';

export interface PgbenchResult {
  tps: number;
  transactions: number;
  /** Lines "client N aborted ..." (pgbench gives up on that client for the rest of the run). */
  aborted: number;
  /** Of those, the ones that aborted while connecting (what a balancer can save). */
  abortedConnecting: number;
  exitCode: number;
  stderrTail: string;
}

export interface PgbenchRun {
  port: number;
  seconds: number;
  clients: number;
  /** -C: a new connection per transaction, like the seed's run. */
  connectPerTransaction: boolean;
  threads?: number;
  /**
   * libpq's sslmode for this run (PGSSLMODE), default `disable`: the bench chooses per run, whatever
   * the environment says; the password comes from PGPASSFILE (the lab's pgpass file).
   */
  sslmode?: 'disable' | 'require';
}

export function pgbenchArgs(run: PgbenchRun): string[] {
  return [
    '-h', '127.0.0.1', '-p', String(run.port), '-U', 'postgres',
    '-n', '-S', '-c', String(run.clients), '-j', String(run.threads ?? 2), '-T', String(run.seconds),
    ...(run.connectPerTransaction ? ['-C'] : []),
    'postgres',
  ];
}

export function parsePgbench(stdout: string, stderr: string, exitCode: number): PgbenchResult {
  const tps = Number(/tps = ([\d.]+)/.exec(stdout)?.[1] ?? 0);
  const transactions = Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1] ?? 0);
  const abortedLines = stderr.split('\n').filter((line) => /client \d+ aborted/.test(line));
  return {
    tps,
    transactions,
    aborted: abortedLines.length,
    abortedConnecting: abortedLines.filter((line) => /establishing connection/.test(line)).length,
    exitCode,
    stderrTail: stderr.trim().split('\n').slice(-5).join('\n'),
  };
}

/** One run; never throws on pgbench's own failure (aborted clients are a result), only if it cannot start. */
export async function runPgbench(run: PgbenchRun): Promise<PgbenchResult> {
  const result = await execa('pgbench', pgbenchArgs(run), {
    reject: false,
    // pgbench stops itself after -T; the margin covers connection timeouts of its last clients.
    timeout: (run.seconds + 60) * 1000,
    env: { PGCONNECT_TIMEOUT: '5', PGSSLMODE: run.sslmode ?? 'disable' },
  });
  if (result.failed && result.exitCode === undefined) {
    throw new Error(`pgbench could not run: ${result.shortMessage}`);
  }
  return parsePgbench(String(result.stdout), String(result.stderr), result.exitCode ?? -1);
}
