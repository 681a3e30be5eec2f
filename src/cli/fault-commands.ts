// `lab fault ...`: faults beyond kill -9 (issue 17). pause and lag work on every lab; partition, delay and
// loss need a lab made with --hosts and answer so in one line.
import { faultDetail } from '../lab/fault-words.js';
import { Command } from 'commander';
import { psqlTable } from '../common/table.js';
import { examples, globalsOf } from './globals.js';
import { printJson, printLine } from './output.js';
import { LabError } from '../common/errors.js';

export function faultCommand(): Command {
  const fault = new Command('fault').description('faults beyond kill -9: pause a node (SIGSTOP), make a standby lag (WAL replay paused), partition a node or lose its packets (a lab made with --hosts), list them, heal them')
    .addHelpText('after', examples('lab fault pause replica3', 'lab fault lag replica2', 'lab fault partition replica1', 'lab fault loss replica2 20%', 'lab fault list', 'lab fault heal'));
  fault
    .command('pause')
    .description('SIGSTOP the node\'s postmaster, then every child of it (docker runtime: docker pause of its container): it accepts TCP connections but answers nothing')
    .argument('<node>', 'node name')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('lab fault pause replica3', 'lab status   # replica3: running (paused), not answering', 'lab fault heal replica3'))
    .action(async (name: string, options, command: Command) => {
      const { faultPause } = await import('../commands/fault.js');
      const result = await faultPause(globalsOf(command), name);
      if (options.json) return printJson(result);
      printLine(`${name} paused: ${result.how} (${result.processes} processes); \`lab fault heal ${name}\` resumes it`);
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
    .description('the faults in force: node, fault, phase (applying: recorded, maybe applied; "pid N gone": the command applying it was killed half-way), since')
    .option('--json', 'print the faults as JSON (an array; applierGone: true for a fault left applying by a command that is gone)')
    .addHelpText('after', examples('lab fault list', 'lab fault list --json'))
    .action(async (options, command: Command) => {
      const { faultList } = await import('../commands/fault.js');
      const faults = await faultList(globalsOf(command));
      if (options.json) return printJson(faults);
      printLine(
        psqlTable(
          [{ header: 'node' }, { header: 'fault' }, { header: 'phase' }, { header: 'since' }, { header: 'pid', align: 'right' }, { header: 'detail' }],
          faults.map((f) => [f.node, f.kind, f.applierGone ? `applying (pid ${f.applier!.pid} gone)` : f.phase, f.since, f.pid, faultDetail(f)]),
        ),
      );
      printLine(`(${faults.length} ${faults.length === 1 ? 'fault' : 'faults'})`);
      for (const f of faults.filter((x) => x.applierGone)) {
        const what = f.kind === 'delay' ? ' (its relay may still run)' : '';
        printLine(`note: ${f.node} ${f.kind} was left applying by pid ${f.applier!.pid}, which is gone (killed half-way): it may be in force${what}; \`lab fault heal ${f.node}\` or \`lab destroy\` cleans it up`);
      }
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
  fault
    .command('partition')
    .description('cut the node off (a lab made with --hosts): packets from and to the lab\'s subnet (or only --from nodes) dropped both ways in its namespace; sockets stay open')
    .argument('<node>', 'node name')
    .option('--from <nodes>', 'only the links to these nodes (comma separated)')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('lab fault partition replica1', 'lab fault partition master1 --from replica1,replica2', 'lab fault heal replica1'))
    .action(async (name: string, options, command: Command) => {
      const { faultPartition } = await import('../commands/fault.js');
      const result = await faultPartition(globalsOf(command), name, options.from);
      if (options.json) return printJson(result);
      printLine(`${name} partitioned: packets from and to ${result.peers!.join(', ')} dropped both ways; \`lab fault heal ${name}\` undoes it`);
    });
  fault
    .command('loss')
    .description('drop a share of the node\'s packets to and from the lab\'s subnet, each way (a lab made with --hosts)')
    .argument('<node>', 'node name')
    .argument('<percent>', '1% to 100%')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('lab fault loss replica2 20%', 'lab fault heal replica2'))
    .action(async (name: string, percent: string, options, command: Command) => {
      const { faultLoss, parsePercent } = await import('../commands/fault.js');
      const result = await faultLoss(globalsOf(command), name, parsePercent(percent));
      if (options.json) return printJson(result);
      printLine(`${name} loses ${result.percent}% of its packets each way (from and to ${result.peers!.join(', ')}); \`lab fault heal ${name}\` undoes it`);
    });
  fault
    .command('delay')
    .description('delay what the node sends by DELAY (± jitter): a relay of pglab\'s own in its namespace (no netem here), for connections to it and its own to the other nodes (a lab made with --hosts)')
    .argument('<node>', 'node name')
    .argument('<delay>', 'e.g. 200ms')
    .option('--jitter <duration>', 'e.g. 50ms')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('lab fault delay replica2 200ms', 'lab fault delay replica2 200ms --jitter 50ms', 'lab fault heal replica2'))
    .action(async (name: string, delay: string, options, command: Command) => {
      const { faultDelay, parseDelay } = await import('../commands/fault.js');
      const delayMs = parseDelay(delay);
      const jitterMs = options.jitter === undefined ? 0 : parseDelay(options.jitter, 'jitter');
      if (jitterMs > delayMs) throw new LabError('USAGE', `--jitter ${options.jitter} is more than the delay ${delay}: a packet cannot arrive before it is sent`);
      const result = await faultDelay(globalsOf(command), name, delayMs, jitterMs);
      if (options.json) return printJson(result);
      printLine(`${name} delayed by ${delay}${options.jitter ? ` ± ${options.jitter}` : ''}: relay pid ${result.pid} in its namespace; \`lab fault heal ${name}\` stops it`);
    });
  return fault;
}
