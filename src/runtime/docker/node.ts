// One lab node as a container (issue 6): the same data dir path as the process runtime, bind-mounted at
// the same path; host networking, the server on 127.0.0.1:<port> (with --hosts: no network of the
// engine's, the container's namespace linked as the node's host, the server on its address); the image's
// postgres user owns the data. Built by initdb or pg_basebackup in one-off containers; started, stopped,
// killed and inspected through the engine. Containers are found by their labels (pglab.lab, pglab.node, pglab.role).
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { LabError } from '../../common/errors.js';
import { checkShellSafePath } from '../../common/shell-safe-path.js';
import { pollUntil } from '../../common/poll.js';
import { openPrivateAppend } from '../../common/safe-files.js';
import { assertPortFree } from '../../common/ports.js';
import { withClient } from '../../postgres/client.js';
import type { OsUser } from '../../postgres/os-user.js';
import { initdbArgs, withPasswordFile } from '../../postgres/initdb.js';
import { pgRewindArgs } from '../../postgres/pg-rewind.js';
import { logTail, type ServerStatus, type StopMode } from '../../postgres/server.js';
import { findContainers, removeContainers, type LabContainer } from './lab.js';
import { containerName, LAB_LABEL, labLabels, NODE_LABEL } from './labels.js';
import { dockerEngine } from './engine.js';
import { ensureImage } from './image.js';
import { containerLogs, logsTail } from './logs.js';
import { runOneOff } from './one-off.js';
import { loadTestcontainers } from './testcontainers.js';
import { LOOPBACK, type NodeHost } from '../../network/address.js';
import { ensureNodeHost } from '../../network/namespaces.js';
import type { LabHosts } from '../../network/address.js';

export interface DockerNodeRef {
  labId: string;
  name: string;
}

export interface DockerNodeSpec extends DockerNodeRef {
  port: number;
  /** Absolute host path, mounted at the same path in the container. */
  datadir: string;
  image: string;
  /** The image's postgres user (see imagePostgresUser), who must own `datadir` on the host. */
  user: OsUser;
  dbUser: string;
  /** The lab's password (scram labs): initdb's --pwfile, PGPASSWORD of pg_basebackup and pg_rewind. */
  password?: string;
  /**
   * The server's log as a host file (the lab's log/<node>.log, as pg_ctl -l writes it for processes):
   * its dir is bind-mounted at the same path and the server's output goes there instead of `docker logs`.
   */
  logFile?: string;
  /**
   * A lab made with --hosts: the node's host (namespace, veth, address) on the lab's bridge. The container
   * starts with no network; its namespace is then named and linked as the node's (ensureNodeHost).
   */
  host?: { lab: LabHosts; node: NodeHost };
  /** Told when the image must be built first (ensureImage). */
  notice?: (message: string) => void;
}

export interface DockerNodeStatus {
  status: ServerStatus;
  /** The postmaster's pid as the host sees it, while running. */
  pid?: number;
  containerId?: string;
  /** The container's own state: running, exited, ... or missing when there is no container. */
  containerState: string;
  exitCode?: number;
}

const imageUsers = new Map<string, Promise<OsUser>>();

/**
 * The uid/gid of the image's `postgres` user (999 in the official Debian-based images and in
 * pglab/postgres:*-local, 70 in the Alpine ones): the host data dir must belong to it.
 */
export function imagePostgresUser(image: string, labId: string, notice?: (message: string) => void): Promise<OsUser> {
  let user = imageUsers.get(image);
  if (!user) {
    user = probeImageUser(image, labId, notice);
    imageUsers.set(image, user);
    user.catch(() => imageUsers.delete(image));
  }
  return user;
}

