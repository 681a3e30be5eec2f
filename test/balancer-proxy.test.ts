// The proxy's choices against fake peers: pass-through when a server asks for a password, weighted
// round robin, leastconn, backup servers, and the configuration a person types.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { repoRoot } from './helpers/lab.js';
import pg from 'pg';
import { runBalancer, type RunningBalancer } from '../src/balancer/balancer.js';
import { BackendServer } from '../src/balancer/backend-server.js';
import { ServerPicker } from '../src/balancer/pick-server.js';
import { balancerConfig, balancerWarnings, resolveBalancerConfig } from '../src/commands/balancer.js';
import { parseMaxLag } from '../src/balancer/settings.js';
import { pollUntil } from '../src/common/poll.js';
import { fakePostgres, kernelRelaySkip, serverLine, staticBalancerConfig } from './helpers/balancer-fakes.js';

test('a server that asks for a password gets the client\'s answer (pass-through, no replay)', async () => {
  const fake = await fakePostgres('password');
  const balancer = await runBalancer(staticBalancerConfig([serverLine('pw', fake.port)], { type: 'tcp' }));
  try {
    await pollUntil(async () => (balancer.stats().servers[0]?.status === 'UP' ? true : undefined), { timeoutMs: 5000, what: 'the server UP' });
    const client = new pg.Client({ host: '127.0.0.1', port: balancer.address().port, user: 'app', password: 'secret', database: 'app' });
    await client.connect();
    await client.end();
    const session = fake.received.find((r) => r.after.includes('p'));
    assert.ok(session, 'the password message reached the server');
    assert.deepEqual(session.after, ['p', 'X']);
    await pollUntil(async () => (balancer.stats().servers[0]!.sessionsTotal === 1 && balancer.stats().sessionsCurrent === 0 ? true : undefined), { timeoutMs: 2000, what: 'the session counted and closed' });
  } finally {
    await balancer.stop();
    await fake.close();
  }
});

test('messages in the same chunk after the server\'s ReadyForQuery reach the client', async () => {
  const fake = await fakePostgres('accept-then-notice');
  const balancer = await runBalancer(staticBalancerConfig([serverLine('notice', fake.port)], { type: 'tcp' }));
  const client = new pg.Client({ host: '127.0.0.1', port: balancer.address().port, user: 'app', database: 'app' });
  try {
    await pollUntil(async () => (balancer.stats().servers[0]?.status === 'UP' ? true : undefined), { timeoutMs: 5000, what: 'the server UP' });
    const notice = new Promise<string>((resolve) => client.on('notice', (n) => resolve(n.message ?? '')));
    await client.connect();
    const timeout = new Promise<string>((resolve) => setTimeout(() => resolve('no notice within 2 s'), 2000).unref());
    assert.equal(await Promise.race([notice, timeout]), 'right after ReadyForQuery');
  } finally {
    await client.end().catch(() => undefined);
    await balancer.stop();
    await fake.close();
  }
});

/** A pg client through the balancer (kept in `clients` to be ended), and when its connection ended. */
async function connectThrough(balancer: RunningBalancer, clients: pg.Client[]): Promise<{ client: pg.Client; ended: Promise<number> }> {
  const client = new pg.Client({ host: '127.0.0.1', port: balancer.address().port, user: 'app', database: 'app' });
  clients.push(client);
  const ended = new Promise<number>((resolve) => client.on('end', () => resolve(Date.now())));
  client.on('error', () => undefined);
  await client.connect();
  return { client, ended };
}

async function balancerUp(balancer: RunningBalancer, relay: 'kernel' | 'node'): Promise<void> {
  assert.equal(balancer.stats().relay, relay);
  await pollUntil(async () => (balancer.stats().servers[0]?.status === 'UP' ? true : undefined), { timeoutMs: 5000, what: 'the server UP' });
}

for (const relay of ['kernel', 'node'] as const) test(`relay ${relay}: sessions of a server marked down: idle ones closed at once, a query in flight gets its answer first`, { skip: relay === 'kernel' && kernelRelaySkip() }, async () => {
  const fake = await fakePostgres('accept', { queryDelayMs: 700 });
  const checks = { type: 'tcp', interMs: 100, fastinterMs: 50, fall: 2, timeoutMs: 2000 } as const;
  const balancer = await runBalancer(staticBalancerConfig([serverLine('s1', fake.port)], checks, { relay, kernelRelayAfter: 0 }));
  const clients: pg.Client[] = [];
  try {
    await balancerUp(balancer, relay);
    const idle = await connectThrough(balancer, clients);
    const busy = await connectThrough(balancer, clients);
    const answer = busy.client.query('SELECT 1');
    fake.stopListening();
    await pollUntil(async () => (balancer.stats().servers[0]!.status === 'DOWN' ? true : undefined), { timeoutMs: 5000, intervalMs: 10, what: 'the server DOWN' });
    const downAt = Date.now();
    const idleEnd = await idle.ended;
    assert.ok(idleEnd - downAt < 300, `the idle session closed ${idleEnd - downAt} ms after DOWN`);
    const result = await answer;
    assert.equal(result.command, 'SELECT', 'the query in flight got its answer');
    const busyEnd = await busy.ended;
    assert.ok(busyEnd - downAt < 2000, 'then its session closed too, well before the grace ran out');
  } finally {
    for (const client of clients) await client.end().catch(() => undefined);
    await balancer.stop();
    await fake.close();
  }
});

