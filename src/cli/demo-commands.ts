// Declarations of `lab demo failover`, `lab demo lb-ha`, `lab demo primary-failover`, `lab demo switchover`, `lab demo stale-reads` and `lab demo partition`.
import { Command } from 'commander';
import { FAILOVER_DEFAULTS, LB_HA_DEFAULTS, PARTITION_DEFAULTS, PRIMARY_FAILOVER_DEFAULTS, STALE_READS_DEFAULTS, SWITCHOVER_DEFAULTS } from '../drills/defaults.js';
import { examples, globalsOf } from './globals.js';
import { withInterrupt } from './interrupt.js';
import { parseSeconds, positiveInt } from './parse-options.js';
import { printJson, terminalReporter } from './output.js';


/** What every drill offers: its report dir, --keep, --json and --verbose. */
function reportOptions(command: Command, reportDir: string, verbose: string): Command {
  return command
    .option('--report <dir>', 'where to write report.json, report.md and timeline.svg', reportDir)
    .option('--keep', 'keep the lab running at the end (default: remove it)')
    .option('--auth <method>', 'the drill lab\'s authentication: scram (default, the lab\'s password) or trust (the seed\'s)')
    .option('--tls <mode>', 'the drill lab\'s TLS: on (default; the load connects with sslmode=verify-full), required, or off (the seed\'s)')
    .option('--json', 'print the report as JSON at the end')
    .option('-v, --verbose', verbose);
}

interface DrillHooks {
  print: (line: string) => void;
  reporter: ReturnType<typeof terminalReporter>;
  signal: AbortSignal;
}

/** Run a drill with Ctrl-C handling and the terminal's narration; --json prints its report at the end. */
async function runDrill(command: Command, run: (hooks: DrillHooks) => Promise<{ report: unknown }>): Promise<void> {
  const outcome = await withInterrupt((signal) => run({ print: (line) => process.stdout.write(`${line}\n`), reporter: terminalReporter(), signal }));
  if (command.opts().json) printJson(outcome.report);
}

