// Files the lab writes as the invoking user (root, often): never through a link, never into a file
// someone else owns. REFERENCE.md 6: a symlink planted in a directory another user can write redirects
// whatever root writes there next, so every file is opened with O_NOFOLLOW and checked after opening.
import { constants } from 'node:fs';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { LabError } from './errors.js';

const { O_WRONLY, O_CREAT, O_EXCL, O_APPEND, O_NOFOLLOW } = constants;

function myUid(): number {
  return process.geteuid?.() ?? 0;
}

/** Refuses a file we opened that is not ours, or that others can write. */
async function checkOpened(handle: FileHandle, file: string): Promise<void> {
  const stat = await handle.stat();
  if (!stat.isFile()) throw new LabError('UNSAFE', `${file} is not a regular file: nothing was written; remove it and run the command again`);
  if (stat.uid !== myUid()) {
    throw new LabError('UNSAFE', `${file} belongs to uid ${stat.uid}, not to the user running lab: nothing was written; remove it and run the command again`);
  }
}

function refuseLink(error: unknown, file: string): never {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ELOOP') throw new LabError('UNSAFE', `${file} is a symbolic link: nothing was written; remove it and run the command again`);
  throw error;
}

/**
 * Writes `content` to `file` readable by its owner only (or `mode`): a temp file created with
 * O_EXCL | O_NOFOLLOW beside it, then renamed over it (rename replaces a link, never follows it).
 * `owner` gets the file through its descriptor before the rename, so no path is ever chowned.
 */
export async function writePrivateFile(file: string, content: string | Buffer, mode = 0o600, owner?: { uid: number; gid: number }): Promise<void> {
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
    throw error;
  }
  await handle.close();
  await rename(temp, file);
}

/** Opens `file` for appending (created 0600 if missing), refusing a link or a file of another user. */
export async function openPrivateAppend(file: string, mode = 0o600): Promise<FileHandle> {
  const handle = await open(file, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, mode).catch((error) => refuseLink(error, file));
  try {
    await checkOpened(handle, file);
    await handle.chmod(mode);
  } catch (error) {
    await handle.close();
    throw error;
  }
  return handle;
}

/** Opens `file` for writing from scratch (truncated), refusing a link or a file of another user. */
export async function openPrivateTruncate(file: string, mode = 0o600): Promise<FileHandle> {
  const handle = await open(file, O_WRONLY | O_CREAT | O_NOFOLLOW, mode).catch((error) => refuseLink(error, file));
  try {
    await checkOpened(handle, file);
    await handle.truncate(0);
    await handle.chmod(mode);
  } catch (error) {
    await handle.close();
    throw error;
  }
  return handle;
}

