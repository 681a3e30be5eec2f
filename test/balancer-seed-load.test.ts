// The seed's failure run through the built-in balancer: `pgbench -S -C -c 16` while one of three
// replicas is killed with SIGKILL. With the seed's HAProxy settings 9 of 16 clients aborted while
// establishing a connection (REFERENCE.md 3); here none may.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { runBalancer } from '../src/balancer/balancer.js';
import { labBalancerConfig } from './helpers/balancer-fakes.js';
import { pollUntil } from '../src/common/poll.js';
import { queryRows } from '../src/postgres/client.js';
import { freePorts, lab, labJson, withTempLab } from './helpers/lab.js';

test('seed load: pgbench -S -C -c 16 through the balancer, one replica killed, no client aborts while connecting', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1, r2, r3] = await freePorts(4);
    await lab(labDir, 'master', 'start', '--port', String(m));
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
      const processed = /number of transactions actually processed: (\d+)/.exec(output)?.[1];
      const stats = balancer.stats().servers.find((s) => s.name === 'replica2')!;
      console.log(`pgbench -S -C -c 16 with replica2 killed: ${processed} transactions, ${connectAborts.length} clients aborted while connecting, ${otherAborts.length} aborted in an established session, replica2 ${stats.status} (${stats.checkMessage})`);
      assert.deepEqual(connectAborts, [], output);
      assert.equal(stats.status, 'DOWN');
      assert.ok(Number(processed) > 0, output);
    } finally {
      await balancer.stop();
    }
  });
});
