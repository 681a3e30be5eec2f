// `lab workload run` and runWorkload() against a real lab (master + two replicas): per-second samples
// with per-server counts, a replica killed mid-run with --tolerate-errors, fall-over from a dead URL,
// two stand-in balancers of which one dies (seed 004's drill), tpcb on the master, AbortSignal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { freePorts, lab, labBin, runLab, withTempLab } from './helpers/lab.js';
import { queryRows } from '../src/postgres/client.js';
import { runWorkload } from '../src/workload/run-workload.js';
import { crossCheck, readXactCommits } from '../src/report/crosscheck.js';
import { errorsFromWorkload, phasesFromWorkload, seriesByUrl } from '../src/report/from-workload.js';
import { renderReportMarkdown } from '../src/report/report-markdown.js';
import { pollUntil } from '../src/common/poll.js';
import { SAMPLE_HEADER } from '../src/workload/sample-line.js';
import type { WorkloadResult } from '../src/workload/types.js';

/** Every load here is bounded by a duration and, in case a machine is much faster than expected, a count. */
const CAP = 1_000_000;
const url = (port: number) => `postgresql://postgres@127.0.0.1:${port}/postgres`;

/** A TCP relay standing in for a balancer: `close()` is its death (listener gone, sessions cut). */
async function startRelay(targetPort: number): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    // Without it Nagle's algorithm and delayed ACKs stall every small protocol message.
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    sockets.add(client);
    sockets.add(upstream);
    for (const socket of [client, upstream]) {
      socket.on('error', end);
      socket.on('close', end);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  let closed = false;
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      if (closed) return;
      closed = true;
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await done;
    },
  };
}

