// The image a node runs: local (scripts/build-image.sh) or pulled; without a registry only local works.
import { LabError, messageOf } from '../../common/errors.js';
import { dockerEngine } from './engine.js';
import { loadTestcontainers } from './testcontainers.js';

/**
 * The default image: LAB_IMAGE, else pglab/postgres:<major>-local for the major asked with --pg, else
 * the one scripts/build-image.sh builds from the installed PostgreSQL 15.
 */
export function defaultImage(major?: number): string {
  return process.env.LAB_IMAGE || `pglab/postgres:${major ?? 15}-local`;
}

/**
 * The image must be local or pullable; say how to get one when it is neither (no registry here). A local
 * image of ours that is missing is built, and `notice` told so first.
 */
export async function ensureImage(image: string, notice?: (message: string) => void): Promise<void> {
  const engine = await dockerEngine();
  const { ImageName } = loadTestcontainers();
  const name = ImageName.fromString(image);
  if (await engine.image.exists(name)) return;
  const localMajor = (await import('./local-image.js')).localImageMajor(image);
  if (localMajor !== undefined) {
    // Ours to build, from this machine's installation of that major (Debian's, or `lab versions install`'s).
    notice?.(`${image} is not built yet: building it (scripts/build-image.sh)`);
    await (await import('./local-image.js')).buildLocalImage(localMajor);
    return;
  }
  try {
    await engine.image.pull(name);
  } catch (error) {
    throw new LabError(
      'ENVIRONMENT',
      `Image ${image} is not on the Docker engine and could not be pulled: build the local one with scripts/build-image.sh (it prints its tag), or pass --image with an image you have`,
      { detail: messageOf(error), cause: error },
    );
  }
}
