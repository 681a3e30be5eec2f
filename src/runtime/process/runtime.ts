// Nodes as host processes: initdb (or a copy of the cached initdb template), pg_basebackup and pg_ctl
// run as the lab's OS user.
import path from 'node:path';
import { LabError, messageOf } from '../../common/errors.js';
import { checkShellSafePath, checkShellSafeProgram } from '../../common/shell-safe-path.js';
import type { Reporter } from '../../common/reporter.js';
import { nodeLogFile } from '../../lab/context.js';
import { accessOf, labPassword, toolEnv } from '../../lab/access.js';
import { nodeFilesSpec, removeCopiedLeftovers, writeNodeConfig, writeStandbyConfig } from '../../lab/node-files.js';
import { reportBackupLine, resolveAuto, ownBaseBackup } from '../../postgres/base-backup.js';
import { initdbArgs, withPasswordFile } from '../../postgres/initdb.js';
import { emptyDatadir, findTemplate, initdbFromTemplate, type Template } from '../../postgres/initdb-template.js';
import { clientTool, type Installation } from '../../postgres/installation.js';
import { giveTo } from '../../postgres/os-user.js';
import { locatePgRewind, noPgRewindError, pgRewindArgs } from '../../postgres/pg-rewind.js';
import { runPg } from '../../postgres/run.js';
import { clearStaleLocks, killServer, livePostmasterPid, logTail, serverStatus, startServer, stopServer, type ServerSpec } from '../../postgres/server.js';
import { nodeAddress } from '../../network/address.js';
import { ensureNodeHost } from '../../network/namespaces.js';
import { continueNodeProcesses, stopNodeProcesses } from '../../lab/faults.js';
import { writeMarker } from '../../lab/datadir.js';
import type { NodeRuntime, ResolvedBackupMethod, RuntimeContext, RuntimeNode } from '../node-runtime.js';

