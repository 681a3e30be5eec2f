// Data dir safety: the seed ran `rm -rf PGDATA` blindly; we only ever remove what this lab created,
// recognised by a marker file the lab writes into each data dir it fills.
import { constants } from 'node:fs';
import { access, lstat, mkdir, open, readdir, readFile, rm, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileSystemError, LabError } from '../common/errors.js';
import { writePrivateFile, type FileOwner } from '../common/safe-files.js';

export const MARKER_FILE = 'pglab.node';

/** System locations a data dir must never be in (or be). */
const SYSTEM_TREES = ['/bin', '/boot', '/dev', '/etc', '/lib', '/lib32', '/lib64', '/libx32', '/proc', '/run', '/sbin', '/sys', '/usr', '/var/lib', '/var/log', '/var/run', '/var/cache', '/var/spool', '/var/mail'];
const SYSTEM_DIRS = ['/', '/home', '/tmp', '/dev/shm', '/var', '/opt', '/root', '/srv', '/mnt', '/media', '/var/tmp'];

export function checkDatadirPath(datadir: string, what = 'data dir'): string {
  if (!datadir || !datadir.trim()) throw new LabError('USAGE', `Empty ${what}: give a path such as /tmp/pgdata/replica1`);
  const resolved = path.resolve(datadir);
  // /dev/shm is a tmpfs for everyone, as /tmp is a dir for everyone: a dir of one's own below it is fine.
  const inSharedTmpfs = resolved.startsWith('/dev/shm/');
  if (SYSTEM_DIRS.includes(resolved) || (!inSharedTmpfs && SYSTEM_TREES.some((tree) => resolved === tree || resolved.startsWith(`${tree}/`)))) {
    throw new LabError('UNSAFE', `Refusing ${what} ${resolved}: it is a system path; choose a path of your own such as /tmp/pgdata/NAME`);
  }
  return resolved;
}

export interface Marker {
  labId: string;
  node: string;
}

export async function readMarker(datadir: string): Promise<Marker | undefined> {
  try {
    return JSON.parse(await readFile(path.join(datadir, MARKER_FILE), 'utf8')) as Marker;
  } catch {
    return undefined;
  }
}

/** The marker, a new file (never written through a link) given to `owner` (the data dir's user). */
export async function writeMarker(datadir: string, marker: Marker, owner?: FileOwner): Promise<void> {
  await writePrivateFile(path.join(datadir, MARKER_FILE), `${JSON.stringify(marker)}\n`, 0o644, owner);
}

export type DatadirCondition = 'missing' | 'empty' | 'ours' | 'foreign' | 'not-a-directory';

/** What is at `datadir`, judged against the lab `labId`. A link is not a directory: never followed (it could lead anywhere). */
export async function inspectDatadir(datadir: string, labId: string | undefined): Promise<DatadirCondition> {
  let info;
  try {
    info = await lstat(datadir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw error;
  }
  if (!info.isDirectory()) return 'not-a-directory';
  const entries = await readdir(datadir);
  if (entries.length === 0) return 'empty';
  const marker = await readMarker(datadir);
  return labId && marker?.labId === labId ? 'ours' : 'foreign';
}

/** As the file system would refuse it (ENOTDIR, EROFS, EACCES): one line naming the path, exit 10. */
function refusedBy(code: string, syscall: string, file: string): LabError {
  return fileSystemError(Object.assign(new Error(code), { code, syscall, path: file }))!;
}

/**
 * Where `datadir` would be made or filled, checked before anything is: its nearest existing ancestor (or the
 * dir itself) is a directory the lab may write in (not on a read-only file system), and `owner`, the
 * servers' OS user, can traverse every existing ancestor (else the copy and the server fail on it later).
 * Children the lab starts as that user run with its uid and primary gid only, as judged here.
 */
export async function checkDatadirPlace(datadir: string, owner?: FileOwner & { name?: string }): Promise<void> {
  let dir = datadir;
  for (;;) {
    const info = await stat(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined;
      throw error;
    });
    if (info) {
      if (!info.isDirectory()) throw refusedBy('ENOTDIR', 'mkdir', datadir);
      await access(dir, constants.W_OK | constants.X_OK).catch((error: NodeJS.ErrnoException) => {
        throw refusedBy(error.code ?? 'EACCES', dir === datadir ? 'write' : 'mkdir', datadir);
      });
      break;
    }
    if (dir === path.dirname(dir)) return;
    dir = path.dirname(dir);
  }
  if (!owner) return;
  // The data dir itself becomes the owner's; every directory above it must let the owner through.
  for (let up = dir === datadir ? path.dirname(dir) : dir; ; up = path.dirname(up)) {
    const info = await stat(up);
    const bit = info.uid === owner.uid ? 0o100 : info.gid === owner.gid ? 0o010 : 0o001;
    if (!(info.mode & bit)) {
      throw new LabError(
        'FILESYSTEM',
        `Data dir ${datadir}: the servers' OS user ${owner.name ?? `uid ${owner.uid}`} cannot traverse ${up} (mode ${(info.mode & 0o777).toString(8)}, owner uid ${info.uid}): choose a path it can reach, such as one under /tmp/pgdata, or chmod o+x ${up}`,
      );
    }
    if (up === path.dirname(up)) return;
  }
}