/** Reads /etc/passwd out of a created, never started, container: no process runs, so it costs ~0.1 s. */
async function probeImageUser(image: string, labId: string, notice?: (message: string) => void): Promise<OsUser> {
  const engine = await dockerEngine();
  await ensureImage(image, notice);
  const labels = labLabels(labId, 'image-user', 'probe');
  await removeContainers(await findContainers(labels));
  const container = await engine.container.dockerode.createContainer({
    Image: image,
    name: containerName(labId, 'image-user', 'probe'),
    Labels: labels,
    Entrypoint: ['true'],
    HostConfig: { NetworkMode: 'none' },
  });
  let passwd: string;
  try {
    passwd = firstTarEntry(await streamToBuffer(await container.getArchive({ path: '/etc/passwd' })));
  } finally {
    await container.remove({ force: true }).catch(() => undefined);
  }
  const entry = passwd.split('\n').map((line) => line.split(':')).find((fields) => fields[0] === 'postgres');
  if (!entry || !/^\d+$/.test(entry[2] ?? '') || !/^\d+$/.test(entry[3] ?? '')) {
    throw new LabError('ENVIRONMENT', `Image ${image} has no postgres user in /etc/passwd: use an image laid out like the official postgres images`);
  }
  return { name: 'postgres', uid: Number(entry[2]), gid: Number(entry[3]), home: entry[5] || '/var/lib/postgresql' };
}

