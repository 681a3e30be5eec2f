// Running PostgreSQL's programs: as the lab's OS user when we are root, with their output captured so
// a failure says what the program said.
import { execa, type ResultPromise } from 'execa';
import { LabError } from '../common/errors.js';
import { followLines } from '../common/lines.js';
import type { OsUser } from './os-user.js';
import { inHostCommand } from '../network/namespaces.js';

export interface RunOptions {
  runAs?: OsUser;
  /** Called with each line of stderr as it comes (progress output). */
  onStderrLine?: (line: string) => void;
  timeoutMs?: number;
  env?: Record<string, string>;
  /** Run it in this network namespace (a node's host, --hosts): `ip netns exec` as root, then setpriv to runAs. */
  netns?: string;
  /** Terminates the program (SIGTERM); the call then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Written to the program's stdin (postgres --single reads its statements there); stdin is empty without it. */
  input?: string;
}

/**
 * The program's environment: ours without libpq's PG* variables (they point at the invoking user's
 * pgpass file and the lab's sslmode for pglab's own clients; a server started with them would hand
 * them to its walreceiver's libpq), plus what the caller gives it.
 */
function userEnv(runAs: OsUser | undefined, extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) if (value !== undefined && !name.startsWith('PG')) env[name] = value;
  Object.assign(env, { LC_ALL: 'C', LANG: 'C', ...extra });
  if (runAs) Object.assign(env, { HOME: runAs.home, USER: runAs.name, LOGNAME: runAs.name });
  return env;
}

export async function runPg(file: string, args: string[], options: RunOptions = {}): Promise<{ stdout: string; stderr: string }> {
  const command = options.netns ? inHostCommand(options.netns, options.runAs, file, args) : { file, args };
  const child: ResultPromise = execa(command.file, command.args, {
    uid: options.netns ? undefined : options.runAs?.uid,
    gid: options.netns ? undefined : options.runAs?.gid,
    env: userEnv(options.runAs, options.env),
    extendEnv: false,
    cwd: '/',
    ...(options.input === undefined ? { stdin: 'ignore' as const } : { input: options.input }),
    reject: false,
    timeout: options.timeoutMs,
    all: false,
    ...(options.signal ? { cancelSignal: options.signal } : {}),
  });
  const { onStderrLine } = options;
  if (onStderrLine) {
    void followLines(child.stderr, (line) => {
      if (line.trim()) onStderrLine(line);
    });
  }
  const result = await child;
  options.signal?.throwIfAborted();
  const stdout = String(result.stdout ?? '');
  const stderr = String(result.stderr ?? '');
  if (result.failed) {
    const name = file.split('/').pop();
    const reason = result.timedOut
      ? `timed out after ${options.timeoutMs}ms`
      : result.exitCode !== undefined
        ? `exit code ${result.exitCode}`
        : `signal ${result.signal}`;
    const lastLine = lastMeaningfulLine(stderr) ?? lastMeaningfulLine(stdout) ?? String(result.message ?? '');
    throw new LabError('COMMAND_FAILED', `${name} failed (${reason}): ${lastLine}`, {
      detail: tail(`${stdout}\n${stderr}`, 20),
    });
  }
  return { stdout, stderr };
}

function lastMeaningfulLine(text: string): string | undefined {
  return text
    .split(/\r?\n|\r/)
    .map((line) => line.trim())
    .filter(Boolean)
    .pop();
}

export function tail(text: string, lines: number): string {
  return text.trimEnd().split(/\r?\n/).slice(-lines).join('\n');
}