/** What prepareDatadir did, for undoDatadir. */
export interface PreparedDatadir {
  /** The lab created the directory. */
  created: boolean;
  /** The first of its parents the lab created (recursive mkdir), if any. */
  madeParent?: string;
  /** An existing empty directory's owner and mode before the lab took it. */
  was?: { uid: number; gid: number; mode: number };
}

/**
 * Make `datadir` ready to be filled: create it, or empty it if this lab filled it before.
 * Returns whether the lab created the directory. Never touches a directory with foreign content.
 */
export async function prepareDatadir(datadir: string, labId: string): Promise<PreparedDatadir> {
  const condition = await inspectDatadir(datadir, labId);
  switch (condition) {
    case 'missing': {
      // Parents get the usual mode (the server's OS user must traverse them); the data dir is private.
      const madeParent = await mkdir(path.dirname(datadir), { recursive: true });
      await mkdir(datadir, { mode: 0o700 });
      return { created: true, madeParent };
    }
    case 'empty': {
      const info = await lstat(datadir);
      return { created: false, was: { uid: info.uid, gid: info.gid, mode: info.mode & 0o7777 } };
    }
    case 'ours':
      await emptyDirectory(datadir);
      return { created: false };
    case 'not-a-directory':
      throw new LabError('UNSAFE', `Data dir ${datadir} exists and is not a directory (a symbolic link is not followed): choose another path`);
    case 'foreign':
      throw new LabError(
        'UNSAFE',
        `Data dir ${datadir} exists, is not empty and was not created by this lab; nothing was deleted: choose another path, or empty it yourself`,
      );
  }
}

/**
 * Everything in `dir` but the lab's marker, then the marker: an interrupted removal (kill -9) leaves a
 * dir that still carries the marker, which the next `lab destroy` or rebuild recognises and finishes.
 */
async function emptyDirectory(dir: string): Promise<void> {
  for (const entry of await readdir(dir)) {
    if (entry !== MARKER_FILE) await rm(path.join(dir, entry), { recursive: true, force: true });
  }
  await rm(path.join(dir, MARKER_FILE), { force: true });
}

/** Remove a data dir this lab filled: the directory if the lab created it, else only its content. */
export async function removeDatadir(datadir: string, labId: string, created: boolean): Promise<'removed' | 'emptied' | 'kept'> {
  const condition = await inspectDatadir(datadir, labId);
  if (condition === 'missing') return 'removed';
  if (condition === 'empty') {
    if (created) await rm(datadir, { recursive: true, force: true });
    return created ? 'removed' : 'kept';
  }
  if (condition !== 'ours') return 'kept';
  await emptyDirectory(datadir);
  if (!created) return 'emptied';
  await rmdir(datadir);
  return 'removed';
}

/**
 * Undo a failed build's data dir: `prepared` says the build created it or found it empty or emptied it, so
 * all in it is the build's (a base backup copied before it got the lab's marker included). The content
 * goes, the marker last; then the dir and the parents the build made (while empty), else the dir gets its
 * owner and mode back. Something other than a directory there now (a link) is left alone: 'kept'.
 */
export async function undoDatadir(datadir: string, prepared: PreparedDatadir): Promise<'removed' | 'emptied' | 'kept'> {
  const info = await lstat(datadir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (!info) return 'removed';
  if (!info.isDirectory()) return 'kept';
  await emptyDirectory(datadir);
  if (!prepared.created) {
    if (prepared.was) {
      const handle = await open(datadir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
      try {
        await handle.chown(prepared.was.uid, prepared.was.gid);
        await handle.chmod(prepared.was.mode);
      } finally {
        await handle.close();
      }
    }
    return 'emptied';
  }
  await rmdir(datadir);
  if (prepared.madeParent) {
    for (let dir = path.dirname(datadir); dir === prepared.madeParent || dir.startsWith(`${prepared.madeParent}/`); dir = path.dirname(dir)) {
      if (!(await rmdir(dir).then(() => true, () => false))) break; // not empty: someone else's now
    }
  }
  return 'removed';
}

/** True when one path is the other or lies inside it. */
export function overlaps(a: string, b: string): boolean {
  const ra = path.resolve(a);
  const rb = path.resolve(b);
  return ra === rb || ra.startsWith(`${rb}/`) || rb.startsWith(`${ra}/`);
}
