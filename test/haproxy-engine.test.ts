// The real HAProxy in front of a real lab: connections through it land on both replicas, its CSV
// stats read as BalancerStats, a replica killed with SIGKILL is reported DOWN, and it stops by pid.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { LAB_CHECK_DEFAULTS, type BalancerConfig } from '../src/balancer/config.js';
import { startHaproxy, stopHaproxy, type HaproxyInstance } from '../src/haproxy/engine.js';
import { fetchHaproxyStats } from '../src/haproxy/fetch-stats.js';
import { labPoolServers } from '../src/haproxy/lab-pool.js';
import { queryRows } from '../src/postgres/client.js';
import { pollUntil } from '../src/common/poll.js';
import { isRunning } from '../src/common/processes.js';
import net from 'node:net';
import { rm } from 'node:fs/promises';
import { LabError } from '../src/common/errors.js';
import { balancerConfig } from '../src/balancer/start-options.js';
import { processesMentioning, freePorts, lab, tempDir, withTempLab } from './helpers/lab.js';

test('HAProxy balances a lab\'s replicas and reports a killed one DOWN', { timeout: 90_000 }, async () => {
  await withTempLab(async (labDir) => {
    const [m, r1, r2, listen, stats] = await freePorts(5);
    await lab(labDir, 'master', 'start', '--port', String(m));
    await lab(labDir, 'replica', 'add', 'replica1', `${labDir}/replica1`, String(r1));
    await lab(labDir, 'replica', 'add', 'replica2', `${labDir}/replica2`, String(r2));

    const config: BalancerConfig = {
      name: 'hx',
      listen: { host: '127.0.0.1', port: listen! },
      stats: { host: '127.0.0.1', port: stats!, uri: '/' },
      algorithm: 'roundrobin',
      pool: { source: 'lab', labDir, kind: 'replicas' },
      // Small intervals keep the test short; the seed's inter 10000 would take 20-30 s.
      check: { ...LAB_CHECK_DEFAULTS, type: 'pgsql', interMs: 500, fastinterMs: 200, downinterMs: 500, rise: 2, fall: 2 },
      retries: 3,
      redispatch: false,
      timeouts: { connectMs: 2000, clientMs: 60_000, serverMs: 60_000 },
      relay: 'auto',
      warnings: [],
    };
    const servers = await labPoolServers(labDir, 'replicas');
    assert.deepEqual(servers.map((s) => s.port), [r1, r2]);

    let haproxy: HaproxyInstance | undefined;
    try {
      haproxy = await startHaproxy({ labDir, config, servers });
      const statsUrl = haproxy.statsUrl!;
      assert.equal(statsUrl, `http://127.0.0.1:${stats}/`);

      await pollUntil(async () => {
        const s = await fetchHaproxyStats(statsUrl);
        return s.servers.every((x) => x.status === 'UP' && x.checkStatus === 'L7OK') ? s : undefined;
      }, { timeoutMs: 10_000, what: 'both replicas UP with L7OK in HAProxy' });

      // Round robin: four connections land on both replicas.
      const ports = new Set<number>();
      for (let i = 0; i < 4; i++) {
        const rows = await queryRows<{ port: number; standby: boolean }>({ port: listen! }, 'select inet_server_port() as port, pg_is_in_recovery() as standby');
        assert.equal(rows[0]!.standby, true);
        ports.add(rows[0]!.port);
      }
      assert.deepEqual([...ports].sort(), [r1, r2].sort());

      const before = await fetchHaproxyStats(statsUrl, { listen: haproxy.listen });
      assert.equal(before.name, 'hx');
      assert.equal(before.engine, 'haproxy');
      assert.equal(before.listen, `127.0.0.1:${listen}`);
      assert.ok(before.sessionsTotal >= 4, `sessions total ${before.sessionsTotal}`);
      assert.deepEqual(before.servers.map((s) => [s.name, s.address]), [['replica1', `127.0.0.1:${r1}`], ['replica2', `127.0.0.1:${r2}`]]);
      assert.ok(before.servers.every((s) => s.sessionsTotal >= 2 && s.bytesIn > 0 && s.bytesOut > 0 && s.weight === 1));
      assert.ok(before.uptimeS >= 0);

      const killedAt = Date.now();
      await lab(labDir, 'node', 'kill', 'replica2');
      const down = await pollUntil(async () => {
        const s = await fetchHaproxyStats(statsUrl);
        const replica2 = s.servers.find((x) => x.name === 'replica2');
        return replica2?.status === 'DOWN' ? replica2 : undefined;
      }, { timeoutMs: 15_000, intervalMs: 50, what: 'HAProxy to report replica2 DOWN' });
      const detectionMs = Date.now() - killedAt;
      console.log(`HAProxy (inter 500ms, fall 2) reported a SIGKILLed replica DOWN after ${detectionMs} ms`);
      assert.match(down.checkStatus, /^(L4CON|L4TOUT|L7RSP|L7STS)$/);
      assert.ok(down.checksFailed >= 1);
      assert.equal(down.downTransitions, 1);

      // The survivor takes every new connection.
      for (let i = 0; i < 3; i++) {
        const rows = await queryRows<{ port: number }>({ port: listen! }, 'select inet_server_port() as port');
        assert.equal(rows[0]!.port, r1);
      }
      const log = await readFile(haproxy.logFile, 'utf8');
      assert.match(log, /hx\/replica1/, 'one tcplog line per connection in the log file');
      assert.match(log, /replica2 is DOWN/);
    } finally {
      if (haproxy) await stopHaproxy(haproxy.pid);
    }
    assert.equal(await isRunning(haproxy!.pid), false);
  });
});

