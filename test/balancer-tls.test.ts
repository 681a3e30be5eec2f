// Encryption end to end through the built-in balancer (REFERENCE.md 6): SSLRequest relayed to the server
// picked and its answer relayed back, TLS bytes opaque from there; failover only before the server's
// answer; a libpq 15 cancel (plaintext, key unknown to the balancer) reaching a TLS session's server;
// TLS sessions handed to the kernel relay with the client's first request (and the same through Node);
// PostgreSQL 17's direct TLS against fake TLS peers (no libpq 17 here).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { execa } from 'execa';
import pg from 'pg';
import { runBalancer, type RunningBalancer } from '../src/balancer/balancer.js';
import { CANCEL_REQUEST, GSSENC_REQUEST, SSL_REQUEST, startupMessage } from '../src/balancer/protocol.js';
import { pollUntil } from '../src/common/poll.js';
import { closedPort, fakePostgres, kernelRelaySkip, serverLine, staticBalancerConfig } from './helpers/balancer-fakes.js';
import { freePorts, lab, withTempLab } from './helpers/lab.js';
import { makeTestCa, writeAsPostgres, type TestCa } from './helpers/tls.js';
import { readLabPassword, tlsPaths } from '../src/lab/access.js';

/** An 8-byte request (SSLRequest, GSSENCRequest) or a 16-byte CancelRequest. */
function request(code: number, pid?: number, secret?: number): Buffer {
  const packet = Buffer.alloc(pid === undefined ? 8 : 16);
  packet.writeInt32BE(packet.length, 0);
  packet.writeInt32BE(code, 4);
  if (pid !== undefined) {
    packet.writeInt32BE(pid, 8);
    packet.writeInt32BE(secret ?? 0, 12);
  }
  return packet;
}

/** A raw socket to `port` that collects what it receives; destroyed after 30 s whatever happens. */
async function rawSocket(port: number): Promise<{ socket: net.Socket; received: () => Buffer; closed: Promise<unknown> }> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => undefined);
  setTimeout(() => socket.destroy(), 30_000).unref();
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  const closed = once(socket, 'close');
  await once(socket, 'connect');
  return { socket, received: () => Buffer.concat(chunks), closed };
}

const psqlArgs = (port: number, options: string, sql: string) => [`host=127.0.0.1 port=${port} user=postgres dbname=postgres ${options}`, '-Atc', sql];

async function psql(port: number, options: string, sql: string): Promise<string> {
  const result = await execa('psql', psqlArgs(port, options, sql), { timeout: 20_000, reject: false, all: true });
  assert.equal(result.exitCode, 0, `psql ${options} failed: ${result.all}`);
  return String(result.stdout).trim();
}

const SSL_IN_USE = 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()';

const sessionLines = (log: string[]) => log.filter((line) => / client=\S+ server=\S+ connect=/.test(line));