test('workload against a real lab', { timeout: 150_000 }, async (t) => {
  await withTempLab(async (labDir) => {
    const [m, r1, r2, dead] = await freePorts(4);
    await lab(labDir, 'master', 'start', '--port', String(m));
    await lab(labDir, 'replica', 'add', 'replica1', `${labDir}/replica1`, String(r1));
    await lab(labDir, 'replica', 'add', 'replica2', `${labDir}/replica2`, String(r2));
    await lab(labDir, 'bench', 'init', '-s', '1');

    await t.test('select through two replica URLs: one line per second and transactions per server', async () => {
      const jsonOut = path.join(labDir, 'workload.json');
      const xactBefore = await readXactCommits([r1!, r2!]);
      const run = await runLab(labDir, ['workload', 'run', '--url', url(r1!), '--url', url(r2!), '--duration', '3s', '--concurrency', '4', '--transactions', String(CAP), '--json-out', jsonOut]);
      assert.equal(run.exitCode, 0, run.stderr);
      const lines = run.stdout.split('\n');
      assert.equal(lines[0], SAMPLE_HEADER);
      const rows = lines.filter((line) => /^\s+\d+\.\ds\s+0\s+\d+\.\d\s+\d+\.\d(\s+\d+\.\d){4}$/.test(line));
      assert.ok(rows.length >= 3, `expected 3 per-second rows:\n${run.stdout}`);
      assert.match(run.stdout, new RegExp(`transactions per server port: (${r1} \\(replica1\\)|${r2} \\(replica2\\)): \\d+, (${r1} \\(replica1\\)|${r2} \\(replica2\\)): \\d+`));

      const result = JSON.parse(await readFile(jsonOut, 'utf8')) as WorkloadResult;
      const whole = result.samples.filter((s) => s.interval_ms >= 900);
      assert.ok(whole.length >= 3, `samples: ${JSON.stringify(result.samples.map((s) => s.interval_ms))}`);
      for (const sample of whole) {
        assert.ok(sample.ops > 0);
        assert.ok(sample.by_port[String(r1)]! > 0 && sample.by_port[String(r2)]! > 0, `both replicas serve every second: ${JSON.stringify(sample.by_port)}`);
        assert.ok(sample.p50_ms > 0 && sample.p50_ms <= sample.p95_ms && sample.p95_ms <= sample.p99_ms && sample.p99_ms <= sample.max_ms);
      }
      assert.equal(result.summary.ops, result.samples.reduce((sum, s) => sum + s.ops, 0));
      assert.equal(result.summary.by_port[String(m)], undefined, 'the master took none of the read load');
      assert.equal(result.summary.errors, 0);
      assert.deepEqual(result.errors, []);
      assert.equal(result.summary.stopped_by, 'duration');
      assert.equal(result.summary.scale, 1);

      // The servers' own counters agree (they flush when the workload's backends exit).
      const checks = await pollUntil(
        async () => {
          const after = await readXactCommits([r1!, r2!]);
          const checked = [r1!, r2!].map((port) =>
            crossCheck(`port ${port}`, result.summary.by_port[String(port)]!, after[String(port)]! - xactBefore[String(port)]!, (result.summary.connections_by_port[String(port)] ?? 0) + 20),
          );
          return checked.every((c) => c.agrees) ? checked : undefined;
        },
        { timeoutMs: 5000, what: 'pg_stat_database.xact_commit to cover the workload\'s transactions' },
      );
      assert.equal(checks.length, 2);
    });

    await t.test('--connect-per-tx opens a connection per transaction, like pgbench -C', async () => {
      const result = await runWorkload({ urls: [url(r1!)], concurrency: 2, durationMs: 1000, mode: 'select', maxTransactions: CAP, connectPerTx: true });
      assert.ok(result.summary.ops > 10);
      assert.ok(Math.abs(result.summary.connections - result.summary.ops) <= 2, `${result.summary.connections} connections for ${result.summary.ops} transactions`);
    });

    await t.test('the first URL is dead: workers fall over to the next one; without --tolerate-errors the first error stops the run', async () => {
      const tolerant = await runWorkload({ urls: [url(dead!), url(r1!)], concurrency: 2, durationMs: 1500, mode: 'select', maxTransactions: CAP, tolerateErrors: true });
      assert.ok(tolerant.summary.ops > 100);
      assert.deepEqual(Object.keys(tolerant.summary.by_port), [String(r1)]);
      assert.ok(tolerant.summary.failovers >= 1);
      assert.ok(tolerant.errors.length >= 1 && tolerant.errors.every((e) => e.phase === 'connect' && e.code === 'ECONNREFUSED' && e.url === url(dead!)));
      assert.ok(tolerant.summary.errors <= 2, `a worker that fell over stays on the good URL: ${tolerant.summary.errors} errors`);

      const strict = await runLab(labDir, ['workload', 'run', '--url', url(dead!), '--url', url(r1!), '--duration', '10s', '--concurrency', '2', '--transactions', String(CAP)]);
      assert.equal(strict.exitCode, 8, strict.stderr);
      assert.match(strict.stderr, /The workload stopped at its first error \(connect ECONNREFUSED .*\): pass --tolerate-errors/);
      assert.match(strict.stdout, /stopped by: error/);
    });

    await t.test('two balancers, one dies (seed 004): the workload goes on through the other', async () => {
      const lb = await startRelay(r1!);
      const lb2 = await startRelay(r2!);
      try {
        let killedAt = 0;
        const result = await runWorkload(
          { urls: [url(lb.port), url(lb2.port)], concurrency: 4, durationMs: 4000, mode: 'select', maxTransactions: CAP, tolerateErrors: true },
          {
            onSample: (sample) => {
              if (sample.second === 1) {
                killedAt = sample.elapsed_ms;
                void lb.close();
              }
            },
          },
        );
        assert.ok(killedAt > 0);
        assert.ok(result.summary.errors > 0, 'cut sessions are counted');
        assert.ok(result.errors.every((e) => e.at_ms >= killedAt));
        const late = result.samples.filter((s) => s.second >= 3);
        assert.ok(late.length >= 2);
        for (const sample of late) {
          assert.ok(sample.ops > 0, `reads never stop: ${JSON.stringify(result.samples.map((s) => s.ops))}`);
          assert.deepEqual(Object.keys(sample.by_url), [url(lb2.port)]);
        }
        assert.equal(result.summary.stopped_by, 'duration');

        // The report's view of it: phases with their errors, reads never stopped, one line per balancer.
        const phases = phasesFromWorkload(result, [{ name: 'lb and lb2 up', from_ms: 0 }, { name: 'lb down', from_ms: killedAt }]);
        assert.equal(phases[0]!.errors, 0);
        assert.ok(phases[1]!.errors > 0 && phases[1]!.transactions > 0);
        assert.ok(phases.every((p) => p.min_tps !== null && p.min_tps > 0), JSON.stringify(phases));
        const series = seriesByUrl(result.samples, { [url(lb.port)]: 'lb', [url(lb2.port)]: 'lb2' });
        assert.deepEqual(series.map((s) => s.node), ['lb', 'lb2']);
        assert.equal(series[0]!.points.at(-1)!.tps, 0, 'nothing goes through the dead lb at the end');
        const markdown = renderReportMarkdown({
          title: 'lb-ha', generated_at: '', started_at: null, duration_ms: result.summary.duration_ms, summary: [], events: [], series,
          errors: errorsFromWorkload(result.errors), figures: { detection_ms: null, readmission_ms: null, errors_after_detection: null },
          transactions: [], crosscheck: [], phases, notes: [],
        });
        assert.match(markdown, /Reads never stopped/);
        assert.match(markdown, /\| lb down \| \d+\.\ds \| \d+\.\ds \| \d+ \| \d+ \| \d+(\.\d)? \|/);
      } finally {
        await lb.close();
        await lb2.close();
      }
    });

    await t.test('tpcb on the master commits pgbench\'s transaction; on a standby the first error stops the run', async () => {
      const history = async () => Number((await queryRows<{ n: string }>({ port: m! }, 'SELECT count(*) AS n FROM pgbench_history'))[0]!.n);
      const before = await history();
      const result = await runWorkload({ urls: [url(m!)], concurrency: 2, durationMs: 1500, mode: 'tpcb', maxTransactions: CAP });
      assert.equal(result.summary.errors, 0);
      assert.ok(result.summary.ops > 20);
      assert.equal(await history(), before + result.summary.ops, 'every counted transaction inserted its history row');

      const onStandby = await runWorkload({ urls: [url(r1!)], concurrency: 2, durationMs: 10_000, mode: 'tpcb', maxTransactions: CAP });
      assert.equal(onStandby.summary.stopped_by, 'error');
      assert.match(onStandby.errors[0]!.message, /read-only transaction/);
      assert.ok(onStandby.summary.duration_ms < 5000);
    });

    await t.test('a transaction count bounds the run too', async () => {
      const result = await runWorkload({ urls: [url(r1!)], concurrency: 3, durationMs: 30_000, mode: 'select', maxTransactions: 500 });
      assert.equal(result.summary.stopped_by, 'transactions');
      assert.ok(result.summary.ops >= 500 && result.summary.ops < 500 + 3, `${result.summary.ops} transactions`);
    });

    await t.test('a max rate paces the workers', async () => {
      const result = await runWorkload({ urls: [url(r1!)], concurrency: 4, durationMs: 2000, mode: 'select', maxTransactions: CAP, maxRate: 100 });
      assert.ok(result.summary.ops >= 170 && result.summary.ops <= 210, `${result.summary.ops} transactions in 2 s at 100/s`);
      for (const sample of result.samples.filter((s) => s.interval_ms >= 900)) assert.ok(sample.ops >= 85 && sample.ops <= 110, `${sample.ops} in one second`);
    });

    await t.test('an AbortSignal stops the run early with what was measured', async () => {
      const controller = new AbortController();
      const result = await runWorkload(
        { urls: [url(r1!)], concurrency: 2, durationMs: 30_000, mode: 'select', maxTransactions: CAP },
        { signal: controller.signal, onSample: () => controller.abort() },
      );
      assert.equal(result.summary.stopped_by, 'signal');
      assert.ok(result.summary.duration_ms < 5000);
      assert.ok(result.samples.length >= 1 && result.summary.ops > 0);
    });

    await t.test('Ctrl-C stops `lab workload run` with its summary', async () => {
      const child = execa('node', [labBin, '--lab-dir', labDir, 'workload', 'run', '--url', url(r1!), '--duration', '30s', '--concurrency', '2', '--transactions', String(CAP)], { reject: false });
      let out = '';
      child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
      try {
        await pollUntil(async () => (/^\s+1\.0s /m.test(out) ? true : undefined), { timeoutMs: 10_000, what: 'the first per-second line' });
        child.kill('SIGINT');
        const result = await child;
        assert.equal(result.exitCode, 0, String(result.stderr));
        assert.match(String(result.stdout), /stopped by: signal/);
        assert.ok(!/^\s+5\.0s /m.test(String(result.stdout)), 'it stopped at once');
      } finally {
        child.kill('SIGKILL');
        await child;
      }
    });

    await t.test('kill -9 of a replica mid-run with --tolerate-errors: errors are counted and the workload goes on', async () => {
      let kill: Promise<number> | undefined;
      let killStartedEpoch = 0;
      const result = await runWorkload(
        { urls: [url(r1!), url(r2!)], concurrency: 4, durationMs: 6000, mode: 'select', maxTransactions: CAP, tolerateErrors: true },
        {
          onSample: (sample) => {
            if (sample.second !== 2) return;
            killStartedEpoch = Date.now();
            kill = lab(labDir, 'node', 'kill', 'replica2').then(() => Date.now());
          },
        },
      );
      assert.ok(kill, 'the kill was started');
      const killedAtMs = (await kill) - result.summary.started_epoch_ms;
      const killStartedAtMs = killStartedEpoch - result.summary.started_epoch_ms;
      assert.ok(killedAtMs < 5000, `the kill took too long to leave time after it (done at ${killedAtMs}ms)`);
      assert.ok(result.summary.errors > 0, 'the sessions on replica2 failed');
      assert.ok(result.errors.some((e) => e.port === r2 && e.phase === 'transaction'));
      assert.ok(result.errors.every((e) => e.at_ms >= killStartedAtMs), 'no error before the kill');
      assert.equal(result.summary.stopped_by, 'duration');
      const afterKill = result.samples.filter((s) => s.elapsed_ms - s.interval_ms >= killedAtMs + 100 && s.interval_ms >= 900);
      assert.ok(afterKill.length >= 1, `no whole second after the kill (done at ${killedAtMs}ms)`);
      for (const sample of afterKill) {
        assert.deepEqual(Object.keys(sample.by_port), [String(r1)], 'after the kill every transaction goes to replica1');
        assert.ok(sample.ops > 0, 'the workload goes on');
      }
      assert.ok(result.summary.by_port[String(r2)]! > 0, 'replica2 served before the kill');
    });
  });
});
