// Files the lab writes into a node's data dir: postgresql.conf / pg_hba.conf from lab/, the lab's
// server certificate, the standby configuration for the server's version, and the marker that says the
// lab filled this dir. The data dir belongs to the servers' OS user: every file goes in through a new
// file (O_EXCL, O_NOFOLLOW) given to that user by descriptor and renamed into place, never through a
// path that user could have made a link.
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { readNoFollow, writePrivateFile } from '../common/safe-files.js';
import { renderPgHba, renderPostgresqlConf } from '../postgres/config.js';
import { slotName } from '../postgres/base-backup.js';
import { dialectFor, primaryConninfo } from '../postgres/dialect.js';
import type { OsUser } from '../postgres/os-user.js';
import { SOCKET_DIR } from '../postgres/server.js';
import { accessOf, labPassword, tlsPaths, type LabAccessSettings } from './access.js';
import { writeMarker } from './datadir.js';
import { archiveConfLines } from './archive.js';
import type { LabState } from './state.js';
import { nodeAddress, type NodeHost } from '../network/address.js';
import { subnetOf } from '../network/address.js';

export interface NodeFilesSpec {
  labDir: string;
  labId: string;
  name: string;
  port: number;
  datadir: string;
  major: number;
  dbUser: string;
  access: LabAccessSettings;
  runAs?: OsUser;
  /** The node's address (nodeAddress) and, with --hosts, the lab's subnet that pg_hba lets in. */
  address: string;
  subnet?: string;
  /** A delayed standby's recovery_min_apply_delay (NodeRecord.applyDelayMs), written with its standby files. */
  applyDelayMs?: number;
  /** A node of an archiving lab (not a restored one): archive_mode on, into <lab-dir>/archive (src/lab/archive.ts). */
  archive?: boolean;
}

/** The spec of one node's files, from the lab's state; `owner` is who must own them (runtime.dataOwner()). */
export function nodeFilesSpec(labDir: string, state: LabState, node: { name: string; port: number; datadir: string; host?: NodeHost; applyDelayMs?: number }, owner: OsUser | undefined, major = state.pg.major): NodeFilesSpec {
  return {
    labDir, labId: state.labId, name: node.name, port: node.port, datadir: node.datadir, major, dbUser: state.dbUser, access: accessOf(state), runAs: owner,
    address: nodeAddress(node), subnet: state.hosts && node.host ? subnetOf(state.hosts) : undefined,
    ...(node.applyDelayMs !== undefined ? { applyDelayMs: node.applyDelayMs } : {}),
    archive: Boolean(state.archive) && !['restored', 'subscriber'].includes(state.nodes.find((n) => n.name === node.name)?.role ?? ''),
  };
}

function writeOwned(file: string, content: string | Buffer, runAs: OsUser | undefined, mode = 0o600): Promise<void> {
  return writePrivateFile(file, content, mode, runAs);
}

export async function writeNodeConfig(spec: NodeFilesSpec): Promise<void> {
  const dialect = dialectFor(spec.major);
  const tls = spec.access.tls !== 'off';
  const rendered = await renderPostgresqlConf(dialect, {
    port: spec.port,
    clusterName: spec.name,
    listenAddresses: spec.address,
    socketDir: SOCKET_DIR,
    ssl: tls,
  });
  const conf = spec.archive ? `${rendered.trimEnd()}\n${archiveConfLines(spec.labDir).join('\n')}\n` : rendered;
  if (tls) {
    // The server reads its key only if it is the server's own and not readable by others.
    const files = tlsPaths(spec.labDir);
    await writeOwned(path.join(spec.datadir, 'server.crt'), await readFile(files.serverCert), spec.runAs);
    await writeOwned(path.join(spec.datadir, 'server.key'), await readFile(files.serverKey), spec.runAs);
  }
  await writeOwned(path.join(spec.datadir, 'postgresql.conf'), conf, spec.runAs);
  const hba = await renderPgHba({
    user: spec.dbUser,
    method: spec.access.auth === 'scram' ? 'scram-sha-256' : 'trust',
    hostType: spec.access.tls === 'required' ? 'hostssl' : 'host',
    subnet: spec.subnet,
  });
  await writeOwned(path.join(spec.datadir, 'pg_hba.conf'), hba, spec.runAs);
  await writeMarker(spec.datadir, { labId: spec.labId, node: spec.name }, spec.runAs);
}

/**
 * Standby configuration written by us, not by pg_basebackup -R (REFERENCE.md 2: client options leak into
 * it). Every replica streams through its own physical slot on its upstream (slotName), which the
 * command that points it there creates first.
 */
export async function writeStandbyConfig(spec: NodeFilesSpec & { upstreamPort: number; upstreamHost: string }): Promise<void> {
  const dialect = dialectFor(spec.major);
  const password = await labPassword(spec.labDir, spec);
  const conninfo = primaryConninfo({ host: spec.upstreamHost, port: spec.upstreamPort, user: spec.dbUser, applicationName: spec.name, password });
  const files = dialect.standbyFiles(conninfo, slotName(spec.name), spec.applyDelayMs);
  // A copy of the master never carries standby files, but a replica cloned from a replica would.
  for (const stale of ['recovery.conf', 'standby.signal', 'recovery.signal']) {
    await rm(path.join(spec.datadir, stale), { force: true });
  }
  if (files.recoveryConf) await writeOwned(path.join(spec.datadir, 'recovery.conf'), files.recoveryConf, spec.runAs);
  if (files.signal) await writeOwned(path.join(spec.datadir, 'standby.signal'), '', spec.runAs);
  if (files.autoConfLines) {
    const autoConf = path.join(spec.datadir, 'postgresql.auto.conf');
    const current = (await readNoFollow(autoConf)) ?? '';
    // A copy of a delayed standby (a cascade of it) carries its delay: only the node's own is written.
    const kept = current.split('\n').filter((line) => line && !/^\s*(primary_conninfo|recovery_target_timeline|primary_slot_name|recovery_min_apply_delay)\s*=/.test(line));
    await writeOwned(autoConf, `${[...kept, ...files.autoConfLines].join('\n')}\n`, spec.runAs);
  }
}

/** Files the master wrote that must not survive into a copy (pg_basebackup copies the data dir as is). */
export async function removeCopiedLeftovers(datadir: string): Promise<void> {
  for (const entry of await readdir(datadir)) {
    if (entry === 'postmaster.opts') await rm(path.join(datadir, entry), { force: true });
  }
}
