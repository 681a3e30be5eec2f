// Checks that a new or re-added node fits the lab: unique name and port, data dirs that do not
// overlap each other or the lab dir's own files; and who a standby may stream from (cascades, no cycles).
import path from 'node:path';
import { LabError } from '../common/errors.js';
import { overlaps } from './datadir.js';
import { findNode, type LabState, type NodeRecord } from './state.js';
import { checkName } from './names.js';

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

/**
 * The node `name` is to stream from: `wanted` checked (exists, not itself, no cycle, built, not waiting for
 * a rewind); without one, its recorded upstream if still fit, else the primary.
 */
export function upstreamFor(state: LabState, name: string, wanted: string | undefined, known: NodeRecord | undefined, primary: NodeRecord): NodeRecord {
  if (wanted === undefined) {
    const recorded = known?.upstream !== undefined ? findNode(state, known.upstream) : undefined;
    return recorded && recorded.name !== name && !recorded.rewindNeeded && !streamsFrom(state, recorded, name) ? recorded : primary;
  }
  const node = findNode(state, checkName(wanted));
  if (!node) throw new LabError('NOT_FOUND', `Unknown upstream "${wanted}" (nodes in this lab: ${state.nodes.map((n) => n.name).join(', ')})`);
  if (node.name === name) throw new LabError('USAGE', `Replica "${name}" cannot stream from itself: name another node as its upstream`);
  if (streamsFrom(state, node, name)) throw new LabError('USAGE', `"${node.name}" streams from "${name}" (through its upstreams): "${name}" cannot stream from it`);
  if (node.phase !== 'ready') throw new LabError('STATE', `Upstream "${node.name}" was never finished: re-add it first`);
  if (node.role === 'restored') throw new LabError('USAGE', `"${node.name}" is a restored node on a timeline of its own (\`lab node restore\`): name the primary or a replica as the upstream`);
  if (node.role === 'subscriber') throw new LabError('USAGE', `"${node.name}" is a logical subscriber (\`lab logical add\`), a cluster of its own: name the primary or a replica as the upstream`);
  if (node.rewindNeeded) throw new LabError('STATE', `Upstream "${node.name}" was a primary and may have diverged: rewind it first (\`lab node rewind ${node.name}\`)`);
  return node;
}

/** Whether `node` streams from `name`, directly or through other standbys. */
export function streamsFrom(state: LabState, node: NodeRecord, name: string): boolean {
  const seen = new Set<string>();
  for (let at: NodeRecord | undefined = node; at?.upstream !== undefined && !seen.has(at.name); at = findNode(state, at.upstream)) {
    if (at.upstream === name) return true;
    seen.add(at.name);
  }
  return false;
}
