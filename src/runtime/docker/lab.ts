// A lab's containers, found by label only: listing them for `lab status`, removing them for `lab destroy`.
import { LAB_LABEL, NODE_LABEL, ROLE_LABEL, type ContainerRole } from './labels.js';
import { dockerEngine } from './engine.js';

export interface LabContainer {
  id: string;
  /** Without the leading slash Docker keeps in names. */
  name: string;
  node: string;
  role: ContainerRole;
  image: string;
  /** created | running | paused | restarting | removing | exited | dead */
  state: string;
  /** Docker's human text, e.g. "Exited (137) 2 seconds ago". */
  status: string;
}

export async function findContainers(labels: Record<string, string>): Promise<LabContainer[]> {
  const engine = await dockerEngine();
  const infos = await engine.container.dockerode.listContainers({
    all: true,
    filters: { label: Object.entries(labels).map(([key, value]) => `${key}=${value}`) },
  });
  return infos.map((info) => ({
    id: info.Id,
    name: (info.Names[0] ?? info.Id).replace(/^\//, ''),
    node: info.Labels[NODE_LABEL] ?? '',
    role: (info.Labels[ROLE_LABEL] ?? 'server') as ContainerRole,
    image: info.Image,
    state: info.State,
    status: info.Status,
  }));
}

/** Every container of the lab, running or not (servers and leftover one-off containers). */
export function listLabContainers(labId: string): Promise<LabContainer[]> {
  return findContainers({ [LAB_LABEL]: labId });
}

/** Force-remove the given containers (an already removed one is not an error). */
export async function removeContainers(containers: LabContainer[]): Promise<string[]> {
  const engine = await dockerEngine();
  const removed: string[] = [];
  for (const container of containers) {
    try {
      await engine.container.dockerode.getContainer(container.id).remove({ force: true, v: true });
      removed.push(container.name);
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode !== 404) throw error;
    }
  }
  return removed;
}

/** Remove every container labelled with this lab, and nothing else. Returns their names. */
export async function removeLabContainers(labId: string): Promise<string[]> {
  return removeContainers(await listLabContainers(labId));
}
