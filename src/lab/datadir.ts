// Data dir safety: the seed ran `rm -rf PGDATA` blindly; we only ever remove what this lab created,
// recognised by a marker file the lab writes into each data dir it fills.
import { lstat, mkdir, readdir, readFile, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { LabError } from '../common/errors.js';
import { writePrivateFile, type FileOwner } from '../common/safe-files.js';

export const MARKER_FILE = 'pglab.node';

/** System locations a data dir must never be in (or be). */
const SYSTEM_TREES = ['/bin', '/boot', '/dev', '/etc', '/lib', '/lib32', '/lib64', '/libx32', '/proc', '/run', '/sbin', '/sys', '/usr', '/var/lib', '/var/log', '/var/run', '/var/cache', '/var/spool', '/var/mail'];
const SYSTEM_DIRS = ['/', '/home', '/tmp', '/var', '/opt', '/root', '/srv', '/mnt', '/media', '/var/tmp'];

export function checkDatadirPath(datadir: string, what = 'data dir'): string {
  if (!datadir || !datadir.trim()) throw new LabError('USAGE', `Empty ${what}: give a path such as /tmp/pgdata/replica1`);
  const resolved = path.resolve(datadir);
  if (SYSTEM_DIRS.includes(resolved) || SYSTEM_TREES.some((tree) => resolved === tree || resolved.startsWith(`${tree}/`))) {
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

/**
 * Make `datadir` ready to be filled: create it, or empty it if this lab filled it before.
 * Returns whether the lab created the directory. Never touches a directory with foreign content.
 */
export async function prepareDatadir(datadir: string, labId: string): Promise<{ created: boolean }> {
  const condition = await inspectDatadir(datadir, labId);
  switch (condition) {
    case 'missing':
      // Parents get the usual mode (the server's OS user must traverse them); the data dir is private.
      await mkdir(path.dirname(datadir), { recursive: true });
      await mkdir(datadir, { mode: 0o700 });
      return { created: true };
    case 'empty':
      return { created: false };
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

/** True when one path is the other or lies inside it. */
export function overlaps(a: string, b: string): boolean {
  const ra = path.resolve(a);
  const rb = path.resolve(b);
  return ra === rb || ra.startsWith(`${rb}/`) || rb.startsWith(`${ra}/`);
}
