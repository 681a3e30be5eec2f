// The balancer's two TLS modes against a real lab (scram + TLS, a master and two replicas), issue 22:
// `--tls terminate` (the balancer serves the lab's certificate, opens verified TLS to each server, reads
// every StartupMessage and CancelRequest), and passthrough's defences against stalled handshakes (it
// answers an SSLRequest itself for servers known to accept TLS, connects only on a whole ClientHello,
// and server connections of clients in their handshake hold one of the 32 early connects).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { execa } from 'execa';
import { runBalancer } from '../src/balancer/balancer.js';
import { LAB_LIMIT_DEFAULTS } from '../src/balancer/config.js';
import { fetchBalancerStats } from '../src/commands/balancer.js';
import { balancerLogFile } from '../src/lab/lab-dir.js';
import type { BalancerRecord } from '../src/lab/state.js';
import { GSSENC_REQUEST, SSL_REQUEST, startupMessage } from '../src/balancer/protocol.js';
import { tlsPaths } from '../src/lab/access.js';
import { pollUntil } from '../src/common/poll.js';
import { serverLine, staticBalancerConfig } from './helpers/balancer-fakes.js';
import { freePorts, lab, refused, withTempLab } from './helpers/lab.js';
import { makeTestCa } from './helpers/tls.js';
import { cancelThroughTls } from './clients/cancel-through-tls.js';
import { captureClientHello, realClientsUnderStall, stalledHandshakes } from '../benchmarks/tls-stall.js';
import type { LabEnv } from './clients/matrix.js';

/** An 8-byte SSLRequest / GSSENCRequest. */
function request(code: number): Buffer {
  const packet = Buffer.alloc(8);
  packet.writeInt32BE(8, 0);
  packet.writeInt32BE(code, 4);
  return packet;
}

const SSL_IN_USE = 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()';

/** psql through `port` with the lab's environment (useLabEnv: pgpass, CA), bounded. */
function psql(port: number, options: string, sql: string, extraEnv: Record<string, string> = {}) {
  return execa('psql', ['-X', '-Atc', sql, `host=127.0.0.1 port=${port} user=postgres dbname=postgres connect_timeout=10 ${options}`], {
    timeout: 20_000,
    reject: false,
    all: true,
    env: extraEnv,
  });
}