async function streamToBuffer(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/** The content of the first file in a tar archive: a 512-byte header (size in octal at 124) then the data. */
function firstTarEntry(tar: Buffer): string {
  const size = parseInt(tar.subarray(124, 136).toString('ascii').replace(/\0.*$/, '').trim(), 8);
  return tar.subarray(512, 512 + (Number.isFinite(size) ? size : 0)).toString('utf8');
}

function userOf(spec: Pick<DockerNodeSpec, 'user'>): string {
  return `${spec.user.uid}:${spec.user.gid}`;
}

/** initdb into the (empty, image-user-owned) data dir, in a one-off container. */
export async function initdbInContainer(spec: DockerNodeSpec, timeoutMs = 300_000): Promise<{ elapsedMs: number }> {
  const run = (pwfile?: string, pwdir?: string) => runOneOff({
    image: spec.image,
    notice: spec.notice,
    name: containerName(spec.labId, spec.name, 'initdb'),
    labels: labLabels(spec.labId, spec.name, 'initdb'),
    user: userOf(spec),
    command: ['initdb', ...initdbArgs(spec.datadir, spec.dbUser, pwfile)],
    binds: pwdir ? [spec.datadir, pwdir] : [spec.datadir],
    timeoutMs,
    what: 'initdb',
  });
  const { elapsedMs } = spec.password === undefined ? await run() : await withPasswordFile(spec.password, spec.user, run);
  return { elapsedMs };
}

/** PGPASSWORD for a program of the image that connects to the lab's servers. */
function passwordEnv(spec: Pick<DockerNodeSpec, 'password'>): Record<string, string> {
  return spec.password === undefined ? {} : { PGPASSWORD: spec.password };
}

/**
 * pg_basebackup from the upstream at its address (127.0.0.1, or its host's with --hosts: the host network
 * reaches the lab's bridge) into the data dir, in a one-off container on the host network.
 */
export async function basebackupInContainer(
  spec: DockerNodeSpec,
  upstream: { host: string; port: number },
  options: { timeoutMs?: number; onLine?: (line: string) => void; slot?: string } = {},
): Promise<{ elapsedMs: number; output: string }> {
  return runOneOff({
    image: spec.image,
    notice: spec.notice,
    name: containerName(spec.labId, spec.name, 'basebackup'),
    labels: labLabels(spec.labId, spec.name, 'basebackup'),
    user: userOf(spec),
    command: ['pg_basebackup', '-h', upstream.host, '-p', String(upstream.port), '-U', spec.dbUser, '-D', spec.datadir, '-X', 'stream', ...(options.slot ? ['-S', options.slot] : []), '--checkpoint=fast', '--progress', '--verbose'],
    binds: [spec.datadir],
    env: passwordEnv(spec),
    timeoutMs: options.timeoutMs ?? 30 * 60_000,
    what: 'pg_basebackup',
    onLine: options.onLine,
  });
}

/**
 * pg_rewind from the primary at sourceHost (default 127.0.0.1):sourcePort, in a one-off container on the host network.
 * The node's server container must not run. Its postmaster.pid, after a docker kill, names a pid of the
 * dead container's pid namespace (often 1, which in the one-off container is pg_rewind itself): the
 * single-user crash recovery pg_rewind runs would refuse it, so it goes first.
 */
export async function rewindInContainer(
  spec: DockerNodeSpec,
  sourcePort: number,
  options: { timeoutMs?: number; onLine?: (line: string) => void; sourceHost?: string } = {},
): Promise<{ elapsedMs: number; output: string }> {
  // pg_rewind's crash recovery runs `"postgres" --single -D "DATADIR"` through /bin/sh in the container.
  checkShellSafePath(spec.datadir, 'data dir');
  const current = await serverContainer(spec);
  if (current?.state === 'running' || current?.state === 'paused') {
    throw new LabError('CONFLICT', `Container ${current.name} of node "${spec.name}" is ${current.state}: stop it first (\`lab node stop ${spec.name}\`), pg_rewind needs it shut down`);
  }
  await rm(path.join(spec.datadir, 'postmaster.pid'), { force: true });
  return runOneOff({
    image: spec.image,
    notice: spec.notice,
    name: containerName(spec.labId, spec.name, 'rewind'),
    labels: labLabels(spec.labId, spec.name, 'rewind'),
    user: userOf(spec),
    command: ['pg_rewind', ...pgRewindArgs(spec.datadir, sourcePort, spec.dbUser, options.sourceHost)],
    binds: [spec.datadir],
    env: passwordEnv(spec),
    timeoutMs: options.timeoutMs ?? 30 * 60_000,
    what: 'pg_rewind',
    onLine: options.onLine,
  });
}

async function serverContainer(ref: DockerNodeRef): Promise<LabContainer | undefined> {
  const [container] = await findContainers(labLabels(ref.labId, ref.name, 'server'));
  return container;
}

/**
 * Start the node's server container and wait until it accepts connections on 127.0.0.1:port (host
 * network), or with --hosts on its address in its own namespace: the container starts with no network
 * and the server listens on the node's address before it exists there (ip_nonlocal_bind, set in the
 * container's namespace only); the namespace is then named and linked as the node's (ensureNodeHost).
 * A container left from an earlier run (stopped or crashed) is replaced, so the command line is current.
 */
export async function startNodeContainer(spec: DockerNodeSpec, timeoutMs = 60_000): Promise<{ containerId: string; pid: number; elapsedMs: number }> {
  const started = Date.now();
  const engine = await dockerEngine();
  const current = await serverContainer(spec);
  if (current?.state === 'running' || current?.state === 'paused') {
    throw new LabError('CONFLICT', `Container ${current.name} of node "${spec.name}" is already ${current.state}: stop it first`);
  }
  if (current) await removeContainers([current]);
  await ensureImage(spec.image, spec.notice);
  await assertPortFree(spec.port, `node "${spec.name}"`);
  const { GenericContainer } = loadTestcontainers();
  const address = spec.host?.node.address ?? LOOPBACK;
  const args = ['-D', spec.datadir, '-p', String(spec.port), '-c', `listen_addresses=${address}`, '-c', `cluster_name=${spec.name}`];
  const mounts = [{ source: spec.datadir, target: spec.datadir, mode: 'rw' as const }];
  let entrypoint = ['postgres'];
  if (spec.logFile) {
    await prepareLogFile(spec.logFile, spec.user);
    mounts.push({ source: path.dirname(spec.logFile), target: path.dirname(spec.logFile), mode: 'rw' });
    // exec: postgres stays PID 1, so docker stop/kill signal the postmaster itself.
    entrypoint = ['/bin/sh', '-c', 'exec postgres "$@" >>"$PGLAB_LOG_FILE" 2>&1', 'postgres'];
  }
  const builder = new GenericContainer(spec.image);
  if (spec.host) withSysctls(builder, { 'net.ipv4.ip_nonlocal_bind': '1' });
  const container = await builder
    .withName(containerName(spec.labId, spec.name, 'server'))
    .withLabels(labLabels(spec.labId, spec.name, 'server'))
    .withNetworkMode(spec.host ? 'none' : 'host')
    .withUser(userOf(spec))
    .withEntrypoint(entrypoint)
    .withCommand(args)
    .withEnvironment({ LC_ALL: 'C', LANG: 'C', ...(spec.logFile ? { PGLAB_LOG_FILE: spec.logFile } : {}) })
    .withBindMounts(mounts)
    .withAutoCleanup(false) // the node outlives this process, like a pg_ctl-started postmaster
    .start();
  const containerId = container.getId();
  const docker = engine.container.dockerode.getContainer(containerId);
  const name = containerName(spec.labId, spec.name, 'server');
  const output = async () =>
    spec.logFile ? logTail(spec.logFile) : logsTail(await containerLogs(engine, containerId, 20), 20, `container ${name}`);
  if (spec.host) {
    try {
      const info = await docker.inspect();
      // One that exited at once has no namespace to join: the wait below says why it exited.
      if (info.State.Running) await ensureNodeHost(spec.labId, spec.host.lab, spec.host.node, await localPid(containerId, info.State.Pid));
    } catch (error) {
      await docker.remove({ force: true }).catch(() => undefined); // no node left running without its host
      throw error;
    }
  }
  const outcome = await pollUntil(
    async () => {
      const info = await docker.inspect();
      if (!info.State.Running) return { exited: info.State.ExitCode };
      // The same-path bind mount makes data_directory identify our server, not whoever took the port meanwhile.
      const datadir = await withClient({ host: address, port: spec.port, user: spec.dbUser, connectTimeoutMs: 2000 }, async (client) =>
        String((await client.query<{ d: string }>("SELECT current_setting('data_directory') AS d")).rows[0]?.d));
      if (datadir !== spec.datadir) throw new Error(`port ${spec.port} answers for ${datadir}, not ${spec.datadir}`);
      return { pid: info.State.Pid };
    },
    {
      timeoutMs,
      intervalMs: 100,
      what: `${spec.name} (container ${name}) to accept connections on ${address}:${spec.port}`,
      detail: output,
    },
  );
  if ('exited' in outcome) {
    throw new LabError('COMMAND_FAILED', `${spec.name} did not start on port ${spec.port}: its container ${name} exited with code ${outcome.exited}`, {
      detail: await output(),
    });
  }
  return { containerId, pid: outcome.pid, elapsedMs: Date.now() - started };
}

/** testcontainers 11 has no withSysctls: the engine's HostConfig.Sysctls, set on the builder's own host config. */
function withSysctls(builder: object, sysctls: Record<string, string>): void {
  const hostConfig = (builder as { hostConfig?: { Sysctls?: Record<string, string> } }).hostConfig;
  if (!hostConfig) throw new Error('this testcontainers keeps no hostConfig: --hosts on the docker runtime needs testcontainers 11');
  hostConfig.Sysctls = { ...hostConfig.Sysctls, ...sysctls };
}

/**
 * The container's PID 1 as this machine sees it, checked to be that container's (its cgroup names the
 * container): a remote engine's pid would name another process here, whose namespace must not be touched.
 */
async function localPid(containerId: string, pid: number): Promise<number> {
  const cgroup = await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '');
  if (!cgroup.includes(containerId)) {
    throw new LabError('ENVIRONMENT', `--hosts on the docker runtime needs the engine on this machine: container ${containerId.slice(0, 12)}'s pid ${pid} is not one of this machine's processes (see DOCKER_HOST)`);
  }
  return pid;
}

