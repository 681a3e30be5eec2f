// Health checks against fake TCP peers: HAProxy's pgsql-check semantics (R healthy, E down with the
// server's message, refused = L4CON, silence = L4TOUT), the clean Terminate, rise/fall, and when a DOWN
// server is checked again (issue 22).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createChecker, pgsqlCheck, versionNumOf } from '../src/balancer/health-check.js';
import { BackendServer } from '../src/balancer/backend-server.js';
import { LAB_CHECK_DEFAULTS } from '../src/balancer/config.js';
import { pollUntil } from '../src/common/poll.js';
import { runBalancer } from '../src/balancer/balancer.js';
import { closedPort, fakePostgres, serverLine, staticBalancerConfig } from './helpers/balancer-fakes.js';

const target = (port: number) => ({ host: '127.0.0.1', port });

test('pgsql check: R is healthy and the probe ends with Terminate and a clean close', async () => {
  const fake = await fakePostgres('accept');
  try {
    const outcome = await pgsqlCheck(target(fake.port), { user: 'postgres', timeoutMs: 1000 });
    assert.equal(outcome.ok, true);
    assert.equal(outcome.status, 'L7OK');
    const seen = await pollUntil(async () => (fake.received[0]?.closedCleanly ? fake.received[0] : undefined), { timeoutMs: 2000, what: 'the probe to close' });
    assert.equal(seen.startup, true);
    assert.deepEqual(seen.after, ['X'], 'the probe says goodbye with a Terminate message');
  } finally {
    await fake.close();
  }
});

test('pgsql check: E is down with the server\'s message (L7STS)', async () => {
  const fake = await fakePostgres({ sqlstate: '57P03', message: 'the database system is starting up' });
  try {
    const outcome = await pgsqlCheck(target(fake.port), { user: 'postgres', timeoutMs: 1000 });
    assert.equal(outcome.ok, false);
    assert.equal(outcome.status, 'L7STS');
    assert.equal(outcome.message, 'the database system is starting up');
  } finally {
    await fake.close();
  }
});

