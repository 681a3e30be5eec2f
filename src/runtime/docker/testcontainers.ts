// testcontainers, loaded when a docker command needs it (~0.4 s to load, which the process runtime must
// not pay). Through require, not import(): the one-file bundle (scripts/bundle.mjs) keeps it external
// and runs in a vm.Script, where Node 20 has no loader for dynamic import() of a package.
import { createRequire } from 'node:module';

export type Testcontainers = typeof import('testcontainers');

let loaded: Testcontainers | undefined;

export function loadTestcontainers(): Testcontainers {
  loaded ??= createRequire(import.meta.url)('testcontainers') as Testcontainers;
  return loaded;
}
