// `lab demo primary-failover` with asynchronous replicas: the master loses its standbys' network for
// 300 ms and dies; the commits it acknowledged meanwhile are missing on the new primary.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withTempLab } from './helpers/lab.js';
import { runPrimaryDrill } from './helpers/primary-drill.js';

test('demo primary-failover (async): acknowledged commits are lost, and the report counts them exactly', async () => {
  await withTempLab(async (labDir) => {
    const { figures } = await runPrimaryDrill(labDir, ['--partition', '300ms']);
    console.log(`async: lost_commits ${figures.lost_commits} of ${figures.acknowledged_commits}, write downtime ${figures.write_downtime_ms} ms`);
    assert.ok(figures.lost_commits > 0, 'commits acknowledged during the partition never reached a standby');
    assert.ok(figures.write_downtime_ms !== null && figures.write_downtime_ms < 10_000, `write downtime ${figures.write_downtime_ms}`);
  });
});
