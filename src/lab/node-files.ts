// Files the lab writes into a node's data dir: postgresql.conf / pg_hba.conf from lab/, the standby
// configuration for the server's version, and the marker that says the lab filled this dir. The data dir
// belongs to the postgres OS user, who may have planted a link at any of these names: each file is a new
// one (O_EXCL | O_NOFOLLOW) given to that user through its handle, then renamed over the old name.
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { renderPgHba, renderPostgresqlConf } from '../postgres/config.js';
import { dialectFor, primaryConninfo } from '../postgres/dialect.js';
import { readNoFollow, writePrivateFile } from '../common/safe-files.js';
import type { OsUser } from '../postgres/os-user.js';
import { SOCKET_DIR } from '../postgres/server.js';
import { writeMarker } from './datadir.js';

export interface NodeFilesSpec {
  labId: string;
  name: string;
  port: number;
  datadir: string;
  major: number;
  dbUser: string;
  runAs?: OsUser;
}

function writeOwned(file: string, content: string, runAs: OsUser | undefined, mode = 0o600): Promise<void> {
  return writePrivateFile(file, content, mode, runAs);
}

export async function writeNodeConfig(spec: NodeFilesSpec): Promise<void> {
  const dialect = dialectFor(spec.major);
  const conf = await renderPostgresqlConf(dialect, {
    port: spec.port,
    clusterName: spec.name,
    listenAddresses: '127.0.0.1',
    socketDir: SOCKET_DIR,
  });
  await writeOwned(path.join(spec.datadir, 'postgresql.conf'), conf, spec.runAs);
  await writeOwned(path.join(spec.datadir, 'pg_hba.conf'), await renderPgHba(spec.dbUser), spec.runAs);
  await writeMarker(spec.datadir, { labId: spec.labId, node: spec.name }, spec.runAs);
}

/** Standby configuration written by us, not by pg_basebackup -R (REFERENCE.md 2: client options leak into it). */
export async function writeStandbyConfig(spec: NodeFilesSpec & { upstreamPort: number }): Promise<void> {
  const dialect = dialectFor(spec.major);
  const conninfo = primaryConninfo({ host: '127.0.0.1', port: spec.upstreamPort, user: spec.dbUser, applicationName: spec.name });
  const files = dialect.standbyFiles(conninfo);
  // A copy of the master never carries standby files, but a replica cloned from a replica would.
  for (const stale of ['recovery.conf', 'standby.signal', 'recovery.signal']) {
    await rm(path.join(spec.datadir, stale), { force: true });
  }
  if (files.recoveryConf) await writeOwned(path.join(spec.datadir, 'recovery.conf'), files.recoveryConf, spec.runAs);
  if (files.signal) await writeOwned(path.join(spec.datadir, 'standby.signal'), '', spec.runAs);
  if (files.autoConfLines) {
    const autoConf = path.join(spec.datadir, 'postgresql.auto.conf');
    const current = (await readNoFollow(autoConf)) ?? '';
    const kept = current.split('\n').filter((line) => line && !/^\s*(primary_conninfo|recovery_target_timeline)\s*=/.test(line));
    await writeOwned(autoConf, `${[...kept, ...files.autoConfLines].join('\n')}\n`, spec.runAs);
  }
}

/** Files the master wrote that must not survive into a copy (pg_basebackup copies the data dir as is). */
export async function removeCopiedLeftovers(datadir: string): Promise<void> {
  for (const entry of await readdir(datadir)) {
    if (entry === 'postmaster.opts') await rm(path.join(datadir, entry), { force: true });
  }
}
