// Node and balancer names become application_name and file names: keep them plain.
import { LabError } from '../common/errors.js';

export function checkName(name: string, what = 'node name'): string {
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,62}$/.test(name ?? '')) {
    throw new LabError('USAGE', `Invalid ${what} "${name}": use a letter then letters, digits, _ or - (at most 63), e.g. replica1`);
  }
  return name;
}
