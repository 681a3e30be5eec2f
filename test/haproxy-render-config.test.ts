// Rendered haproxy.cfg files are accepted by the real HAProxy 2.6 (`haproxy -c`) and say what the
// BalancerConfig says; reading a rendered file back gives the same balancer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { LAB_CHECK_DEFAULTS, type BalancerConfig, type ServerConfig } from '../src/balancer/config.js';
import { renderHaproxyConfig } from '../src/haproxy/render-config.js';
import { parseHaproxyConfig } from '../src/haproxy/parse-config.js';
import { findHaproxy } from '../src/haproxy/engine.js';
import { tempDir } from './helpers/lab.js';

function server(name: string, port: number, extra: Partial<ServerConfig> = {}): ServerConfig {
  return { name, host: '127.0.0.1', port, weight: 1, backup: false, disabled: false, check: true, checkOverrides: {}, ...extra };
}

const BASE: BalancerConfig = {
  name: 'lb',
  listen: { host: '127.0.0.1', port: 15432 },
  stats: { host: '127.0.0.1', port: 8081, uri: '/' },
  algorithm: 'roundrobin',
  pool: { source: 'lab', labDir: '/tmp/pgdata', kind: 'replicas' },
  check: { ...LAB_CHECK_DEFAULTS, type: 'pgsql' },
  retries: 3,
  redispatch: false,
  timeouts: { connectMs: 10_000, clientMs: 60_000, serverMs: 60_000 },
  relay: 'auto',
  warnings: [],
};

async function haproxyCheck(text: string): Promise<void> {
  const dir = await tempDir('pglab-render-');
  try {
    const file = path.join(dir, 'haproxy.cfg');
    await writeFile(file, text);
    const result = await execa(await findHaproxy(), ['-c', '-f', file], { reject: false });
    assert.equal(result.exitCode, 0, `haproxy -c rejected:\n${text}\n${result.stderr}${result.stdout}`);
    assert.doesNotMatch(String(result.stderr), /WARNING|ALERT/, `haproxy -c warned:\n${text}\n${result.stderr}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('a lab pool with pgsql checks renders to a config HAProxy accepts, and reads back the same', async () => {
  const servers = [
    server('replica1', 5433, { weight: 10, checkOverrides: { interMs: 500, rise: 1 } }),
    server('replica2', 5434, { backup: true }),
    server('replica 3', 5435, { disabled: true, check: false }),
  ];
  const config: BalancerConfig = { ...BASE, algorithm: 'leastconn', redispatch: true };
  const text = renderHaproxyConfig(config, servers, { logToStdout: true, statsRefreshS: 5, statsSocket: '/tmp/pglab-never-bound.sock' });
  await haproxyCheck(text);
  assert.match(text, /option pgsql-check user postgres/);
  assert.match(text, /server replica1 127\.0\.0\.1:5433 check inter 500ms fastinter 100ms downinter 250ms rise 1 fall 3 weight 10\n/);
  assert.match(text, /server replica2 127\.0\.0\.1:5434 check .* backup\n/);
  assert.match(text, /server replica_3 127\.0\.0\.1:5435 weight 1 disabled\n/);
  assert.match(text, /stats show-legends/);

  const back = parseHaproxyConfig(text);
  assert.equal(back.name, 'lb');
  assert.deepEqual(back.listen, config.listen);
  assert.deepEqual(back.stats, config.stats);
  assert.equal(back.algorithm, 'leastconn');
  assert.equal(back.redispatch, true);
  assert.equal(back.retries, 3);
  assert.deepEqual(back.timeouts, config.timeouts);
  assert.equal(back.statsRefreshS, 5);
  const parsed = back.pool.source === 'static' ? back.pool.servers : [];
  const first = { ...back.check, ...parsed[0]!.checkOverrides };
  assert.deepEqual(
    [first.interMs, first.fastinterMs, first.downinterMs, first.rise, first.fall, first.timeoutMs],
    [500, 100, 250, 1, 3, LAB_CHECK_DEFAULTS.timeoutMs],
  );
  assert.deepEqual(parsed.map((s) => [s.name, s.weight, s.backup, s.disabled, s.check]), [
    ['replica1', 10, false, false, true], ['replica2', 1, true, false, true], ['replica_3', 1, false, true, false],
  ]);
  // Only the harmless lines the renderer adds for HAProxy itself are reported.
  assert.ok(back.warnings.every((w) => /harmless|prometheus|http-request|option tcplog/.test(w)), back.warnings.join('\n'));
});

test('tcp, none and sql checks, no stats, no timeouts, an IPv6 listener, an empty pool and the name "stats" are valid too', async () => {
  for (const type of ['tcp', 'none', 'sql'] as const) {
    const text = renderHaproxyConfig({ ...BASE, stats: null, check: { ...BASE.check, type } }, [server('r1', 5433)]);
    await haproxyCheck(text);
    assert.equal(/pgsql-check/.test(text), type === 'sql');
    assert.equal(/server r1 \S+ check/.test(text), type !== 'none');
  }
  // Our 0 (no timeout) is HAProxy's longest whole-day time, not a left-out timeout (which HAProxy warns about).
  const untimed = renderHaproxyConfig({ ...BASE, timeouts: { connectMs: 0, clientMs: 0, serverMs: 0 } }, [server('r1', 5433)]);
  assert.match(untimed, /timeout connect 24d\n {4}timeout client 24d\n {4}timeout server 24d\n/);
  await haproxyCheck(untimed);
  await haproxyCheck(renderHaproxyConfig({ ...BASE, listen: { host: '::1', port: 15432 } }, []));
  // A balancer named like the stats frontend does not clash with it.
  await haproxyCheck(renderHaproxyConfig({ ...BASE, name: 'stats' }, [server('r1', 5433)]));
});