export function processRuntime(context: RuntimeContext): NodeRuntime {
  const { labDir, state, runAs } = context;
  const installation = (): Installation => {
    if (!context.installation) throw new LabError('ENVIRONMENT', `The lab's PostgreSQL (${state.pg.bindir}) is gone: reinstall PostgreSQL ${state.pg.version}`);
    return context.installation;
  };
  const spec = (node: RuntimeNode): ServerSpec => ({
    name: node.name, datadir: node.datadir, port: node.port, logFile: nodeLogFile(labDir, node.name), installation: installation(), runAs, dbUser: state.dbUser,
    host: nodeAddress(node), netns: node.host?.netns,
  });
  const files = (node: RuntimeNode) => nodeFilesSpec(labDir, state, node, runAs);
  // Looked up once: the step line says whether the template is used, then initMaster uses it.
  let template: Promise<Template | Error> | undefined;
  const findLabTemplate = (root: string) => (template ??= findTemplate({
    root, installation: installation(), dbUser: state.dbUser, scram: accessOf(state).auth === 'scram', runAs,
  }).catch((error: unknown) => (error instanceof Error ? error : new Error(String(error)))));

  /** The data dir from the cached template (true), or nothing done (false: initdb runs), said why. */
  const fromTemplate = async (node: RuntimeNode, password: string | undefined, reporter: Reporter, slots: string[]): Promise<boolean> => {
    if (!context.initdbTemplates) return false;
    const found = await findLabTemplate(context.initdbTemplates);
    try {
      if (found instanceof Error) throw found;
      await initdbFromTemplate(found, node.datadir, password, reporter, slots);
      return true;
    } catch (error) {
      reporter.step(`initdb template not used (${messageOf(error)}): running initdb`);
      await emptyDatadir(node.datadir, runAs);
      return false;
    }
  };

  return {
    name: 'process',
    async initdbTemplate() {
      if (!context.initdbTemplates) return undefined;
      const found = await findLabTemplate(context.initdbTemplates);
      return found instanceof Error ? undefined : found.cached ? 'cached' : 'new';
    },
    async initMaster(node, reporter, options = {}) {
      await checkShellSafeProgram(installation().tools.initdb); // initdb runs postgres through /bin/sh
      await giveTo(node.datadir, runAs);
      const password = await labPassword(labDir, state);
      const slots = options.slots ?? [];
      const copied = await fromTemplate(node, password, reporter, slots);
      if (!copied) {
        const initdb = (pwfile?: string) => runPg(installation().tools.initdb!, initdbArgs(node.datadir, state.dbUser, pwfile), {
          runAs,
          onStderrLine: (line) => reporter.detail(line),
          timeoutMs: 300_000,
        });
        if (password === undefined) await initdb();
        else await withPasswordFile(password, runAs, (file) => initdb(file));
      }
      await writeNodeConfig(files(node));
      return { slotsMade: copied && slots.length > 0 };
    },
    async coldStandbys(master, standbys) {
      await Promise.all(
        standbys.map(async (node) => {
          await giveTo(node.datadir, runAs);
          // Its marker first: a copy cut short is still recognised as the lab's (and removed by destroy).
          await writeMarker(node.datadir, { labId: state.labId, node: node.name }, runAs);
          // As the data's owner, links copied as links: the master is stopped, so this is a consistent copy.
          await runPg('cp', ['-a', '--', `${master.datadir}/.`, node.datadir], { runAs, timeoutMs: 300_000 });
          // The master's slots are its own (pg_basebackup leaves pg_replslot empty too).
          await runPg('find', [path.join(node.datadir, 'pg_replslot'), '-mindepth', '1', '-delete'], { runAs, timeoutMs: 60_000 });
          await removeCopiedLeftovers(node.datadir);
          await writeNodeConfig(files(node));
          await writeStandbyConfig({ ...files(node), upstreamPort: master.port, upstreamHost: nodeAddress(master) });
        }),
      );
    },
    async checkCanClone(wanted = 'auto') {
      if (wanted === 'pglab') return 'pglab';
      // pg_basebackup refuses servers newer than itself: clientTool finds one of the lab's major or newer.
      const tool = await clientTool(installation(), 'pg_basebackup').catch((error: unknown) => {
        if (wanted === 'pg_basebackup') throw error;
        return undefined;
      });
      return tool === undefined ? 'pglab' : resolveAuto(wanted);
    },
    async cloneReplica(node, upstream, reporter, signal) {
      await giveTo(node.datadir, runAs);
      let backupKb: number | undefined;
      const method: ResolvedBackupMethod = upstream.method;
      if (method === 'pglab') {
        const result = await ownBaseBackup({
          conn: { host: upstream.host, port: upstream.port, user: state.dbUser }, major: state.pg.major, sourceDatadir: upstream.datadir, targetDatadir: node.datadir,
          owner: runAs, label: `pglab ${node.name}`, reporter, signal,
        });
        backupKb = Math.round(result.bytes / 1024);
      } else await runPg(
        await clientTool(installation(), 'pg_basebackup'),
        ['-h', upstream.host, '-p', String(upstream.port), '-U', state.dbUser, '-D', node.datadir, '-X', 'stream', '-S', upstream.slot, '--checkpoint=fast', '--progress', '--verbose'],
        {
          runAs,
          env: await toolEnv(labDir, state),
          timeoutMs: 30 * 60_000,
          signal,
          onStderrLine: (line) => {
            const kb = reportBackupLine(line, reporter);
            if (kb !== undefined) backupKb = kb;
          },
        },
      );
      await removeCopiedLeftovers(node.datadir);
      await writeNodeConfig(files(node));
      await writeStandbyConfig({ ...files(node), upstreamPort: upstream.port, upstreamHost: upstream.host });
      return { backupKb, method };
    },
    async start(node, timeoutMs, signal) {
      // A node of a lab made with --hosts starts in its namespace, made (again) first if it is not there.
      if (node.host && state.hosts) await ensureNodeHost(state.labId, state.hosts, node.host);
      return startServer(spec(node), timeoutMs, signal);
    },
    stop: (node, mode, timeoutMs) => stopServer(spec(node), mode, timeoutMs),
    kill: (node) => killServer(node),
    async pause(_node, pid) {
      const { stopped } = await stopNodeProcesses(pid);
      return { processes: stopped, how: `SIGSTOP to postmaster ${pid} and its children` };
    },
    async resume(node) {
      // The postmaster of this data dir, proved from /proc: its children, then it, get SIGCONT.
      const pid = await livePostmasterPid(node.datadir);
      if (!pid) return undefined;
      await continueNodeProcesses(pid);
      return `resumed (SIGCONT) postmaster ${pid} and its children`;
    },
    status: (node, expected) => serverStatus(node.datadir, expected),
    livePid: (node) => livePostmasterPid(node.datadir),
    logTail: (node, lines) => logTail(nodeLogFile(labDir, node.name), lines),
    dataOwner: async () => runAs,
    async rewindMissing() {
      const found = await locatePgRewind(installation());
      return 'missing' in found ? found.missing : undefined;
    },
    async rewind(node, sourcePort, reporter, sourceHost) {
      const found = await locatePgRewind(installation());
      if ('missing' in found) throw noPgRewindError(found.missing);
      // pg_rewind's crash recovery runs `"postgres" --single -D "DATADIR"` through /bin/sh.
      checkShellSafePath(node.datadir, 'data dir');
      await checkShellSafeProgram(found.tool);
      // After a kill -9 the postmaster.pid names a pid that may still exist as a zombie: single-user mode
      // (run by pg_rewind for crash recovery) would take it for a live postmaster.
      await clearStaleLocks(spec(node));
      const { stdout, stderr } = await runPg(found.tool, pgRewindArgs(node.datadir, sourcePort, state.dbUser, sourceHost), {
        runAs,
        env: await toolEnv(labDir, state),
        timeoutMs: 30 * 60_000,
        onStderrLine: (line) => reporter.detail(line),
      });
      return `${stdout}\n${stderr}`;
    },
  };
}
