// Declarations of the WAL archive's commands (`lab master start --archive`): backup, restore-point,
// archive prune, and `lab node restore` (added to the node group). The work: src/commands/archive.ts, restore.ts.
import { Command, InvalidArgumentError } from 'commander';
import { silentReporter } from '../common/reporter.js';
import { examples, globalsOf } from './globals.js';
import { parseSeconds } from './parse-options.js';
import { printJson, printLine, terminalReporter } from './output.js';
import { withInterrupt } from './interrupt.js';

export function backupCommand(): Command {
  return new Command('backup')
    .description('a base backup of the master into <lab-dir>/backups/<id> (pglab\'s own: pg_backup_start, file copy, pg_backup_stop), then pg_switch_wal() until its end is archived')
    .option('--json', 'print the result as JSON')
    .option('-v, --verbose', 'show the copy\'s details')
    .addHelpText('after', examples('lab master start --archive && lab backup'))
    .action(async (options, command: Command) => {
      const { labBackup } = await import('../commands/archive.js');
      const result = await withInterrupt((signal) => labBackup(globalsOf(command), { reporter: options.json ? silentReporter : terminalReporter({ verbose: options.verbose }), signal }));
      if (options.json) return printJson(result);
      printLine(`backup ${result.id}: ${result.kb} kB in ${result.dir}, LSN ${result.startLsn} to ${result.stopLsn} (${(result.elapsedMs / 1000).toFixed(1)}s)`);
    });
}

export function restorePointCommand(): Command {
  return new Command('restore-point')
    .description('pg_create_restore_point(NAME) on the master, then pg_switch_wal() until it is archived: a target for `lab node restore --target-name`')
    .argument('<name>', 'the restore point\'s name (letters, digits, _ . : -)')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('lab restore-point before-upgrade'))
    .action(async (name: string, options, command: Command) => {
      const { labRestorePoint } = await import('../commands/archive.js');
      const result = await labRestorePoint(globalsOf(command), name);
      if (options.json) return printJson(result);
      printLine(`restore point ${result.name} at LSN ${result.lsn} (${result.at}), archived in ${result.archivedWal ?? 'the archive'}`);
    });
}

export function archiveCommand(): Command {
  const archive = new Command('archive').description('the lab\'s WAL archive (<lab-dir>/archive)');
  archive
    .command('prune')
    .description('remove the WAL files BACKUP and later backups do not need, the older backups, and the restore points before BACKUP (the only way the archive shrinks)')
    .requiredOption('--before <backup>', 'the oldest backup to keep (b1, b2...: `lab status --json`)')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('lab archive prune --before b2'))
    .action(async (options, command: Command) => {
      const { pruneArchive } = await import('../commands/archive.js');
      const result = await pruneArchive(globalsOf(command), options.before);
      if (options.json) return printJson(result);
      printLine(`archive pruned before ${result.before}: ${result.removedFiles} WAL files removed (${result.keptFiles} kept), backups removed: ${result.removedBackups.join(', ') || 'none'}, restore points removed: ${result.removedRestorePoints.join(', ') || 'none'}`);
    });
  return archive;
}

/** `lab node restore NAME DATADIR PORT --target-...`, in the node group. */
export function addNodeRestore(node: Command): void {
  node
    .command('restore')
    .description('point-in-time recovery: the newest base backup before the target, WAL from the archive, stop at the target and promote (or --pause); a standalone node of role restored')
    .argument('<name>', 'the new node\'s name')
    .argument('<datadir>', 'its data dir (created by the lab; an existing non-empty dir of someone else is refused)')
    .argument('<port>', 'its port')
    .option('--target-name <restore-point>', 'a restore point made by `lab restore-point`')
    .option('--target-time <time>', 'a time, e.g. 2026-12-07T22:40:00Z (commits after it are not replayed)')
    .option('--target-lsn <lsn>', 'a WAL position, e.g. 0/3000060')
    .option('--target-xid <xid>', 'a transaction id (replayed up to and including its commit)')
    .option('--target-immediate', 'the end of the base backup (the earliest consistent point)')
    .option('--pause', 'stay in recovery, paused at the target (recovery_target_action = pause), for a look')
    .option('--timeout <duration>', 'how long to wait until the target is reached', parseSeconds, 120_000)
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples(
      'lab node restore pitr1 /tmp/pgdata/pitr1 5437 --target-name before-upgrade',
      'lab node restore pitr2 /tmp/pgdata/pitr2 5438 --target-time 2026-12-07T22:40:00Z --pause',
      'lab node restore pitr3 /tmp/pgdata/pitr3 5439 --target-lsn 0/5000060',
    ))
    .action(async (name: string, datadir: string, port: string, options, command: Command) => {
      const given = [
        options.targetName !== undefined && { name: options.targetName as string },
        options.targetTime !== undefined && { time: options.targetTime as string },
        options.targetLsn !== undefined && { lsn: options.targetLsn as string },
        options.targetXid !== undefined && { xid: options.targetXid as string },
        options.targetImmediate && { immediate: true as const },
      ].filter((t) => Boolean(t)) as ({ name: string } | { time: string } | { lsn: string } | { xid: string } | { immediate: true })[];
      if (given.length !== 1) throw new InvalidArgumentError(`give exactly one of --target-name, --target-time, --target-lsn, --target-xid, --target-immediate (got ${given.length})`);
      const { nodeRestore } = await import('../commands/restore.js');
      // Ctrl-C (or SIGTERM) stops the restore where it is and undoes what it made, as a failure does.
      const result = await withInterrupt((signal) => nodeRestore(globalsOf(command), name, datadir, port, {
        target: given[0]!, pause: Boolean(options.pause), timeoutMs: options.timeout,
        reporter: options.json ? silentReporter : terminalReporter({}), signal,
      }));
      if (options.json) return printJson(result);
      printLine(`${result.name} restored from backup ${result.backup} to ${result.target}: ${result.state}${result.timeline ? ` (timeline ${result.timeline})` : ''}, port ${result.port}, data dir ${result.datadir}, pid ${result.pid} (${(result.elapsedMs / 1000).toFixed(1)}s)`);
      if (result.stoppedAt) printLine(`server: ${result.stoppedAt}`);
    });
}