test('TLS end to end through the balancer against PostgreSQL 15 servers', async (t) => {
  await withTempLab(async (labDir) => {
    let balancer: RunningBalancer | null = null;
    try {
      const [m, r1] = await freePorts(2);
      // A lab has TLS (its own CA) and scram by default; the test process uses its pgpass file and CA.
      await lab(labDir, 'master', 'start', '--port', String(m));
      await lab(labDir, 'replica', 'add', 'replica1', `${labDir}/replica1`, String(r1));
      const caFile = tlsPaths(labDir).caCert;
      const log: string[] = [];
      // Passive detection only (checks every minute): the proxy itself must skip a refusing server.
      const checks = { type: 'tcp', interMs: 60_000, fastinterMs: 60_000, downinterMs: 60_000, rise: 1 } as const;
      balancer = await runBalancer(
        staticBalancerConfig([serverLine('master1', m!), serverLine('replica1', r1!)], checks, { relay: 'auto', kernelRelayAfter: 0, timeouts: { connectMs: 3000, clientMs: 0, serverMs: 0 } }),
        (line) => log.push(line),
      );
      const lb = balancer;
      const port = lb.address().port;
      await pollUntil(async () => (lb.stats().servers.every((s) => s.status === 'UP') ? true : undefined), { timeoutMs: 5000, what: 'both servers UP' });

      await t.test('sslmode=require, verify-full and prefer end on TLS; disable stays plaintext', async () => {
        // Twice each: round robin puts one on each server.
        for (let i = 0; i < 2; i++) assert.equal(await psql(port, 'sslmode=require', SSL_IN_USE), 't');
        assert.equal(await psql(port, `sslmode=verify-full sslrootcert=${caFile}`, SSL_IN_USE), 't', 'the server certificate verifies for 127.0.0.1: no proxy in between');
        assert.equal(await psql(port, 'sslmode=prefer', SSL_IN_USE), 't', 'prefer is not downgraded');
        assert.equal(await psql(port, 'sslmode=disable', SSL_IN_USE), 'f');
        await pollUntil(async () => (lb.stats().sessionsCurrent === 0 && sessionLines(log).length === 5 ? true : undefined), { timeoutMs: 5000, what: 'five sessions logged' });
        const lines = sessionLines(log);
        // The kernel relay takes a TLS session with the client's first request, where it can run.
        const tlsRelay = kernelRelaySkip() ? 'node' : 'kernel';
        // psql's Terminate is inside TLS: the server may close first, so either side's close ends it.
        assert.equal(lines.filter((line) => new RegExp(` enc=tls relay=${tlsRelay} end="(client|server) closed"`).test(line)).length, 4, `TLS sessions relayed by ${tlsRelay}:\n${lines.join('\n')}`);
        const plain = lines.find((line) => / enc=none /.test(line));
        assert.match(plain ?? '', kernelRelaySkip() ? / relay=node / : / relay=kernel /, 'a plaintext session still goes to the kernel relay');
        const stats = lb.stats().servers;
        assert.equal(stats.reduce((sum, s) => sum + s.sessionsTotal, 0), 5, 'every session counted on its server');
        assert.ok(stats.every((s) => s.sessionsTotal >= 2 && s.bytesOut > 1000), `both servers served TLS sessions (${JSON.stringify(stats.map((s) => [s.sessionsTotal, s.bytesOut]))})`);
      });

      await t.test('SCRAM with channel binding (SCRAM-SHA-256-PLUS) works through the balancer', async () => {
        await psql(m!, 'sslmode=disable', "CREATE ROLE app LOGIN PASSWORD 'app-secret'");
        await pollUntil(async () => ((await psql(r1!, 'sslmode=disable', "SELECT count(*) FROM pg_roles WHERE rolname = 'app'")) === '1' ? true : undefined), {
          timeoutMs: 10_000, what: 'the role on replica1',
        });
        for (const [datadir, serverPort] of [[`${labDir}/master1`, m!], [`${labDir}/replica1`, r1!]] as const) {
          const hba = await readFile(`${datadir}/pg_hba.conf`, 'utf8');
          await writeAsPostgres(`${datadir}/pg_hba.conf`, `hostssl all app 127.0.0.1/32 scram-sha-256\n${hba}`);
          await psql(serverPort, 'sslmode=disable', 'SELECT pg_reload_conf()');
        }
        const env = { PGPASSWORD: 'app-secret' };
        for (let i = 0; i < 2; i++) {
          const result = await execa('psql', [`host=127.0.0.1 port=${port} user=app dbname=postgres sslmode=require channel_binding=require`, '-Atc', SSL_IN_USE], { env, timeout: 20_000, reject: false, all: true });
          assert.equal(result.exitCode, 0, `channel_binding=require through the balancer: ${result.all}`);
          assert.equal(String(result.stdout).trim(), 't');
        }
        const wrong = await execa('psql', [`host=127.0.0.1 port=${port} user=app dbname=postgres sslmode=require`, '-Atc', 'SELECT 1'], { env: { PGPASSWORD: 'wrong' }, timeout: 20_000, reject: false, all: true });
        assert.match(String(wrong.all), /password authentication failed for user "app"/, 'the password really is checked');
      });

      await t.test('GSSENCRequest: the server\'s own answer is relayed', async () => {
        const direct = await rawSocket(m!);
        direct.socket.write(request(GSSENC_REQUEST));
        await pollUntil(async () => (direct.received().length ? true : undefined), { timeoutMs: 5000, intervalMs: 10, what: 'the server\'s answer' });
        direct.socket.destroy();
        const through = await rawSocket(port);
        through.socket.write(request(GSSENC_REQUEST));
        await pollUntil(async () => (through.received().length ? true : undefined), { timeoutMs: 5000, intervalMs: 10, what: 'the answer through the balancer' });
        assert.deepEqual(through.received(), direct.received());
        through.socket.destroy();
      });

      await t.test('a libpq 15 cancel (Ctrl-C) of a query on a TLS session reaches its server', async () => {
        const sleeper = execa('psql', psqlArgs(port, 'sslmode=require', 'SELECT pg_sleep(30)'), { timeout: 40_000, reject: false, all: true });
        try {
          // The query runs on one of the servers: ask both directly.
          const activeOn = async (serverPort: number) =>
            (await execa('psql', psqlArgs(serverPort, 'sslmode=disable', "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'"))).stdout.trim() === '1';
          await pollUntil(async () => ((await activeOn(m!)) || (await activeOn(r1!)) ? true : undefined), { timeoutMs: 10_000, intervalMs: 50, what: 'pg_sleep(30) running' });
          const cancelledAt = Date.now();
          sleeper.kill('SIGINT');
          const result = await sleeper;
          const took = Date.now() - cancelledAt;
          assert.match(String(result.all), /canceling statement due to user request/, `psql was cancelled: ${result.all}`);
          assert.ok(took < 2000, `cancelled within ${took} ms`);
          assert.ok(log.some((line) => /end="cancel request for an unknown key sent to \d server\(s\) with encrypted sessions"/.test(line)), 'the cancel went by the encrypted sessions');
        } finally {
          sleeper.kill('SIGKILL');
          await sleeper;
        }
      });

      await t.test('garbage after the server\'s S: the server deals with it, the balancer goes on', async () => {
        const raw = await rawSocket(port);
        raw.socket.write(request(SSL_REQUEST));
        await pollUntil(async () => (raw.received().length ? true : undefined), { timeoutMs: 5000, intervalMs: 10, what: 'the S' });
        assert.equal(raw.received().toString(), 'S');
        raw.socket.write(Buffer.concat([startupMessage({ user: 'postgres' }), Buffer.from('not a TLS ClientHello\n'.repeat(10))]));
        await raw.closed;
        assert.equal(await psql(port, 'sslmode=require', SSL_IN_USE), 't');
      });

      await t.test('a server that refuses connections is skipped before its answer, transparently', async () => {
        await lab(labDir, 'node', 'stop', 'replica1');
        const before = log.length;
        for (let i = 0; i < 3; i++) assert.equal(await psql(port, 'sslmode=require', SSL_IN_USE), 't');
        const replica1 = lb.stats().servers.find((s) => s.name === 'replica1')!;
        assert.equal(replica1.status, 'DOWN', 'marked down by the proxy');
        assert.ok(replica1.connectionErrors >= 1);
        const after = () => log.slice(before);
        assert.ok(after().some((line) => /retry client=\S+ server=replica1 reason="connection refused"/.test(line)), after().join('\n'));
        // A kernel-relayed session's line comes when the relay reports the hang-up, after psql exits.
        await pollUntil(async () => (after().some((line) => / server=master1 .* attempts=2 enc=tls /.test(line)) ? true : undefined), {
          timeoutMs: 5000, what: `the refused attempt followed by TLS on master1:\n${after().join('\n')}`,
        });
      });
    } finally {
      await balancer?.stop();
    }
  });
});

