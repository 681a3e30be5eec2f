// What every lab command needs: the lab dir, its state, the PostgreSQL installation it was built
// with, and the OS user PostgreSQL runs as.
import path from 'node:path';
import { LabError } from '../common/errors.js';
import { resolveInstallation, inspectBindir, type Installation } from '../postgres/installation.js';
import { resolveRunAs, type OsUser } from '../postgres/os-user.js';
import type { ServerSpec } from '../postgres/server.js';
import type { GlobalOptions } from './global-options.js';
import { requireLabState, type LabState, type NodeRecord } from './state.js';
import { nodeAddress } from '../network/address.js';

export { DEFAULT_LAB_DIR, resolveGlobalOptions, type GlobalOptions } from './global-options.js';

export interface LabContext {
  labDir: string;
  state: LabState;
  installation: Installation;
  runAs?: OsUser;
  /** GlobalOptions.notice. */
  notice?: (message: string) => void;
}

export function logDir(labDir: string): string {
  return path.join(labDir, 'log');
}

export function nodeLogFile(labDir: string, name: string): string {
  return path.join(logDir(labDir), `${name}.log`);
}

/** The installation recorded in the lab; --pg must agree with it. */
export async function labInstallation(state: LabState, wanted: string | undefined): Promise<Installation> {
  const inst = await inspectBindir(state.pg.bindir, 'lab');
  if (!inst) {
    throw new LabError('ENVIRONMENT', `The lab was built with PostgreSQL ${state.pg.version} in ${state.pg.bindir}, which is no longer runnable: reinstall it`);
  }
  if (wanted) {
    // A major number names the lab's own installation when the majors agree: no look at every other
    // installation (a `pg_config` run and a directory walk, seconds on a loaded machine, per command).
    const requested = /^\d+$/.test(wanted) && Number(wanted) === inst.major ? inst : await resolveInstallation(wanted);
    if (requested.major !== inst.major) {
      // Streaming replication (and a base backup of the master) only works within one major version.
      throw new LabError(
        'CONFLICT',
        `This lab's nodes run PostgreSQL ${inst.major} (${state.pg.bindir}): PostgreSQL ${requested.major} from --pg cannot replicate from them (same major only); use another --lab-dir for another version`,
      );
    }
    if (requested.bindir !== inst.bindir) {
      throw new LabError(
        'CONFLICT',
        `This lab uses PostgreSQL ${state.pg.version} (${state.pg.bindir}), not ${requested.version} from --pg: use another --lab-dir for another version`,
      );
    }
  }
  return inst;
}

export async function openLab(options: GlobalOptions): Promise<LabContext> {
  const state = await requireLabState(options);
  const installation = await labInstallation(state, options.pg);
  const runAs = await resolveRunAs(options.osUser ?? state.osUser);
  return { labDir: options.labDir, state, installation, runAs, notice: options.notice };
}

export function serverSpec(context: LabContext, node: NodeRecord): ServerSpec {
  return {
    name: node.name,
    datadir: node.datadir,
    port: node.port,
    logFile: nodeLogFile(context.labDir, node.name),
    installation: context.installation,
    runAs: context.runAs,
    dbUser: context.state.dbUser,
    host: nodeAddress(node),
    netns: node.host?.netns,
  };
}
