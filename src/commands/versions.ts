// `lab versions`: the PostgreSQL installations we can use, and the majors `lab versions install` can add.
import { cacheRoot, checkCacheRoot, INSTALLABLE_MAJORS, installableRange, ROOT_CACHE, type InstalledBy } from '../postgres/cache-root.js';
import type { InstallResult } from '../postgres/cache-install.js';
import type { Reporter } from '../common/reporter.js';
import { discoverInstallations, type Installation, type ToolName } from '../postgres/installation.js';
import { LabError, messageOf } from '../common/errors.js';

export interface VersionInfo {
  version: string;
  major: number;
  source: string;
  bindir: string;
  tools: ToolName[];
  /** The npm package version of a cached major. */
  packageVersion?: string;
  /** What makes a replica's base backup of a server of this version: see baseBackupTool. */
  baseBackup?: string;
  /** Always true since pglab takes base backups itself (kept for scripts that read it). */
  canAddReplicas: boolean;
  /** A cached major: when `lab versions install` put it there (ISO time), and who. */
  installedAt?: string;
  installedBy?: InstalledBy;
}

export interface VersionsList {
  versions: VersionInfo[];
  /** Where `lab versions install` puts majors. */
  cache: string;
  /** True for root's cache, one for the machine: everyone who runs lab as root (sudo too) shares it. */
  cacheShared: boolean;
  /** Why the cache is not used, when it exists but is unsafe (a link, writable by others...). */
  cacheProblem?: string;
  /** Majors `lab versions install N` can add (not installed yet). */
  installable: number[];
}

/**
 * The one place that says how a replica of `inst` gets its base backup: pglab's own (the low-level API
 * and a copy, src/postgres/base-backup.ts) on every major, the default; `--base-backup pg_basebackup`
 * also works where a pg_basebackup of its major or newer exists (pg_basebackup refuses newer servers).
 */
export function baseBackupTool(inst: Installation, all: Installation[]): string {
  const lender = inst.tools.pg_basebackup ? inst : all.filter((other) => other.major >= inst.major && other.tools.pg_basebackup).sort((a, b) => a.major - b.major)[0];
  return lender ? `pglab's own (or pg_basebackup ${lender.major})` : "pglab's own";
}

export async function listVersions(): Promise<VersionsList> {
  const all = await discoverInstallations();
  const cache = cacheRoot();
  const cacheProblem = await checkCacheRoot(cache).then(
    () => undefined,
    (error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? undefined : messageOf(error)),
  );
  const installed = new Set(all.filter((inst) => inst.source === 'cache').map((inst) => inst.major));
  return {
    versions: all.map((inst) => {
      const baseBackup = baseBackupTool(inst, all);
      return {
        version: inst.version,
        major: inst.major,
        source: inst.source,
        bindir: inst.bindir,
        tools: Object.keys(inst.tools) as ToolName[],
        ...(inst.packageVersion ? { packageVersion: inst.packageVersion } : {}),
        baseBackup,
        canAddReplicas: true,
        ...(inst.installedAt ? { installedAt: inst.installedAt } : {}),
        ...(inst.installedBy ? { installedBy: inst.installedBy } : {}),
      };
    }),
    cache,
    cacheShared: cache === ROOT_CACHE,
    ...(cacheProblem ? { cacheProblem } : {}),
    installable: INSTALLABLE_MAJORS.filter((major) => !installed.has(major)),
  };
}

/** "2026-12-07 02:20 UTC by root (sudo alice)": when and by whom a cached major was installed. */
export function installedWords(version: Pick<VersionInfo, 'installedAt' | 'installedBy'>): string {
  const at = version.installedAt ? `${version.installedAt.slice(0, 16).replace('T', ' ')} UTC` : 'at an unknown time';
  const by = version.installedBy ? ` by ${version.installedBy.user}${version.installedBy.sudoUser ? ` (sudo ${version.installedBy.sudoUser})` : ''}` : '';
  return version.installedAt || version.installedBy ? `${at}${by}` : '';
}

/** `lab versions install N`: a major from the argument ("17"), into the cache. */
export async function installVersion(major: string, options: { force?: boolean; reporter?: Reporter } = {}): Promise<InstallResult> {
  if (!/^\d+$/.test(major)) throw new LabError('USAGE', `Invalid major "${major}": pglab can install PostgreSQL ${installableRange} (e.g. lab versions install 17)`);
  const { installMajor } = await import('../postgres/cache-install.js');
  return installMajor(Number(major), options);
}
