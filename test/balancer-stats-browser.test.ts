// The stats page in a real browser (Debian's chromium driven by playwright-core): one row per server
// with its status, check result and counters; a screenshot is left in /tmp for a person to look at.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { chromium } from 'playwright-core';
import { runBalancer } from '../src/balancer/balancer.js';
import { pollUntil } from '../src/common/poll.js';
import { closedPort, fakePostgres, serverLine, staticBalancerConfig } from './helpers/balancer-fakes.js';
import { tempDir } from './helpers/lab.js';

const CHROMIUM = '/usr/bin/chromium';
export const SCREENSHOT = '/tmp/pglab-balancer-stats.png';

test('stats page: every server visible with its status in chromium', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed` }, async () => {
  const up = await fakePostgres('accept');
  const balancer = await runBalancer(
    staticBalancerConfig([serverLine('replica1', up.port), serverLine('replica2', await closedPort()), serverLine('replica3', up.port, { disabled: true })], { type: 'pgsql' }),
  );
  const profile = await tempDir('pglab-chromium-');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    await pollUntil(async () => (balancer.stats().servers.find((s) => s.name === 'replica2')?.checkStatus === 'L4CON' ? true : undefined), { timeoutMs: 5000, what: 'the checks to run' });
    const page = await context.newPage();
    const response = await page.goto(`http://127.0.0.1:${balancer.address().statsPort}/`);
    assert.equal(response?.status(), 200);
    const rows = page.locator('#servers tbody tr.server');
    assert.equal(await rows.count(), 3);
    const cells = async (name: string) => page.locator(`tr[data-server="${name}"] td`).allInnerTexts();
    const one = await cells('replica1');
    assert.equal(one[0], 'replica1');
    assert.equal(one[2], 'UP');
    assert.equal(one[4], 'L7OK');
    const two = await cells('replica2');
    assert.deepEqual([two[2], two[4], two[5]], ['DOWN', 'L4CON', 'connection refused']);
    assert.equal((await cells('replica3'))[2], 'MAINT');
    assert.ok(await page.locator('tr[data-server="replica2"]').isVisible());
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  } finally {
    await context.close();
    await balancer.stop();
    await up.close();
    await rm(profile, { recursive: true, force: true });
  }
});
