// A node's data dir built in containers and configured from the host: the same lab templates and
// standby files as the process runtime, owned by the image's postgres user instead of the host's.
import { removeCopiedLeftovers, writeNodeConfig, writeStandbyConfig, type NodeFilesSpec } from '../../lab/node-files.js';
import type { Reporter } from '../../common/reporter.js';
import { ownBaseBackup } from '../../postgres/base-backup.js';
import { giveTo } from '../../postgres/os-user.js';
import type { CloneUpstream } from '../node-runtime.js';
import { basebackupInContainer, initdbInContainer, type DockerNodeSpec } from './node.js';

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

/**
 * A base backup from the upstream at upstream.host (127.0.0.1, or its address with --hosts) + the lab's
 * configuration + the standby files: the image's pg_basebackup in a one-off container, or pglab's own
 * copy on the host (the data dirs are bind-mounted at the same paths), run as the image's postgres uid.
 */
export async function buildReplicaDatadir(spec: DockerBuildSpec, upstream: CloneUpstream, reporter: Reporter, onLine?: (line: string) => void, signal?: AbortSignal): Promise<{ output: string; bytes?: number }> {
  await giveTo(spec.datadir, spec.user);
  let output = '';
  let bytes: number | undefined;
  if (upstream.method === 'pglab') {
    ({ bytes } = await ownBaseBackup({
      conn: { host: upstream.host, port: upstream.port, user: spec.dbUser }, major: spec.major, sourceDatadir: upstream.datadir, targetDatadir: spec.datadir,
      owner: spec.user, label: `pglab ${spec.name}`, reporter, signal,
    }));
  } else {
    ({ output } = await basebackupInContainer(spec, upstream, { onLine, slot: upstream.slot }));
  }
  await removeCopiedLeftovers(spec.datadir);
  await writeNodeConfig(filesSpec(spec));
  await writeStandbyConfig({ ...filesSpec(spec), upstreamPort: upstream.port, upstreamHost: upstream.host });
  return { output, bytes };
}
