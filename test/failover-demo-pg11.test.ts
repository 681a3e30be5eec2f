// `lab demo primary-failover` on PostgreSQL 11 (recovery.conf, pg_ctl promote): there is no pg_rewind
// for 11 here, so the old master comes back rebuilt with pg_basebackup; the loss figures still agree
// with the servers' own count.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withTempLab } from './helpers/lab.js';
import { runPrimaryDrill } from './helpers/primary-drill.js';

test('demo primary-failover on PostgreSQL 11: promote, follow, the old master rebuilt; lost commits counted exactly', async () => {
  await withTempLab(async (labDir) => {
    const { figures, stdout } = await runPrimaryDrill(labDir, ['--partition', '300ms'], {
      global: ['--pg', '11'],
      step9: 'step 9: no pg_rewind for PostgreSQL 11 here',
    });
    console.log(`PostgreSQL 11 async: lost_commits ${figures.lost_commits} of ${figures.acknowledged_commits}, write downtime ${figures.write_downtime_ms} ms`);
    assert.match(stdout, /lab replica add master1 \(a new base backup from replica\d\)/);
    assert.match(stdout, /old master: rebuilt from a new base backup, pglab's own \(no pg_rewind for PostgreSQL 11 here/);
    assert.ok(figures.lost_commits > 0, 'commits acknowledged during the partition never reached a standby');
    assert.ok(figures.write_downtime_ms !== null && figures.write_downtime_ms < 10_000, `write downtime ${figures.write_downtime_ms}`);
  });
});
