// Files the lab writes as the invoking user (root, often): never through a link, never into a file
// someone else owns. REFERENCE.md 6: a symlink planted in a directory another user can write redirects
// whatever root writes there next, so every file is opened with O_NOFOLLOW and checked after opening.
import { closeSync, constants, fchmodSync, openSync } from 'node:fs';
import { lstat, mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { LabError, withPath } from './errors.js';

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_APPEND, O_NOFOLLOW, O_DIRECTORY, O_NONBLOCK } = constants;

/** Who a file the lab creates for another user (the postgres OS user) is given to. */
export interface FileOwner {
  uid: number;
  gid: number;
}

export function myUid(): number {
  return process.geteuid?.() ?? 0;
}

/** Refuses a file we opened that is not a plain file of `uid` (ours by default), or that has other names. */
async function checkOpened(handle: FileHandle, file: string, uid = myUid()): Promise<void> {
  const stat = await handle.stat();
  if (!stat.isFile()) throw new LabError('UNSAFE', `${file} is not a regular file: nothing was written; remove it and run the command again`);
  if (stat.uid !== uid) {
    throw new LabError('UNSAFE', `${file} belongs to uid ${stat.uid}, not to ${uid === myUid() ? 'the user running lab' : `uid ${uid}`}: nothing was written; remove it and run the command again`);
  }
  if (stat.nlink > 1) throw new LabError('UNSAFE', `${file} has ${stat.nlink} hard links: nothing was written; remove it and run the command again`);
}

function refuseLink(error: unknown, file: string): never {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ELOOP') throw new LabError('UNSAFE', `${file} is a symbolic link: nothing was written; remove it and run the command again`);
  throw error;
}

/**
 * Writes `content` to `file` readable by its owner only (or `mode`): a temp file created with
 * O_EXCL | O_NOFOLLOW beside it, then renamed over it (rename replaces a link, never follows it).
 * `owner`: the new file is given to that user (through the handle: only the file we just created).
 */
export async function writePrivateFile(file: string, content: string | Buffer, mode = 0o600, owner?: FileOwner): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  const handle = await open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode).catch((error) => refuseLink(error, temp));
  try {
    await handle.chmod(mode);
    if (owner) await handle.chown(owner.uid, owner.gid);
    await handle.writeFile(content);
    await handle.sync();
  } catch (error) {
    await handle.close();
    await unlink(temp).catch(() => undefined);
    throw withPath(error, file);
  }
  await handle.close();
  await rename(temp, file);
}

/**
 * Opens `file` for writing without following a link: created (O_EXCL, `mode`, given to `owner` if
 * any) when missing, else opened only if it is a plain file of `owner` (of ours without one).
 */
async function openNoFollow(file: string, flags: number, mode: number, owner?: FileOwner): Promise<FileHandle> {
  let handle: FileHandle;
  let created = true;
  try {
    handle = await open(file, flags | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') refuseLink(error, file);
    handle = await open(file, flags | O_NOFOLLOW).catch((again) => refuseLink(again, file));
    created = false;
  }
  try {
    if (created && owner) await handle.chown(owner.uid, owner.gid);
    await checkOpened(handle, file, owner?.uid);
    await handle.chmod(mode);
  } catch (error) {
    await handle.close();
    throw error;
  }
  return handle;
}

/** Opens `file` for appending (created `mode` if missing), refusing a link or a file of another user. */
export function openPrivateAppend(file: string, mode = 0o600, owner?: FileOwner): Promise<FileHandle> {
  return openNoFollow(file, O_WRONLY | O_APPEND, mode, owner);
}

/**
 * A new file for appending, created readable by its owner only (`mode`) with O_EXCL | O_NOFOLLOW: never an
 * existing file, never through a link. Synchronous, for a log rotated between two writes.
 */
export function createPrivateAppendSync(file: string, mode = 0o600): number {
  let fd: number;
  try {
    fd = openSync(file, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
  } catch (error) {
    refuseLink(error, file);
  }
  try {
    fchmodSync(fd, mode); // the umask may have taken bits away; never adds any
  } catch (error) {
    closeSync(fd);
    throw error;
  }
  return fd;
}

/** Opens `file` for writing from scratch (truncated), refusing a link or a file of another user. */
export async function openPrivateTruncate(file: string, mode = 0o600): Promise<FileHandle> {
  const handle = await openNoFollow(file, O_WRONLY, mode);
  await handle.truncate(0).catch(async (error) => {
    await handle.close();
    throw error;
  });
  return handle;
}

/**
 * The text of `file` (undefined when missing), read without following a link: for files in a directory
 * another user can write (a data dir of the postgres OS user), whose content the lab writes back.
 */
export async function readNoFollow(file: string): Promise<string | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(file, O_RDONLY | O_NOFOLLOW);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    refuseLink(error, file);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile() || stat.nlink > 1) throw new LabError('UNSAFE', `${file} is not a plain file: nothing was written; remove it and run the command again`);
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

/**
 * Gives `file` (a file or a directory) to `owner` through a handle opened without following a link, so
 * the chown lands on what was checked: only a path of ours (just made, or an empty data dir of the
 * user's own) or already the owner's, never a link, never a third user's path.
 */
export async function giveTo(file: string, owner: FileOwner): Promise<void> {
  const handle = await open(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK).catch((error) => refuseLink(error, file));
  try {
    const stat = await handle.stat();
    if (!stat.isFile() && !stat.isDirectory()) throw new LabError('UNSAFE', `${file} is neither a file nor a directory: nothing was changed; remove it and run the command again`);
    if (stat.uid !== myUid() && stat.uid !== owner.uid) {
      throw new LabError('UNSAFE', `${file} belongs to uid ${stat.uid}, neither the user running lab nor uid ${owner.uid}: nothing was changed; choose another path`);
    }
    if (stat.isFile() && stat.nlink > 1) throw new LabError('UNSAFE', `${file} has ${stat.nlink} hard links: nothing was changed; remove it and run the command again`);
    await handle.chown(owner.uid, owner.gid);
  } finally {
    await handle.close();
  }
}

/**
 * A directory only its owner can write: created with `mode` when missing (true), else checked: a real
 * directory (not a link) of ours that group and others cannot write (false).
 */
export async function ensurePrivateDir(dir: string, mode: number, what = 'directory'): Promise<boolean> {
  try {
    await mkdir(dir, { mode });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    await checkPrivateDir(dir, what);
    return false;
  }
  // mkdir's mode went through the umask: set it exactly, on the directory we just made (no link followed).
  const handle = await open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  try {
    await handle.chmod(mode);
  } finally {
    await handle.close();
  }
  return true;
}

/** Refuses a path that is a link, not a directory, not ours, or writable by group or others. */
export async function checkPrivateDir(dir: string, what = 'directory'): Promise<void> {
  const stat = await lstat(dir);
  if (stat.isSymbolicLink()) throw new LabError('UNSAFE', `The ${what} ${dir} is a symbolic link: nothing was written; use a real directory`);
  if (!stat.isDirectory()) throw new LabError('UNSAFE', `The ${what} ${dir} is not a directory: nothing was written; choose another path`);
  if (stat.uid !== myUid()) {
    throw new LabError('UNSAFE', `The ${what} ${dir} belongs to uid ${stat.uid}, not to the user running lab: nothing was written; use a directory of your own`);
  }
  if (stat.mode & 0o022) {
    throw new LabError('UNSAFE', `The ${what} ${dir} is writable by ${stat.mode & 0o002 ? 'others' : 'its group'} (mode ${(stat.mode & 0o7777).toString(8)}): nothing was written; chmod go-w it, or use another directory`);
  }
}
