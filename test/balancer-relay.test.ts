// The established session's data path against a real PostgreSQL server: large transfers both ways
// arrive intact, also while the client stops reading for a while (the path through flow control), the
// stats count the bytes, and a client's Terminate + FIN ends the session. Once per relay: the kernel's
// (BPF sockhash, where this machine allows it) and Node's sockets. These are the plaintext paths, and
// the raw protocol client speaks no SCRAM: the labs are made with --auth trust --tls off (passwords and
// TLS through the balancer: the lab-access, balancer-tls and client-matrix tests).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { execa } from 'execa';
import { runBalancer } from '../src/balancer/balancer.js';
import { pollUntil } from '../src/common/poll.js';
import { kernelRelaySkip, labBalancerConfig, serverLine, staticBalancerConfig } from './helpers/balancer-fakes.js';
import { freePorts, lab, labJson, withTempLab } from './helpers/lab.js';

function frontendMessage(type: string, body: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.write(type, 0, 'latin1');
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}

function startupMessage(): Buffer {
  const params = Buffer.from('user\0postgres\0database\0postgres\0\0', 'latin1');
  const packet = Buffer.alloc(8 + params.length);
  packet.writeInt32BE(packet.length, 0);
  packet.writeInt32BE(196608, 4);
  params.copy(packet, 8);
  return packet;
}

const query = (sql: string): Buffer => frontendMessage('Q', Buffer.from(`${sql}\0`));

/** A raw protocol client: reads whole server messages, so the test sees exactly what the server sent. */
class RawSession {
  private input: Buffer = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  readonly messages: { type: string; body: Buffer }[] = [];
  bytesReceived = 0;