test('--tls terminate and stalled TLS handshakes against a lab of a master and two replicas (scram + TLS)', { timeout: 300_000 }, async (t) => {
  await withTempLab(async (labDir) => {
    const [master, r1, r2] = await freePorts(3);
    await lab(labDir, 'master', 'start', '--port', String(master));
    await lab(labDir, 'replica', 'add', 'replica1', `${labDir}/replica1`, String(r1));
    await lab(labDir, 'replica', 'add', 'replica2', `${labDir}/replica2`, String(r2));
    const files = tlsPaths(labDir);
    // The balancers run as users run them, in processes of their own (`lab balancer start`): the hostile
    // clients below live in this process, and must not share an event loop with the balancer.
    const names: string[] = [];
    const start = async (name: string, ...flags: string[]) => {
      const [listen, stats] = await freePorts(2);
      await lab(labDir, 'balancer', 'start', '--name', name, '--listen', `127.0.0.1:${listen}`, '--stats', `127.0.0.1:${stats}`, ...flags);
      names.push(name);
      const record = { name, stats: `127.0.0.1:${stats}` } as BalancerRecord;
      await pollUntil(async () => ((await fetchBalancerStats(record)).servers.filter((s) => s.status === 'UP').length === 2 ? true : undefined), {
        timeoutMs: 20_000,
        what: `both replicas UP in ${name}`,
      });
      const logFile = balancerLogFile(labDir, name);
      return { port: listen!, record, log: async () => (await readFile(logFile, 'utf8').catch(() => '')).split('\n') };
    };
    try {
      const term = await start('lbt', '--tls', 'terminate');
      const pass = await start('lb');
      /** How the balancer's sessions ended, counted by reason (what a failed real client ran into). */
      const endReasons = async (balancer: { log: () => Promise<string[]> }) => {
        const counts = new Map<string, number>();
        for (const line of await balancer.log()) {
          const reason = / end="([^"]*)"/.exec(line)?.[1]?.replace(/\d+ ms/g, 'N ms');
          if (reason) counts.set(reason, (counts.get(reason) ?? 0) + 1);
        }
        const downs = (await balancer.log()).filter((line) => / -> DOWN: /.test(line));
        return `${JSON.stringify(Object.fromEntries(counts))}${downs.length ? `; ${downs.join('; ')}` : ''}`;
      };
      /** Waits until the balancer's log (written in batches) has a line matching `pattern`. */
      const logged = (balancer: { log: () => Promise<string[]> }, pattern: RegExp, what: string) =>
        pollUntil(async () => ((await balancer.log()).some((line) => pattern.test(line)) ? true : undefined), { timeoutMs: 5000, what });

      await t.test('terminate: verify-full and channel_binding=require end on TLS to the server; plaintext stays plaintext', async () => {
        for (const options of ['sslmode=verify-full', 'sslmode=require', 'sslmode=verify-full channel_binding=require']) {
          const r = await psql(term.port, options, SSL_IN_USE);
          assert.equal(r.exitCode, 0, `${options}: ${r.all}`);
          assert.equal(String(r.stdout).trim(), 't', `${options}: the server's side of the session is TLS too`);
        }
        const plain = await psql(term.port, 'sslmode=disable', SSL_IN_USE);
        assert.equal(String(plain.stdout).trim(), 'f', `sslmode=disable stays plaintext end to end: ${plain.all}`);
        await logged(term, / enc=none relay=\w+ end=/, 'the plaintext session logged');
        const lines = (await term.log()).filter((line) => / client=\S+ server=replica\d /.test(line));
        assert.ok(lines.filter((line) => / enc=tls-terminated relay=node /.test(line)).length >= 3, lines.join('\n'));
      });

      await t.test('terminate: a libpq 15 cancel (plaintext) of a terminated session lands on its server, whichever of the two it is', async () => {
        for (let i = 0; i < 2; i += 1) {
          const child = psql(term.port, 'sslmode=verify-full', 'SELECT pg_sleep(20)');
          // Running on one of the two replicas (SIGINT before that would only end psql's login).
          await pollUntil(async () => {
            const sql = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(20)' AND state = 'active'";
            const counts = await Promise.all([r1!, r2!].map((port) => psql(port, 'sslmode=disable', sql)));
            return counts.some((c) => String(c.stdout).trim() === '1') ? true : undefined;
          }, { timeoutMs: 10_000, intervalMs: 100, what: 'the query running' });
          const cancelledAt = Date.now();
          child.kill('SIGINT');
          const r = await child;
          const ms = Date.now() - cancelledAt;
          assert.match(String(r.all), /canceling statement due to user request/, String(r.all));
          assert.ok(ms < 3000, `cancelled ${ms} ms after SIGINT`);
        }
        await logged(term, /end="cancel request forwarded"/, 'the cancels routed by key');
      });

      await t.test('cancels sent inside TLS (asyncpg, postgres.js) through two replicas: terminate routes each by its key; passthrough logs what it cannot route', async () => {
        const envOf = async (name: string) => JSON.parse(await lab(labDir, 'env', '--balancer', name, '--json')) as LabEnv;
        const [envTerm, envPass] = [await envOf('lbt'), await envOf('lb')];
        for (const client of ['asyncpg', 'postgres.js'] as const) {
          // Twice each: round robin would send one of the two cancels to the other replica.
          for (let i = 0; i < 2; i += 1) {
            const outcome = await cancelThroughTls(client, envTerm, 10);
            t.diagnostic(`--tls terminate, ${client}: ${outcome.detail}`);
            assert.ok(outcome.ok && outcome.elapsedMs < 3000, `${client} through --tls terminate: ${outcome.detail}`);
          }
          const lost = await cancelThroughTls(client, envPass, 3);
          t.diagnostic(`passthrough, ${client}: ${lost.detail}`);
        }
        await logged(term, /end="cancel request forwarded"/, 'the encrypted cancels routed by key');
        const noted = (await pass.log()).filter((line) => /a CancelRequest sent inside TLS .* start the balancer with --tls terminate/.test(line));
        assert.ok(noted.length >= 2, `passthrough names each encrypted cancel and the flag that routes it:\n${(await pass.log()).slice(-10).join('\n')}`);
        // The stats say it too: the mode, and the cancels passthrough saw inside TLS (JSON and Prometheus).
        const [passStats, termStats] = [await fetchBalancerStats(pass.record), await fetchBalancerStats(term.record)];
        assert.deepEqual([passStats.tls, termStats.tls], ['passthrough', 'terminate']);
        assert.ok((passStats.cancelsInsideTls ?? 0) >= 2 && termStats.cancelsInsideTls === 0, `cancels inside TLS: ${passStats.cancelsInsideTls} / ${termStats.cancelsInsideTls}`);
        const metrics = await (await fetch(`http://${pass.record.stats}/metrics`)).text();
        assert.match(metrics, new RegExp(`^lab_balancer_cancels_inside_tls_total\\{balancer="lb"\\} ${passStats.cancelsInsideTls}$`, 'm'));
      });

      await t.test('terminate: a direct TLS client (ALPN postgresql) is served by PostgreSQL 15 servers; one without ALPN is closed', async () => {
        const ca = readFileSync(files.caCert);
        const client = tls.connect({ host: '127.0.0.1', port: term.port, ca, ALPNProtocols: ['postgresql'] });
        client.on('error', () => undefined);
        try {
          await once(client, 'secureConnect');
          assert.equal(client.alpnProtocol, 'postgresql');
          client.write(startupMessage({ user: 'postgres', database: 'postgres' }));
          const [answer] = (await once(client, 'data')) as [Buffer];
          // AuthenticationSASL (R, code 10): the startup reached a server, over the balancer's own TLS.
          assert.equal(String.fromCharCode(answer[0]!), 'R', answer.toString('latin1'));
          assert.equal(answer.readInt32BE(5), 10);
        } finally {
          client.destroy();
        }
        const noAlpn = tls.connect({ host: '127.0.0.1', port: term.port, ca });
        noAlpn.on('error', () => undefined);
        await once(noAlpn, 'close');
        await logged(term, /end="direct TLS client without ALPN postgresql"/, 'the refusal logged');
      });

      await t.test('terminate: GSSENCRequest still gets the server\'s own answer; plaintext after an SSLRequest is refused', async () => {
        const direct = net.connect({ host: '127.0.0.1', port: r1! });
        direct.on('error', () => undefined);
        await once(direct, 'connect');
        direct.write(request(GSSENC_REQUEST));
        const [own] = (await once(direct, 'data')) as [Buffer];
        direct.destroy();
        const through = net.connect({ host: '127.0.0.1', port: term.port });
        through.on('error', () => undefined);
        await once(through, 'connect');
        through.write(request(GSSENC_REQUEST));
        const [relayed] = (await once(through, 'data')) as [Buffer];
        through.destroy();
        assert.deepEqual(relayed, own);
        // An SSLRequest with plaintext behind it in one write (CVE-2021-23214's buffer stuffing): refused.
        const stuffed = net.connect({ host: '127.0.0.1', port: term.port });
        stuffed.on('error', () => undefined);
        await once(stuffed, 'connect');
        stuffed.write(Buffer.concat([request(SSL_REQUEST), startupMessage({ user: 'postgres', database: 'postgres' })]));
        const chunks: Buffer[] = [];
        stuffed.on('data', (chunk: Buffer) => chunks.push(chunk));
        await once(stuffed, 'close');
        assert.match(Buffer.concat(chunks).toString('latin1'), /unencrypted data after SSL request/);
      });

      await t.test('passthrough: 300 clients that stop after an SSLRequest hold no server connection; real clients are all served', async () => {
        const run = await realClientsUnderStall(pass.port, [r1!, r2!], () => stalledHandshakes(pass.port, 300, null));
        t.diagnostic(`SSLRequest only: ${run.served}/30 served, slowest ${run.slowestMs} ms, at most ${run.hostileServerConnections} server connection(s) beyond the real clients'`);
        assert.deepEqual(run.failed, [], `${run.failed.join('\n')}\nthe balancer's ends of sessions: ${await endReasons(pass)}`);
        // The checks may open their probe connection while sampled: 2 servers, one probe each.
        assert.ok(run.hostileServerConnections <= 2, `the stalled SSLRequests held ${run.hostileServerConnections} server connections`);
      });

      await t.test('passthrough: 300 clients that stop after their ClientHello hold at most the early-connect cap; real clients are all served', async () => {
        const hello = await captureClientHello();
        const run = await realClientsUnderStall(pass.port, [r1!, r2!], () => stalledHandshakes(pass.port, 300, hello));
        t.diagnostic(`SSLRequest + ClientHello: ${run.served}/30 served, slowest ${run.slowestMs} ms, at most ${run.hostileServerConnections} server connection(s) beyond the real clients'`);
        assert.deepEqual(run.failed, [], `${run.failed.join('\n')}\nthe balancer's ends of sessions: ${await endReasons(pass)}`);
        // Beside the early connects, the checks': a probe per server, and a kept connection re-opened.
        assert.ok(run.hostileServerConnections <= LAB_LIMIT_DEFAULTS.earlyConnects + 4, `stalled handshakes held ${run.hostileServerConnections} server connections`);
        await logged(pass, /end="the client did not answer the server's TLS handshake within 1000 ms"/, 'stalled handshakes closed');
      });

      await t.test('terminate: stalled handshakes of either kind hold no server connection; real clients are all served', async () => {
        const hello = await captureClientHello();
        const run = await realClientsUnderStall(term.port, [r1!, r2!], () => {
          const a = stalledHandshakes(term.port, 300, null);
          const b = stalledHandshakes(term.port, 300, hello);
          return () => (a(), b());
        });
        t.diagnostic(`terminate, 600 stalled: ${run.served}/30 served, slowest ${run.slowestMs} ms, at most ${run.hostileServerConnections} server connection(s) beyond the real clients'`);
        assert.deepEqual(run.failed, [], `${run.failed.join('\n')}\nthe balancer's ends of sessions: ${await endReasons(term)}`);
        assert.ok(run.hostileServerConnections <= 2, `stalled handshakes held ${run.hostileServerConnections} server connections`);
      });
    } finally {
      for (const name of names) await lab(labDir, 'balancer', 'stop', '--name', name);
    }

    await t.test('lab balancer start --tls terminate: runs from the CLI; refused with --engine haproxy', async () => {
      const [listen, stats] = await freePorts(2);
      await lab(labDir, 'balancer', 'start', '--name', 'lbt', '--tls', 'terminate', '--listen', `127.0.0.1:${listen}`, '--stats', `127.0.0.1:${stats}`);
      try {
        await pollUntil(async () => (String((await psql(listen!, 'sslmode=verify-full', SSL_IN_USE)).stdout).trim() === 't' ? true : undefined), {
          timeoutMs: 10_000,
          intervalMs: 200,
          what: 'a session through the CLI balancer',
        });
      } finally {
        await lab(labDir, 'balancer', 'stop', '--name', 'lbt');
      }
      await refused(labDir, ['balancer', 'start', '--name', 'hx', '--engine', 'haproxy', '--tls', 'terminate'], 2, /--tls terminate is the built-in balancer's/);
      await refused(labDir, ['balancer', 'start', '--name', 'bad', '--tls', 'decrypt'], 2, /Invalid --tls "decrypt": expected passthrough or terminate/);
    });
  });
});

