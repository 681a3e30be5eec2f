// `lab versions`: the PostgreSQL installations we can use.
import { discoverInstallations, type ToolName } from '../postgres/installation.js';

export interface VersionInfo {
  version: string;
  major: number;
  source: string;
  bindir: string;
  tools: ToolName[];
  /** False when it lacks pg_basebackup and no newer installation can lend one. */
  canAddReplicas: boolean;
}

export async function listVersions(): Promise<VersionInfo[]> {
  const all = await discoverInstallations();
  return all.map((inst) => ({
    version: inst.version,
    major: inst.major,
    source: inst.source,
    bindir: inst.bindir,
    tools: Object.keys(inst.tools) as ToolName[],
    canAddReplicas: all.some((other) => other.major >= inst.major && other.tools.pg_basebackup),
  }));
}
