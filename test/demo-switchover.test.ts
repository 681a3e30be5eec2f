// `lab demo switchover`: a planned switchover under acknowledged writes through a `--pool primary`
// balancer, then a crash of the new primary for contrast, on one clock; the report's figures checked
// against the servers' own counts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { runLab, withTempLab } from './helpers/lab.js';
import { assertRowsOnEveryNode } from './helpers/primary-drill.js';

test('demo switchover: no acknowledged commit lost by the switchover, its write downtime and the crash\'s both in the report', async () => {
  await withTempLab(async (labDir) => {
    const reportDir = path.join(path.dirname(labDir), 'report');
    const result = await runLab(labDir, ['demo', 'switchover', '--duration', '20s', '--switchover-at', '3s', '--kill-at', '9s', '--keep', '--report', reportDir]);
    assert.equal(result.exitCode, 0, `${result.stderr}\n${result.stdout}`);
    for (const step of ['step 6: lab switchover replica1', 'replica1 promoted: primary on timeline 2', 'master1 streams from replica1 with no rewind', 'step 7: kill -9 replica1', 'step 8: lab promote', 'step 10: lab node rewind replica1']) {
      assert.ok(result.stdout.includes(step), `narration has "${step}"`);
    }
    const report = JSON.parse(await readFile(path.join(reportDir, 'report.json'), 'utf8'));
    const f = report.figures;
    console.log(`# switchover: write downtime ${f.switchover_write_downtime_ms} ms, no primary ${f.switchover_no_primary_ms} ms, lost ${f.switchover_lost_commits}, read errors ${f.switchover_read_errors}; crash: write downtime ${f.write_downtime_ms} ms, lost ${f.lost_commits}`);
    assert.equal(f.switchover_lost_commits, 0, 'a switchover loses no acknowledged commit');
    assert.equal(f.switchover_rewind, 'none');
    assert.ok(typeof f.switchover_write_downtime_ms === 'number' && f.switchover_write_downtime_ms > 0, JSON.stringify(f));
    assert.ok(typeof f.write_downtime_ms === 'number', 'the crash\'s write downtime is measured too');
    assert.ok(report.crosscheck.every((c: { agrees: boolean }) => c.agrees), JSON.stringify(report.crosscheck));
    assert.match(report.summary[0], /^switchover master1 -> replica1: write downtime \d+ ms/);
    const md = await readFile(path.join(reportDir, 'report.md'), 'utf8');
    assert.match(md, /^# pglab switchover demo \(async\)/);

    await assertRowsOnEveryNode(labDir, f);
  });
});
