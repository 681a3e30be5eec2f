// Where the lab keeps its own files, and the checks every command makes before it reads or writes
// them. REFERENCE.md 6: with `trust` any local user can act as the postgres OS user, who owns
// `<lab-dir>/log` and the data dirs; a link planted where root writes next redirects that write. So the
// lab dir is the invoking user's (created 0711: postgres traverses it to reach log/ and the data dirs),
// and the balancers' files live in `<lab-dir>/balancer/`, 0700, never in log/.
import { lstat, mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { LabError } from '../common/errors.js';
import { checkPrivateDir, ensurePrivateDir, myUid } from '../common/safe-files.js';

export const STATE_FILE = 'lab.json';
export const LAB_DIR_MODE = 0o711;
export const BALANCER_DIR_MODE = 0o700;

export function balancerDir(labDir: string): string {
  return path.join(labDir, 'balancer');
}

/** `<lab-dir>/balancer/NAME.pid`, for people and scripts that look for a pid file. */
export function balancerPidFile(labDir: string, name: string): string {
  return path.join(balancerDir(labDir), `${name}.pid`);
}

/** The built-in balancer's log (its stdout and stderr). */
export function balancerLogFile(labDir: string, name: string): string {
  return path.join(balancerDir(labDir), `${name}.log`);
}

/** The haproxy.cfg the lab renders for `--engine haproxy`, and HAProxy's log. */
export function haproxyFiles(labDir: string, name: string): { configFile: string; logFile: string } {
  return {
    configFile: path.join(balancerDir(labDir), `haproxy-${name}.cfg`),
    logFile: path.join(balancerDir(labDir), `haproxy-${name}.log`),
  };
}

/** Every file the lab may have made for balancer NAME, here and where labs made before `<lab-dir>/balancer/` kept them. */
export function allBalancerFiles(labDir: string, name: string): { pidFiles: string[]; configFiles: string[]; logFiles: string[] } {
  const haproxy = haproxyFiles(labDir, name);
  return {
    pidFiles: [balancerPidFile(labDir, name), path.join(labDir, `balancer-${name}.pid`)],
    configFiles: [haproxy.configFile, path.join(labDir, `haproxy-${name}.cfg`)],
    logFiles: [balancerLogFile(labDir, name), haproxy.logFile, path.join(labDir, 'log', `balancer-${name}.log`), path.join(labDir, 'log', `haproxy-${name}.log`)],
  };
}

/** The balancer dir, created 0700 when missing, refused when it is not the invoking user's own. */
export async function ensureBalancerDir(labDir: string): Promise<string> {
  const dir = balancerDir(labDir);
  await ensurePrivateDir(dir, BALANCER_DIR_MODE, 'balancer dir');
  return dir;
}

/**
 * The lab dir of a new lab: created 0711 when missing (true; its parents with the usual mode), else
 * checked like every command checks it (false). An existing dir of the user's own is used with its mode
 * (0755, 0700: nobody else can write it); one that group or others can write is refused, even empty:
 * they could plant entries in it between any check and the lab's use of it.
 */
export async function prepareLabDir(labDir: string): Promise<boolean> {
  await mkdir(path.dirname(labDir), { recursive: true });
  const created = await ensurePrivateDir(labDir, LAB_DIR_MODE, 'lab dir');
  if (!created) await checkLabDir(labDir);
  return created;
}

/** lstat, or undefined when the path does not exist. */
async function lstatOrNone(file: string) {
  try {
    return await lstat(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function unsafe(file: string, why: string): LabError {
  return new LabError('UNSAFE', `${file} ${why}: nothing was written; remove it (or fix its owner and mode) and run the command again`);
}

/**
 * What every command checks before it touches a lab (false: there is no lab dir): the lab dir is a
 * real directory of the invoking user that group and others cannot write; lab.json is a plain file of
 * that user that others cannot write; the balancer dir likewise, and every file in it the user's own
 * and not a link.
 */
export async function checkLabDir(labDir: string): Promise<boolean> {
  if (!(await lstatOrNone(labDir))) return false;
  await checkPrivateDir(labDir, 'lab dir');
  const me = myUid();
  const state = await lstatOrNone(path.join(labDir, STATE_FILE));
  if (state) {
    const file = path.join(labDir, STATE_FILE);
    if (state.isSymbolicLink()) throw unsafe(file, 'is a symbolic link');
    if (!state.isFile()) throw unsafe(file, 'is not a regular file');
    if (state.uid !== me) throw unsafe(file, `belongs to uid ${state.uid}, not to the user running lab`);
    if (state.mode & 0o022) throw unsafe(file, `is writable by ${state.mode & 0o002 ? 'others' : 'its group'} (mode ${(state.mode & 0o7777).toString(8)})`);
  }
  const balancers = balancerDir(labDir);
  if (await lstatOrNone(balancers)) {
    await checkPrivateDir(balancers, 'balancer dir');
    for (const entry of await readdir(balancers)) {
      const file = path.join(balancers, entry);
      const info = await lstatOrNone(file);
      if (!info) continue; // a temp file renamed meanwhile
      if (info.isSymbolicLink()) throw unsafe(file, 'is a symbolic link');
      if (info.uid !== me) throw unsafe(file, `belongs to uid ${info.uid}, not to the user running lab`);
    }
  }
  return true;
}