/** `n` rows of COPY (SELECT g, md5(g::text) FROM generate_series(1, n) g) TO STDOUT, as psql prints them. */
function copyOutput(n: number): Buffer {
  const lines: string[] = [];
  for (let g = 1; g <= n; g++) lines.push(`${g}\t${createHash('md5').update(String(g)).digest('hex')}\n`);
  return Buffer.from(lines.join(''));
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

test('TLS sessions (SSLRequest) in the kernel relay and in Node: 2000 round trips, a 20 MB COPY, a cancel, a mark-down that lets a running query finish', { skip: kernelRelaySkip() }, async (t) => {
  await withTempLab(async (labDir) => {
    const [m] = await freePorts(1);
    await lab(labDir, 'master', 'start', '--port', String(m));
    const password = await readLabPassword(labDir, 'postgres');
    assert.ok(password, 'the lab has a password');
    const rows = 520_000;
    const expected = copyOutput(rows);
    assert.ok(expected.length > 20_000_000, `${expected.length} bytes`);
    for (const relay of ['kernel', 'node'] as const) {
      await t.test(`--relay ${relay}`, async () => {
        const log: { at: number; line: string }[] = [];
        const clients: pg.Client[] = [];
        // The sql check: its connection stays open, so terminating its backend marks the server DOWN at
        // once (passive); it is UP again 100 ms later. The grace for a running query: 5 s.
        const checks = { type: 'sql', interMs: 60_000, fastinterMs: 60_000, downinterMs: 100, rise: 1, fall: 1, timeoutMs: 5000 } as const;
        const lb = await runBalancer(
          staticBalancerConfig([serverLine('master1', m!)], checks, { relay, timeouts: { connectMs: 3000, clientMs: 0, serverMs: 0 } }),
          (line) => log.push({ at: Date.now(), line }),
        );
        // Sessions, not the connections that carried a cancel request.
        const lines = () => sessionLines(log.map((entry) => entry.line)).filter((line) => !/ end="cancel request/.test(line));
        const linesSince = (count: number) => lines().slice(count);
        const port = lb.address().port;
        const connect = async () => {
          const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', password, ssl: { rejectUnauthorized: false }, connectionTimeoutMillis: 5000 });
          clients.push(client);
          client.on('error', () => undefined);
          const ended = new Promise<number>((resolve) => client.once('end', () => resolve(Date.now())));
          await client.connect();
          return { client, ended };
        };
        const tlsLine = new RegExp(` server=master1 .* enc=tls relay=${relay} `);
        try {
          assert.equal(lb.stats().relay, relay);
          await pollUntil(async () => (lb.stats().servers[0]?.status === 'UP' ? true : undefined), { timeoutMs: 10_000, what: 'master1 UP' });

          // 2000 round trips on one session, each answer checked.
          const { client, ended } = await connect();
          assert.equal((await client.query(SSL_IN_USE)).rows[0]?.ssl, true, 'the session is TLS end to end');
          for (let i = 0; i < 2000; i++) {
            const result = await client.query(`SELECT ${i} AS n, repeat('x', ${i % 200}) AS pad`);
            assert.equal(result.rows[0]?.n, i);
            assert.equal(result.rows[0]?.pad, 'x'.repeat(i % 200));
          }
          await client.end();
          await ended;
          await pollUntil(async () => (lines().length === 1 ? true : undefined), { timeoutMs: 5000, what: 'the session logged' });
          assert.match(lines()[0]!, tlsLine, lines()[0]);
          assert.match(lines()[0]!, / end="client closed"/);

          // A 20 MB COPY out, byte for byte.
          const copy = await execa('psql', psqlArgs(port, 'sslmode=require', `COPY (SELECT g, md5(g::text) FROM generate_series(1, ${rows}) g) TO STDOUT`), {
            encoding: 'buffer', maxBuffer: 64 << 20, timeout: 60_000, reject: false, stripFinalNewline: false,
          });
          assert.equal(copy.exitCode, 0, Buffer.from(copy.stderr).toString());
          const received = Buffer.from(copy.stdout);
          assert.equal(received.length, expected.length, 'every byte of the COPY arrived');
          assert.equal(sha256(received), sha256(expected), 'the COPY arrived unaltered');
          await pollUntil(async () => (lines().length === 2 ? true : undefined), { timeoutMs: 5000, what: 'the COPY session logged' });
          assert.match(lines()[1]!, tlsLine, lines()[1]);
          const out = Number(/ out=(\d+) /.exec(lines()[1]!)?.[1]);
          assert.ok(out > expected.length, `the log counts the session's bytes to the client (${out})`);

          // A libpq 15 cancel: plaintext, with a key the balancer never saw.
          const sleeper = execa('psql', psqlArgs(port, 'sslmode=require', 'SELECT pg_sleep(30)'), { timeout: 40_000, reject: false, all: true });
          try {
            await pollUntil(
              async () => ((await psql(m!, 'sslmode=disable', "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'")) === '1' ? true : undefined),
              { timeoutMs: 10_000, intervalMs: 50, what: 'pg_sleep(30) running' },
            );
            const cancelledAt = Date.now();
            sleeper.kill('SIGINT');
            const result = await sleeper;
            assert.match(String(result.all), /canceling statement due to user request/, `psql was cancelled: ${result.all}`);
            assert.ok(Date.now() - cancelledAt < 2000, `cancelled within ${Date.now() - cancelledAt} ms`);
          } finally {
            sleeper.kill('SIGKILL');
            await sleeper;
          }
          assert.ok(log.some((e) => /end="cancel request for an unknown key sent to 1 server\(s\) with encrypted sessions"/.test(e.line)), 'the cancel went by the encrypted session');
          await pollUntil(async () => (lines().length === 3 ? true : undefined), { timeoutMs: 5000, what: 'the cancelled session logged' });
          assert.match(lines()[2]!, tlsLine, lines()[2]);

          // The server marked down: the idle session closes at once, the one running a query gets its answer first.
          const before = lines().length;
          const idle = await connect();
          await idle.client.query('SELECT 1');
          const busy = await connect();
          await busy.client.query('SELECT 1');
          const answer = busy.client.query("SELECT pg_sleep(1.5), 'done' AS done");
          await pollUntil(
            async () => ((await psql(m!, 'sslmode=disable', "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(1.5)%' AND state = 'active'")) === '1' ? true : undefined),
            { timeoutMs: 5000, intervalMs: 20, what: 'pg_sleep(1.5) running' },
          );
          await psql(m!, 'sslmode=disable', "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'lab-balancer-check'");
          await pollUntil(async () => (log.some((e) => /server master1 UP -> DOWN/.test(e.line)) ? true : undefined), { timeoutMs: 5000, intervalMs: 10, what: 'master1 DOWN' });
          const downAt = log.find((e) => /server master1 UP -> DOWN/.test(e.line))!.at;
          const idleEnd = await idle.ended;
          assert.ok(idleEnd - downAt < 500, `the idle session closed ${idleEnd - downAt} ms after DOWN`);
          const result = await answer;
          assert.equal(result.rows[0]?.done, 'done', 'the running query got its answer');
          const busyEnd = await busy.ended;
          assert.ok(busyEnd - downAt < 4000, `then its session closed too (${busyEnd - downAt} ms after DOWN), before the grace ran out`);
          await pollUntil(async () => (linesSince(before).length === 2 ? true : undefined), { timeoutMs: 5000, what: 'both sessions logged' });
          for (const line of linesSince(before)) {
            assert.match(line, tlsLine, line);
            assert.match(line, / end="server marked down"/, `closed as idle, never cut in its query: ${line}`);
          }
          await pollUntil(async () => (lb.stats().servers[0]?.status === 'UP' ? true : undefined), { timeoutMs: 10_000, what: 'master1 UP again' });
        } finally {
          for (const c of clients) await c.end().catch(() => undefined);
          await lb.stop();
        }
      });
    }
  });
});

/**
 * A TLS echo server speaking ALPN `postgresql` (a PostgreSQL 17 server's direct TLS, as far as the
 * balancer sees), each chunk echoed after `delayMs` (a query that takes that long).
 */
async function fakeDirectTls(ca: TestCa, delayMs = 0): Promise<{ port: number; raw: () => number; stopListening: () => void; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let raw = 0;
  const server = tls.createServer({ cert: ca.cert, key: ca.key, ALPNProtocols: ['postgresql'] }, (socket) => {
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      const timer = setTimeout(() => !socket.destroyed && socket.write(chunk), delayMs);
      socket.once('close', () => clearTimeout(timer));
    });
  });
  server.on('connection', (socket: net.Socket) => {
    raw += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    raw: () => raw,
    stopListening: () => server.close(),
    close: () => new Promise((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    }),
  };
}

/**
 * A TCP peer that never answers a client's first bytes: it closes (a PostgreSQL 15 server given a
 * ClientHello), resets, or stays silent.
 */
async function rudePeer(how: 'close' | 'reset' | 'silent'): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.once('data', () => (how === 'close' ? socket.destroy() : how === 'reset' ? socket.resetAndDestroy() : undefined));
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    }),
  };
}