test('HAProxy that cannot bind its port fails to start with its own message and leaves nothing running', async () => {
  const labDir = await tempDir('pglab-haproxy-');
  const [port, stats] = await freePorts(2);
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen({ host: '127.0.0.1', port }, resolve));
  try {
    const config: BalancerConfig = {
      name: 'busy',
      listen: { host: '127.0.0.1', port: port! },
      stats: { host: '127.0.0.1', port: stats!, uri: '/' },
      algorithm: 'roundrobin',
      pool: { source: 'static', servers: [] },
      check: { ...LAB_CHECK_DEFAULTS, type: 'tcp' },
      retries: 3,
      redispatch: false,
      timeouts: { connectMs: 1000, clientMs: 1000, serverMs: 1000 },
      relay: 'auto',
      warnings: [],
    };
    await assert.rejects(
      startHaproxy({ labDir, config, servers: [], timeoutMs: 5000 }),
      (error: unknown) => error instanceof LabError && error.code === 'COMMAND_FAILED' && /exited at start/.test(error.message) && /[Cc]annot bind/.test(error.detail ?? ''),
    );
    assert.deepEqual(await processesMentioning(labDir), []);
  } finally {
    await new Promise<void>((resolve) => holder.close(() => resolve()));
    await rm(labDir, { recursive: true, force: true });
  }
});

test('HAProxy started with the lab\'s default timeouts (client and server 0 = none) logs no "missing timeouts" warning', async () => {
  const labDir = await tempDir('pglab-haproxy-');
  const [listen, stats] = await freePorts(2);
  // What `lab balancer start --engine haproxy` renders without timeout flags: connect 3 s, client and server 0.
  const config = balancerConfig({ labDir }, { listen: `127.0.0.1:${listen}`, stats: `127.0.0.1:${stats}`, check: 'tcp' });
  assert.deepEqual([config.timeouts.clientMs, config.timeouts.serverMs], [0, 0]);
  let haproxy: HaproxyInstance | undefined;
  try {
    haproxy = await startHaproxy({ labDir, config, servers: [] });
    const log = await readFile(haproxy.logFile, 'utf8');
    assert.doesNotMatch(log, /missing timeouts/, log);
    assert.doesNotMatch(log, /WARNING|ALERT/, log);
    const rendered = await readFile(haproxy.configFile, 'utf8');
    assert.match(rendered, /timeout connect 3s\n {4}timeout client 24d\n {4}timeout server 24d\n/);
  } finally {
    if (haproxy) await stopHaproxy(haproxy.pid);
    await rm(labDir, { recursive: true, force: true });
  }
});
