// Declarations of `lab stat ...` and `lab top` (issue 4).
import { Command, InvalidArgumentError } from 'commander';
import { statBalancer, statReplication, statTop, statXact, type TopSample } from '../commands/stat.js';
import type { XactSample } from '../stats/xact-sample.js';
import { messageOf } from '../common/errors.js';
import { banner } from '../stats/banner.js';
import { paintFor } from '../stats/paint.js';
import { balancerTable, replicationTable, withBanner, xactTable } from '../stats/render.js';
import { watchLoop } from '../stats/watch.js';
import { examples, globalsOf } from './globals.js';
import { positiveInt } from './parse-options.js';
import { printJson } from './output.js';

const DEFAULT_WATCH_MS = 3000; // the seed's scripts slept 3 s

function parseWatchSeconds(text: string): number {
  const seconds = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text.trim()) || !(seconds > 0)) throw new InvalidArgumentError(`expected seconds such as 3 or 0.5, got "${text}"`);
  return seconds * 1000;
}


interface WatchFlags {
  watch?: true | number;
  count?: number;
  json?: boolean;
}

function withWatchOptions(command: Command): Command {
  return command
    .option('--watch [seconds]', `refresh every SECONDS (default ${DEFAULT_WATCH_MS / 1000}) until Ctrl-C`, parseWatchSeconds)
    .option('--count <n>', 'stop after N samples (implies --watch)', positiveInt)
    .option('--json', 'print JSON: one document, or one line per sample with --watch');
}

/**
 * Run a watcher: one sample printed once, or a loop until --count samples or Ctrl-C (exit 0). On a
 * terminal each sample redraws the screen; piped, samples are blocks separated by a blank line.
 */
async function runWatcher<T extends { at: string }>(flags: WatchFlags, sample: (previous: T | undefined) => Promise<T>, render: (value: T, watching: boolean) => string): Promise<void> {
  const watching = flags.watch !== undefined || flags.count !== undefined;
  if (!watching) {
    const value = await sample(undefined);
    if (flags.json) printJson(value);
    else process.stdout.write(`${render(value, false)}\n`);
    return;
  }
  const tty = Boolean(process.stdout.isTTY) && !flags.json;
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  // `lab stat xact --watch | head`: the reader went away, which ends the watch like Ctrl-C. Left
  // attached: the error event of the last write can come after the loop has ended.
  process.stdout.on('error', stop);
  const write = (text: string) => {
    if (flags.json) process.stdout.write(`${text}\n`);
    else if (tty) process.stdout.write(`\x1b[H\x1b[2J${text}\n`);
    else process.stdout.write(`${text}\n\n`);
  };
  try {
    await watchLoop<T>(
      sample,
      (value) => write(flags.json ? JSON.stringify(value) : render(value, true)),
      (error) => write(flags.json ? JSON.stringify({ at: new Date().toISOString(), error: messageOf(error) }) : `${banner(new Date())}\nno sample: ${messageOf(error)}`),
      {
        intervalMs: typeof flags.watch === 'number' ? flags.watch : DEFAULT_WATCH_MS,
        count: flags.count,
        signal: controller.signal,
        firstMustSucceed: true,
      },
    );
  } finally {
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGTERM', stop);
  }
}

export function statCommand(): Command {
  const stat = new Command('stat').description('tables of replication, transactions and balancer state, once or --watch');

  withWatchOptions(
    stat
      .command('replication')
      .description('the master\'s pg_stat_replication like the seed\'s ut-stat-replication, with replay lag in bytes and time'),
  )
    .addHelpText('after', examples('lab stat replication', 'lab stat replication --watch', 'lab stat replication --watch 1 --json'))
    .action(async (options: WatchFlags, command: Command) => {
      const global = globalsOf(command);
      const paint = paintFor(process.stdout);
      await runWatcher(options, () => statReplication(global), (value) => withBanner(value.at, replicationTable(value, paint)));
    });

  withWatchOptions(
    stat
      .command('xact')
      .description('pg_stat_database of every node in port order like the seed\'s ut-stat-xact; a down node keeps its row with the reason'),
  )
    .option('--dbname <name>', 'database whose counters are shown', 'postgres')
    .addHelpText('after', examples('lab stat xact', 'lab stat xact --watch', 'lab stat xact --watch 0.5 --count 20 --dbname bench'))
    .action(async (options: WatchFlags & { dbname: string }, command: Command) => {
      const global = globalsOf(command);
      const paint = paintFor(process.stdout);
      await runWatcher<XactSample>(
        options,
        (previous) => statXact(global, { dbname: options.dbname, previous }),
        (value, watching) => withBanner(value.at, xactTable(value, { tps: watching }, paint)),
      );
    });

  withWatchOptions(
    stat
      .command('balancer')
      .description('every server of the balancer: status, last check, since when, sessions, connection errors'),
  )
    .option('--name <name>', 'the balancer (default: every balancer of the lab)')
    .addHelpText('after', examples('lab stat balancer', 'lab stat balancer --name lb --watch'))
    .action(async (options: WatchFlags & { name?: string }, command: Command) => {
      const global = globalsOf(command);
      const paint = paintFor(process.stdout);
      await runWatcher(
        options,
        () => statBalancer(global, { name: options.name }),
        (value) => withBanner(value.at, value.balancers.map((b) => balancerTable(b, paint)).join('\n\n')),
      );
    });
  return stat;
}

export function topCommand(): Command {
  return withWatchOptions(
    new Command('top').description('replication, transactions and balancers in one screen, refreshed in place'),
  )
    .option('--dbname <name>', 'database whose counters are shown', 'postgres')
    .option('--once', 'print one sample and exit')
    .addHelpText('after', examples('lab top', 'lab top --watch 1', 'lab top --once --json'))
    .action(async (options: WatchFlags & { dbname: string; once?: boolean }, command: Command) => {
      const global = globalsOf(command);
      const paint = paintFor(process.stdout);
      // top is a watcher by nature: it refreshes unless asked for one sample.
      const flags: WatchFlags = options.once ? { json: options.json } : { ...options, watch: options.watch ?? true };
      await runWatcher<TopSample>(
        flags,
        (previous) => statTop(global, { dbname: options.dbname, previous }),
        (value, watching) => {
          const sections = [
            banner(new Date(value.at)),
            `replication${value.replication.master ? ` (master ${value.replication.master.name}, port ${value.replication.master.port})` : ''}`,
            replicationTable(value.replication, paint),
            '',
            `transactions (database ${value.xact.dbname})`,
            xactTable(value.xact, { tps: watching }, paint),
          ];
          for (const balancer of value.balancers) sections.push('', balancerTable(balancer, paint));
          if (value.balancers.length === 0) sections.push('', 'no balancer in this lab (`lab balancer start`)');
          return sections.join('\n');
        },
      );
    });
}
