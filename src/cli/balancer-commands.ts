// Declarations of `lab balancer ...` (issue 3).
import { Command } from 'commander';
import { DEFAULT_BALANCER_NAME, type BalancerStartOptions } from '../balancer/start-options.js';
import { batchedLines } from '../common/batched-lines.js';
import { psqlTable } from '../common/table.js';
import { statsPageUrl } from '../balancer/stats-types.js';
import { examples, globalsOf } from './globals.js';
import { printJson, printLine } from './output.js';
import { LabError } from '../common/errors.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function balancerCommand(): Command {
  const balancer = new Command('balancer').description('the built-in TCP load balancer in front of the replicas');
  balancer
    .command('start')
    .description('start a balancer in the background (pool follows the lab; health checks; stats over HTTP)')
    .option('--name <name>', `instance name, several can run at once (default ${DEFAULT_BALANCER_NAME})`)
    .option('--listen <host:port>', 'client address (default 127.0.0.1:15432)')
    .option('--stats <host:port>', 'stats address: HTML at /, ?format=json, ;csv, /metrics (default 127.0.0.1:8081)')
    .option('--pool <kind>', 'replicas, primary or all (default replicas)')
    .option('--check <type>', 'sql (role and lag), pgsql (HAProxy pgsql-check), tcp or none (default sql)')
    .option('--balance <algorithm>', 'roundrobin or leastconn (default roundrobin)')
    .option('--inter <ms>', 'check interval while UP (HAProxy inter; lab default 1000)')
    .option('--fastinter <ms>', 'check interval while the state is changing (lab default 100)')
    .option('--downinter <ms>', 'check interval while DOWN (lab default 250)')
    .option('--rise <n>', 'successful checks to come back UP (default 2)')
    .option('--fall <n>', 'failed checks to go DOWN (default 3; a lost connection is DOWN at once)')
    .option('--check-timeout <ms>', 'timeout of one check, and of its new-connection probe: no answer is DOWN at once (default 400)')
    .option('--check-user <role>', 'the role the sql / pgsql checks log in as (default postgres; its password from PGPASSFILE or ~/.pgpass, the lab\'s pgpass first)')
    .option('--max-lag <limit>', 'sql check: a replica lagging more leaves the pool (16MB, 5s; repeatable)', collect)
    .option('--retries <n>', 'extra connect attempts per client (HAProxy retries, default 3)')
    .option('--connect-timeout <ms>', 'bound on a client\'s connection phase, its first byte to ReadyForQuery, queue excluded (default 3000)')
    .option('--client-timeout <ms>', 'close a session idle that long on the client side (default 0 = never)')
    .option('--server-timeout <ms>', 'close a session idle that long on the server side (default 0 = never)')
    .option('--answer-timeout <ms>', 'bound on a server\'s first answer to a new connection; past it the client goes to the next server and the server is marked DOWN (default 1000)')
    .option('--maxconn <n>', 'client connections at once, HAProxy\'s maxconn; beyond, a FATAL "too many clients" (default 2000)')
    .option('--server-maxconn <n>', 'server connections per server at once (default: max_connections - superuser_reserved_connections - 2, read by the sql check; 0 = none)')
    .option('--queue-timeout <ms>', 'how long a client waits for a server slot before "all servers busy" (HAProxy timeout queue, default 5000)')
    .option('--config <file>', 'a HAProxy configuration file to run with the built-in balancer')
    .option('--engine <engine>', 'builtin (default), or haproxy (render haproxy.cfg and run HAProxy)')
    .option('--relay <who>', 'who relays established sessions: kernel (BPF sockhash, root), node, or auto (default: kernel when it can)')
    .option('--tls <mode>', 'passthrough (default: TLS end to end, the balancer holds no key) or terminate (the balancer serves TLS with the lab\'s certificate and opens TLS to each server: cancels sent inside TLS, asyncpg\'s, postgres.js\'s and libpq 17\'s, reach their session\'s server)')
    .option('--insecure', 'allow a non-loopback --listen in front of a lab made with --auth trust or --tls off')
    .option('--foreground', 'stay attached; log to stdout; stop with Ctrl-C')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples(
      'lab balancer start',
      'lab balancer start --name lb2 --listen 127.0.0.1:15433 --stats 127.0.0.1:8083',
      'lab balancer start --max-lag 16MB --max-lag 5s',
      'lab balancer start --tls terminate   # routes cancels sent inside TLS by key',
      'lab balancer start --check pgsql --inter 10000 --rise 2 --fall 3   # the seed\'s HAProxy behaviour',
      'psql -h 127.0.0.1 -p 15432 -U postgres postgres',
    ))
    .action(async (options: BalancerStartOptions & { foreground?: boolean; json?: boolean }, command: Command) => {
      const global = globalsOf(command);
      if (options.foreground) {
        const controller = new AbortController();
        const stop = () => controller.abort();
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
        // Started by `lab balancer start`: stdout is <lab-dir>/balancer/NAME.log, rotated by size.
        const logFile = process.env.LAB_BALANCER_LOG_FILE;
        const { rotatingLog, rotationFromEnv } = await import('../common/rotating-log.js');
        const lines = batchedLines((logFile && rotatingLog(logFile, 1, rotationFromEnv())) || process.stdout);
        const log = (line: string) => lines.write(`${new Date().toISOString()} ${line}\n`);
        process.once('exit', () => lines.flush());
        // A daemon must outlive a bug on one connection: log it loudly and keep serving the others.
        process.on('uncaughtException', (error) => {
          log(`internal error (please report it): ${error.stack ?? error.message}`);
          lines.flush();
        });
        const { serveBalancer } = await import('../commands/balancer.js');
        try {
          await serveBalancer(global, options, { log, signal: controller.signal });
        } finally {
          lines.flush();
        }
        return;
      }
      const { startBalancer } = await import('../commands/balancer.js');
      const started = await startBalancer(global, options);
      for (const warning of started.warnings) process.stderr.write(`lab: warning: ${warning}\n`);
      if (options.json) return printJson(started);
      printLine(`balancer ${started.name} started: clients on ${started.listen}, stats on ${started.stats ? statsPageUrl(started.stats) : 'none'}, pool ${started.pool}, pid ${started.pid}, log ${started.logFile}`);
    });

  balancer
    .command('status')
    .description('the lab\'s balancers and the state of their servers')
    .option('--name <name>', 'only this instance')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('lab balancer status', 'lab balancer status --name lb2 --json'))
    .action(async (options: { name?: string; json?: boolean }, command: Command) => {
      const { balancerStatus } = await import('../commands/balancer.js');
      const statuses = await balancerStatus(globalsOf(command), options.name);
      // A balancer that runs but whose stats do not answer is an error, said in one line (exit 6).
      const silent = statuses.filter((s) => s.running && s.problem);
      const failure = silent.length
        ? new LabError('STATE', silent.map((s) => `${s.problem} (balancer ${s.name} runs, pid ${s.pid})`).join('; '))
        : null;
      if (options.json) {
        printJson(statuses);
        if (failure) throw failure;
        return;
      }
      if (statuses.length === 0) return printLine('no balancer in this lab: start one with `lab balancer start`');
      for (const s of statuses) {
        if (s.running && s.problem) continue;
        printLine(`balancer ${s.name}: ${s.running ? 'running' : 'not running'}, pid ${s.pid}, clients on ${s.listen}, stats on ${s.stats ? statsPageUrl(s.stats) : 'none'}, pool ${s.pool}${s.relay ? `, ${s.relay} relay` : ''}${s.tls ? `, TLS ${s.tls}` : ''}${s.problem ? ` (${s.problem})` : ''}`);
        if (s.servers) {
          printLine(psqlTable(
            [
              { header: 'server' }, { header: 'address' }, { header: 'status' }, { header: 'check' }, { header: 'message' }, { header: 'role' },
              { header: 'lag_bytes', align: 'right' }, { header: 'sessions', align: 'right' }, { header: 'total', align: 'right' },
            ],
            s.servers.map((v) => [v.name, v.address, v.status, v.checkStatus, v.checkMessage, v.role ?? '', v.lagBytes ?? '', v.sessionsCurrent, v.sessionsTotal]),
          ));
        }
      }
      if (failure) throw failure;
    });

  balancer
    .command('stop')
    .description('stop a balancer and forget it')
    .option('--name <name>', 'instance name', DEFAULT_BALANCER_NAME)
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('lab balancer stop', 'lab balancer stop --name lb2'))
    .action(async (options: { name: string; json?: boolean }, command: Command) => {
      const { stopBalancer } = await import('../commands/balancer.js');
      const result = await stopBalancer(globalsOf(command), options.name);
      if (options.json) return printJson(result);
      printLine(result.wasRunning ? `balancer ${result.name} stopped (pid ${result.pid})` : `balancer ${result.name} was not running; its record was removed`);
    });
  return balancer;
}
