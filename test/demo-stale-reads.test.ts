// `lab demo stale-reads` in its short form, judged by its report: with --max-lag no read beyond the
// rule's bound in any phase, right after a pause heals included; without a bound, and through HAProxy, the lag phase shows reads older than the bound
// (else the drill would measure nothing); the report files; nothing left running (withTempLab).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { runLab, withTempLab } from './helpers/lab.js';
import { judgeRead, latestAt, type Stamp } from '../src/demo/stamp-load.js';
import { judgeAgainstRule, phasePlan } from '../src/demo/stale-reads-drill.js';

test('staleness of a read and the rule, from the writer\'s records', () => {
  // Stamps every 10 ms, 1000 bytes of WAL each.
  const stamps: Stamp[] = Array.from({ length: 501 }, (_, i) => ({ counter: i, ackedAt: 10_000 + i * 10, lsn: 5_000_000 + i * 1000 }));
  assert.equal(latestAt(stamps, 10_055).counter, 5);
  assert.equal(latestAt(stamps, 0).counter, 0);
  const fresh = judgeRead(stamps, { at: 15_001, took_ms: 1, port: 1, counter: 500, latest: 500 });
  assert.deepEqual([fresh.ms_behind, fresh.bytes_behind], [0, 0]);
  // Read sent at 15,001 (latest 500), saw 300: stamp 301 was acknowledged at 13,010.
  const old = judgeRead(stamps, { at: 15_001, took_ms: 1, port: 1, counter: 300, latest: 500 });
  assert.deepEqual([old.ms_behind, old.bytes_behind], [1991, 200_000]);
  const rule = { maxLagBytes: 100_000, maxLagSeconds: null, interMs: 1000, checkTimeoutMs: 400, windowMs: 1800 };
  // Allowed: 100,000 + the WAL of the 1,800 ms before the read (180 stamps) + one stamp = 281,000.
  assert.deepEqual([judgeAgainstRule(stamps, old, rule).beyond_bound, judgeAgainstRule(stamps, old, rule).beyond_rule], [true, false]);
  const older = judgeRead(stamps, { at: 15_001, took_ms: 1, port: 1, counter: 200, latest: 500 });
  assert.equal(judgeAgainstRule(stamps, older, rule).beyond_rule, true);
  const seconds = { ...rule, maxLagBytes: null, maxLagSeconds: 1 };
  assert.equal(judgeAgainstRule(stamps, old, seconds).beyond_rule, false); // 1991 <= 1000 + 1800
  assert.equal(judgeAgainstRule(stamps, older, seconds).beyond_rule, true); // 2991 > 2800
  assert.deepEqual(phasePlan(['pause', 'lag'], 'replica2', 4000).map((p) => [p.fault, p.ms]), [[null, 2000], ['pause', 4000], [null, 2000], ['lag', 4000], [null, 2000]]);
});

test('lab demo stale-reads refuses a delay phase in one line (it needs a lab with --hosts)', async () => {
  await withTempLab(async (labDir) => {
    const result = await runLab(labDir, ['demo', 'stale-reads', '--faults', 'pause,delay']);
    assert.equal(result.exitCode, 2, result.stderr);
    assert.match(result.stderr, /delay needs a lab made with --hosts/);
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
  });
});

test('lab demo stale-reads (short): --max-lag keeps reads within the rule in every phase, right after a pause heals too; without a bound and through HAProxy the lag phase reads stale', async () => {
  await withTempLab(async (labDir) => {
    const reportDir = path.join(path.dirname(labDir), 'report');
    const result = await runLab(labDir, ['demo', 'stale-reads', '--phase', '5s', '--report', reportDir]);
    assert.equal(result.exitCode, 0, `${result.stderr}\n${result.stdout}`);
    const report = JSON.parse(await readFile(path.join(reportDir, 'report.json'), 'utf8'));
    const f = report.figures;
    const summary = report.summary.join('\n');
    assert.equal(f.writer_errors, 0, summary);
    for (const run of ['bounded', 'unbounded', 'haproxy']) assert.ok(f[`${run}_reads`] > 50, `${run} read: ${summary}`);
    // The goal: with --max-lag 1MB no read beyond the bound plus what one check interval adds, while the
    // replica is paused, right after the pause heals (the check measures the lag against the primary's
    // pg_current_wal_lsn(), so a resumed replica that has not fetched what it missed stays out), while its
    // replay is paused and after that heals.
    for (const phase of ['baseline', 'pause', 'after_pause', 'lag', 'after_lag']) {
      assert.equal(f[`bounded_${phase}_beyond_rule`], 0, `${phase}: ${summary}\n${JSON.stringify(report.details.reads_beyond_rule?.slice(0, 3))}`);
    }
    assert.equal(f.bounded_beyond_rule, 0, summary);
    assert.equal(f.goal_no_read_beyond_rule, true, summary);
    // A SELECT already on replica2 when it froze waits for the reader's query timeout: at most one per reader.
    assert.ok(f.bounded_read_errors <= 4, summary);
    // Without the bound the lagging replica keeps serving: reads older than the bound, and older than the rule.
    assert.ok(f.unbounded_lag_beyond_bound > 0, summary);
    assert.ok(f.unbounded_beyond_rule > 0, summary);
    assert.ok(f.haproxy_lag_beyond_bound > 0, summary);
    assert.ok(f.unbounded_worst_ms_behind > f.bounded_worst_ms_behind, summary);
    const kinds = report.events.map((e: { kind: string }) => e.kind);
    for (const kind of ['bounded-pause', 'bounded-lag', 'unbounded-pause', 'unbounded-lag', 'haproxy-pause', 'haproxy-lag', 'stop']) assert.ok(kinds.includes(kind), `event ${kind}`);
    const markdown = await readFile(path.join(reportDir, 'report.md'), 'utf8');
    assert.match(markdown, /## The runs side by side, per phase/);
    assert.match(markdown, /\| replica2 replay paused \(lag\) \| haproxy \|/);
    const svg = await readFile(path.join(reportDir, 'timeline.svg'), 'utf8');
    assert.match(svg, /^<svg /);
    assert.ok(svg.includes('bounded (worst ms behind)'));
    await stat(path.join(reportDir, 'report.md'));
    assert.match(result.stdout, /cleaning up/);
  });
});
