// Cached initdb templates for the process runtime: fast labs for test suites, as PostgreSQL's own TAP
// suites reuse one initdb (INITDB_TEMPLATE). `lab master start` copies a data dir that initdb made once
// for the same postgres binary, bindir, initdb arguments and OS user (39 MB, ~40 ms) instead of running
// initdb (0.5-0.65 s). Layout: <root>/<key>/ (the invoking user's, 0755) holds data/ (the OS user's, made
// by initdb with a throwaway password) and template.json, written last; <key>/ is built as
// <root>/.tmp-<key>-<pid>-<random> and renamed into place, so a template without its marker is half-made
// and gets rebuilt. A copy gets the lab's own password from postgres in single-user mode before the lab's
// configuration is written or a server runs on it. What the OS user owns is removed by that user: root
// never walks a tree another user can change (REFERENCE.md 6).
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, realpath, rename, rm, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { LabError } from '../common/errors.js';
import type { Reporter } from '../common/reporter.js';
import { ensurePrivateDir, myUid, readNoFollow, writePrivateFile } from '../common/safe-files.js';
import { initdbArgs, withPasswordFile } from './initdb.js';
import { prepareCacheRoot } from './cache-root.js';
import type { Installation } from './installation.js';
import { giveTo, type OsUser } from './os-user.js';
import { runPg } from './run.js';
import { isAlive } from '../common/processes.js';

export const TEMPLATE_MARKER = 'template.json';
const TEMPLATE_DATA = 'data';
/** Bumped when what a template holds or how it is made changes: old templates are then left unused. */
const FORMAT = 1;
const WHAT = 'initdb template cache (LAB_INITDB_TEMPLATE)';
const KEY = /^[0-9a-f]{32}$/;

export interface TemplateSpec {
  /** The templates' cache dir (templateCacheRoot, or the dir LAB_INITDB_TEMPLATE names). */
  root: string;
  installation: Installation;
  dbUser: string;
  /** The lab logs in with scram-sha-256: initdb then needs a password (a throwaway one for the template). */
  scram: boolean;
  /** Who runs PostgreSQL and owns the data (as root); undefined: ourselves. */
  runAs?: OsUser;
}

/** A template's identity: everything that makes initdb's output differ. */
interface TemplateInputs {
  format: number;
  /** `postgres -V`, and the binary's size and time: a rebuilt binary of the same version gets its own. */
  version: string;
  postgres: { size: number; mtimeMs: number };
  bindir: string;
  /** initdb's arguments without the data dir and the password file. */
  initdbArgs: string[];
  osUser: { name?: string; uid: number; gid?: number };
}

interface TemplateMarker {
  format: number;
  key: string;
  inputs: TemplateInputs;
  /** Regular files in data/ and their total size: a copy that differs is refused. */
  files: number;
  bytes: number;
  madeAt: string;
}

export interface Template {
  spec: TemplateSpec;
  key: string;
  inputs: TemplateInputs;
  /** <root>/<key> */
  dir: string;
  /** A complete template is there (else the first use makes it). */
  cached: boolean;
}

/** The template for `spec`: its key, and whether a complete one is cached. Prepares the cache dir. */
export async function findTemplate(spec: TemplateSpec): Promise<Template> {
  await prepareCacheRoot(spec.root, WHAT, 'LAB_INITDB_TEMPLATE');
  const inputs = await templateInputs(spec);
  const key = createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 32);
  const dir = path.join(spec.root, key);
  return { spec, key, inputs, dir, cached: (await readComplete(dir, key, spec)) !== undefined };
}

/**
 * Fills the (empty, OS user's) `datadir` from the template, making the template first when none is
 * complete, then gives the lab's superuser `password` (scram labs). 'made': this call made the template.
 * A cached template whose copy fails is discarded (the next start makes a new one) and the error thrown.
 */
export async function initdbFromTemplate(template: Template, datadir: string, password: string | undefined, reporter: Reporter, slots: string[] = []): Promise<'copied' | 'made'> {
  const { spec } = template;
  if ((password !== undefined) !== spec.scram) throw new Error(`A template for ${spec.scram ? 'scram' : 'trust'} used ${password === undefined ? 'without' : 'with'} a password`);
  let marker = await readComplete(template.dir, template.key, spec);
  let source = path.join(template.dir, TEMPLATE_DATA);
  let cleanup: (() => Promise<void>) | undefined;
  const made = marker === undefined;
  if (!marker) ({ marker, source, cleanup } = await makeTemplate(template, reporter));
  try {
    await runPg('cp', ['-a', '--', `${source}/.`, datadir], { runAs: spec.runAs, timeoutMs: 300_000 });
    // initdb leaves the data dir 0700 whatever it was: so does a copy (cp -a gives it the template's mode).
    if (((await lstat(datadir)).mode & 0o777) !== 0o700) await runPg('chmod', ['0700', datadir], { runAs: spec.runAs });
    const copied = await measure(datadir);
    if (copied.files !== marker.files || copied.bytes !== marker.bytes) {
      throw new LabError('STATE', `The copy of initdb template ${template.dir} has ${copied.files} files (${copied.bytes} bytes), the template ${marker.files} (${marker.bytes} bytes)`);
    }
    if (password !== undefined || slots.length > 0) await singleUser(spec, datadir, password, slots);
  } catch (error) {
    if (!made) await discard(template.dir, spec.runAs).catch(() => undefined);
    throw error;
  } finally {
    await cleanup?.();
  }
  return made ? 'made' : 'copied';
}