for (const relay of ['kernel', 'node'] as const) test(`relay ${relay}: --client-timeout closes an idle session, not a busy one`, { skip: relay === 'kernel' && kernelRelaySkip() }, async () => {
  const fake = await fakePostgres('accept');
  const balancer = await runBalancer(staticBalancerConfig([serverLine('s1', fake.port)], { type: 'tcp' }, {
    relay, kernelRelayAfter: 0, timeouts: { connectMs: 1000, clientMs: 400, serverMs: 0 },
  }));
  const clients: pg.Client[] = [];
  try {
    await balancerUp(balancer, relay);
    const idle = await connectThrough(balancer, clients);
    const busy = await connectThrough(balancer, clients);
    const since = Date.now();
    let busyEnded = false;
    void busy.ended.then(() => (busyEnded = true));
    // The busy client queries every 100 ms for 1 s: it outlives the idle one by far.
    while (Date.now() - since < 1000) {
      await busy.client.query('SELECT 1');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const idleEnd = await idle.ended;
    assert.ok(idleEnd - since >= 350 && idleEnd - since < 900, `the idle session closed ${idleEnd - since} ms after its last byte (timeout 400 ms)`);
    assert.equal(busyEnded, false, 'the busy session is still open');
    const closed = await busy.ended;
    assert.ok(closed - since < 2000, 'once idle, the busy session closes too');
  } finally {
    for (const client of clients) await client.end().catch(() => undefined);
    await balancer.stop();
    await fake.close();
  }
});

function upServer(name: string, extra: Parameters<typeof serverLine>[2] = {}): BackendServer {
  const server = new BackendServer(serverLine(name, 1, { check: false, ...extra }));
  return server;
}

test('roundrobin honours weights; backup servers only when no normal server is up; leastconn', () => {
  const a = upServer('a', { weight: 3 });
  const b = upServer('b', { weight: 1 });
  const backup = upServer('backup', { backup: true });
  const picker = new ServerPicker('roundrobin');
  const picks = Array.from({ length: 8 }, () => picker.pick([a, b, backup], new Set())!.name);
  assert.deepEqual(picks.filter((n) => n === 'a').length, 6);
  assert.deepEqual(picks.filter((n) => n === 'b').length, 2);
  assert.ok(!picks.includes('backup'));
  assert.ok(picks.slice(0, 3).includes('b'), `smooth: b is interleaved, not left to the end (${picks.join(',')})`);
  const down = new BackendServer(serverLine('down', 1));
  assert.equal(picker.pick([down, backup], new Set())!.name, 'backup', 'the backup takes over when no normal server is up');
  assert.equal(picker.pick([down], new Set()), undefined);
  const maint = upServer('maint', { disabled: true });
  assert.equal(picker.pick([maint, b], new Set())!.name, 'b', 'MAINT takes nothing');

  const least = new ServerPicker('leastconn');
  const busy = upServer('busy');
  busy.sessions.add({ bytes: () => [0, 0], close: () => undefined, closeWhenIdle: () => undefined });
  const idle = upServer('idle');
  assert.equal(least.pick([busy, idle], new Set())!.name, 'idle');
  assert.equal(least.pick([busy, idle], new Set([idle]))!.name, 'busy', 'a server already tried is skipped');
});

test('start options: lab defaults, explicit knobs honoured, --max-lag units, clear errors, non-loopback warning', async () => {
  const global = { labDir: '/tmp/nowhere' };
  const config = balancerConfig(global, {});
  assert.deepEqual([config.listen, config.stats, config.algorithm, config.check.type], [{ host: '127.0.0.1', port: 15432 }, { host: '127.0.0.1', port: 8081, uri: '/' }, 'roundrobin', 'sql']);
  assert.deepEqual(config.pool, { source: 'lab', labDir: '/tmp/nowhere', kind: 'replicas' });
  const seed = balancerConfig(global, { check: 'pgsql', inter: '10000', rise: '2', fall: '3', fastinter: '2s' });
  assert.deepEqual([seed.check.interMs, seed.check.fastinterMs, seed.check.rise, seed.check.fall], [10_000, 2000, 2, 3]);
  assert.deepEqual(parseMaxLag(['16MB', '5s']), { maxLagBytes: 16 * 1024 * 1024, maxLagSeconds: 5 });
  assert.deepEqual(parseMaxLag(['512kB,500ms']), { maxLagBytes: 512 * 1024, maxLagSeconds: 0.5 });
  assert.throws(() => parseMaxLag(['lots']), /Invalid --max-lag "lots"/);
  assert.throws(() => balancerConfig(global, { listen: 'nope' }), /Invalid --listen "nope": expected HOST:PORT/);
  assert.throws(() => balancerConfig(global, { pool: 'replica' as never }), /Invalid --pool "replica"/);
  await assert.rejects(resolveBalancerConfig(global, { engine: 'nginx' as never }), /Invalid --engine "nginx": expected builtin or haproxy/);
  const seedFile = await resolveBalancerConfig(global, { config: path.join(repoRoot, 'lab', 'haproxy.cfg') });
  assert.deepEqual([seedFile.check.type, seedFile.pool.source, seedFile.listen.port, seedFile.stats?.uri], ['pgsql', 'static', 15432, '/stats']);
  await assert.rejects(resolveBalancerConfig(global, { config: '/nonexistent/haproxy.cfg' }), /\/nonexistent\/haproxy.cfg/);
  assert.deepEqual(balancerWarnings(config), []);
  const open = balancerConfig(global, { listen: '0.0.0.0:15432' });
  assert.match(balancerWarnings(open)[0]!, /--listen 0.0.0.0:15432 is reachable from other machines/);
});