export function demoCommand(): Command {
  const demo = new Command('demo').description('the seeds\' drills end to end, measured, with a report (report.json, report.md, timeline.svg)');
  const d = FAILOVER_DEFAULTS;
  demo
    .command('failover')
    .description('the seed\'s nine steps: master, replicas, balancer, pgbench -i, load through the balancer, kill -9 a replica, detection, re-add, re-admission')
    .option('--replicas <n>', 'replicas to build', positiveInt, d.replicas)
    .option('--scale <n>', 'pgbench scale for -i', positiveInt, d.scale)
    .option('--duration <duration>', 'how long the load runs', parseSeconds, d.durationMs)
    .option('--kill <name>', 'the replica to kill -9', d.kill)
    .option('--kill-at <duration>', 'when to kill it, from the start of the load', parseSeconds, d.killAtMs)
    .option('--recover-at <duration>', 'when to re-add it', parseSeconds, d.recoverAtMs)
    .option('--clients <n>', 'concurrent clients (pgbench -c)', positiveInt, d.concurrency);
  reportOptions(demo.commands.at(-1)!, d.reportDir, 'also print the load\'s per-second lines')
    .addHelpText('after', examples('lab demo failover', 'lab demo failover --duration 30s --kill-at 10s --recover-at 18s --scale 1', 'lab demo failover --keep --report /tmp/failover'))
    .action(async (options, command: Command) => {
      const global = globalsOf(command);
      const { runFailoverDrill } = await import('../drills/failover-drill.js');
      await runDrill(command, (hooks) =>
        runFailoverDrill(global, {
          ...d,
          replicas: options.replicas, scale: options.scale, durationMs: options.duration, kill: options.kill,
          killAtMs: options.killAt, recoverAtMs: options.recoverAt, concurrency: options.clients,
          reportDir: options.report, keep: Boolean(options.keep), verbose: Boolean(options.verbose),
          labDir: command.optsWithGlobals().labDir, access: { auth: options.auth, tls: options.tls },
        }, hooks),
      );
    });
  const h = LB_HA_DEFAULTS;
  demo
    .command('lb-ha')
    .description('seed 004: two balancers over the same replicas, a load given both URLs, kill -9 each balancer in turn and restart it')
    .option('--replicas <n>', 'replicas to build', positiveInt, h.replicas)
    .option('--scale <n>', 'pgbench scale for -i', positiveInt, h.scale)
    .option('--duration <duration>', 'how long the load runs (the kills happen at 15% and 55%)', parseSeconds, h.durationMs)
    .option('--clients <n>', 'concurrent clients', positiveInt, h.concurrency);
  reportOptions(demo.commands.at(-1)!, h.reportDir, 'also print the load\'s per-second lines')
    .addHelpText('after', examples('lab demo lb-ha', 'lab demo lb-ha --duration 20s --report /tmp/lb-ha'))
    .action(async (options, command: Command) => {
      const global = globalsOf(command);
      const { runLbHaDrill } = await import('../drills/lb-ha-drill.js');
      await runDrill(command, (hooks) =>
        runLbHaDrill(global, {
          replicas: options.replicas, scale: options.scale, durationMs: options.duration, concurrency: options.clients,
          reportDir: options.report, keep: Boolean(options.keep), labDir: command.optsWithGlobals().labDir, access: { auth: options.auth, tls: options.tls },
        }, { ...hooks, verbose: Boolean(options.verbose) }),
      );
    });
  const p = PRIMARY_FAILOVER_DEFAULTS;
  demo
    .command('primary-failover')
    .description('writes through rw (pool: the primary) and reads through lb; kill -9 the master, promote the most advanced replica, re-point the others, pg_rewind the old master; report write downtime and lost_commits')
    .option('--sync', 'synchronous replicas (synchronous_standby_names = ANY 1): no acknowledged commit may be lost')
    .option('--replicas <n>', 'replicas to build', positiveInt, p.replicas)
    .option('--duration <duration>', 'how long writes and reads run', parseSeconds, p.durationMs)
    .option('--kill-at <duration>', 'when to kill -9 the master, from the start of the load', parseSeconds, p.killAtMs)
    .option('--partition <duration>', 'the master\'s walsenders freeze this long before it dies (0: a plain crash)', parseSeconds, p.partitionMs)
    .option('--writers <n>', 'concurrent writers', positiveInt, p.writers)
    .option('--readers <n>', 'concurrent readers', positiveInt, p.readers);
  reportOptions(demo.commands.at(-1)!, p.reportDir, 'also print the reads\' per-second lines')
    .addHelpText('after', examples('lab demo primary-failover', 'lab demo primary-failover --sync --duration 30s --kill-at 10s --report /tmp/pf-sync'))
    .action((options, command: Command) => primaryDrill(command, options, { partitionMs: options.partition }));
  const w = SWITCHOVER_DEFAULTS;
  demo
    .command('switchover')
    .description('writes through rw (pool: the primary) and reads through lb; a planned `lab switchover replica1`, then kill -9 of the new primary for contrast (promote, follow, rewind); report both write downtimes, acknowledged commits lost and read errors')
    .option('--sync', 'synchronous replicas (synchronous_standby_names = ANY 1)')
    .option('--replicas <n>', 'replicas to build', positiveInt, w.replicas)
    .option('--duration <duration>', 'how long writes and reads run', parseSeconds, w.durationMs)
    .option('--switchover-at <duration>', 'when to switch over to replica1, from the start of the load', parseSeconds, w.switchoverAtMs)
    .option('--kill-at <duration>', 'when to kill -9 the new primary, from the start of the load', parseSeconds, w.killAtMs)
    .option('--writers <n>', 'concurrent writers', positiveInt, w.writers)
    .option('--readers <n>', 'concurrent readers', positiveInt, w.readers);
  reportOptions(demo.commands.at(-1)!, w.reportDir, 'also print the reads\' per-second lines')
    .addHelpText('after', examples('lab demo switchover', 'lab demo switchover --duration 30s --switchover-at 5s --kill-at 15s --report /tmp/sw'))
    .action((options, command: Command) => primaryDrill(command, options, { partitionMs: w.partitionMs, switchoverAtMs: options.switchoverAt }));
  const s = STALE_READS_DEFAULTS;
  demo
    .command('stale-reads')
    .description('a writer stamps a counter on the primary, readers read it through a balancer; a replica\'s links delayed, then the replica paused, then its replay paused; how far behind each read was, with the sql check\'s --max-lag, without a bound, and through HAProxy (seed settings)')
    .option('--max-lag <limit>', 'the bounded run\'s sql check bound: bytes (1MB), seconds (1s) or both (1MB,1s)', s.maxLag)
    .option('--phase <duration>', 'how long each fault lasts (the baseline and each recovery last half of it)', parseSeconds, s.phaseMs)
    .option('--faults <list>', 'the faults in order: delay, pause, lag (delay makes the drill\'s lab with --hosts: root, ip, iptables; by default it is skipped, in one line, where that cannot be)', s.faults)
    .option('--delay <duration>', 'the delay phase: what the node sends is held this long (lab fault delay)', s.delay)
    .option('--runs <list>', 'the runs: bounded, unbounded, haproxy', s.runs)
    .option('--node <replica>', 'the replica faulted', s.node)
    .option('--replicas <n>', 'replicas to build (2 or more)', positiveInt, s.replicas)
    .option('--readers <n>', 'concurrent readers (a new connection per read)', positiveInt, s.readers);
  reportOptions(demo.commands.at(-1)!, s.reportDir, 'unused (the runs narrate their phases)')
    .addHelpText('after', examples('lab demo stale-reads', 'lab demo stale-reads --max-lag 1s --phase 5s --report /tmp/stale', 'lab demo stale-reads --runs bounded,unbounded --faults delay --delay 500ms'))
    .action(async (options, command: Command) => {
      const global = globalsOf(command);
      const { runStaleReadsDrill } = await import('../drills/stale-reads-drill.js');
      await runDrill(command, (hooks) =>
        runStaleReadsDrill(global, {
          replicas: options.replicas, node: options.node, maxLag: options.maxLag, phaseMs: options.phase, delay: options.delay, runs: options.runs,
          // Named by the person or not: a delay that cannot run is refused when named, skipped when defaulted.
          faults: command.getOptionValueSource('faults') === 'default' ? undefined : options.faults,
          readers: options.readers, reportDir: options.report, keep: Boolean(options.keep), labDir: command.optsWithGlobals().labDir, access: { auth: options.auth, tls: options.tls },
        }, hooks),
      );
    });
  const pd = PARTITION_DEFAULTS;
  demo
    .command('partition')
    .description('a lab with --hosts; readers through lb, acknowledged writes through rw (--pool primary); replica2\'s host partitioned then healed, then master1\'s: time to DOWN and UP, sessions closed, clients hung, errors; built-in balancer and HAProxy (seed settings)')
    .option('--phase <duration>', 'how long each partition lasts (the baseline and each recovery last half of it)', parseSeconds, pd.phaseMs)
    .option('--engine <engines>', 'builtin, haproxy, or both (builtin,haproxy)', pd.engines)
    .option('--readers <n>', 'readers on persistent sessions through lb', positiveInt, pd.readers)
    .option('--writers <n>', 'writers through rw', positiveInt, pd.writers)
    .option('--no-primary', 'skip the primary half (partition replica2 only)');
  reportOptions(demo.commands.at(-1)!, pd.reportDir, 'unused')
    .addHelpText('after', examples('lab demo partition', 'lab demo partition --phase 5s --engine builtin --report /tmp/partition'))
    .action(async (options, command: Command) => {
      const global = globalsOf(command);
      const { runPartitionDrill } = await import('../drills/partition-drill.js');
      await runDrill(command, (hooks) =>
        runPartitionDrill(global, {
          phaseMs: options.phase, engines: options.engine, readers: options.readers, writers: options.writers, primary: options.primary !== false,
          reportDir: options.report, keep: Boolean(options.keep), labDir: command.optsWithGlobals().labDir, access: { auth: options.auth, tls: options.tls },
        }, hooks),
      );
    });
  return demo;
}

/** `lab demo primary-failover` and `lab demo switchover`: one drill, the second with a switchover first. */
async function primaryDrill(command: Command, options: Record<string, any>, extra: { partitionMs: number; switchoverAtMs?: number }): Promise<void> {
  const global = globalsOf(command);
  const { runPrimaryFailoverDrill } = await import('../drills/primary-failover-drill.js');
  await runDrill(command, (hooks) =>
    runPrimaryFailoverDrill(global, {
      replicas: options.replicas, sync: Boolean(options.sync), durationMs: options.duration, killAtMs: options.killAt, ...extra,
      writers: options.writers, readers: options.readers, reportDir: options.report, keep: Boolean(options.keep),
      verbose: Boolean(options.verbose), labDir: command.optsWithGlobals().labDir, access: { auth: options.auth, tls: options.tls },
    }, hooks),
  );
}