test('--tls terminate verifies each server against the lab CA: a server with another CA\'s certificate is skipped', async () => {
  await withTempLab(async (labDir) => {
    const [master] = await freePorts(1);
    await lab(labDir, 'master', 'start', '--port', String(master));
    const files = tlsPaths(labDir);
    const foreign = await makeTestCa();
    // A fake PostgreSQL that says 'S' and then serves a certificate of another CA.
    const impostor = net.createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () => {
        socket.write('S');
        const secure = new tls.TLSSocket(socket, { isServer: true, cert: foreign.cert, key: foreign.key });
        secure.on('error', () => undefined);
      });
    });
    await new Promise<void>((resolve) => impostor.listen({ host: '127.0.0.1', port: 0 }, resolve));
    const log: string[] = [];
    const pool = [serverLine('impostor', (impostor.address() as net.AddressInfo).port, { checkOverrides: { type: 'none' } }), serverLine('master1', master!, { checkOverrides: { type: 'none' } })];
    const balancer = await runBalancer(
      staticBalancerConfig(pool, { type: 'none' }, { tls: { mode: 'terminate', certFile: files.serverCert, keyFile: files.serverKey, caFile: files.caCert }, timeouts: { connectMs: 3000, clientMs: 0, serverMs: 0 } }),
      (line) => log.push(line),
    );
    try {
      for (let i = 0; i < 2; i += 1) {
        const r = await psql(balancer.address().port, 'sslmode=verify-full', SSL_IN_USE);
        assert.equal(r.exitCode, 0, r.all);
      }
      assert.ok(log.some((line) => /retry client=\S+ server=impostor reason="(self.signed|unable to verify|.*certificate)/.test(line)), log.join('\n'));
      assert.ok(log.filter((line) => / server=master1 .* enc=tls-terminated /.test(line)).length === 2, log.join('\n'));
    } finally {
      await balancer.stop();
      impostor.close();
      await foreign.remove();
    }
  });
});
