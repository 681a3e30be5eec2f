// Nodes as containers (issue 6): the same data dir paths, ports and configuration templates as the
// process runtime; the image's postgres user owns the data; the server's log goes to the same
// log/<node>.log file through a bind mount of the lab's log dir.
import { labPassword } from '../../lab/access.js';
import { nodeLogFile } from '../../lab/context.js';
import { nodeFilesSpec } from '../../lab/node-files.js';
import { reportBackupLine } from '../../postgres/base-backup.js';
import { logTail } from '../../postgres/server.js';
import { removeNodeHost } from '../../network/namespaces.js';
import { buildMasterDatadir, buildReplicaDatadir, type DockerBuildSpec } from './build.js';
import { defaultImage } from './image.js';
import { childrenOf } from '../../common/processes.js';
import { imagePostgresUser, killNodeContainer, nodeContainerStatus, pauseNodeContainer, rewindInContainer, startNodeContainer, stopNodeContainer, unpauseNodeContainer } from './node.js';
import type { NodeRuntime, RuntimeContext, RuntimeNode } from '../node-runtime.js';

export function dockerRuntime(context: RuntimeContext): NodeRuntime {
  const { labDir, state } = context;
  const image = state.image ?? defaultImage();
  const ref = (node: RuntimeNode) => ({ labId: state.labId, name: node.name });
  const spec = async (node: RuntimeNode): Promise<DockerBuildSpec> => {
    const user = await imagePostgresUser(image, state.labId, context.notice);
    return {
      labId: state.labId, name: node.name, port: node.port, datadir: node.datadir, image,
      ...(node.host && state.hosts ? { host: { lab: state.hosts, node: node.host } } : {}),
      user, dbUser: state.dbUser, major: state.pg.major, password: await labPassword(labDir, state), notice: context.notice,
      logFile: nodeLogFile(labDir, node.name), files: nodeFilesSpec(labDir, state, node, user),
    };
  };

  // With --hosts, a container's namespace ends with it (a start gets a new one, named and linked again):
  // its name and veth go at stop and kill, so no fault can be applied to a namespace nobody runs in.
  const dropHost = async (node: RuntimeNode) => {
    if (node.host && state.hosts) await removeNodeHost(state.labId, state.hosts, node.host);
  };

  return {
    name: 'docker',
    async initMaster(node) {
      await buildMasterDatadir(await spec(node));
      return { slotsMade: false };
    },
    async checkCanClone(wanted = 'auto') {
      await imagePostgresUser(image, state.labId, context.notice); // the engine answers and the image has its postgres user
      // The data dirs are bind-mounted at the same paths: pglab's own copy runs on the host as the image's
      // user (auto, as for processes; images built from the npm binaries have no pg_basebackup);
      // --base-backup pg_basebackup runs the image's own in a one-off container.
      return wanted === 'pg_basebackup' ? 'pg_basebackup' : 'pglab';
    },
    async cloneReplica(node, upstream, reporter, signal) {
      // pg_basebackup's progress, live from the one-off container's output, as for the process runtime.
      let backupKb: number | undefined;
      const { bytes } = await buildReplicaDatadir(await spec(node), upstream, reporter, (line) => {
        const kb = reportBackupLine(line, reporter);
        if (kb !== undefined) backupKb = kb;
      }, signal);
      if (bytes !== undefined) backupKb = Math.round(bytes / 1024);
      return { backupKb, method: upstream.method };
    },
    async start(node, timeoutMs) {
      return (await startNodeContainer(await spec(node), timeoutMs)).pid;
    },
    async stop(node, mode, timeoutMs) {
      await stopNodeContainer(ref(node), timeoutMs, mode);
      await dropHost(node);
    },
    async kill(node) {
      const killed = await killNodeContainer(ref(node));
      await dropHost(node);
      return killed;
    },
    async pause(node, pid) {
      const { container } = await pauseNodeContainer(ref(node));
      // The frozen processes, as the host sees them: the postmaster (the container's PID 1) and its children.
      return { processes: (await childrenOf(pid)).length + 1, how: `docker pause of container ${container} (postmaster ${pid})` };
    },
    async resume(node) {
      const container = await unpauseNodeContainer(ref(node));
      if (container) return `resumed (docker unpause) container ${container}`;
      return (await nodeContainerStatus(ref(node), 'stopped')).pid ? 'not paused: nothing to resume' : undefined;
    },
    async status(node, expected) {
      const { status, pid } = await nodeContainerStatus(ref(node), expected);
      // As for processes: a node the lab expects running that does not run has crashed, whatever stopped it.
      return { status: status === 'stopped' && expected === 'running' ? 'crashed' : status, pid };
    },
    async livePid(node) {
      return (await nodeContainerStatus(ref(node), 'stopped')).pid;
    },
    logTail: (node, lines) => logTail(nodeLogFile(labDir, node.name), lines),
    dataOwner: () => imagePostgresUser(image, state.labId, context.notice),
    // Images laid out like the official postgres ones carry the pg_rewind of their own version.
    rewindMissing: async () => undefined,
    async rewind(node, sourcePort, reporter, sourceHost) {
      const { output } = await rewindInContainer(await spec(node), sourcePort, { onLine: (line) => reporter.detail(line), sourceHost });
      return output;
    },
  };
}
