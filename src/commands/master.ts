// `lab master start`: initdb, the lab's templates, start, wait until it accepts connections
// (the seed's repli-config-start-master.sh, minus its blind rm -rf).
import { lstat, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { LabError } from '../common/errors.js';
import { checkShellSafePath, checkShellSafeProgram } from '../common/shell-safe-path.js';
import { assertPortFree, parsePort } from '../common/ports.js';
import { silentReporter, type Reporter } from '../common/reporter.js';
import { labInstallation, logDir, type GlobalOptions } from '../lab/context.js';
import { checkDatadirPath, inspectDatadir, prepareDatadir, type DatadirCondition } from '../lab/datadir.js';
import { accessOf, AUTH_METHODS, createLabPassword, TLS_MODES, useLabAccess, type AuthMethod, type LabAccessSettings, type TlsMode } from '../lab/access.js';
import { checkName } from '../lab/names.js';
import { ensureLabTls } from '../lab/tls-certs.js';
import { prepareLabDir } from '../lab/lab-dir.js';
import { checkNodeFits } from '../lab/topology.js';
import { checkRuntime, newState, primaryOf, readState, runtimeOf, thisBuilder, updateState, withLock, writeState, type LabState } from '../lab/state.js';
import { slotName } from '../postgres/base-backup.js';
import { resolveInstallation } from '../postgres/installation.js';
import { templateCacheRoot } from '../postgres/cache-root.js';
import { giveTo, resolveRunAs, type OsUser } from '../postgres/os-user.js';
import { runtimeFor } from '../runtime/runtime-for.js';
import { nodeAddress } from '../network/address.js';
import { checkCanMakeHosts } from '../network/ip.js';
import { claimBridge, freeBridgeIndex, refuseOtherLabsBridge } from '../network/bridge.js';
import { labAddresses, labHosts, newNodeHost } from '../network/address.js';
import { archiveDir, newArchiveRecord, prepareArchiveDirs, switchAndWaitArchived, archiveFailureLine } from '../lab/archive.js';
import type { NodeRuntime, RuntimeNode } from '../runtime/node-runtime.js';

export interface MasterStartOptions {
  name?: string;
  datadir?: string;
  port?: number | string;
  reporter?: Reporter;
  timeoutMs?: number;
  /** The image of a new docker lab's nodes (default LAB_IMAGE, else the local pglab/postgres:15-local). */
  image?: string;
  /** A new lab's authentication: scram (default, the lab's generated password) or trust. */
  auth?: AuthMethod;
  /** A new lab's TLS: on (default), required (TCP only over TLS) or off. */
  tls?: TlsMode;
  /** A new lab whose nodes each run on a host of their own (a network namespace with its own address). */
  hosts?: boolean;
  /**
   * The library's Lab.start: standbys of a new lab, copied cold from the master before it starts (with
   * their slots made in the template copy's single-user run). Recorded as building; cold-standbys.ts
   * starts them. Only on the process runtime with the initdb template and without hosts; elsewhere, and
   * when the template was not used after all, none is made (the result's `standbys` is empty).
   */
  standbys?: { name: string; port: number }[];
  /** A new lab archiving its WAL into <lab-dir>/archive (src/lab/archive.ts), checked to work once started. */
  archive?: boolean;
}

export interface MasterStartResult {
  name: string;
  port: number;
  datadir: string;
  pid: number;
  version: string;
  /** created: initdb ran; started: an existing master was started; already-running: nothing to do */
  action: 'created' | 'started' | 'already-running';
  auth: AuthMethod;
  tls: TlsMode;
  /** Its address: 127.0.0.1, or its namespace's with --hosts. */
  address: string;
  /** The standbys made (options.standbys), recorded as building, not started yet. */
  standbys?: string[];
  /** --archive: the WAL file archived by the check at start. */
  archived?: string;
}

export async function masterStart(global: GlobalOptions, options: MasterStartOptions = {}): Promise<MasterStartResult> {
  const reporter = options.reporter ?? silentReporter;
  const name = checkName(options.name ?? 'master1');
  const port = parsePort(options.port ?? 5432);
  // Before anything is made: the lab dir (the servers' logs are in it) and the data dir reach pg_ctl's /bin/sh.
  checkShellSafePath(global.labDir, 'lab dir');
  const datadir = checkShellSafePath(checkDatadirPath(options.datadir ?? path.join(global.labDir, name)), 'data dir');
  const timeoutMs = options.timeoutMs ?? 60_000;
  const existing = await readState(global.labDir);
  if (existing) checkRuntime(existing, global.labDir, global.runtime);
  const runtime = existing ? runtimeOf(existing) : (global.runtime ?? 'process');
  if (options.image && runtime !== 'docker') {
    throw new LabError('USAGE', `--image is for nodes in containers: add --runtime docker (this lab runs on the ${runtime} runtime)`);
  }
  if (options.image && existing?.image && options.image !== existing.image) {
    throw new LabError('CONFLICT', `This lab runs image ${existing.image}, not ${options.image}: use another --lab-dir for another image`);
  }
  const access = checkAccessOptions(existing, options);
  if (existing && options.hosts && !existing.hosts) {
    throw new LabError('CONFLICT', `This lab was made without --hosts (its nodes listen on 127.0.0.1): use another --lab-dir for a lab with hosts, or \`lab destroy --yes\` first`);
  }
  if (!existing && options.hosts) await checkCanMakeHosts(runtime);
  if (options.archive && existing && !existing.archive) {
    throw new LabError('CONFLICT', `This lab was made without --archive: use another --lab-dir for an archiving lab, or \`lab destroy --yes\` first`);
  }
  if (options.archive && runtime !== 'process') throw new LabError('USAGE', `--archive needs the process runtime (the archive is a directory of this host): drop --runtime ${runtime}`);

  const primary = existing && primaryOf(existing);
  if (existing && primary) {
    if (primary.name !== name) {
      throw new LabError('CONFLICT', `This lab already has a master, "${primary.name}" on port ${primary.port}: use another --lab-dir for a second lab`);
    }
    checkNodeFits(existing, global.labDir, { name, port, datadir, role: 'primary' });
    return startExistingMaster(global, existing, reporter, timeoutMs);
  }

  const runAs = await resolveRunAs(global.osUser ?? existing?.osUser);
  const installation = existing ? await labInstallation(existing, global.pg) : await resolveInstallation(global.pg);
  if (runtime === 'process' && (!installation.tools.initdb || !installation.tools.pg_ctl)) {
    throw new LabError('ENVIRONMENT', `PostgreSQL ${installation.version} in ${installation.bindir} lacks initdb or pg_ctl: pass --pg with a complete installation`);
  }
  if (runtime === 'process') for (const tool of [installation.tools.pg_ctl, installation.tools.initdb]) await checkShellSafeProgram(tool);
  if (existing) checkNodeFits(existing, global.labDir, { name, port, datadir, role: 'primary' });
  const condition = await inspectDatadir(datadir, existing?.labId);
  if (condition === 'foreign' || condition === 'not-a-directory') await prepareDatadir(datadir, existing?.labId ?? ''); // throws the clear error
  await assertPortFree(port, `master "${name}"`);
  const initdbTemplates = runtime === 'process' && global.initdbTemplate !== false ? (global.initdbTemplate ?? templateCacheRoot()) : undefined;
  const standbys = existing || !initdbTemplates || options.hosts ? [] : await checkColdStandbys(global.labDir, options.standbys ?? [], { name, port, datadir });
  const image = runtime === 'docker' ? (existing?.image ?? options.image ?? (await import('../runtime/docker/image.js')).defaultImage(global.pg ? installation.major : undefined)) : undefined;
  // The servers' version: the image's in containers (the host's installation still serves pgbench and psql).
  const server = image ? await (await import('../runtime/docker/image-postgres.js')).imagePostgres(image, 'image-probe', global.notice) : installation;

  const labDirCreated = await prepareLabDir(global.labDir);
  await prepareLogDir(global.labDir, runAs);
  if (options.archive && !existing) await prepareArchiveDirs(global.labDir, runAs);
  const recorded = await withLock(global.labDir, async () => {
    const current = (await readState(global.labDir)) ??
      newState({
        labDirCreated,
        pg: { bindir: installation.bindir, version: server.version, major: server.major },
        osUser: runAs?.name,
        dbUser: 'postgres',
        runtime,
        image,
        access,
        // The bridge's name is recorded before it is made (destroy removes it by name); claimed below.
        hosts: options.hosts ? labHosts(await freeBridgeIndex()) : undefined,
      });
    checkNodeFits(current, global.labDir, { name, port, datadir, role: 'primary' });
    if (options.archive) current.archive ??= newArchiveRecord();
    if (primaryOf(current)) throw new LabError('CONFLICT', `This lab got a master while we prepared one: run \`lab status\``);
    current.nodes.push({
      name, role: 'primary', port, datadir, datadirCreated: condition === 'missing', phase: 'building', expected: 'stopped',
      createdAt: new Date().toISOString(), ...(current.hosts ? { host: newNodeHost(current, name) } : {}),
    });
    for (const standby of standbys) {
      current.nodes.push({
        name: standby.name, role: 'replica', port: standby.port, datadir: standby.datadir, upstream: name, datadirCreated: standby.condition === 'missing',
        phase: 'building', expected: 'stopped', createdAt: new Date().toISOString(), builder: thisBuilder(),
      });
    }
    await writeState(global.labDir, current);
    return current;
  });
  // Before anything is built on the index (addresses in the certificate, namespaces): the lab's own bridge.
  const state = recorded.hosts ? await claimHostsIndex(global.labDir, recorded, name, reporter) : recorded;

  useLabAccess(global.labDir, state);
  if (access.auth === 'scram') await createLabPassword(global.labDir, state.dbUser, state.hosts ? labAddresses(state.hosts) : []);
  // The certificates are needed by the server's start only: made while the data dir is.
  const certificates = access.tls !== 'off' ? ensureLabTls(global.labDir, state.labId, state.hosts ? labAddresses(state.hosts) : []) : Promise.resolve();
  certificates.catch(() => undefined); // awaited below, after the data dir (or its failure)
  const nodes = runtimeFor({ labDir: global.labDir, state, installation, runAs, initdbTemplates, notice: global.notice });
  const node = { name, port, datadir, host: primaryOf(state)!.host };
  const template = await nodes.initdbTemplate?.();
  const how = template === 'cached' ? ', from the cached template' : template === 'new' ? ', kept as the cached template' : '';
  reporter.step(`initdb ${datadir} (PostgreSQL ${state.pg.version}${image ? `, image ${image}` : ''}${how})`);
  const slots = standbys.map((standby) => slotName(standby.name));
  const made = await Promise.allSettled([prepareDatadir(datadir, state.labId).then(() => nodes.initMaster(node, reporter, { slots })), certificates]);
  for (const outcome of made) if (outcome.status === 'rejected') throw outcome.reason;
  const { slotsMade } = (made[0] as PromiseFulfilledResult<{ slotsMade: boolean }>).value;
  let coldStandbys: string[] = [];
  if (standbys.length > 0 && slotsMade && nodes.coldStandbys) {
    reporter.step(`${standbys.map((s) => s.name).join(', ')}: copies of ${name}'s data dir before its first start (slots ${slots.join(', ')} made on it)`);
    await Promise.all(standbys.map((standby) => prepareDatadir(standby.datadir, state.labId)));
    await nodes.coldStandbys(node, standbys);
    coldStandbys = standbys.map((s) => s.name);
  } else if (standbys.length > 0) {
    // No copy of the template here (initdb ran): the standbys are added the usual way, after the start.
    await updateState(global.labDir, (s) => {
      s.nodes = s.nodes.filter((n) => !standbys.some((standby) => standby.name === n.name));
    });
  }

  reporter.step(`starting ${name} on port ${port}`);
  const pid = await nodes.start(node, timeoutMs);
  await updateState(global.labDir, (s) => {
    const node = s.nodes.find((n) => n.name === name)!;
    node.phase = 'ready';
    node.expected = 'running';
  });
  let archived: string | undefined;
  if (state.archive) {
    reporter.step(`checking the archive: pg_switch_wal() on ${name}, then pg_stat_archiver until ${archiveDir(global.labDir)} has it`);
    archived = await checkArchiving(global.labDir, state, node, nodes);
  }
  return { name, port, datadir, pid, version: state.pg.version, action: 'created', ...access, address: nodeAddress(node), standbys: coldStandbys, archived };
}

/** archive_command works: a segment switched to is archived within a bound, else the server's log line (its archive_command's failure). */
async function checkArchiving(labDir: string, state: LabState, node: RuntimeNode, nodes: NodeRuntime): Promise<string | undefined> {
  const logLine = async () => {
    return archiveFailureLine((await nodes.logTail(node, 40)) ?? '');
  };
  return switchAndWaitArchived({ host: nodeAddress(node), port: node.port, user: state.dbUser }, state.pg.major, { logLine, dir: archiveDir(labDir), timeoutMs: 30_000 });
}

/** The library's standbys of a new lab: names, ports and data dirs (<lab-dir>/<name>) checked as `lab replica add` checks them. */
async function checkColdStandbys(labDir: string, wanted: { name: string; port: number }[], master: { name: string; port: number; datadir: string }): Promise<{ name: string; port: number; datadir: string; condition: DatadirCondition }[]> {
  const checked = [];
  const taken = [master];
  for (const standby of wanted) {
    const name = checkName(standby.name);
    const port = parsePort(standby.port);
    const datadir = checkShellSafePath(checkDatadirPath(path.join(labDir, name)), 'data dir');
    if (taken.some((t) => t.name === name || t.port === port || t.datadir === datadir)) throw new LabError('USAGE', `Standby ${name} (port ${port}) clashes with another node of the new lab`);
    const condition = await inspectDatadir(datadir, undefined);
    if (condition === 'foreign' || condition === 'not-a-directory') await prepareDatadir(datadir, ''); // throws the clear error
    await assertPortFree(port, `replica "${name}"`);
    taken.push({ name, port, datadir });
    checked.push({ name, port, datadir, condition });
  }
  return checked;
}

/**
 * Claim the lab's bridge index by making its bridge (its name recorded first). Two labs started at the same
 * moment can pick the same free N: the one whose bridge is made first keeps N, the other records the next
 * free index and tries that, a bounded number of times.
 */
async function claimHostsIndex(labDir: string, state: LabState, master: string, reporter: Reporter): Promise<LabState> {
  const tried: number[] = [];
  for (let attempt = 0; attempt < 10; attempt++) {
    if (await claimBridge(state.labId, state.hosts!)) return state;
    // Only the new master lives on this index yet; a lab with other nodes there is not moved.
    if (state.nodes.some((n) => n.host && n.name !== master)) await refuseOtherLabsBridge(state.labId, state.hosts!);
    tried.push(state.hosts!.index);
    const index = await freeBridgeIndex(tried);
    reporter.step(`bridge ${state.hosts!.bridge} was just made by another lab: taking pgl${index}`);
    state = await updateState(labDir, (s) => {
      s.hosts = labHosts(index);
      const node = s.nodes.find((n) => n.name === master)!;
      delete node.host;
      node.host = newNodeHost(s, master);
    });
  }
  throw new LabError('CONFLICT', `Other labs took bridge indexes ${tried.join(', ')} while this one tried them: run the command again`);
}

/** The access of a new lab from the options; for an existing lab, options that differ are refused. */
function checkAccessOptions(existing: LabState | undefined, options: MasterStartOptions): LabAccessSettings {
  if (options.auth !== undefined && !AUTH_METHODS.includes(options.auth)) throw new LabError('USAGE', `Expected --auth ${AUTH_METHODS.join('|')}, got "${options.auth}"`);
  if (options.tls !== undefined && !TLS_MODES.includes(options.tls)) throw new LabError('USAGE', `Expected --tls ${TLS_MODES.join('|')}, got "${options.tls}"`);
  if (!existing) return { auth: options.auth ?? 'scram', tls: options.tls ?? 'on' };
  const current = accessOf(existing);
  if ((options.auth && options.auth !== current.auth) || (options.tls && options.tls !== current.tls)) {
    throw new LabError('CONFLICT', `This lab was made with --auth ${current.auth} --tls ${current.tls}: use another --lab-dir for other settings, or \`lab destroy --yes\` first`);
  }
  return current;
}

/**
 * `<lab-dir>/log`, where the servers write their logs: given to the postgres OS user when we create it,
 * never chowned when it exists (nothing chowns a path it did not just create). Nothing running as the
 * invoking user writes into it: the balancers log into `<lab-dir>/balancer/`.
 */
async function prepareLogDir(labDir: string, runAs: OsUser | undefined): Promise<void> {
  const dir = logDir(labDir);
  try {
    await mkdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const info = await lstat(dir);
    if (!info.isDirectory()) throw new LabError('UNSAFE', `${dir} is not a directory: nothing was written; remove it and run the command again`);
    return;
  }
  await giveTo(dir, runAs);
}

async function startExistingMaster(global: GlobalOptions, state: LabState, reporter: Reporter, timeoutMs: number): Promise<MasterStartResult> {
  const primary = primaryOf(state)!;
  useLabAccess(global.labDir, state);
  const installation = await labInstallation(state, global.pg);
  const runAs = await resolveRunAs(global.osUser ?? state.osUser);
  if (primary.phase !== 'ready') {
    throw new LabError('STATE', `Master "${primary.name}" was never finished (its initdb was interrupted): run \`lab destroy --yes\` and start again`);
  }
  const nodes = runtimeFor({ labDir: global.labDir, state, installation, runAs, notice: global.notice });
  const { status, pid } = await nodes.status(primary, primary.expected);
  if (status === 'running') {
    return { name: primary.name, port: primary.port, datadir: primary.datadir, pid: pid!, version: state.pg.version, action: 'already-running', ...accessOf(state), address: nodeAddress(primary) };
  }
  await assertPortFree(primary.port, `master "${primary.name}"`);
  reporter.step(`starting existing master ${primary.name} on port ${primary.port}`);
  const newPid = await nodes.start(primary, timeoutMs);
  await updateState(global.labDir, (s) => {
    s.nodes.find((n) => n.name === primary.name)!.expected = 'running';
  });
  return { name: primary.name, port: primary.port, datadir: primary.datadir, pid: newPid, version: state.pg.version, action: 'started', ...accessOf(state), address: nodeAddress(primary) };
}
