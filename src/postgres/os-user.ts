// initdb and pg_ctl refuse to run as root. When we are root, PostgreSQL's programs run as an
// unprivileged OS user (default `postgres`), which owns the data and log dirs.
import { readFile } from 'node:fs/promises';
import { LabError } from '../common/errors.js';
import { giveTo as giveToOwner } from '../common/safe-files.js';

export interface OsUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** The first /etc/passwd entry that `matches`. */
async function findUser(matches: (user: OsUser) => boolean): Promise<OsUser | undefined> {
  const passwd = await readFile('/etc/passwd', 'utf8');
  for (const line of passwd.split('\n')) {
    const [name, , uid, gid, , home] = line.split(':');
    if (!name || uid === undefined || gid === undefined) continue;
    const user = { name, uid: Number(uid), gid: Number(gid), home: home || '/' };
    if (matches(user)) return user;
  }
  return undefined;
}

export function lookupUser(name: string): Promise<OsUser | undefined> {
  return findUser((user) => user.name === name);
}

/** The name of `uid` in /etc/passwd, or undefined. */
export async function userNameOf(uid: number): Promise<string | undefined> {
  return (await findUser((user) => user.uid === uid))?.name;
}

/**
 * The user PostgreSQL's programs run as: undefined means "as ourselves" (we are not root).
 * As root: `requested`, else `postgres` when it exists, else a clear error.
 */
export async function resolveRunAs(requested: string | undefined): Promise<OsUser | undefined> {
  const euid = process.geteuid?.() ?? 0;
  if (requested) {
    const user = await lookupUser(requested);
    if (!user) {
      throw new LabError('ENVIRONMENT', `OS user "${requested}" (from --os-user) does not exist: create it or pass an existing unprivileged user`);
    }
    if (user.uid === 0) {
      throw new LabError('USAGE', `--os-user ${requested} is root; PostgreSQL refuses to run as root: pass an unprivileged user such as postgres`);
    }
    if (euid !== 0 && user.uid !== euid) {
      throw new LabError('USAGE', `--os-user ${requested} needs root to switch users; run without --os-user or as root`);
    }
    return euid === 0 ? user : undefined;
  }
  if (euid !== 0) return undefined;
  const user = await lookupUser('postgres');
  if (!user) {
    throw new LabError(
      'ENVIRONMENT',
      'Running as root, and PostgreSQL refuses to run as root, but there is no OS user "postgres": pass --os-user USER (an unprivileged user) or create one (useradd -r postgres)',
    );
  }
  return user;
}

/** Give a path we created (or an empty data dir of ours) to the user PostgreSQL runs as: never through a link (safe-files). */
export async function giveTo(path: string, user: OsUser | undefined): Promise<void> {
  if (user) await giveToOwner(path, user);
}