  constructor(readonly socket: net.Socket) {
    // A closed socket wakes the waiters, so untilReady() throws instead of waiting forever.
    socket.on('close', () => {
      for (const wake of this.waiters.splice(0)) wake();
    });
    socket.on('data', (chunk: Buffer) => {
      this.bytesReceived += chunk.length;
      this.input = this.input.length ? Buffer.concat([this.input, chunk]) : chunk;
      while (this.input.length >= 5 && this.input.length >= this.input.readInt32BE(1) + 1) {
        const length = this.input.readInt32BE(1);
        this.messages.push({ type: String.fromCharCode(this.input[0]!), body: this.input.subarray(5, length + 1) });
        this.input = this.input.subarray(length + 1);
      }
      for (const wake of this.waiters.splice(0)) wake();
    });
    // untilReady sees the close (it throws), never waits on a dead socket.
    socket.on('close', () => {
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  static async open(port: number): Promise<RawSession> {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('error', () => undefined);
    // Bounded: the test never leaves a socket behind, whatever happens.
    setTimeout(() => socket.destroy(), 30_000).unref();
    await once(socket, 'connect');
    const session = new RawSession(socket);
    socket.write(startupMessage());
    await session.untilReady();
    return session;
  }

  /** Messages up to and including the next ReadyForQuery (taken off the list). */
  async untilReady(): Promise<{ type: string; body: Buffer }[]> {
    for (;;) {
      const at = this.messages.findIndex((m) => m.type === 'Z');
      if (at >= 0) return this.messages.splice(0, at + 1);
      if (this.socket.destroyed) throw new Error('the balancer closed the session');
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }
}

for (const relay of ['kernel', 'node'] as const) {
test(`relay ${relay}: large answers and uploads survive a paused reader, bytes are counted, Terminate ends the session`, { skip: relay === 'kernel' && kernelRelaySkip() }, async () => {
  await withTempLab(async (labDir) => {
    const [masterPort] = await freePorts(1);
    await lab(labDir, 'master', 'start', '--port', String(masterPort), '--auth', 'trust', '--tls', 'off');
    const logLines: string[] = [];
    // kernelRelayAfter 0: the kernel takes the session at ReadyForQuery after the startup.
    const balancer = await runBalancer(staticBalancerConfig([serverLine('master1', masterPort!)], { type: 'tcp' }, { relay, kernelRelayAfter: 0 }), (line) => logLines.push(line));
    try {
      assert.equal(balancer.stats().relay, relay);
      await pollUntil(async () => (balancer.stats().servers[0]?.status === 'UP' ? true : undefined), { timeoutMs: 5000, what: 'master1 UP' });
      const session = await RawSession.open(balancer.address().port);
      try {
        // Server to client: 32 MB while the client reads nothing for 300 ms.
        const rows = 32;
        const rowBytes = 1024 * 1024;
        session.socket.pause();
        session.socket.write(query(`SELECT repeat('x', ${rowBytes}) AS big FROM generate_series(1, ${rows})`));
        await new Promise((resolve) => setTimeout(resolve, 300));
        session.socket.resume();
        const answer = await session.untilReady();
        const dataRows = answer.filter((m) => m.type === 'D');
        assert.equal(dataRows.length, rows);
        assert.ok(dataRows.every((m) => m.body.length === 2 + 4 + rowBytes && m.body.subarray(6).every((b) => b === 0x78)), 'every row arrives whole');

        // Client to server: 16 MB of COPY data in one burst.
        session.socket.write(query('CREATE TEMP TABLE upload (line text)'));
        await session.untilReady();
        session.socket.write(query('COPY upload FROM STDIN'));
        await pollUntil(async () => (session.messages.some((m) => m.type === 'G') ? true : undefined), { timeoutMs: 5000, what: 'CopyInResponse' });
        const lines = 16 * 1024;
        const line = `${'y'.repeat(1023)}\n`;
        const copyData = Buffer.concat(Array.from({ length: lines }, () => frontendMessage('d', Buffer.from(line))));
        session.socket.write(Buffer.concat([copyData, frontendMessage('c', Buffer.alloc(0))]));
        await session.untilReady();
        session.socket.write(query('SELECT count(*) AS n, sum(length(line)) AS bytes FROM upload'));
        const counted = (await session.untilReady()).find((m) => m.type === 'D')!;
        const [n, bytes] = [counted.body.subarray(6, 6 + counted.body.readInt32BE(2)).toString(), counted.body.subarray(6 + counted.body.readInt32BE(2) + 4).toString()];
        assert.deepEqual([Number(n), Number(bytes)], [lines, lines * 1023]);

        const live = balancer.stats().servers[0]!;
        assert.ok(live.bytesOut >= rows * rowBytes && live.bytesIn >= copyData.length, `bytes counted (in ${live.bytesIn}, out ${live.bytesOut})`);

        // Terminate and FIN: the session ends, the server side too.
        session.socket.end(frontendMessage('X', Buffer.alloc(0)));
        await pollUntil(async () => (balancer.stats().servers[0]!.sessionsCurrent === 0 ? true : undefined), { timeoutMs: 5000, what: 'the session to end' });
        assert.equal(balancer.stats().sessionsCurrent, 0);
        const ended = logLines.find((line) => line.includes('server=master1'));
        assert.match(ended ?? '', new RegExp(`relay=${relay} end="client closed"`), 'the connection log line names the relay');
      } finally {
        session.socket.destroy();
      }
    } finally {
      await balancer.stop();
    }
  });
});
}

test('relay auto: a session moves from Node to the kernel after its round trips, pipelined queries included', { skip: kernelRelaySkip() }, async () => {
  await withTempLab(async (labDir) => {
    const [masterPort] = await freePorts(1);
    await lab(labDir, 'master', 'start', '--port', String(masterPort), '--auth', 'trust', '--tls', 'off');
    const logLines: string[] = [];
    const balancer = await runBalancer(staticBalancerConfig([serverLine('master1', masterPort!)], { type: 'tcp' }, { relay: 'auto', kernelRelayAfter: 3 }), (line) => logLines.push(line));
    try {
      await pollUntil(async () => (balancer.stats().servers[0]?.status === 'UP' ? true : undefined), { timeoutMs: 5000, what: 'master1 UP' });
      const answerOf = (messages: { type: string; body: Buffer }[]): string[] =>
        messages.filter((m) => m.type === 'D').map((m) => m.body.subarray(6, 6 + m.body.readInt32BE(2)).toString());
      const session = await RawSession.open(balancer.address().port);
      try {
        // Round trips 1-2 through Node, then 5 queries in one write (pipelined): the handoff waits until
        // all 5 are answered, whatever their answers' chunks; then 20 more round trips in the kernel.
        for (let i = 1; i <= 2; i++) {
          session.socket.write(query(`SELECT ${i}`));
          assert.deepEqual(answerOf(await session.untilReady()), [String(i)]);
        }
        session.socket.write(Buffer.concat([3, 4, 5, 6, 7].map((i) => query(`SELECT ${i}, pg_sleep(0.01)`))));
        for (const i of [3, 4, 5, 6, 7]) assert.deepEqual(answerOf(await session.untilReady()), [String(i)]);
        for (let i = 8; i <= 27; i++) {
          session.socket.write(query(`SELECT ${i}`));
          assert.deepEqual(answerOf(await session.untilReady()), [String(i)], `query ${i}, after the handoff`);
        }
        session.socket.end(frontendMessage('X', Buffer.alloc(0)));
        await pollUntil(async () => (balancer.stats().sessionsCurrent === 0 ? true : undefined), { timeoutMs: 5000, what: 'the session to end' });
        assert.match(logLines.find((line) => line.includes('server=master1')) ?? '', /relay=kernel end="client closed"/);
      } finally {
        session.socket.destroy();
      }
      // A session that ends before its round trips are up stays with Node (pgbench -C's kind).
      const short = await RawSession.open(balancer.address().port);
      short.socket.write(query('SELECT 1'));
      await short.untilReady();
      short.socket.end(frontendMessage('X', Buffer.alloc(0)));
      await pollUntil(async () => (logLines.filter((line) => line.includes('server=master1')).length === 2 ? true : undefined), { timeoutMs: 5000, what: 'the short session to end' });
      assert.match(logLines.filter((line) => line.includes('server=master1'))[1]!, /relay=node end="client closed"/);
    } finally {
      await balancer.stop();
    }
  });
});

test('relay auto: persistent sessions in the kernel on a replica killed with SIGKILL end at once, the others go on', { skip: kernelRelaySkip() }, async () => {
  await withTempLab(async (labDir) => {
    const [m, r1, r2] = await freePorts(3);
    await lab(labDir, 'master', 'start', '--port', String(m), '--auth', 'trust', '--tls', 'off');
    await execa('pgbench', ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(m), '-U', 'postgres', 'postgres']);
    await lab(labDir, 'replica', 'add', 'replica1', `${labDir}/replica1`, String(r1));
    await lab(labDir, 'replica', 'add', 'replica2', `${labDir}/replica2`, String(r2));
    const ended: { at: number; line: string }[] = [];
    const balancer = await runBalancer(labBalancerConfig(labDir, {}, { name: 'kr' }), (line) => {
      if (line.includes(' client=')) ended.push({ at: Date.now(), line });
    });
    let pgbench: ReturnType<typeof execa> | null = null;
    try {
      await pollUntil(async () => (balancer.stats().servers.filter((s) => s.status === 'UP').length === 2 ? true : undefined), { timeoutMs: 10_000, what: 'two replicas UP' });
      // Four persistent sessions, two per replica (round robin), far past the 16 round trips in Node.
      pgbench = execa('pgbench', ['-S', '-c', '4', '-j', '2', '-T', '8', '-n', '-h', '127.0.0.1', '-p', String(balancer.address().port), '-U', 'postgres', 'postgres'], { reject: false, all: true, timeout: 60_000 });
      await pollUntil(async () => {
        const [r1Stats, r2Stats] = balancer.stats().servers;
        return (r1Stats?.bytesOut ?? 0) > 100_000 && (r2Stats?.bytesOut ?? 0) > 100_000 ? true : undefined;
      }, { timeoutMs: 10_000, intervalMs: 50, what: 'pgbench to run through both replicas' });
      const victim = (await labJson<{ nodes: { name: string; pid: number }[] }>(labDir, 'status')).nodes.find((n) => n.name === 'replica2')!.pid;
      const killedAt = Date.now();
      process.kill(victim, 'SIGKILL');
      // pgbench's own first connection (it reads the scale) ended long before: only later ends count.
      const endedOn = (server: string) => ended.filter((e) => e.at >= killedAt && e.line.includes(`server=${server}`));
      await pollUntil(async () => (endedOn('replica2').length === 2 ? true : undefined), { timeoutMs: 5000, intervalMs: 10, what: "replica2's two sessions to end" });
      const onVictim = endedOn('replica2');
      for (const e of onVictim) {
        assert.match(e.line, / relay=kernel /, 'the session was relayed by the kernel when its server died');
        assert.ok(e.at - killedAt < 1000, `ended ${e.at - killedAt} ms after the kill: ${e.line}`);
      }
      const result = await pgbench;
      const output = String(result.all);
      const aborted = output.split('\n').filter((line) => /client \d+ (script \d+ )?aborted/.test(line));
      assert.equal(aborted.length, 2, `the two clients on replica2 end, the two on replica1 go on:\n${output}`);
      await pollUntil(async () => (endedOn('replica1').length === 2 ? true : undefined), { timeoutMs: 5000, intervalMs: 10, what: "replica1's two sessions to end after pgbench" });
      const survivors = endedOn('replica1');
      for (const e of survivors) {
        assert.match(e.line, / relay=kernel end="client closed"/);
        assert.ok(e.at - killedAt > 3000, 'the sessions on replica1 ran on until pgbench finished');
      }
      console.log(`replica2 killed: its kernel-relayed sessions ended ${onVictim.map((e) => e.at - killedAt).join(' and ')} ms later; replica1's ran to the end`);
    } finally {
      pgbench?.kill();
      await balancer.stop();
    }
  });
});
