// The `lab` command tree. Declarations only: each group lives in its own file.
import { Command } from 'commander';
import { logicalCommand } from './logical-commands.js';
import { destroyCommand, envCommand, masterCommand, nodeCommand, promoteCommand, replicaCommand, switchoverCommand, statusCommand, versionsCommand } from './lab-commands.js';
import { examples } from './globals.js';
import { balancerCommand } from './balancer-commands.js';
import { statCommand, topCommand } from './stat-commands.js';
import { benchCommand, workloadCommand } from './load-commands.js';
import { demoCommand } from './demo-commands.js';
import { faultCommand } from './fault-commands.js';
import { archiveCommand, backupCommand, restorePointCommand } from './archive-commands.js';

export function buildProgram(): Command {
  const program = new Command('lab')
    .description('PostgreSQL replication labs on one machine: master, streaming replicas, a TCP balancer, watchers, failover drills')
    .option('--lab-dir <dir>', 'holds the lab\'s state file and logs (env LAB_DIR, default /tmp/pgdata)')
    .option('--pg <version|dir>', 'PostgreSQL installation: a major version or a bin dir (env LAB_PG)')
    .option('--os-user <user>', 'OS user that runs PostgreSQL when lab runs as root (default postgres)')
    .option('--runtime <process|docker>', 'where nodes run, chosen when the lab is created (env LAB_RUNTIME, default process; later commands use the lab\'s)')
    .addHelpText(
      'after',
      examples(
        'lab master start',
        'lab replica add replica1 /tmp/pgdata/replica1 5433',
        'lab status',
        'lab node kill replica2',
        'lab replica add replica2 /tmp/pgdata/replica2 5434',
        'lab destroy --yes',
        'lab --runtime docker master start --image pglab/postgres:15-local',
      ),
    );
  for (const command of [
    masterCommand(), replicaCommand(), logicalCommand(), promoteCommand(), switchoverCommand(), nodeCommand(), faultCommand(), statusCommand(), envCommand(), destroyCommand(), versionsCommand(),
    balancerCommand(), statCommand(), topCommand(), benchCommand(), workloadCommand(), demoCommand(),
    backupCommand(), restorePointCommand(), archiveCommand(),
  ]) {
    program.addCommand(command);
  }
  strict(program);
  return program;
}

/**
 * Every command, however declared: an unexpected argument or an unknown option is a usage error (exit 2),
 * thrown to runCli (never process.exit from inside commander), which prints it as one line.
 */
function strict(command: Command): void {
  command.exitOverride().allowExcessArguments(false).allowUnknownOption(false);
  command.configureOutput({ outputError: () => undefined });
  for (const sub of command.commands) strict(sub);
}