/** The file the server appends to, created beforehand for the image's postgres user (who cannot create it in the log dir). */
async function prepareLogFile(logFile: string, user: OsUser): Promise<void> {
  // The log dir is that user's: a new file is created without following a link and given to the user
  // through its handle; an existing one must already be a plain file of that user (never chowned).
  const handle = await openPrivateAppend(logFile, 0o640, user);
  await handle.close();
}

/** The postmaster's shutdown signal for each pg_ctl stop mode. */
const STOP_SIGNALS: Record<StopMode, string> = { smart: 'SIGTERM', fast: 'SIGINT', immediate: 'SIGQUIT' };

/**
 * `docker stop`: the image's stop signal (SIGINT = fast shutdown in postgres images), SIGKILL after
 * `timeoutMs`. Another mode sends its own signal first. Idempotent.
 */
export async function stopNodeContainer(ref: DockerNodeRef, timeoutMs = 60_000, mode: StopMode = 'fast'): Promise<void> {
  const container = await serverContainer(ref);
  if (!container || (container.state !== 'running' && container.state !== 'paused')) return;
  // A paused (frozen) server cannot shut down: thawed first (lab fault pause, or a pause by hand).
  if (container.state === 'paused') await unpauseNodeContainer(ref);
  const engine = await dockerEngine();
  if (mode !== 'fast') {
    const docker = engine.container.dockerode.getContainer(container.id);
    await docker.kill({ signal: STOP_SIGNALS[mode] }).catch(() => undefined); // gone meanwhile: the stop below is a no-op
    const exited = await pollUntil(async () => ((await docker.inspect()).State.Running ? undefined : true), {
      timeoutMs, intervalMs: 50, what: `container ${container.name} to exit after ${STOP_SIGNALS[mode]}`,
    }).catch(() => false);
    if (exited) return;
  }
  try {
    await engine.container.dockerode.getContainer(container.id).stop({ t: Math.ceil(timeoutMs / 1000) });
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode !== 304) throw error; // 304: already stopped
  }
}

