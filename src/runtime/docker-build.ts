// A node's data dir built in containers and configured from the host: the same lab templates and
// standby files as the process runtime, owned by the image's postgres user instead of the host's.
import { removeCopiedLeftovers, writeNodeConfig, writeStandbyConfig, type NodeFilesSpec } from '../lab/node-files.js';
import { giveTo } from '../postgres/os-user.js';
import { basebackupInContainer, initdbInContainer, type DockerNodeSpec } from './docker-node.js';

export interface DockerBuildSpec extends DockerNodeSpec {
  /** PostgreSQL major of the image, for the version's configuration dialect. */
  major: number;
  /** The lab's files for this node (configuration, certificate, standby files). */
  files: NodeFilesSpec;
}

const filesSpec = (spec: DockerBuildSpec) => spec.files;

/** initdb + the lab's postgresql.conf/pg_hba.conf. `datadir` must exist and be empty (prepareDatadir). */
export async function buildMasterDatadir(spec: DockerBuildSpec): Promise<void> {
  await giveTo(spec.datadir, spec.user);
  await initdbInContainer(spec);
  await writeNodeConfig(filesSpec(spec));
}

/** pg_basebackup from 127.0.0.1:upstreamPort + the lab's configuration + the standby files. */
export async function buildReplicaDatadir(spec: DockerBuildSpec, upstreamPort: number, onLine?: (line: string) => void): Promise<{ output: string }> {
  await giveTo(spec.datadir, spec.user);
  const { output } = await basebackupInContainer(spec, upstreamPort, { onLine });
  await removeCopiedLeftovers(spec.datadir);
  await writeNodeConfig(filesSpec(spec));
  await writeStandbyConfig({ ...filesSpec(spec), upstreamPort });
  return { output };
}
