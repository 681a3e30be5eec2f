// Declarations of `lab bench` (pgbench) and `lab workload` (pglab's load generator).
import { Command, InvalidArgumentError, Option } from 'commander';
import { LabError } from '../common/errors.js';
import { silentReporter } from '../common/reporter.js';
import { parsePort } from '../common/ports.js';
import { examples, globalsOf } from './globals.js';
import { interruptSignal } from './interrupt.js';
import { printJson, printLine, terminalReporter } from './output.js';
import type { WorkloadError } from '../workload/types.js';
import { formatSampleLine, SAMPLE_HEADER, formatSummary } from '../workload/sample-line.js';
import { parseSeconds, positiveInt } from './parse-options.js';
import { readState } from '../lab/state.js';
import { nodeNamesByPort } from '../report/from-workload.js';


function portOption(text: string): number {
  try {
    return parsePort(text);
  } catch (error) {
    throw new InvalidArgumentError(error instanceof Error ? error.message : String(error));
  }
}


export function benchCommand(): Command {
  const bench = new Command('bench').description('pgbench: init on the master, run through the balancer');
  bench
    .command('init')
    .description('pgbench -i on the lab\'s master, with progress (the tables reach the replicas by streaming)')
    .option('-s, --scale <n>', 'scaling factor (100,000 pgbench_accounts rows each)', positiveInt, 10)
    .option('--json', 'print the result as JSON')
    .option('-v, --verbose', 'show pgbench\'s other output')
    .addHelpText('after', examples('lab bench init', 'lab bench init -s 50'))
    .action(async (options, command: Command) => {
      const interrupt = interruptSignal();
      try {
        const { benchInit } = await import('../commands/bench.js');
        const result = await benchInit(globalsOf(command), {
          scale: options.scale,
          signal: interrupt.signal,
          reporter: options.json ? silentReporter : terminalReporter({ verbose: options.verbose }),
        });
        if (options.json) return printJson(result);
        printLine(`pgbench tables created on ${result.node} (port ${result.port}): scale ${result.scale}, ${result.accounts} accounts (${(result.elapsedMs / 1000).toFixed(1)}s)`);
      } finally {
        interrupt.dispose();
      }
    });
  bench
    .command('run')
    .description('pgbench with any arguments (after --) through the lab\'s balancer `lb` or at a port; streams its output')
    .argument('[pgbench-args...]', 'pgbench arguments, after --')
    .option('--port <port>', 'send the load to the node or balancer of this lab listening on <port> (at its address), else to 127.0.0.1:<port>', portOption)
    .option('--balancer <name>', 'balancer of this lab to go through (default lb)')
    .option('--json', 'print the parsed summary as JSON (pgbench\'s own output then goes to stderr)')
    .addHelpText('after', examples('lab bench run -- -S -T 180 -c 16 -C    # the seed\'s load', 'lab bench run --port 5433 -- -S -T 10', 'lab bench run --json -- -S -T 5 -c 4'))
    .action(async (args: string[], options, command: Command) => {
      const interrupt = interruptSignal();
      try {
        const { benchRun } = await import('../commands/bench.js');
        const result = await benchRun(globalsOf(command), args, {
          port: options.port,
          balancer: options.balancer,
          signal: interrupt.signal,
          onLine: (line) => (options.json ? process.stderr : process.stdout).write(`${line}\n`),
        });
        if (options.json) printJson(result);
        else if (result.summary.aborted.length > 0) printLine(`${result.summary.aborted.length} client(s) aborted`);
        if (result.exitCode !== 0 && !interrupt.signal.aborted) {
          throw new LabError('COMMAND_FAILED', `pgbench exited with ${result.exitCode ?? result.signal}${result.summary.aborted.length ? ` (${result.summary.aborted.length} client(s) aborted)` : ''}`);
        }
      } finally {
        interrupt.dispose();
      }
    });
  return bench;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function workloadCommand(): Command {
  const workload = new Command('workload').description('a load generator for drills, with several URLs and --tolerate-errors');
  workload
    .command('run')
    .description('N workers run pgbench\'s transactions through one or more URLs (fall over to the next on a connection error); one line per second')
    .option('--url <url>', 'postgresql:// URL; repeat it to give several (default: the balancer lb, or the master for --mode tpcb)', collect)
    .option('--balancer <name>', 'balancer of this lab to go through when no --url is given (default lb)')
    .option('--concurrency <n>', 'workers (one connection each)', positiveInt, 8)
    .addOption(new Option('--duration <duration>', 'how long to run (60s, 2m, 500ms)').argParser(parseSeconds).default(60_000, '60s'))
    .option('--transactions <n>', 'stop after this many transactions, if the duration has not ended first', positiveInt)
    .option('--max-rate <tps>', 'at most this many transactions per second over all workers', positiveInt)
    .option('--mode <mode>', 'select (pgbench -S) or tpcb (pgbench\'s TPC-B-like transaction; needs the master)', 'select')
    .option('--connect-per-tx', 'a new connection for every transaction, like pgbench -C')
    .option('--tolerate-errors', 'count errors and go on (reconnecting) instead of stopping at the first')
    .option('--json-out <file>', 'write {samples, errors, summary} to this file')
    .option('--json', 'print the result (samples, errors, summary) as JSON instead of lines')
    .addHelpText(
      'after',
      examples(
        'lab workload run --duration 30s --tolerate-errors --connect-per-tx --concurrency 16',
        'lab workload run --url postgresql://postgres@127.0.0.1:15432/postgres --url postgresql://postgres@127.0.0.1:15433/postgres --tolerate-errors',
        'lab workload run --mode tpcb --duration 10s --json-out /tmp/w.json',
      ),
    )
    .action(async (options, command: Command) => {
      if (options.mode !== 'select' && options.mode !== 'tpcb') throw new InvalidArgumentError(`--mode must be select or tpcb, got "${options.mode}"`);
      const interrupt = interruptSignal();
      // Errors on stderr as they happen, each message at most once per second (a dead server repeats itself).
      const lastShown = new Map<string, number>();
      const showError = (error: WorkloadError) => {
        const second = Math.floor(error.at_ms / 1000);
        if (lastShown.get(error.message) === second) return;
        lastShown.set(error.message, second);
        process.stderr.write(`${(error.at_ms / 1000).toFixed(1)}s error (${error.phase}, ${error.url}): ${error.message}\n`);
      };
      let headerShown = false;
      try {
        const { workloadRun } = await import('../commands/workload.js');
        const result = await workloadRun(globalsOf(command), {
          urls: options.url,
          balancer: options.balancer,
          concurrency: options.concurrency,
          durationMs: options.duration,
          maxTransactions: options.transactions,
          maxRate: options.maxRate,
          mode: options.mode,
          connectPerTx: Boolean(options.connectPerTx),
          tolerateErrors: Boolean(options.tolerateErrors),
          jsonOut: options.jsonOut,
          signal: interrupt.signal,
          onSample: options.json
            ? undefined
            : (sample) => {
                if (!headerShown) printLine(SAMPLE_HEADER);
                headerShown = true;
                printLine(formatSampleLine(sample));
              },
          onError: options.json ? undefined : showError,
        });
        if (options.json) printJson(result);
        else printLine(formatSummary(result, nodeNamesByPort((await readState(globalsOf(command).labDir).catch(() => undefined))?.nodes ?? [])));
        if (result.summary.stopped_by === 'error') {
          throw new LabError('COMMAND_FAILED', `The workload stopped at its first error (${result.errors[0]?.message ?? 'unknown'}): pass --tolerate-errors to count errors and go on`);
        }
      } finally {
        interrupt.dispose();
      }
    });
  return workload;
}