/**
 * A direct TLS client through the balancer, and when its connection closed. Its errors are kept (`errors`,
 * shared by the test's clients): a TLS error is the test's to judge, never an unhandled rejection.
 */
async function tlsClient(port: number, ca: TestCa, clients: tls.TLSSocket[], errors: string[] = []): Promise<{ client: tls.TLSSocket; closed: Promise<number> }> {
  const client = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: ca.ca, ALPNProtocols: ['postgresql'] });
  clients.push(client);
  client.on('error', (error: NodeJS.ErrnoException) => errors.push(`client ${clients.length}: ${error.code ?? ''} ${error.message}`.trim()));
  const closed = new Promise<number>((resolve) => client.once('close', () => resolve(Date.now())));
  await Promise.race([
    once(client, 'secureConnect'),
    closed.then(() => {
      throw new Error(`the TLS handshake through the balancer did not complete: ${errors.join('; ') || 'closed'}`);
    }),
  ]);
  return { client, closed };
}

test('direct TLS (first byte 0x16): failover before the server\'s first byte, then opaque; cancels with unknown keys', async () => {
  const ca = await makeTestCa();
  const echo = await fakeDirectTls(ca);
  const closer = await rudePeer('close');
  const gone = await closedPort();
  const log: string[] = [];
  const pool = [serverLine('gone', gone, { checkOverrides: { type: 'none' } }), serverLine('closer', closer.port), serverLine('tls17', echo.port)];
  const balancer = await runBalancer(staticBalancerConfig(pool, { type: 'tcp', interMs: 60_000, rise: 1 }), (line) => log.push(line));
  const clients: tls.TLSSocket[] = [];
  const clientErrors: string[] = [];
  try {
    await pollUntil(async () => (balancer.stats().servers.every((s) => s.status === 'UP') ? true : undefined), { timeoutMs: 5000, what: 'the pool UP' });
    // Three clients: round robin starts each on a different server, the first bytes replayed until tls17.
    for (let i = 0; i < 3; i++) {
      const { client } = await tlsClient(balancer.address().port, ca, clients, clientErrors);
      assert.equal(client.alpnProtocol, 'postgresql');
      const payload = `round trip ${i} `.repeat(1000);
      client.write(payload);
      let echoed = '';
      client.on('data', (chunk: Buffer) => (echoed += chunk.toString()));
      await pollUntil(async () => (echoed.length >= payload.length ? true : undefined), { timeoutMs: 5000, intervalMs: 10, what: 'the echo' });
      assert.equal(echoed, payload);
    }
    const stats = Object.fromEntries(balancer.stats().servers.map((s) => [s.name, s]));
    assert.equal(stats.tls17!.sessionsCurrent, 3, 'three opaque sessions on the TLS server');
    assert.equal(stats.closer!.status, 'UP', 'closing on a ClientHello (a server before 17) does not mark a server down');
    assert.ok(stats.closer!.connectionErrors >= 1 && stats.gone!.connectionErrors >= 1, 'both were tried and skipped');

    // A cancel whose key the balancer never saw goes to the servers with encrypted sessions.
    const rawBefore = echo.raw();
    const cancel = await rawSocket(balancer.address().port);
    cancel.socket.write(request(CANCEL_REQUEST, 1234, 5678));
    await cancel.closed;
    await pollUntil(async () => (echo.raw() === rawBefore + 1 ? true : undefined), { timeoutMs: 5000, intervalMs: 10, what: 'the cancel on tls17' });
    assert.ok(log.some((line) => /end="cancel request for an unknown key sent to 1 server\(s\) with encrypted sessions"/.test(line)));

    for (const client of clients) client.end();
    await pollUntil(async () => (balancer.stats().sessionsCurrent === 0 ? true : undefined), { timeoutMs: 5000, what: 'the sessions to end' });
    assert.deepEqual(clientErrors, [], `no client saw an error, to the end of its session:\n${log.join('\n')}`);
    const ended = sessionLines(log).filter((line) => line.includes('server=tls17'));
    assert.equal(ended.length, 3);
    // The kernel relay takes a TLS session with the client's first request (its record layer is followed), where it can run.
    const relay = kernelRelaySkip() ? 'node' : 'kernel';
    assert.ok(ended.every((line) => new RegExp(` enc=tls relay=${relay} end="client closed"`).test(line)), ended.join('\n'));
    const none = await rawSocket(balancer.address().port);
    none.socket.write(request(CANCEL_REQUEST, 1234, 5678));
    await none.closed;
    assert.ok(log.some((line) => /end="cancel request for an unknown session"/.test(line)), 'with no encrypted session, an unknown key is dropped');
  } finally {
    for (const client of clients) client.destroy();
    await balancer.stop();
    await echo.close();
    await closer.close();
    await ca.remove();
  }
});