/**
 * Empties a data dir filled (in part) by a failed copy, as its owner (`find -delete` follows no link),
 * so that initdb can run into it.
 */
export async function emptyDatadir(datadir: string, runAs: OsUser | undefined): Promise<void> {
  await runPg('find', [datadir, '-mindepth', '1', '-delete'], { runAs, timeoutMs: 120_000 });
}

async function templateInputs(spec: TemplateSpec): Promise<TemplateInputs> {
  const postgres = spec.installation.tools.postgres ?? path.join(spec.installation.bindir, 'postgres');
  const binary = await stat(await realpath(postgres));
  const { stdout } = await execa(postgres, ['-V'], { timeout: 10_000 });
  const datadir = '\0datadir';
  const args = initdbArgs(datadir, spec.dbUser, spec.scram ? '\0pwfile' : undefined);
  return {
    format: FORMAT,
    version: String(stdout).trim(),
    postgres: { size: binary.size, mtimeMs: binary.mtimeMs },
    bindir: await realpath(spec.installation.bindir),
    initdbArgs: args.filter((arg, i) => arg !== datadir && !(arg === '-D' && args[i + 1] === datadir) && !arg.startsWith('--pwfile=')),
    osUser: spec.runAs ? { name: spec.runAs.name, uid: spec.runAs.uid, gid: spec.runAs.gid } : { uid: myUid() },
  };
}

/** The marker of a complete template in `dir`, or undefined (missing, half-made, or not what it should be). */
async function readComplete(dir: string, key: string, spec: TemplateSpec): Promise<TemplateMarker | undefined> {
  try {
    const info = await lstat(dir);
    if (!info.isDirectory() || info.uid !== myUid() || info.mode & 0o022) return undefined;
    const marker = JSON.parse((await readNoFollow(path.join(dir, TEMPLATE_MARKER))) ?? 'null') as TemplateMarker | null;
    if (!marker || marker.format !== FORMAT || marker.key !== key || !Number.isInteger(marker.files) || !Number.isInteger(marker.bytes)) return undefined;
    const data = await lstat(path.join(dir, TEMPLATE_DATA));
    if (!data.isDirectory() || data.uid !== (spec.runAs?.uid ?? myUid())) return undefined;
    for (const file of ['PG_VERSION', path.join('global', 'pg_control')]) {
      if (!(await lstat(path.join(dir, TEMPLATE_DATA, file))).isFile()) return undefined;
    }
    return marker;
  } catch {
    return undefined;
  }
}

/**
 * initdb into <root>/.tmp-<key>-..., the marker, then the rename that publishes it. When another lab
 * published the same template meanwhile, this copy is made from ours, removed afterwards (`cleanup`).
 */
async function makeTemplate(template: Template, reporter: Reporter): Promise<{ marker: TemplateMarker; source: string; cleanup?: () => Promise<void> }> {
  const { spec, key, dir } = template;
  await removeLeftovers(spec.root, spec.runAs);
  // A template that is there but not complete (no marker, or damaged) is set aside and removed.
  if (await lstat(dir).then(() => true, () => false)) await discard(dir, spec.runAs);
  const temp = path.join(spec.root, `.tmp-${key}-${process.pid}-${randomBytes(4).toString('hex')}`);
  await ensurePrivateDir(temp, 0o755, WHAT);
  const data = path.join(temp, TEMPLATE_DATA);
  let marker: TemplateMarker;
  try {
    await mkdir(data, { mode: 0o700 });
    await giveTo(data, spec.runAs);
    const initdb = (pwfile?: string) => runPg(spec.installation.tools.initdb!, initdbArgs(data, spec.dbUser, pwfile), {
      runAs: spec.runAs,
      onStderrLine: (line) => reporter.detail(line),
      timeoutMs: 300_000,
    });
    // A throwaway password: every lab sets its own on its copy (singleUser).
    if (spec.scram) await withPasswordFile(randomBytes(18).toString('base64url'), spec.runAs, (file) => initdb(file));
    else await initdb();
    marker = { format: FORMAT, key, inputs: template.inputs, ...(await measure(data)), madeAt: new Date().toISOString() };
    await writePrivateFile(path.join(temp, TEMPLATE_MARKER), `${JSON.stringify(marker, null, 2)}\n`, 0o644);
  } catch (error) {
    await removeTemplateDir(temp, spec.runAs).catch(() => undefined);
    throw error;
  }
  try {
    await rename(temp, dir);
    return { marker, source: path.join(dir, TEMPLATE_DATA) };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EEXIST' && code !== 'ENOTEMPTY') {
      await removeTemplateDir(temp, spec.runAs).catch(() => undefined);
      throw error;
    }
    return { marker, source: data, cleanup: () => removeTemplateDir(temp, spec.runAs) };
  }
}

