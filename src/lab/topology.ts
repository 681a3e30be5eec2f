// Checks that a new or re-added node fits the lab: unique name and port, data dirs that do not
// overlap each other or the lab dir's own files.
import path from 'node:path';
import { LabError } from '../common/errors.js';
import { overlaps } from './datadir.js';
import type { LabState, NodeRecord } from './state.js';

export function checkNodeFits(state: LabState, labDir: string, wanted: Pick<NodeRecord, 'name' | 'port' | 'datadir' | 'role'>): NodeRecord | undefined {
  const existing = state.nodes.find((node) => node.name === wanted.name);
  if (existing) {
    if (existing.role !== wanted.role) {
      throw new LabError('CONFLICT', `Node "${wanted.name}" already exists in this lab as the ${existing.role === 'primary' ? 'master' : existing.role}: choose another name`);
    }
    if (existing.datadir !== wanted.datadir || existing.port !== wanted.port) {
      throw new LabError(
        'CONFLICT',
        `Node "${wanted.name}" already exists with data dir ${existing.datadir} and port ${existing.port}: re-add it with those, or choose another name`,
      );
    }
  }
  for (const node of state.nodes) {
    if (node.name === wanted.name) continue;
    if (node.port === wanted.port) {
      throw new LabError('CONFLICT', `Port ${wanted.port} is already used by node "${node.name}" of this lab: choose another port`);
    }
    if (overlaps(node.datadir, wanted.datadir)) {
      throw new LabError('CONFLICT', `Data dir ${wanted.datadir} overlaps the data dir ${node.datadir} of node "${node.name}": choose another path`);
    }
  }
  const resolvedLab = path.resolve(labDir);
  if (wanted.datadir === resolvedLab || resolvedLab.startsWith(`${wanted.datadir}/`) || ['log', 'balancer', 'archive', 'backups'].some((own) => wanted.datadir === path.join(resolvedLab, own))) {
    throw new LabError('CONFLICT', `Data dir ${wanted.datadir} would hold the lab's own files in ${resolvedLab}: choose a path such as ${path.join(resolvedLab, wanted.name)}`);
  }
  return existing;
}