/**
 * `docker pause`: the engine freezes every process of the node's container (cgroup freezer), so the node
 * accepts TCP connections (the kernel's backlog) but answers nothing, as SIGSTOP does for processes.
 */
export async function pauseNodeContainer(ref: DockerNodeRef): Promise<{ container: string }> {
  const container = await serverContainer(ref);
  if (!container || container.state !== 'running') {
    throw new LabError('STATE', `${ref.name} is not running (its container is ${container ? container.state : 'missing'})`);
  }
  const engine = await dockerEngine();
  await engine.container.dockerode.getContainer(container.id).pause();
  return { container: container.name };
}

/** `docker unpause` of the node's container when it is paused; its name, or undefined when it was not paused. */
export async function unpauseNodeContainer(ref: DockerNodeRef): Promise<string | undefined> {
  const container = await serverContainer(ref);
  if (!container) return undefined;
  const engine = await dockerEngine();
  const docker = engine.container.dockerode.getContainer(container.id);
  if (!(await docker.inspect()).State.Paused) return undefined;
  await docker.unpause();
  return container.name;
}

/** `docker kill` (SIGKILL to the postmaster, PID 1 of the container), as seed 004 does. */
export async function killNodeContainer(ref: DockerNodeRef): Promise<{ pid: number; killedAtMs: number }> {
  const container = await serverContainer(ref);
  const engine = await dockerEngine();
  const docker = container && engine.container.dockerode.getContainer(container.id);
  const info = docker && (await docker.inspect());
  if (!docker || !info?.State.Running) {
    throw new LabError('STATE', `${ref.name} is not running (its container is ${container ? container.state : 'missing'})`);
  }
  const killedAtMs = Date.now();
  await docker.kill({ signal: 'SIGKILL' });
  await pollUntil(async () => ((await docker.inspect()).State.Running ? undefined : true), {
    timeoutMs: 10_000,
    intervalMs: 20,
    what: `container ${container.name} to exit after docker kill`,
  });
  return { pid: info.State.Pid, killedAtMs };
}

/** What the node is doing, from its container's state; `expected` tells a crash from a stop when there is no container. */
export async function nodeContainerStatus(ref: DockerNodeRef, expected: 'running' | 'stopped'): Promise<DockerNodeStatus> {
  const container = await serverContainer(ref);
  if (!container) return { status: expected === 'running' ? 'crashed' : 'stopped', containerState: 'missing' };
  const engine = await dockerEngine();
  const info = await engine.container.dockerode.getContainer(container.id).inspect();
  if (info.State.Running) return { status: 'running', pid: info.State.Pid, containerId: container.id, containerState: info.State.Status };
  // postgres exits 0 after a fast or smart shutdown (docker stop); anything else is a crash or a kill.
  const crashed = info.State.ExitCode !== 0 || info.State.OOMKilled;
  return { status: crashed ? 'crashed' : 'stopped', containerId: container.id, containerState: info.State.Status, exitCode: info.State.ExitCode };
}

/** The server's output (`docker logs`), optionally only the last `tail` lines. */
export async function nodeContainerLogs(ref: DockerNodeRef, tail?: number): Promise<string> {
  const container = await serverContainer(ref);
  if (!container) throw new LabError('NOT_FOUND', `Node "${ref.name}" has no container: start it first`);
  return containerLogs(await dockerEngine(), container.id, tail);
}

/** Remove the node's containers (server and any leftover one-off), running or not. */
export async function removeNodeContainers(ref: DockerNodeRef): Promise<string[]> {
  return removeContainers(await findContainers({ [LAB_LABEL]: ref.labId, [NODE_LABEL]: ref.name }));
}