/** Regular files under `dir` and their total size (links are not followed); entries stat'ed side by side. */
async function measure(dir: string): Promise<{ files: number; bytes: number }> {
  const parts = await Promise.all((await readdir(dir, { withFileTypes: true })).map(async (entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return measure(file);
    return entry.isFile() ? { files: 1, bytes: (await lstat(file)).size } : { files: 0, bytes: 0 };
  }));
  return parts.reduce((sum, part) => ({ files: sum.files + part.files, bytes: sum.bytes + part.bytes }), { files: 0, bytes: 0 });
}

/**
 * The lab's password for its superuser, set on the copy by postgres in single-user mode (no server, no
 * socket, nothing listens). password_encryption is given on the command line: PostgreSQL 11 to 13 hash
 * with md5 by default, and the copy's postgresql.conf is still initdb's. `slots`: physical replication
 * slots made in the same run (reserving WAL now), for standbys copied from this data dir before it starts.
 */
async function singleUser(spec: TemplateSpec, datadir: string, password: string | undefined, slots: string[]): Promise<void> {
  if (password !== undefined && /[\0\r\n]/.test(password)) throw new LabError('USAGE', 'The lab\'s password has a line break or a NUL: single-user mode reads one statement a line');
  const statements = [
    ...(password !== undefined ? [`ALTER ROLE ${quoteIdent(spec.dbUser)} PASSWORD ${quoteLiteral(password)};`] : []),
    ...slots.map((slot) => `SELECT pg_create_physical_replication_slot(${quoteLiteral(slot)}, true);`),
  ];
  const postgres = spec.installation.tools.postgres ?? path.join(spec.installation.bindir, 'postgres');
  const redact = (text: string) => (password === undefined ? text : text.split(password).join('********'));
  let output: string;
  try {
    const { stdout, stderr } = await runPg(postgres, ['--single', '-D', datadir, '-c', 'password_encryption=scram-sha-256', '-c', 'standard_conforming_strings=on', '-c', 'log_min_error_statement=panic', 'postgres'], {
      runAs: spec.runAs,
      input: `${statements.join('\n')}\n`,
      timeoutMs: 120_000,
    });
    output = `${stdout}\n${stderr}`;
  } catch (error) {
    if (error instanceof LabError) throw new LabError(error.code, redact(error.message), { detail: error.detail && redact(error.detail) });
    throw error;
  }
  // Single-user mode reports a failed statement and goes on to exit 0.
  const failed = output.split('\n').find((line) => /\b(ERROR|FATAL|PANIC):/.test(line));
  const what = [password !== undefined ? 'set the lab\'s password' : '', slots.length ? `make replication slots ${slots.join(', ')}` : ''].filter(Boolean).join(' and ');
  if (failed) throw new LabError('COMMAND_FAILED', `postgres --single could not ${what} on the copy of the initdb template: ${redact(failed.trim())}`);
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A string literal under standard_conforming_strings (set on): quotes doubled, backslashes as they are. */
export function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** Sets `dir` aside (a rename: someone copying from it fails cleanly) and removes it. */
async function discard(dir: string, runAs: OsUser | undefined): Promise<void> {
  const aside = path.join(path.dirname(dir), `.old-${path.basename(dir)}-${process.pid}-${randomBytes(4).toString('hex')}`);
  await rename(dir, aside);
  await removeTemplateDir(aside, runAs);
}

/**
 * Removes a template dir of ours: its data/, the OS user's, emptied by that user (root does not walk a
 * tree another user could change under it), then what is ours. Data of a third user stays (an error).
 */
async function removeTemplateDir(dir: string, runAs: OsUser | undefined): Promise<void> {
  const info = await lstat(dir);
  if (!info.isDirectory() || info.uid !== myUid()) throw new LabError('UNSAFE', `${dir} is not a directory of the user running lab: left as it is`);
  const data = path.join(dir, TEMPLATE_DATA);
  const dataInfo = await lstat(data).catch(() => undefined);
  if (dataInfo?.isDirectory()) {
    if (dataInfo.uid !== myUid() && dataInfo.uid !== runAs?.uid) throw new LabError('UNSAFE', `${data} belongs to uid ${dataInfo.uid}: left as it is`);
    await emptyDatadir(data, dataInfo.uid === runAs?.uid ? runAs : undefined);
    await rmdir(data);
  }
  // Only our own files are left (a data/ that was not a directory is a plain entry: rm does not follow it).
  await rm(dir, { recursive: true, force: true });
}

/** Temp and set-aside template dirs whose process is gone (killed mid-build): removed. */
async function removeLeftovers(root: string, runAs: OsUser | undefined): Promise<void> {
  for (const entry of await readdir(root)) {
    const match = /^\.(tmp|old)-([0-9a-f]+)-(\d+)-[0-9a-f]+$/.exec(entry);
    if (!match || !KEY.test(match[2]!)) continue;
    const pid = Number(match[3]);
    if (pid === process.pid || isAlive(pid)) continue;
    await removeTemplateDir(path.join(root, entry), runAs).catch(() => undefined); // another OS user's: theirs to remove
  }
}

