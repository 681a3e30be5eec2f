// Running pgbench as a client (it needs no OS user switch) with its output streamed line by line, and
// stopped by an AbortSignal: SIGINT (what Ctrl-C sends it anyway), SIGKILL if it is still there 5 s later.
// pgbench prints no summary when interrupted: give it -T for a run that ends with one.
import { clientEnv } from '../postgres/client-env.js';
import { execa } from 'execa';
import { LabError, messageOf } from '../common/errors.js';
import { followLines } from '../common/lines.js';

export interface PgbenchTarget {
  host: string;
  port: number;
  user: string;
  database: string;
}

export interface PgbenchRunOptions {
  /** Each line of stdout and stderr as it comes; pgbench -i redraws progress with \r on a terminal. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface PgbenchProcessResult {
  exitCode: number | null;
  signal: string | null;
  /** stdout and stderr interleaved in arrival order */
  output: string;
  canceled: boolean;
}

/**
 * Connection settings go through PGHOST/PGPORT/PGUSER/PGDATABASE so the user's own arguments
 * (`-p`, `-U`, a database name) still win.
 */
export async function runPgbench(pgbench: string, target: PgbenchTarget, args: string[], options: PgbenchRunOptions = {}): Promise<PgbenchProcessResult> {
  const child = execa(pgbench, args, {
    // The lab's access (password file, TLS) from the client scope, not from this process's environment.
    env: { ...clientEnv(), PGHOST: target.host, PGPORT: String(target.port), PGUSER: target.user, PGDATABASE: target.database, LC_ALL: 'C', LANG: 'C' },
    extendEnv: false,
    stdin: 'ignore',
    reject: false,
    timeout: options.timeoutMs,
    cancelSignal: options.signal,
    killSignal: 'SIGINT',
    forceKillAfterDelay: 5000,
    buffer: false,
  });
  let output = '';
  const follow = (stream: NodeJS.ReadableStream | null, name: 'stdout' | 'stderr') =>
    followLines(stream, (line) => {
      output += `${line}\n`;
      if (line.trim()) options.onLine?.(line, name);
    });
  void follow(child.stdout, 'stdout');
  void follow(child.stderr, 'stderr');
  const result = await child;
  if (result.failed && result.exitCode === undefined && !result.isCanceled && !result.signal && !result.timedOut) {
    throw new LabError('ENVIRONMENT', `Could not run ${pgbench}: ${messageOf(result.originalMessage ?? result.message)}`);
  }
  return {
    exitCode: result.exitCode ?? null,
    signal: result.signal ?? null,
    output,
    canceled: Boolean(result.isCanceled),
  };
}
