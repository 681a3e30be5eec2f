// Paths PostgreSQL's programs hand to /bin/sh (REFERENCE.md 10): pg_ctl starts the server with
// `exec "BINDIR/postgres" -D "DATADIR" ... >> "LOGFILE" 2>&1` through /bin/sh -c, initdb runs
// "BINDIR/postgres" through popen, pg_rewind runs `"BINDIR/postgres" --single -D "DATADIR"`. Inside
// double quotes the shell still expands $ and ` (so `$(...)` runs a command as the servers' OS user), a "
// ends the quoting and \ escapes; a newline splits postmaster.pid, which pg_ctl reads back line by line.
// Such paths are refused before anything is made; PostgreSQL's programs never see one.
// A single quote is allowed: no path goes into a single-quoted value of the lab's config files.
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { LabError } from './errors.js';

const SHELL_CHARACTERS: Record<string, string> = {
  '`': 'a backtick (`), which /bin/sh runs as a command when pg_ctl starts PostgreSQL',
  $: 'a dollar sign ($), which /bin/sh expands when pg_ctl starts PostgreSQL ($(...) runs a command)',
  '"': 'a double quote ("), which ends the double quotes pg_ctl puts the path in for /bin/sh',
  '\\': 'a backslash (\\), which /bin/sh reads as an escape inside the double quotes pg_ctl puts the path in',
};

const CONTROL_NAMES: Record<string, string> = { '\n': 'a newline', '\r': 'a carriage return', '\t': 'a tab' };

/** What is wrong with the first character of `file` that a shell or PostgreSQL's line-based files would misread, if any. */
export function shellUnsafeCharacter(file: string): string | undefined {
  for (const ch of file) {
    const shell = SHELL_CHARACTERS[ch];
    if (shell) return shell;
    const code = ch.charCodeAt(0);
    if (code < 0x20 || code === 0x7f) {
      const name = CONTROL_NAMES[ch] ?? `a control character (U+${code.toString(16).toUpperCase().padStart(4, '0')})`;
      return `${name}, which splits the lines of postmaster.pid that pg_ctl reads back`;
    }
  }
  return undefined;
}

/**
 * `file` unchanged, or a refusal (exit 4) naming it (JSON-quoted, so a newline shows as \n and the
 * message stays one line), the character and what to do. `what`: "lab dir", "data dir"...
 */
export function checkShellSafePath(file: string, what: string): string {
  const why = shellUnsafeCharacter(file);
  if (why) {
    throw new LabError('UNSAFE', `the ${what} ${JSON.stringify(file)} holds ${why}: choose a path without \` $ " \\ or control characters (newlines)`);
  }
  return file;
}

/**
 * A PostgreSQL program (pg_ctl, initdb, pg_rewind) finds `postgres` in its own directory with links
 * resolved, and hands that path to /bin/sh: both the given directory and the resolved one must be safe.
 * A program that does not exist is left to the caller's own error.
 */
export async function checkShellSafeProgram(file: string | undefined, what = 'PostgreSQL bin dir'): Promise<void> {
  if (!file) return;
  checkShellSafePath(path.dirname(file), what);
  const real = await realpath(file).catch(() => undefined);
  if (real) checkShellSafePath(path.dirname(real), `${what} (${path.dirname(file)} resolved)`);
}
