// Short versions of both demos, as a user runs them, judged by their reports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { labBin, processesMentioning, runLab, withTempLab } from './helpers/lab.js';

test('lab demo failover (short): detection within 1 s, re-admission within 2 s, no client error after detection', async () => {
  await withTempLab(async (labDir) => {
    const reportDir = path.join(path.dirname(labDir), 'report');
    const result = await runLab(labDir, ['demo', 'failover', '--replicas', '2', '--scale', '1', '--duration', '30s', '--kill-at', '5s', '--recover-at', '8s', '--report', reportDir]);
    assert.equal(result.exitCode, 0, `${result.stderr}\n${result.stdout}`);
    for (const step of ['step 1:', 'step 2:', 'step 3:', 'step 4:', 'step 5:', 'step 6: kill -9 replica2', 'step 7:', 'step 8: lab replica add replica2', 'step 9:']) {
      assert.ok(result.stdout.includes(step), `narration has "${step}"`);
    }
    assert.match(result.stdout, /\*{6} .* \*{6}\n +port +\| +datname +\| numbackends \| xact_commit \| xact_rollback/, 'shows the xact table like the seed');
    const report = JSON.parse(await readFile(path.join(reportDir, 'report.json'), 'utf8'));
    const f = report.figures;
    assert.ok(f.detection_ms !== null && f.detection_ms < 1000, `detection_ms ${f.detection_ms}`);
    assert.ok(f.readmission_ms !== null && f.readmission_ms < 2000, `readmission_ms ${f.readmission_ms}`);
    assert.equal(f.errors_after_detection, 0, JSON.stringify(report.errors));
    assert.equal(f.master_transactions, 0, 'the master took none of the read load');
    assert.equal(f.serving_at_end, 'replica1, replica2');
    assert.deepEqual(report.events.map((e: { kind: string }) => e.kind), ['kill', 'detection', 're-add-start', 're-add', 'readmission', 'stop']);
    const crosscheck = Object.fromEntries(report.crosscheck.map((c: { node: string; agrees: boolean }) => [c.node, c.agrees]));
    assert.equal(crosscheck.replica1, true, JSON.stringify(report.crosscheck));
    assert.equal(crosscheck.master1, true, JSON.stringify(report.crosscheck));
    const markdown = await readFile(path.join(reportDir, 'report.md'), 'utf8');
    assert.match(markdown, /!\[.*\]\(timeline\.svg\)/);
    const svg = await readFile(path.join(reportDir, 'timeline.svg'), 'utf8');
    assert.match(svg, /^<svg /);
    for (const label of ['replica1', 'replica2', 'kill -9 replica2']) assert.ok(svg.includes(label), `timeline shows ${label}`);
  });
});

test('lab demo lb-ha (short): reads never stop while each balancer is killed and restarted', async () => {
  await withTempLab(async (labDir) => {
    const reportDir = path.join(path.dirname(labDir), 'report');
    const result = await runLab(labDir, ['demo', 'lb-ha', '--duration', '16s', '--report', reportDir]);
    assert.equal(result.exitCode, 0, `${result.stderr}\n${result.stdout}`);
    const report = JSON.parse(await readFile(path.join(reportDir, 'report.json'), 'utf8'));
    assert.equal(report.figures.reads_never_stopped, true, report.summary.join('\n'));
    assert.equal(report.figures.seconds_without_reads, 0);
    assert.deepEqual(report.events.map((e: { kind: string }) => e.kind), ['lb-kill', 'lb-restart', 'lb2-kill', 'lb2-restart', 'stop']);
    assert.ok(report.figures.failovers_between_balancers > 0, 'clients moved to the other balancer');
    await stat(path.join(reportDir, 'timeline.svg'));
  });
});

test('Ctrl-C stops the demo cleanly: exit 130 and nothing left running', async () => {
  await withTempLab(async (labDir) => {
    const child = execa('node', [labBin, '--lab-dir', labDir, 'demo', 'failover', '--replicas', '2', '--scale', '1', '--duration', '60s', '--kill-at', '30s', '--recover-at', '40s'], { reject: false });
    await new Promise<void>((resolve) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('step 5:')) resolve();
      });
      void child.then(() => resolve());
    });
    child.kill('SIGINT');
    const result = await child;
    assert.equal(result.exitCode, 130, String(result.stderr));
    assert.match(String(result.stdout), /cleaning up/);
    assert.deepEqual(await processesMentioning(labDir), []);
  });
});