test('pgsql check: refused is L4CON, silence is a timeout, garbage is L7RSP', async () => {
  const refused = await pgsqlCheck(target(await closedPort()), { user: 'postgres', timeoutMs: 500 });
  assert.deepEqual([refused.ok, refused.status, refused.message], [false, 'L4CON', 'connection refused']);

  const silent = await fakePostgres('silent');
  const garbage = net.createServer((socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
  await new Promise<void>((resolve) => garbage.listen({ host: '127.0.0.1', port: 0 }, resolve));
  try {
    const started = Date.now();
    const timedOut = await pgsqlCheck(target(silent.port), { user: 'postgres', timeoutMs: 300 });
    assert.equal(timedOut.ok, false);
    assert.match(timedOut.status, /TOUT$/);
    assert.ok(Date.now() - started < 1500, 'the check timeout bounds the probe');
    const notPostgres = await pgsqlCheck(target((garbage.address() as net.AddressInfo).port), { user: 'postgres', timeoutMs: 500 });
    assert.deepEqual([notPostgres.ok, notPostgres.status], [false, 'L7RSP']);
  } finally {
    await silent.close();
    // Not awaited: its one connection is already gone, and close() only stops the listener.
    garbage.close();
  }
});

test('tcp check: accepted is L4OK, refused is L4CON', async () => {
  const fake = await fakePostgres('silent');
  try {
    const settings = { ...LAB_CHECK_DEFAULTS, type: 'tcp' as const, timeoutMs: 500 };
    const options = { expectedRole: null, onLost: () => undefined };
    const up = await createChecker(target(fake.port), settings, options).run();
    assert.deepEqual([up.ok, up.status], [true, 'L4OK']);
    const down = await createChecker(target(await closedPort()), settings, options).run();
    assert.deepEqual([down.ok, down.status], [false, 'L4CON']);
  } finally {
    await fake.close();
  }
});

test('the sql check reads the server version from its ParameterStatus at login', () => {
  assert.equal(versionNumOf('15.18 (Debian 15.18-0+deb12u1)'), 150018);
  assert.equal(versionNumOf('9.6.24'), 90624);
  assert.equal(versionNumOf('17beta1'), 170000);
  assert.equal(versionNumOf('EnterpriseDB'), null, 'unparsable: the check asks server_version_num instead');
});

test('sql check: a login gets inter + timeout check once connected; a new connection left unanswered is still hung after the check timeout', async () => {
  const silent = await fakePostgres('silent');
  const checker = createChecker(target(silent.port), { ...LAB_CHECK_DEFAULTS, interMs: 500, timeoutMs: 300 }, { expectedRole: null, onLost: () => undefined });
  try {
    // A DOWN server without a kept session: the login alone, bounded by inter + timeout check (800 ms).
    let started = Date.now();
    const login = await checker.run({ down: true });
    const loginMs = Date.now() - started;
    assert.deepEqual([login.ok, login.status, login.hung], [false, 'L7TOUT', undefined]);
    assert.match(login.message, /connection accepted, no login within 800 ms/);
    assert.ok(loginMs >= 700 && loginMs < 2500, `the login gave up after ${loginMs} ms`);
    // Not DOWN: the probe beside the login says "not answering" after the check timeout, without waiting for the login.
    started = Date.now();
    const probed = await checker.run({ down: false });
    const probedMs = Date.now() - started;
    assert.deepEqual([probed.ok, probed.hung], [false, true]);
    assert.ok(probedMs < 700, `hung reported after ${probedMs} ms`);
  } finally {
    checker.close();
    await silent.close();
  }
});

test('rise and fall: fall failures to go DOWN, rise successes to come back; passive detection is immediate', () => {
  const server = new BackendServer({ name: 's1', host: '127.0.0.1', port: 1, weight: 1, backup: false, disabled: false, check: true, checkOverrides: {} });
  const ok = { ok: true, status: 'L7OK', message: 'ok' };
  const bad = { ok: false, status: 'L4CON', message: 'connection refused' };
  assert.equal(server.status, 'DOWN', 'a checked server waits for its first check');
  server.record(ok, 2, 3);
  assert.equal(server.status, 'UP', 'the first successful check admits a new server at once');
  server.record(bad, 2, 3);
  server.record(bad, 2, 3);
  assert.equal(server.status, 'UP');
  assert.equal(server.transitioning, true, 'fastinter applies while going down');
  server.record(bad, 2, 3);
  assert.equal(server.status, 'DOWN');
  assert.equal(server.downTransitions, 1);
  assert.equal(server.checksFailed, 3);
  server.record(ok, 2, 3);
  assert.equal(server.status, 'DOWN');
  server.record(ok, 2, 3);
  assert.equal(server.status, 'UP');
  server.markDown('L4CON', 'connection refused (seen by the proxy)');
  assert.equal(server.status, 'DOWN', 'passive detection does not wait for fall checks');
  assert.equal(server.stats().checkMessage, 'connection refused (seen by the proxy)');
  server.record({ ...ok, drain: true, message: 'replay lag 20 MB over the maximum' }, 1, 3);
  assert.equal(server.status, 'DRAIN');
  const maint = new BackendServer({ name: 's2', host: '127.0.0.1', port: 1, weight: 1, backup: false, disabled: true, check: false, checkOverrides: {} });
  assert.equal(maint.status, 'MAINT');
});

test('re-admission: a DOWN server back is UP after rise checks back to back; "starting up" is checked at fastinter; a server that resets still waits downinter', async () => {
  // fastinter and inter far longer than the test: only checks run back to back (or at fastinter for 57P03) can pass it.
  const port = await closedPort();
  const back = await runBalancer(staticBalancerConfig([serverLine('back', port)], { type: 'pgsql', interMs: 30_000, fastinterMs: 30_000, downinterMs: 300, rise: 3, timeoutMs: 500 }));
  let fake: Awaited<ReturnType<typeof fakePostgres>> | null = null;
  try {
    const server = () => back.stats().servers[0]!;
    await pollUntil(async () => (server().checkStatus === 'L4CON' ? true : undefined), { timeoutMs: 5000, what: 'the first check to find nothing listening' });
    assert.equal(server().status, 'DOWN');
    fake = await fakePostgres('accept', { port });
    const listening = Date.now();
    await pollUntil(async () => (server().status === 'UP' ? true : undefined), { timeoutMs: 5000, intervalMs: 10, what: 'the server UP once it answers' });
    const upMs = Date.now() - listening;
    // One downinter to the first check that finds it, then the two others at once (not 2 x fastinter = 60 s).
    assert.ok(upMs < 300 + 1500, `UP ${upMs} ms after it listened`);
    assert.equal(fake.connections, 3, 'exactly rise (3) checks admitted it');
  } finally {
    await back.stop();
    await fake?.close();
  }

  const starting = await fakePostgres({ sqlstate: '57P03', message: 'the database system is starting up' });
  const resetting = await fakePostgres('reset');
  const pool = await runBalancer(staticBalancerConfig(
    [serverLine('starting', starting.port), serverLine('resetting', resetting.port)],
    { type: 'pgsql', interMs: 30_000, fastinterMs: 100, downinterMs: 1000, timeoutMs: 500 },
  ));
  const started = Date.now();
  try {
    // Six probes of the starting server within 3 s: at downinter (1 s) that would take over 5 s.
    await pollUntil(async () => (starting.connections >= 6 ? true : undefined), { timeoutMs: 3000, intervalMs: 10, what: 'six checks of a server answering "starting up"' });
    const elapsed = Date.now() - started;
    const byName = Object.fromEntries(pool.stats().servers.map((s) => [s.name, s]));
    assert.deepEqual([byName.starting!.status, byName.resetting!.status], ['DOWN', 'DOWN']);
    assert.match(byName.starting!.checkMessage, /starting up/);
    assert.ok(resetting.connections >= 1, 'the resetting server is checked');
    assert.ok(resetting.connections <= Math.floor(elapsed / 1000) + 1, `${resetting.connections} checks of a server that resets in ${elapsed} ms (downinter 1000)`);
  } finally {
    await pool.stop();
    await starting.close();
    await resetting.close();
  }
});

test('pgsql check: a new connection unanswered is hung (DOWN at once), unless the postmaster answered our cancels meanwhile', async () => {
  const silent = await fakePostgres('silent');
  try {
    const settings = { ...LAB_CHECK_DEFAULTS, type: 'pgsql' as const, timeoutMs: 300 };
    const options = { expectedRole: null, onLost: () => undefined };
    const hung = await createChecker(target(silent.port), settings, options).run();
    assert.deepEqual([hung.ok, hung.hung], [false, true], 'a silent postmaster is hung');
    let asked = 0;
    const busy = await createChecker(target(silent.port), settings, {
      ...options,
      busySince: (since) => {
        asked = since;
        return 'its postmaster answered a cancel connection of ours 5 ms ago (4 cancel connection(s) open): busy, not hung';
      },
    }).run();
    assert.deepEqual([busy.ok, busy.hung ?? false], [false, false], 'a failed check (fall applies), not hung');
    assert.match(busy.message, /no answer within 300 ms, but its postmaster answered a cancel connection of ours/);
    assert.ok(asked > 0 && Date.now() - asked >= 300, 'asked about the time the probe waited');
  } finally {
    await silent.close();
  }
});
