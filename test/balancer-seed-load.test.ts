// The seed's failure run through the built-in balancer: `pgbench -S -C -c 16` while one of three
// replicas is killed with SIGKILL. With the seed's HAProxy settings 9 of 16 clients aborted while
// establishing a connection (REFERENCE.md 3). On the seed's set-up (trust, plaintext) none may. On a
// lab's defaults (scram, TLS) a connection whose TLS handshake or SCRAM exchange with the killed server
// was under way is bound to it (the balancer can replay neither), so those few may abort, and only those.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { runBalancer } from '../src/balancer/balancer.js';
import { labBalancerConfig } from './helpers/balancer-fakes.js';
import { pollUntil } from '../src/common/poll.js';
import { queryRows } from '../src/postgres/client.js';
import { freePorts, lab, labJson, withTempLab } from './helpers/lab.js';

interface SeedRun {
  output: string;
  connectAborts: string[];
  processed: number;
  replica2: string;
}

/** A lab made with `masterArgs`, three replicas, the built-in balancer, pgbench -S -C -c 16, replica2 killed. */
async function seedRun(masterArgs: string[]): Promise<SeedRun> {
  let run: SeedRun | undefined;
  await withTempLab(async (labDir) => {
    const [m, r1, r2, r3] = await freePorts(4);
    await lab(labDir, 'master', 'start', '--port', String(m), ...masterArgs);
    await execa('pgbench', ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(m), '-U', 'postgres', 'postgres']);
    await Promise.all([
      lab(labDir, 'replica', 'add', 'replica1', `${labDir}/replica1`, String(r1)),
      lab(labDir, 'replica', 'add', 'replica2', `${labDir}/replica2`, String(r2)),
      lab(labDir, 'replica', 'add', 'replica3', `${labDir}/replica3`, String(r3)),
    ]);
    const balancer = await runBalancer(labBalancerConfig(labDir, {}, { name: 'seed' }));
    try {
      await pollUntil(async () => (balancer.stats().servers.filter((s) => s.status === 'UP').length === 3 ? true : undefined), { timeoutMs: 10_000, what: 'three replicas UP' });
      for (const port of [r1, r2, r3]) {
        await pollUntil(async () => ((await queryRows({ port: port! }, 'SELECT to_regclass(\'pgbench_accounts\') IS NOT NULL AS ok'))[0]?.ok ? true : undefined), { timeoutMs: 10_000, what: 'pgbench tables on the replicas' });
      }
      const pgbench = execa('pgbench', ['-S', '-C', '-c', '16', '-j', '2', '-T', '6', '-n', '-h', '127.0.0.1', '-p', String(balancer.address().port), '-U', 'postgres', 'postgres'], { reject: false, all: true, timeout: 60_000 });
      await pollUntil(async () => (balancer.stats().sessionsTotal > 50 ? true : undefined), { timeoutMs: 10_000, what: 'pgbench to run' });
      const victim = (await labJson<{ nodes: { name: string; pid: number }[] }>(labDir, 'status')).nodes.find((n) => n.name === 'replica2')!.pid;
      process.kill(victim, 'SIGKILL');
      const result = await pgbench;
      const output = String(result.all);
      const connectAborts = output.split('\n').filter((line) => /aborted while establishing|connection to server .* failed/.test(line));
      const otherAborts = output.split('\n').filter((line) => /aborted/.test(line) && !connectAborts.includes(line));
      const processed = Number(/number of transactions actually processed: (\d+)/.exec(output)?.[1]);
      const stats = balancer.stats().servers.find((s) => s.name === 'replica2')!;
      console.log(`lab master start ${masterArgs.join(' ') || '(defaults)'}: pgbench -S -C -c 16 with replica2 killed: ${processed} transactions, ${connectAborts.filter((l) => /aborted/.test(l)).length} clients aborted while connecting, ${otherAborts.length} aborted in an established session, replica2 ${stats.status} (${stats.checkMessage})`);
      run = { output, connectAborts, processed, replica2: stats.status };
    } finally {
      await balancer.stop();
    }
  });
  return run!;
}

test('seed load on the seed\'s set-up (trust, plaintext): no client aborts while connecting', async () => {
  const run = await seedRun(['--auth', 'trust', '--tls', 'off']);
  assert.deepEqual(run.connectAborts, [], run.output);
  assert.equal(run.replica2, 'DOWN');
  assert.ok(run.processed > 0, run.output);
});

test('seed load on a default lab (scram, TLS): only connections inside their TLS or SCRAM exchange with the killed replica abort', async () => {
  const run = await seedRun([]);
  const aborted = run.connectAborts.filter((line) => /aborted while establishing/.test(line));
  const reasons = run.connectAborts.filter((line) => !/aborted while establishing/.test(line));
  // What a client sees when the server it is bound to dies during the handshake or the exchange.
  const bound = /SSL SYSCALL error|SSL error|server closed the connection unexpectedly|unexpected postmaster exit/;
  assert.deepEqual(reasons.filter((line) => !bound.test(line)), [], `every abort happened inside a TLS handshake or SCRAM exchange:\n${run.output}`);
  // A third of 16 clients were talking to replica2, most of their time in connection set-up.
  assert.ok(aborted.length <= 6, `at most the clients bound to replica2 at the kill: ${aborted.length}\n${run.output}`);
  assert.equal(run.replica2, 'DOWN');
  assert.ok(run.processed > 0, run.output);
});
