// Connection-phase failover and robustness against a real PostgreSQL server: a backend answering
// "the database system is starting up" is replaced transparently; garbage, half-open, slow and reset
// clients do not disturb real ones; CancelRequest reaches the server that owns the session.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import pg from 'pg';
import { runBalancer, type RunningBalancer } from '../src/balancer/balancer.js';
import { pollUntil } from '../src/common/poll.js';
import { fakePostgres, serverLine, staticBalancerConfig } from './helpers/balancer-fakes.js';
import { freePorts, lab, withTempLab } from './helpers/lab.js';

async function portThrough(balancer: RunningBalancer, database = 'postgres'): Promise<number> {
  const client = new pg.Client({ host: '127.0.0.1', port: balancer.address().port, user: 'postgres', database, connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return Number((await client.query<{ port: string }>('SELECT current_setting(\'port\') AS port')).rows[0]!.port);
  } finally {
    await client.end();
  }
}

function rawClient(port: number, use: (socket: net.Socket) => void): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve());
    socket.on('data', () => undefined);
    socket.once('connect', () => use(socket));
    // Every raw client is bounded: the test never leaves a socket behind.
    setTimeout(() => socket.destroy(), 3000).unref();
  });
}

test('connection-phase failover, non-retryable errors, garbage clients, cancel routing', async () => {
  await withTempLab(async (labDir) => {
    const [masterPort] = await freePorts(1);
    await lab(labDir, 'master', 'start', '--port', String(masterPort));
    const starting = await fakePostgres({ sqlstate: '57P03', message: 'the database system is starting up' });
    // tcp checks: the fake accepts connections, so only a real session reveals it cannot serve one.
    const balancer = await runBalancer(
      staticBalancerConfig([serverLine('starting', starting.port), serverLine('master1', masterPort!)], { type: 'tcp', interMs: 10_000, downinterMs: 10_000 }),
    );
    try {
      await pollUntil(async () => (balancer.stats().servers.every((s) => s.status === 'UP') ? true : undefined), { timeoutMs: 5000, what: 'both servers UP' });

      // The first pick is the fake: the client must still land on the real server, without an error.
      for (let i = 0; i < 4; i += 1) assert.equal(await portThrough(balancer), masterPort);
      assert.ok(starting.received.some((r) => r.startup), 'the fake server was tried first');
      const fake = balancer.stats().servers.find((s) => s.name === 'starting')!;
      assert.equal(fake.status, 'DOWN', 'a 57P03 startup FATAL marks the server down at once');
      assert.match(fake.checkMessage, /starting up/);
      const master = balancer.stats().servers.find((s) => s.name === 'master1')!;
      assert.ok(master.redispatches >= 1 && master.retries >= 1, 'the redispatch is counted');

      // An error no other server could fix reaches the client unchanged.
      await assert.rejects(portThrough(balancer, 'no_such_db'), /database "no_such_db" does not exist/);

      // Garbage, oversize, half-open, slow and instantly reset clients, while real clients work.
      const port = balancer.address().port;
      const hostile = [
        rawClient(port, (s) => s.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))),
        rawClient(port, (s) => s.write(Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 2, 3, 4]))),
        rawClient(port, (s) => s.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f, 0xde, 0xad]))), // SSLRequest, then junk
        rawClient(port, (s) => s.write(Buffer.from([0, 0, 0, 12, 0, 9, 0, 0, 1, 2, 3, 0]))), // protocol 9.0
        rawClient(port, (s) => s.write(Buffer.from([0, 0]))), // half a length, then silence
        rawClient(port, () => undefined), // says nothing at all
        rawClient(port, (s) => s.resetAndDestroy()),
        rawClient(port, (s) => {
          // Slow: one byte every 100 ms of a valid startup packet, cut off by the startup time limit.
          const packet = Buffer.from('\0\0\0\x29\0\x03\0\0user\0postgres\0database\0postgres\0\0', 'latin1');
          let i = 0;
          const timer = setInterval(() => (i < packet.length && !s.destroyed ? s.write(packet.subarray(i, ++i)) : clearInterval(timer)), 100);
          s.on('close', () => clearInterval(timer));
        }),
      ];
      const real = Array.from({ length: 10 }, () => portThrough(balancer));
      assert.deepEqual(await Promise.all(real), Array(10).fill(masterPort));
      await Promise.all(hostile);
      assert.equal(await portThrough(balancer), masterPort, 'the balancer still serves after the hostile clients');
      await pollUntil(async () => (balancer.stats().sessionsCurrent === 0 ? true : undefined), { timeoutMs: 5000, what: 'every session closed' });

      // CancelRequest through the balancer reaches the server that runs the query.
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      client.on('error', () => undefined);
      await client.connect();
      try {
        const sleeping = client.query('SELECT pg_sleep(20)');
        const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
        await pollUntil(
          async () => {
            const rows = await new Promise<number>((resolve) => {
              const probe = new pg.Client({ host: '127.0.0.1', port: masterPort, user: 'postgres', database: 'postgres' });
              probe.connect().then(() => probe.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(20)' AND state = 'active'"))
                .then((r) => resolve(r.rows[0].n)).catch(() => resolve(0)).finally(() => void probe.end());
            });
            return rows > 0 ? true : undefined;
          },
          { timeoutMs: 5000, what: 'the query to run' },
        );
        const cancel = Buffer.alloc(16);
        cancel.writeInt32BE(16, 0);
        cancel.writeInt32BE(80877102, 4);
        cancel.writeInt32BE(processID, 8);
        cancel.writeInt32BE(secretKey, 12);
        await rawClient(port, (s) => s.end(cancel));
        await assert.rejects(sleeping, /canceling statement due to user request/);
      } finally {
        await client.end();
      }
    } finally {
      await balancer.stop();
      await starting.close();
    }
  });
});
