// `lab bench init` and `lab bench run` against a real lab: progress, tables streamed to a replica,
// pgbench's summary read back, the balancer recorded in the state as the default target, and the
// "client N aborted" lines of a pgbench whose server was killed under it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { freePorts, lab, runLab, withTempLab, labBin } from './helpers/lab.js';
import { pollUntil } from '../src/common/poll.js';
import { queryRows } from '../src/postgres/client.js';
import { updateState } from '../src/lab/state.js';

test('bench: init with progress on the master, run at a port and through the recorded balancer, aborted clients counted', { timeout: 120_000 }, async () => {
  await withTempLab(async (labDir) => {
    const [m, r1] = await freePorts(2);
    await lab(labDir, 'master', 'start', '--port', String(m));
    await lab(labDir, 'replica', 'add', 'replica1', `${labDir}/replica1`, String(r1));

    const init = await runLab(labDir, ['bench', 'init', '-s', '2']);
    assert.equal(init.exitCode, 0, init.stderr);
    assert.match(init.stderr, /pgbench -i -s 2 on master1/);
    assert.match(init.stderr, /50% 100000 of 200000 tuples/);
    assert.match(init.stderr, /100% 200000 of 200000 tuples/);
    assert.match(init.stdout, /pgbench tables created on master1 .*scale 2, 200000 accounts/);

    // The tables reach the replica by streaming.
    const accounts = await pollUntil(
      async () => {
        const rows = await queryRows<{ n: string }>({ port: r1! }, 'SELECT count(*) AS n FROM pgbench_accounts');
        return Number(rows[0]!.n) === 200_000 ? 200_000 : undefined;
      },
      { timeoutMs: 15_000, what: 'pgbench_accounts on replica1' },
    );
    assert.equal(accounts, 200_000);

    // At a port: pgbench's summary comes back parsed.
    const atPort = await runLab(labDir, ['bench', 'run', '--port', String(r1), '--json', '--', '-S', '-n', '-T', '2', '-P', '1', '-c', '2']);
    assert.equal(atPort.exitCode, 0, atPort.stderr);
    const summary = JSON.parse(atPort.stdout).summary;
    assert.equal(summary.transactionType, '<builtin: select only>');
    assert.equal(summary.scalingFactor, 2);
    assert.equal(summary.clients, 2);
    assert.ok(summary.tps > 100, `tps ${summary.tps}`);
    assert.deepEqual(summary.aborted, []);
    assert.ok(summary.progress.length >= 1 && summary.progress[0].tps > 0, `-P 1 lines parsed: ${JSON.stringify(summary.progress)}`);
    assert.match(atPort.stderr, /number of transactions actually processed: \d+/, 'pgbench\'s own output is streamed');

    // No balancer yet: a clear error.
    const noBalancer = await runLab(labDir, ['bench', 'run', '--', '-S', '-T', '1']);
    assert.equal(noBalancer.exitCode, 5);
    assert.match(noBalancer.stderr, /No balancer "lb" in this lab: start one with `lab balancer start`/);

    // A balancer recorded in the state is the default target. This record points at replica1 itself and
    // carries this test's pid, which destroy leaves alone (its command line is not a balancer's).
    await updateState(labDir, (state) => {
      state.balancers.push({
        name: 'lb', engine: 'builtin', listen: `127.0.0.1:${r1}`, stats: '127.0.0.1:1', pid: process.pid, pool: 'replicas',
        logFile: `${labDir}/log/lb-standin.log`, startedAt: new Date().toISOString(),
      });
    });
    const viaLb = await runLab(labDir, ['bench', 'run', '--json', '--', '-S', '-n', '-t', '50', '-c', '2']);
    assert.equal(viaLb.exitCode, 0, viaLb.stderr);
    const viaLbResult = JSON.parse(viaLb.stdout);
    assert.deepEqual(viaLbResult.target, { host: '127.0.0.1', port: r1, via: 'balancer lb' });
    assert.equal(viaLbResult.summary.transactions, 100);

    // Kill the server under a running pgbench: its clients abort, and we say how many.
    const run = execa('node', [labBin, '--lab-dir', labDir, 'bench', 'run', '--port', String(r1), '--json', '--', '-S', '-n', '-T', '20', '-c', '4'], { reject: false });
    try {
      await pollUntil(
        async () => {
          const rows = await queryRows<{ n: string }>({ port: r1! }, "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'pgbench'");
          return Number(rows[0]!.n) >= 4 ? true : undefined;
        },
        { timeoutMs: 15_000, what: 'four pgbench clients on replica1' },
      );
      await lab(labDir, 'node', 'kill', 'replica1');
      const killed = await run;
      assert.equal(killed.exitCode, 8, String(killed.stderr));
      assert.match(String(killed.stderr), /pgbench exited with 2 \(4 client\(s\) aborted\)/);
      const abortedSummary = JSON.parse(String(killed.stdout)).summary;
      assert.equal(abortedSummary.aborted.length, 4);
      assert.match(abortedSummary.aborted[0].message, /^client \d (script \d )?aborted in command/);
      assert.equal(abortedSummary.runAborted, true);
    } finally {
      run.kill('SIGKILL');
      await run;
    }
  });
});
