// Where pglab is installed (package.json, lab/ templates, bin/, node_modules): the first directory up
// from this module that holds pglab's package.json. Walking up, rather than counting `..`, gives the
// same answer from dist/src/common/ (the compiled modules) and from dist/ (the one-file bundle).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findPackageRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    try {
      if ((JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string }).name === 'pglab') return dir;
    } catch {
      // no package.json here, or not ours: keep walking up
    }
    if (path.dirname(dir) === dir) throw new Error(`pglab's package.json not found above ${from}`);
  }
}

export const packageRoot = findPackageRoot(path.dirname(fileURLToPath(import.meta.url)));
