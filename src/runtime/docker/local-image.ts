// pglab/postgres:<major>-local, built by scripts/build-image.sh from an installation on this machine:
// Debian's /usr/lib/postgresql/<major>, or a major of `lab versions install` (its native/ tree as
// PG_BINROOT). Used by `lab versions image N` and by the docker runtime when that tag is missing.
import path from 'node:path';
import { execa } from 'execa';
import { LabError } from '../../common/errors.js';
import { packageRoot } from '../../common/package-root.js';
import { installableRange, isInstallableMajor } from '../../postgres/cache-root.js';
import { discoverInstallations, type Installation } from '../../postgres/installation.js';

export const localImageTag = (major: number): string => `pglab/postgres:${major}-local`;

/** The major of a pglab/postgres:<major>-local tag, else undefined. */
export function localImageMajor(image: string): number | undefined {
  const match = /^pglab\/postgres:(\d+)-local$/.exec(image);
  return match ? Number(match[1]) : undefined;
}

/** The installation an image of `major` is built from: Debian's tree first (it has pg_basebackup), else the cache's. */
async function imageSource(major: number): Promise<Installation> {
  const all = (await discoverInstallations()).filter((inst) => inst.major === major);
  const debian = all.find((inst) => inst.bindir === `/usr/lib/postgresql/${major}/bin`);
  const cached = all.find((inst) => inst.source === 'cache' || inst.source.startsWith('npm:'));
  const source = debian ?? cached;
  if (source) return source;
  const install = isInstallableMajor(major) ? `install it with \`npx lab versions install ${major}\`` : `pglab can install ${installableRange}`;
  throw new LabError('NOT_FOUND', `No PostgreSQL ${major} on this machine to build ${localImageTag(major)} from: ${install}, then run \`npx lab versions image ${major}\``);
}

/**
 * Runs scripts/build-image.sh for `major` (it skips the build when the tag is up to date). Its progress
 * lines go to our stderr. Needs root and a running engine (scripts/ensure-docker.sh); the script says so.
 */
export async function buildLocalImage(major: number, options: { force?: boolean } = {}): Promise<{ image: string; source: string; bindir: string }> {
  const source = await imageSource(major);
  const binroot = source.bindir.startsWith('/usr/lib/postgresql/') ? undefined : path.dirname(source.bindir);
  const script = path.join(packageRoot, 'scripts', 'build-image.sh');
  const result = await execa('sh', [script], {
    reject: false,
    stdout: 'pipe',
    stderr: 'inherit',
    env: { PG_MAJOR: String(major), ...(binroot ? { PG_BINROOT: binroot } : {}), ...(options.force ? { PGLAB_IMAGE_FORCE: '1' } : {}) },
  });
  if (result.exitCode !== 0) {
    throw new LabError('ENVIRONMENT', `scripts/build-image.sh could not build ${localImageTag(major)} from ${source.bindir} (exit ${result.exitCode}; its reason is above): fix that and run \`npx lab versions image ${major}\` again`);
  }
  const image = String(result.stdout).trim().split('\n').pop() ?? localImageTag(major);
  return { image, source: source.source, bindir: source.bindir };
}
