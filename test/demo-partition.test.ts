// `lab demo partition` in its short form (issue 17), judged by its report: with the built-in balancer a
// partitioned replica is DOWN within 1.5 s, no new client is sent there after DOWN, no reader waits
// longer than that plus one check timeout, it is UP within 2 s of the heal; the primary's partition
// is measured; the HAProxy run (seed settings) is beside it; the report files; nothing left: no
// namespace of the lab, no process (withTempLab).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { runLab, withTempLab } from './helpers/lab.js';
import { parseEngines, replicaFigures, type ReadRequest } from '../src/drills/partition-drill.js';

test('partition figures from the readers\' requests', () => {
  const req = (r: Partial<ReadRequest>): ReadRequest => ({ reader: 1, session: 1, kind: 'query', start: 0, end: 10, port: 2, error: null, ...r });
  const requests = [
    req({ reader: 1, start: 990, end: 1000, port: 2 }),
    req({ reader: 1, start: 1010, end: 1800, port: 2, error: 'Connection terminated unexpectedly' }),
    req({ reader: 1, session: 2, kind: 'connect', start: 1820, end: 1830, port: 1 }),
    req({ reader: 2, start: 1010, end: 1020, port: 1 }),
    req({ reader: 2, session: 2, kind: 'connect', start: 1500, end: 1510, port: 2 }),
    req({ reader: 3, kind: 'connect', start: 1200, end: 4200, port: 0, error: 'timeout' }),
  ];
  const f = replicaFigures(requests, 2, { partStart: 1000, downAt: 1400, healStart: 6000, upAt: 6500, end: 9000 });
  assert.equal(f.detection_ms, 400);
  assert.equal(f.readmission_ms, 500);
  assert.equal(f.sessions_on_replica, 1);
  assert.equal(f.sessions_closed_at_markdown, 1);
  assert.equal(f.new_clients_sent_after_down, 1);
  assert.equal(f.max_hang_ms, 3000);
  assert.equal(f.errors_saveable, 1);
  const never = replicaFigures(requests, 2, { partStart: 1000, downAt: null, healStart: 6000, upAt: 6500, end: 9000 });
  assert.deepEqual([never.detection_ms, never.readmission_ms, never.new_clients_sent_after_down], [null, null, null]);
  assert.deepEqual(parseEngines('both'), ['builtin', 'haproxy']);
  assert.throws(() => parseEngines('nginx'), /Invalid --engine/);
});

test('lab demo partition (short): replica DOWN within 1.5 s, no new client there, UP within 2 s; primary half measured; HAProxy beside it; nothing left', async () => {
  await withTempLab(async (labDir) => {
    const reportDir = path.join(path.dirname(labDir), 'report');
    const namespaces = async () => (await promisify(execFile)('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith('pglab-'));
    const before = await namespaces();
    const result = await runLab(labDir, ['demo', 'partition', '--phase', '5s', '--report', reportDir]);
    assert.equal(result.exitCode, 0, `${result.stderr}\n${result.stdout}`);
    const report = JSON.parse(await readFile(path.join(reportDir, 'report.json'), 'utf8'));
    const f = report.figures;
    const summary = report.summary.join('\n');
    assert.ok(f.builtin_reads > 50, summary);
    assert.ok(f.builtin_detection_ms !== null && f.builtin_detection_ms <= 1500, `DOWN within 1.5 s: ${summary}`);
    assert.equal(f.builtin_new_clients_sent_after_down, 0, summary);
    // No reader waits beyond DOWN + one check timeout (400 ms), with 300 ms for this shared machine's scheduling.
    assert.ok(f.builtin_max_hang_ms <= 1500 + 400 + 300, summary);
    assert.equal(f.builtin_errors_saveable, 0, summary);
    assert.ok(f.builtin_readmission_ms !== null && f.builtin_readmission_ms <= 2000, `UP within 2 s: ${summary}`);
    // The primary half: rw marks master1 DOWN, writes resume after the heal.
    assert.ok(f.builtin_rw_detection_ms !== null && f.builtin_rw_detection_ms <= 1500, summary);
    assert.ok(f.builtin_write_downtime_ms !== null, summary);
    assert.ok(f.builtin_rw_readmission_ms !== null, summary);
    // HAProxy with the seed's settings (inter 10 s, fall 3) does not mark it DOWN within a 5 s partition.
    assert.ok(f.haproxy_reads > 50, summary);
    assert.ok(f.builtin_acked_writes > 50 && f.haproxy_acked_writes > 50, summary);
    assert.equal(f.haproxy_detection_ms, null, summary);
    assert.ok(f.haproxy_max_hang_ms > f.builtin_max_hang_ms, summary);
    const markdown = await readFile(path.join(reportDir, 'report.md'), 'utf8');
    assert.match(markdown, /## The runs side by side/);
    const svg = await readFile(path.join(reportDir, 'timeline.svg'), 'utf8');
    assert.match(svg, /^<svg /);
    await stat(path.join(reportDir, 'report.md'));
    assert.match(result.stdout, /cleaning up/);
    const left = (await namespaces()).filter((n) => !before.includes(n));
    assert.deepEqual(left, [], 'no namespace of the drill\'s lab left');
  });
});
