// `lab fault ...`: faults beyond kill -9 (issue 17). pause and lag work on every lab; partition, delay and
// loss need a lab made with --hosts and answer so in one line.
import { Command } from 'commander';
import { psqlTable } from '../common/table.js';
import { examples, globalsOf } from './globals.js';
import { printJson, printLine } from './output.js';

export function faultCommand(): Command {
  const fault = new Command('fault').description('faults beyond kill -9: pause a node (SIGSTOP), make a standby lag (WAL replay paused), list them, heal them')
    .addHelpText('after', examples('lab fault pause replica3', 'lab fault lag replica2', 'lab fault list', 'lab fault heal'));
  fault
    .command('pause')
    .description('SIGSTOP the node\'s postmaster, then every child of it: it accepts TCP connections but answers nothing (process runtime)')
    .argument('<node>', 'node name')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('lab fault pause replica3', 'lab status   # replica3: running (paused), not answering', 'lab fault heal replica3'))
    .action(async (name: string, options, command: Command) => {
      const { faultPause } = await import('../commands/fault.js');
      const result = await faultPause(globalsOf(command), name);
      if (options.json) return printJson(result);
      printLine(`${name} paused: SIGSTOP to postmaster ${result.pid} and its children (${result.processes} processes); \`lab fault heal ${name}\` resumes it`);
    });
  fault
    .command('lag')
    .description('pg_wal_replay_pause() on a standby: it keeps receiving WAL but does not replay it, so its reads go stale')
    .argument('<node>', 'a standby')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('lab fault lag replica3', 'lab fault heal replica3   # pg_wal_replay_resume()'))
    .action(async (name: string, options, command: Command) => {
      const { faultLag } = await import('../commands/fault.js');
      const result = await faultLag(globalsOf(command), name);
      if (options.json) return printJson(result);
      printLine(`${name} lags: WAL replay paused (it still receives WAL); \`lab fault heal ${name}\` resumes replay`);
    });
  fault
    .command('list')
    .description('the faults in force: node, fault, phase (applying: recorded, maybe applied), since')
    .option('--json', 'print the faults as JSON (an array)')
    .addHelpText('after', examples('lab fault list', 'lab fault list --json'))
    .action(async (options, command: Command) => {
      const { faultList } = await import('../commands/fault.js');
      const faults = await faultList(globalsOf(command));
      if (options.json) return printJson(faults);
      printLine(
        psqlTable(
          [{ header: 'node' }, { header: 'fault' }, { header: 'phase' }, { header: 'since' }, { header: 'pid', align: 'right' }],
          faults.map((f) => [f.node, f.kind, f.phase, f.since, f.pid]),
        ),
      );
      printLine(`(${faults.length} ${faults.length === 1 ? 'fault' : 'faults'})`);
    });
  fault
    .command('heal')
    .description('undo every fault of NODE, or of the whole lab: SIGCONT a paused node, resume WAL replay of a lagging one')
    .argument('[node]', 'node name (default: every node)')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('lab fault heal replica3', 'lab fault heal'))
    .action(async (name: string | undefined, options, command: Command) => {
      const { faultHeal } = await import('../commands/fault.js');
      const result = await faultHeal(globalsOf(command), name);
      if (options.json) return printJson(result);
      for (const h of result.healed) printLine(`${h.node} ${h.kind} healed: ${h.outcome}`);
    });
  for (const kind of ['partition', 'delay', 'loss']) {
    fault
      .command(kind)
      .description(`network ${kind}: needs a lab made with --hosts (network namespaces), not available yet`)
      .argument('[args...]', 'node names and values')
      .addHelpText('after', examples('lab fault pause replica3   # what works on every lab now'))
      .action(async () => {
        const { networkFault } = await import('../commands/fault.js');
        networkFault(kind);
      });
  }
  return fault;
}
