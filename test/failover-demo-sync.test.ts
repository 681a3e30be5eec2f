// `lab demo primary-failover --sync`: the same partition and crash lose no acknowledged commit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withTempLab } from './helpers/lab.js';
import { runPrimaryDrill } from './helpers/primary-drill.js';

test('demo primary-failover --sync: no acknowledged commit is lost', async () => {
  await withTempLab(async (labDir) => {
    const { figures, stdout } = await runPrimaryDrill(labDir, ['--sync', '--partition', '300ms']);
    console.log(`sync: lost_commits ${figures.lost_commits} of ${figures.acknowledged_commits}, write downtime ${figures.write_downtime_ms} ms`);
    assert.match(stdout, /synchronous_standby_names = 'ANY 1 \("replica\d"\)'/);
    assert.equal(figures.lost_commits, 0);
    assert.ok(figures.acknowledged_commits > 100, `${figures.acknowledged_commits} acknowledged`);
    assert.ok(figures.write_downtime_ms !== null && figures.write_downtime_ms < 10_000, `write downtime ${figures.write_downtime_ms}`);
  });
});