test('encrypted sessions of a server marked down: idle ones closed at once, one waiting for an answer gets it first', async () => {
  const ca = await makeTestCa();
  const slow = await fakeDirectTls(ca, 700);
  const checks = { type: 'tcp', interMs: 100, fastinterMs: 50, fall: 2, timeoutMs: 2000 } as const;
  const log: string[] = [];
  const balancer = await runBalancer(staticBalancerConfig([serverLine('s1', slow.port)], checks), (line) => log.push(line));
  const clients: tls.TLSSocket[] = [];
  try {
    await pollUntil(async () => (balancer.stats().servers[0]?.status === 'UP' ? true : undefined), { timeoutMs: 5000, what: 'the server UP' });
    const idle = await tlsClient(balancer.address().port, ca, clients);
    const busy = await tlsClient(balancer.address().port, ca, clients);
    let answer = '';
    busy.client.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    // One round trip first, as a PostgreSQL session has its startup: the server's TLS 1.3 session
    // tickets, sent after the handshake, would otherwise come after the "query" (it would look answered).
    busy.client.write('startup;');
    await pollUntil(async () => (answer === 'startup;' ? true : undefined), { timeoutMs: 5000, intervalMs: 10, what: 'the first round trip' });
    busy.client.write('query');
    slow.stopListening();
    await pollUntil(async () => (balancer.stats().servers[0]!.status === 'DOWN' ? true : undefined), { timeoutMs: 5000, intervalMs: 10, what: 'the server DOWN' });
    const downAt = Date.now();
    const idleEnd = await idle.closed;
    assert.ok(idleEnd - downAt < 300, `the idle session closed ${idleEnd - downAt} ms after DOWN`);
    const busyEnd = await busy.closed;
    assert.equal(answer, 'startup;query', `the session waiting for an answer got it before it closed:\n${log.join('\n')}`);
    assert.ok(busyEnd - downAt < 2000, `then it closed too (${busyEnd - downAt} ms after DOWN), well before the grace ran out`);
  } finally {
    for (const client of clients) client.destroy();
    await balancer.stop();
    await slow.close();
    await ca.remove();
  }
});

