// `lab node rewind NAME [--primary P]`: bring a former primary back as a standby of the new primary
// with pg_rewind (only the blocks that changed since the timelines forked are copied), then the lab's
// config files again (pg_rewind copies the source's), the standby configuration, start, and wait until
// it streams. pg_rewind needs a cleanly shut down target: since PostgreSQL 13 it runs the target in
// single-user mode itself to finish crash recovery after a kill -9 (what the TAP tests do by hand).
import { readFile, stat, writeFile } from 'node:fs/promises';
import { withClient } from '../postgres/client.js';
import path from 'node:path';
import { LabError } from '../common/errors.js';
import { assertPortFree } from '../common/ports.js';
import { openLab, serverSpec, type GlobalOptions } from '../lab/context.js';
import { writeNodeConfig, writeStandbyConfig } from '../lab/node-files.js';
import { requireNode, updateState } from '../lab/state.js';
import { clientTool } from '../postgres/installation.js';
import { giveTo } from '../postgres/os-user.js';
import { runPg } from '../postgres/run.js';
import { clearStaleLocks, livePostmasterPid, startServer, stopServer } from '../postgres/server.js';
import { requireRunningPrimary, waitStreaming } from './follow.js';
import { silentReporter, type Reporter } from '../common/reporter.js';
import { requireProcessRuntime } from '../runtime/node-runtime.js';

export interface RewindOptions {
  primary?: string;
  timeoutMs?: number;
  reporter?: Reporter;
}

export interface RewindResult {
  name: string;
  primary: string;
  pid: number;
  /** What pg_rewind said it did ("no rewind required" or the amount copied). */
  rewind: string;
  elapsedMs: number;
}

type LabInstallation = Awaited<ReturnType<typeof openLab>>['installation'];

/**
 * pg_rewind only works on data dirs of its own major version; Debian ships one per installed server,
 * the embedded PostgreSQL 11 binaries have none. Either the tool, or why there is none.
 */
export async function locatePgRewind(installation: LabInstallation): Promise<{ tool: string } | { missing: string }> {
  let tool: string;
  try {
    tool = await clientTool(installation, 'pg_rewind');
  } catch {
    return { missing: `no pg_rewind for PostgreSQL ${installation.major} here` };
  }
  const { stdout } = await runPg(tool, ['--version']);
  const major = Number(/(\d+)/.exec(stdout)?.[1]);
  if (major !== installation.major) {
    return { missing: `no pg_rewind for PostgreSQL ${installation.major} here (${tool} is version ${major}, and pg_rewind only rewinds its own version)` };
  }
  return { tool };
}

async function pgRewindFor(installation: LabInstallation): Promise<string> {
  const found = await locatePgRewind(installation);
  if ('missing' in found) {
    const missing = found.missing.charAt(0).toUpperCase() + found.missing.slice(1);
    throw new LabError('ENVIRONMENT', `${missing}: rebuild the node instead (\`lab replica add NAME DATADIR PORT\`)`);
  }
  return found.tool;
}

export async function nodeRewind(global: GlobalOptions, name: string, options: RewindOptions = {}): Promise<RewindResult> {
  const started = Date.now();
  const timeoutMs = options.timeoutMs ?? 60_000;
  const reporter = options.reporter ?? silentReporter;
  const context = await openLab(global);
  requireProcessRuntime(context.state, 'lab node rewind');
  const { state, runAs } = context;
  const node = requireNode(state, name);
  if (node.role === 'primary') {
    throw new LabError('STATE', `Node "${name}" is the lab's current primary: pg_rewind would throw its data away; promote another node first (\`lab promote NAME\`)`);
  }
  if (node.phase !== 'ready') throw new LabError('STATE', `Node "${name}" was never finished (its build was interrupted): re-add it instead`);
  const pgRewind = await pgRewindFor(context.installation);
  const primary = await requireRunningPrimary(context, options.primary);
  if (primary.name === name) throw new LabError('USAGE', `Node "${name}" cannot be rewound from itself`);
  const spec = serverSpec(context, node);

  if (await livePostmasterPid(node.datadir)) {
    reporter.step(`stopping ${name} (pg_rewind needs it shut down)`);
    await stopServer(spec, 'fast');
  }
  await updateState(context.labDir, (s) => {
    requireNode(s, name).expected = 'stopped';
  });
  // After a kill -9 the postmaster.pid names a pid that may still exist as a zombie: single-user mode
  // (run by pg_rewind for crash recovery) would take it for a live postmaster.
  await clearStaleLocks(spec);
  // A just promoted primary records its new timeline in pg_control only at its next checkpoint; before
  // that, pg_rewind (<= 15) reads both on the same timeline and says "no rewind required" wrongly.
  reporter.step(`CHECKPOINT on ${primary.name}`);
  await withClient({ port: primary.port, user: state.dbUser }, (client) => client.query('CHECKPOINT'));
  reporter.step(`pg_rewind ${name} from ${primary.name} (port ${primary.port})`);
  const source = `host=127.0.0.1 port=${primary.port} user=${state.dbUser} dbname=postgres`;
  const { stdout, stderr } = await runPg(pgRewind, ['-D', node.datadir, `--source-server=${source}`, '--progress'], {
    runAs,
    timeoutMs: 30 * 60_000,
    onStderrLine: (line) => reporter.detail(line),
  });
  const said = `${stdout}\n${stderr}`;
  const rewind = /no rewind required/.test(said) ? 'no rewind required' : (/(\d+\/\d+ kB)/.exec(said.split('\n').filter((l) => /kB/.test(l)).pop() ?? '')?.[1] ?? 'done');

  // pg_rewind copied the source's postgresql.conf, pg_hba.conf, postgresql.auto.conf and our marker.
  const files = { labId: state.labId, name, port: node.port, datadir: node.datadir, major: state.pg.major, dbUser: state.dbUser, runAs };
  await writeNodeConfig(files);
  await dropPrimaryOnlySettings(node.datadir, runAs);
  await writeStandbyConfig({ ...files, upstreamPort: primary.port });

  reporter.step(`starting ${name} as a standby of ${primary.name}`);
  await assertPortFree(node.port, `node "${name}"`);
  const logFrom = (await stat(spec.logFile).catch(() => ({ size: 0 }))).size;
  const pid = await startServer(spec, timeoutMs);
  await updateState(context.labDir, (s) => {
    const n = requireNode(s, name);
    n.expected = 'running';
    n.upstream = primary.name;
    delete n.rewindNeeded;
  });
  await waitStreaming(context, primary, name, timeoutMs, false, logFrom);
  return { name, primary: primary.name, pid, rewind, elapsedMs: Date.now() - started };
}

/** A standby must not carry the primary's synchronous_standby_names (it would apply on its next promotion). */
async function dropPrimaryOnlySettings(datadir: string, runAs: Parameters<typeof giveTo>[1]): Promise<void> {
  const file = path.join(datadir, 'postgresql.auto.conf');
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return;
  const kept = text.split('\n').filter((line) => !/^\s*synchronous_standby_names\s*=/.test(line));
  await writeFile(file, kept.join('\n'), { mode: 0o600 });
  await giveTo(file, runAs);
}
