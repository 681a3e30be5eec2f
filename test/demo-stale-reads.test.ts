// `lab demo stale-reads` in its short form, judged by its report: with --max-lag no read beyond the
// rule's bound in any phase (replica2 delayed, paused, its replay paused, and after each heal); the
// delay phase shows replica2's answers about the delay late; without a bound, and through HAProxy, the
// lag phase shows reads older than the bound (else the drill would measure nothing); the report files;
// nothing left running (withTempLab) and, as root, no namespace, link or relay of the drill's lab.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { LabError } from '../src/common/errors.js';
import { runLab, withTempLab } from './helpers/lab.js';
import { isRoot, leftovers, relayProcesses } from './helpers/hosts.js';
import { judgeRead, latestAt, type Stamp } from '../src/drills/stamp-load.js';
import { faultsHere, judgeAgainstRule, phasePlan } from '../src/drills/stale-reads-drill.js';


test('staleness of a read and the rule, from the writer\'s records; the phases a machine can run', () => {
  // Stamps every 10 ms, 1000 bytes of WAL each.
  const stamps: Stamp[] = Array.from({ length: 501 }, (_, i) => ({ counter: i, ackedAt: 10_000 + i * 10, lsn: 5_000_000 + i * 1000 }));
  assert.equal(latestAt(stamps, 10_055).counter, 5);
  assert.equal(latestAt(stamps, 0).counter, 0);
  const fresh = judgeRead(stamps, { at: 15_001, took_ms: 1, connect_ms: 5, port: 1, counter: 500, latest: 500 });
  assert.deepEqual([fresh.ms_behind, fresh.bytes_behind, fresh.ms_old_on_arrival], [0, 0, 0]);
  // Read sent at 15,001 (latest 500), saw 300: stamp 301 was acknowledged at 13,010.
  const old = judgeRead(stamps, { at: 15_001, took_ms: 1, connect_ms: 5, port: 1, counter: 300, latest: 500 });
  assert.deepEqual([old.ms_behind, old.bytes_behind], [1991, 200_000]);
  // Answered 300 ms later (a delayed link): as fresh when sent, 300 ms older when it arrived.
  const late = judgeRead(stamps, { at: 14_000, took_ms: 300, connect_ms: 1800, port: 1, counter: 400, latest: 400 });
  assert.deepEqual([late.ms_behind, late.ms_old_on_arrival], [0, 290]);
  const rule = { maxLagBytes: 100_000, maxLagSeconds: null, interMs: 1000, checkTimeoutMs: 400, windowMs: 1800 };
  // Allowed: 100,000 + the WAL of the 1,800 ms before the read (180 stamps) + one stamp = 281,000.
  assert.deepEqual([judgeAgainstRule(stamps, old, rule).beyond_bound, judgeAgainstRule(stamps, old, rule).beyond_rule], [true, false]);
  const older = judgeRead(stamps, { at: 15_001, took_ms: 1, connect_ms: 5, port: 1, counter: 200, latest: 500 });
  assert.equal(judgeAgainstRule(stamps, older, rule).beyond_rule, true);
  const seconds = { ...rule, maxLagBytes: null, maxLagSeconds: 1 };
  assert.equal(judgeAgainstRule(stamps, old, seconds).beyond_rule, false); // 1991 <= 1000 + 1800
  assert.equal(judgeAgainstRule(stamps, older, seconds).beyond_rule, true); // 2991 > 2800
  assert.deepEqual(phasePlan(['delay', 'pause', 'lag'], 'replica2', 4000, 300).map((p) => [p.fault, p.ms]), [[null, 2000], ['delay', 4000], [null, 2000], ['pause', 4000], [null, 2000], ['lag', 4000], [null, 2000]]);
  assert.equal(phasePlan(['delay'], 'replica2', 4000, 300)[1]!.name, 'replica2 delayed (300 ms)');
  assert.equal(phasePlan(['pause'], 'replica2', 4000, 300, 'docker')[1]!.name, 'replica2 paused (docker pause)');
  // Where no lab with --hosts can be made: the default list goes without the delay (one line says why), a named delay is refused.
  const noHosts = new LabError('ENVIRONMENT', '--hosts needs root');
  assert.deepEqual(faultsHere(['delay', 'pause', 'lag'], false, null), { faults: ['delay', 'pause', 'lag'], skipped: null });
  const skipped = faultsHere(['delay', 'pause', 'lag'], false, noHosts);
  assert.deepEqual(skipped.faults, ['pause', 'lag']);
  assert.match(skipped.skipped!, /^delay phase skipped \(pause and lag run\): .*--hosts needs root$/);
  assert.throws(() => faultsHere(['pause', 'delay'], true, noHosts), (e: LabError) => e.code === 'ENVIRONMENT' && /--faults delay needs the drill's lab made with --hosts/.test(e.message));
  assert.deepEqual(faultsHere(['pause', 'lag'], true, noHosts), { faults: ['pause', 'lag'], skipped: null });
});

test('lab demo stale-reads refuses a delay phase in one line where its lab cannot be made with --hosts', async () => {
  await withTempLab(async (labDir) => {
    // (The docker runtime makes labs with --hosts too now: nothing to refuse there.)
    if (!isRoot) console.log('# skipped: the not-root refusal needs root to switch to the nobody user');
    if (isRoot) {
      // Not root (the nobody user): --hosts needs root.
      const nobody = await runLab(labDir, ['demo', 'stale-reads', '--faults', 'delay'], { timeout: 30_000, uid: 65534, gid: 65534 });
      assert.equal(nobody.exitCode, 9, nobody.stderr);
      assert.match(nobody.stderr, /--faults delay needs .*--hosts needs root.*leave delay out of --faults/);
      assert.equal(nobody.stderr.trim().split('\n').length, 1, nobody.stderr);
    }
  });
});

test('lab demo stale-reads (short): --max-lag keeps reads within the rule in every phase (delay, pause, lag and after each); the delay shows as late answers; without a bound and through HAProxy the lag phase reads stale', async () => {
  await withTempLab(async (labDir) => {
    const reportDir = path.join(path.dirname(labDir), 'report');
    const result = await runLab(labDir, ['demo', 'stale-reads', '--phase', '5s', '--report', reportDir]);
    assert.equal(result.exitCode, 0, `${result.stderr}\n${result.stdout}`);
    const report = JSON.parse(await readFile(path.join(reportDir, 'report.json'), 'utf8'));
    const f = report.figures;
    const summary = report.summary.join('\n');
    // As root (with ip and iptables) the lab is made with --hosts and the delay phase runs; else one line says it is skipped.
    const withDelay = isRoot;
    assert.equal(f.faults, withDelay ? 'delay,pause,lag' : 'pause,lag', summary);
    if (!withDelay) assert.match(result.stdout, /delay phase skipped \(pause and lag run\): /);
    assert.equal(f.writer_errors, 0, summary);
    for (const run of ['bounded', 'unbounded', 'haproxy']) assert.ok(f[`${run}_reads`] > 50, `${run} read: ${summary}`);
    // The goal: with --max-lag 1MB no read beyond the bound plus what one check interval adds, while the
    // replica's links are delayed (and its replication restarts through the delay), while it is paused,
    // right after the pause heals (the check measures the lag against the primary's
    // pg_current_wal_lsn(), so a resumed replica that has not fetched what it missed stays out), while its
    // replay is paused and after that heals.
    const phases = [...(withDelay ? ['delay', 'after_delay'] : []), 'baseline', 'pause', 'after_pause', 'lag', 'after_lag'];
    for (const phase of phases) {
      assert.equal(f[`bounded_${phase}_beyond_rule`], 0, `${phase}: ${summary}\n${JSON.stringify(report.details.reads_beyond_rule?.slice(0, 3))}`);
    }
    assert.equal(f.bounded_beyond_rule, 0, summary);
    assert.equal(f.goal_no_read_beyond_rule, true, summary);
    // A SELECT already on replica2 when it froze waits for the reader's query timeout: at most one per reader.
    assert.ok(f.bounded_pause_errors + f.bounded_after_pause_errors <= 4, summary);
    if (withDelay) {
      // The delay: replica2's answers come about 300 ms late (HAProxy, whose check every 10 s keeps it
      // UP, sends it half the reads); the built-in runs, when they read from it a few times, saw the same
      // (their check may drain it while its replication restarts through the relay); before, they took ms.
      assert.ok(f.haproxy_delay_on_node > 0, summary);
      for (const run of ['bounded', 'unbounded', 'haproxy']) {
        const took = f[`${run}_delay_node_median_took_ms`];
        if (run === 'haproxy' || f[`${run}_delay_on_node`] >= 3) assert.ok(took >= 240 && took < 1000, `${run}: replica2 answered in ${took} ms (median) while delayed 300 ms: ${summary}`);
        assert.ok(f[`${run}_baseline_node_median_took_ms`] < 150, `${run}: baseline ${f[`${run}_baseline_node_median_took_ms`]} ms`);
      }
      // A new connection through the delay takes several of its round trips (TLS, SCRAM): seconds.
      assert.ok(f.haproxy_delay_node_median_connect_ms >= 900, summary);
      // The heal stops the relay: the sessions through it are cut (at most one per reader).
      assert.ok(f.bounded_delay_errors + f.bounded_after_delay_errors <= 4, summary);
    }
    // Without the bound the lagging replica keeps serving: reads older than the bound, and older than the rule.
    assert.ok(f.unbounded_lag_beyond_bound > 0, summary);
    assert.ok(f.unbounded_beyond_rule > 0, summary);
    assert.ok(f.haproxy_lag_beyond_bound > 0, summary);
    assert.ok(f.unbounded_worst_ms_behind > f.bounded_worst_ms_behind, summary);
    const kinds = report.events.map((e: { kind: string }) => e.kind);
    const faults = withDelay ? ['delay', 'pause', 'lag'] : ['pause', 'lag'];
    for (const kind of [...['bounded', 'unbounded', 'haproxy'].flatMap((run) => faults.map((fault) => `${run}-${fault}`)), 'stop']) assert.ok(kinds.includes(kind), `event ${kind}`);
    const markdown = await readFile(path.join(reportDir, 'report.md'), 'utf8');
    assert.match(markdown, /## The runs side by side, per phase/);
    assert.match(markdown, /\| replica2 replay paused \(lag\) \| haproxy \|/);
    if (withDelay) assert.match(markdown, /\| replica2 delayed \(300 ms\) \| bounded \|/);
    const svg = await readFile(path.join(reportDir, 'timeline.svg'), 'utf8');
    assert.match(svg, /^<svg /);
    assert.ok(svg.includes('bounded (worst ms behind)'));
    await stat(path.join(reportDir, 'report.md'));
    assert.match(result.stdout, /cleaning up/);
    if (withDelay) {
      // The drill's lab is gone with its network: no namespace, veth, bridge or relay of its index.
      const index = /in pglab-(\d+)-replica2/.exec(result.stdout)?.[1];
      assert.ok(index, 'the heal names the namespace');
      assert.deepEqual([...(await leftovers(Number(index))), ...(await relayProcesses(Number(index)))], [], 'nothing of the drill\'s lab left');
    }
  });
});