test('SSLRequest: silent and resetting servers skipped; the N of the next one relayed, its connection takes the plaintext startup', async () => {
  const fake = await fakePostgres('accept');
  const silent = await rudePeer('silent');
  const reset = await rudePeer('reset');
  const log: string[] = [];
  const pool = [serverLine('silent', silent.port), serverLine('reset', reset.port), serverLine('plain', fake.port)];
  const balancer = await runBalancer(staticBalancerConfig(pool, { type: 'none' }, { timeouts: { connectMs: 300, clientMs: 0, serverMs: 0 } }), (line) => log.push(line));
  try {
    // Three clients: round robin starts each on a different server.
    for (let i = 1; i <= 3; i++) {
      const raw = await rawSocket(balancer.address().port);
      raw.socket.write(request(SSL_REQUEST));
      await pollUntil(async () => (raw.received().length ? true : undefined), { timeoutMs: 5000, intervalMs: 10, what: 'the answer' });
      assert.equal(raw.received().toString(), 'N');
      raw.socket.write(startupMessage({ user: 'app', database: 'app' }));
      await pollUntil(async () => (raw.received().includes(Buffer.from([0x5a, 0, 0, 0, 5, 0x49])) ? true : undefined), { timeoutMs: 5000, intervalMs: 10, what: 'ReadyForQuery' });
      raw.socket.end(Buffer.from([0x58, 0, 0, 0, 4]));
      await raw.closed;
      assert.equal(fake.connections, i, 'one server connection for the request and the startup');
    }
    await pollUntil(async () => (sessionLines(log).length === 3 ? true : undefined), { timeoutMs: 5000, what: 'the sessions logged' });
    const lines = sessionLines(log);
    assert.ok(lines.every((line) => / server=plain .* enc=none /.test(line)), lines.join('\n'));
    assert.deepEqual(lines.map((line) => /attempts=(\d)/.exec(line)![1]).sort(), ['1', '2', '3'], 'each start in the pool costs its own retries, the N no new attempt');
    assert.ok(log.some((line) => /retry client=\S+ server=silent reason="no answer within 300 ms"/.test(line)), log.join('\n'));
    assert.ok(log.some((line) => /retry client=\S+ server=reset reason="read ECONNRESET"/.test(line)), log.join('\n'));
  } finally {
    await balancer.stop();
    await Promise.all([fake.close(), silent.close(), reset.close()]);
  }
});
