// Which PostgreSQL an image runs (the docker runtime's `lab master start --image`): from what the image
// says about itself, else from `postgres --version` in a one-off container.
import { LabError } from '../../common/errors.js';
import { dockerEngine } from './engine.js';
import { ensureImage } from './image.js';
import { containerName, labLabels } from './labels.js';
import { runOneOff } from './one-off.js';

export interface ImagePostgres {
  /** e.g. "15.18" */
  version: string;
  /** 15 (9.6 is given as 9, as for host installations) */
  major: number;
}

/**
 * The PostgreSQL version an image runs, from what the image says about itself: PG_VERSION (official
 * images), the pglab.source label (scripts/build-image.sh), else `postgres --version` in a one-off container.
 */
export async function imagePostgres(image: string, labId: string, notice?: (message: string) => void): Promise<ImagePostgres> {
  const engine = await dockerEngine();
  await ensureImage(image, notice);
  const info = await engine.container.dockerode.getImage(image).inspect();
  const env = (info.Config?.Env ?? []).find((entry) => entry.startsWith('PG_VERSION='))?.slice('PG_VERSION='.length);
  const label = info.Config?.Labels?.['pglab.source'];
  let version = /^\d+(\.\d+)?/.exec(env ?? '')?.[0] ?? /PostgreSQL\) (\d+(\.\d+)?)/.exec(label ?? '')?.[1];
  if (!version) {
    const { output } = await runOneOff({
      image, name: containerName(labId, 'image-version', 'probe'), labels: labLabels(labId, 'image-version', 'probe'),
      user: 'postgres', command: ['postgres', '--version'], timeoutMs: 60_000, what: 'postgres --version',
    });
    version = /PostgreSQL\) (\d+(\.\d+)?)/.exec(output)?.[1];
    if (!version) throw new LabError('ENVIRONMENT', `Image ${image} does not say which PostgreSQL it runs (postgres --version printed "${output.trim()}"): use an image laid out like the official postgres images`);
  }
  return { version, major: Number(version.split('.')[0]) };
}
