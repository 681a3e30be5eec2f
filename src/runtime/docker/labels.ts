// How a lab recognises its containers: by label only (never by name or image), so cleanup can never
// touch a container the lab did not create.
export const LAB_LABEL = 'pglab.lab';
export const NODE_LABEL = 'pglab.node';
/** server: the node's postmaster; initdb / basebackup / rewind: one-off containers that build or rewind its data dir. */
export const ROLE_LABEL = 'pglab.role';

export type ContainerRole = 'server' | 'initdb' | 'basebackup' | 'rewind' | 'probe';

export function labLabels(labId: string, node: string, role: ContainerRole): Record<string, string> {
  return { [LAB_LABEL]: labId, [NODE_LABEL]: node, [ROLE_LABEL]: role };
}

/** Docker names allow [a-zA-Z0-9][a-zA-Z0-9_.-]; lab ids and node names already fit. */
export function containerName(labId: string, node: string, role: ContainerRole): string {
  const base = `pglab-${labId}-${node}`;
  return role === 'server' ? base : `${base}-${role}`;
}
