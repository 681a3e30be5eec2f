// A short failover drill on a real lab, without the balancer (another branch builds it): the workload
// goes through a round-robin TCP relay standing in for it, replica2 is killed and re-added, and the
// report written from what was measured must tell that story; its timeline is rendered to PNG.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { copyFile, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { freePorts, lab, tempDir, withTempLab } from './helpers/lab.js';
import { runWorkload } from '../src/workload/run-workload.js';
import { atMs, nodeNamesByPort, reportFromWorkload } from '../src/report/from-workload.js';
import { writeReport } from '../src/report/write-report.js';
import { requireState } from '../src/lab/state.js';
import type { ReportEvent } from '../src/report/types.js';

/** Round robin over `ports`; a refused connect tries the next one (HAProxy's retries + redispatch). */
async function startRoundRobinRelay(ports: number[]): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let next = 0;
  const server = net.createServer((client) => {
    sockets.add(client);
    client.setNoDelay(true);
    client.pause();
    client.on('error', () => undefined);
    client.on('close', () => sockets.delete(client));
    const first = next++;
    const attempt = (tries: number) => {
      const target = ports[(first + tries) % ports.length]!;
      const upstream = net.connect(target, '127.0.0.1');
      sockets.add(upstream);
      let connected = false;
      upstream.once('connect', () => {
        connected = true;
        upstream.setNoDelay(true);
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
        client.on('close', () => upstream.destroy());
      });
      upstream.on('error', () => undefined);
      upstream.on('close', () => {
        sockets.delete(upstream);
        if (connected) client.destroy();
        else if (tries + 1 < ports.length && !client.destroyed) attempt(tries + 1);
        else client.destroy();
      });
    };
    attempt(0);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await done;
    },
  };
}

test('report of a real drill: kill -9 and re-add of replica2 under load, rendered to PNG', { timeout: 120_000 }, async () => {
  await withTempLab(async (labDir) => {
    const [m, r1, r2] = await freePorts(3);
    await lab(labDir, 'master', 'start', '--port', String(m));
    await lab(labDir, 'replica', 'add', 'replica1', `${labDir}/replica1`, String(r1));
    await lab(labDir, 'replica', 'add', 'replica2', `${labDir}/replica2`, String(r2));
    await lab(labDir, 'bench', 'init', '-s', '1');
    const relay = await startRoundRobinRelay([r1!, r2!]);
    const reportDir = await tempDir('pglab-report-');
    const profile = await tempDir('pglab-chromium-');
    try {
      const epochs: { kind: string; label: string; epoch: number }[] = [];
      let drill: Promise<void> | undefined;
      let lastSecond = 0;
      let readdSecond = Infinity;
      // The load runs until three whole seconds after the re-add (however long the re-add takes here), at most 45 s.
      const stop = new AbortController();
      const workload = await runWorkload(
        { urls: [`postgresql://postgres@127.0.0.1:${relay.port}/postgres`], concurrency: 4, maxRate: 100, durationMs: 45_000, maxTransactions: 1_000_000, mode: 'select', connectPerTx: true, tolerateErrors: true },
        {
          signal: stop.signal,
          onSample: (sample) => {
            lastSecond = sample.second;
            if (sample.second >= readdSecond + 3) stop.abort();
            if (sample.second !== 2) return;
            drill = (async () => {
              // The SIGKILL happens at the end of `lab node kill` (after its Node start-up): stamp it on return.
              await lab(labDir, 'node', 'kill', 'replica2');
              epochs.push({ kind: 'kill', label: 'kill -9 replica2', epoch: Date.now() });
              await lab(labDir, 'replica', 'add', 'replica2', `${labDir}/replica2`, String(r2));
              epochs.push({ kind: 're-add', label: 'replica add replica2 done', epoch: Date.now() });
              readdSecond = lastSecond + 1;
            })();
            drill.catch(() => stop.abort());
          },
        },
      );
      assert.ok(drill, 'the drill started');
      await drill;
      const events: ReportEvent[] = epochs.map((e) => ({ at_ms: atMs(e.epoch, workload), kind: e.kind, label: e.label }));
      const readd = events.find((e) => e.kind === 're-add')!;
      assert.equal(workload.summary.stopped_by, 'signal', `the re-add did not finish within the load's 45 s (events: ${JSON.stringify(events)})`);
      // Re-admission as the clients saw it: the first sample after the re-add in which replica2 served.
      const back = workload.samples.find((s) => s.elapsed_ms > readd.at_ms && (s.by_port[String(r2)] ?? 0) > 0);
      assert.ok(back, `replica2 served again after its re-add: ${JSON.stringify(workload.samples.map((s) => s.by_port))}`);
      events.push({ at_ms: Math.max(readd.at_ms, back.elapsed_ms - back.interval_ms), kind: 'readmission', label: 'replica2 serves again' });

      const state = await requireState(labDir);
      const report = reportFromWorkload({
        title: 'pglab drill: kill -9 and re-add of replica2 (stand-in relay)',
        workload,
        names: nodeNamesByPort(state.nodes),
        primary: 'master1',
        events,
        summary: [`${workload.summary.ops} transactions, ${workload.summary.errors} client errors`],
      });
      assert.equal(report.figures.master_transactions, 0, 'the master took none of the read load');
      assert.equal(report.figures.serving_at_end, 'replica1, replica2');
      assert.ok(typeof report.figures.readmission_ms === 'number' && report.figures.readmission_ms >= 0);
      const kill = events.find((e) => e.kind === 'kill')!;
      assert.ok(workload.errors.every((e) => e.at_ms >= kill.at_ms - 1000), 'no client error long before the kill');
      const replica2 = report.transactions.find((t) => t.node === 'replica2')!;
      assert.ok(replica2.before > 0 && replica2.after > 0, JSON.stringify(report.transactions));
      assert.ok(report.transactions.find((t) => t.node === 'replica1')!.during > 0, 'replica1 carried the load meanwhile');

      const files = await writeReport(reportDir, report);
      assert.match(await readFile(files.markdown, 'utf8'), /\| kill \| kill -9 replica2 \|/);
      const browser = await chromium.launchPersistentContext(profile, {
        executablePath: '/usr/bin/chromium',
        headless: true,
        viewport: { width: 1000, height: 600 },
        args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      });
      try {
        const page = await browser.newPage();
        await page.goto(`file://${files.svg}`);
        const png = await page.locator('svg').screenshot({ path: path.join(reportDir, 'timeline.png') });
        assert.ok(png.length > 20_000, `PNG of ${png.length} bytes`);
        if (process.env.PGLAB_DRILL_PNG) await copyFile(path.join(reportDir, 'timeline.png'), process.env.PGLAB_DRILL_PNG);
      } finally {
        await browser.close();
      }
    } finally {
      await relay.close();
      await rm(reportDir, { recursive: true, force: true });
      await rm(profile, { recursive: true, force: true });
    }
  });
});
