// `lab logical add|remove`: logical replication subscribers (src/commands/logical.ts).
import { Command } from 'commander';
import { silentReporter } from '../common/reporter.js';
import { examples, globalsOf } from './globals.js';
import { parseSeconds } from './parse-options.js';
import { printJson, printLine, terminalReporter } from './output.js';

export function logicalCommand(): Command {
  const logical = new Command('logical').description('logical replication: subscribers, new clusters subscribed to a publication on the master');
  logical
    .command('add')
    .description('a new cluster (initdb, the lab\'s access) with the tables\' definitions from the master\'s catalog, a publication on the master, a subscription on it; waits for the initial sync')
    .argument('<name>', 'node name')
    .argument('<datadir>', 'data dir (created by the lab; an existing non-empty dir of someone else is refused)')
    .argument('<port>', 'port')
    .requiredOption('--tables <t1,t2>', 'tables of the master\'s postgres database to publish (table or schema.table)')
    .option('--publication <name>', 'the publication made on the master (default pglab_pub_NAME)')
    .option('--publish <ops>', 'what is published: some of insert,update,delete,truncate (default all)')
    .option('--timeout <duration>', 'how long the initial sync may take', parseSeconds, 120_000)
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples(
      'lab logical add sub1 /tmp/pgdata/sub1 5438 --tables t1,t2',
      'lab logical add sub2 /tmp/pgdata/sub2 5439 --tables app.events --publish insert   # no replica identity needed',
    ))
    .action(async (name: string, datadir: string, port: string, options, command: Command) => {
      const { logicalAdd } = await import('../commands/logical.js');
      const result = await logicalAdd(globalsOf(command), name, datadir, port, {
        tables: options.tables,
        publication: options.publication,
        publish: options.publish,
        timeoutMs: options.timeout,
        reporter: options.json ? silentReporter : terminalReporter({}),
      });
      if (options.json) return printJson(result);
      printLine(`subscriber ${result.name} added: subscription ${result.subscription} to publication ${result.publication} on ${result.primary} (${result.tables.join(', ')}), port ${result.port}, data dir ${result.datadir}, pid ${result.pid}`);
      printLine(`initial sync: ${result.rows} rows in ${(result.syncMs / 1000).toFixed(1)}s (${(result.elapsedMs / 1000).toFixed(1)}s in all); slot ${result.subscription} on ${result.primary}`);
    });
  logical
    .command('remove')
    .description('DROP SUBSCRIPTION on the subscriber (its slot on the master goes with it), DROP PUBLICATION on the master, then stop the node and remove its data dir and log')
    .argument('<name>', 'subscriber to remove')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('lab logical remove sub1'))
    .action(async (name: string, options, command: Command) => {
      const { logicalRemove } = await import('../commands/logical.js');
      const result = await logicalRemove(globalsOf(command), name);
      if (options.json) return printJson(result);
      printLine(`subscriber ${result.name} removed: subscription ${result.subscription} and its slot, publication ${result.publication} dropped; data dir ${result.datadir} ${result.datadirOutcome}`);
    });
  return logical;
}
