// initdb's arguments, the same for a host process and a one-off container: the lab's superuser, no
// locale, UTF8, and either trust or scram-sha-256 with the lab's password read from a file (initdb
// then also sets password_encryption = scram-sha-256, which PostgreSQL 11 to 13 do not by default), and that file.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writePrivateFile } from '../common/safe-files.js';
import { giveTo, type OsUser } from './os-user.js';

export function initdbArgs(datadir: string, dbUser: string, pwfile: string | undefined): string[] {
  const auth = pwfile ? ['--auth-host=scram-sha-256', '--auth-local=scram-sha-256', `--pwfile=${pwfile}`] : ['-A', 'trust'];
  return ['-D', datadir, '-U', dbUser, '--no-locale', '-E', 'UTF8', ...auth];
}

/**
 * A file holding `password` that `owner` (initdb's OS user) can read, in a fresh private temp dir,
 * removed once `use` returns: initdb reads the superuser's password only from a file (--pwfile).
 */
export async function withPasswordFile<T>(password: string, owner: OsUser | undefined, use: (file: string, dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pglab-pw-'));
  try {
    await giveTo(dir, owner);
    const file = path.join(dir, 'pwfile');
    await writePrivateFile(file, `${password}\n`, 0o600, owner);
    return await use(file, dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
