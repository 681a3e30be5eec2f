// The stats listener against slow HTTP clients (issue 22): while more slow clients than its cap (32) keep
// coming, each sending a request head it never finishes, a real stats request is answered at once; the
// balancer never holds more than the cap (one more for an instant) of their descriptors, and a slow client
// is still closed by the 3 s head timeout. The balancer runs from its module in a child process of its own,
// so its descriptors can be counted apart from the slow clients'; checks are off, so it opens no others.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readdir } from 'node:fs/promises';
import { execa } from 'execa';
import { STATS_LIMITS } from '../src/balancer/stats-server.js';
import { httpGet } from '../src/common/http-get.js';
import { pollUntil } from '../src/common/poll.js';
import { followLines } from '../src/common/lines.js';
import { closedPort, serverLine, staticBalancerConfig } from './helpers/balancer-fakes.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('64 slow HTTP clients on the stats listener: a real request is answered within 500 ms, descriptors stay capped, slow ones still time out', async () => {
  const config = staticBalancerConfig([serverLine('replica1', await closedPort())], { type: 'none' });
  const module = new URL('../src/balancer/balancer.js', import.meta.url).href;
  const program = `import { runBalancer } from ${JSON.stringify(module)};
const balancer = await runBalancer(${JSON.stringify(config)});
console.log(JSON.stringify(balancer.address()));`;
  const child = execa('node', ['--input-type=module', '-e', program], { reject: false, stdin: 'ignore', stderr: 'inherit' });
  let address: string | undefined;
  const output = followLines(child.stdout, (line) => {
    address ??= line;
  });
  const slow = new Set<net.Socket>();
  let coming = true;
  let opened = 0;
  // A slow client: connects, sends most of a request head, waits; once closed, another comes 50 ms later.
  const open = (port: number): void => {
    if (!coming || opened >= 3000) return;
    opened += 1;
    const socket = net.connect({ host: '127.0.0.1', port });
    slow.add(socket);
    socket.on('error', () => undefined);
    socket.once('connect', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\n'));
    socket.once('close', () => {
      slow.delete(socket);
      setTimeout(() => open(port), 50);
    });
  };
  let sampling = true;
  let sampler: Promise<void> = Promise.resolve();
  try {
    const port = await pollUntil(async () => (address ? (JSON.parse(address) as { statsPort: number }).statsPort : undefined), { timeoutMs: 10_000, what: 'the balancer to listen' });
    const descriptors = async () => (await readdir(`/proc/${child.pid}/fd`)).length;
    const baseline = await descriptors();
    let peak = baseline;
    sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, await descriptors().catch(() => 0));
        await sleep(10);
      }
    })();

    for (let i = 0; i < 64; i += 1) open(port);
    await pollUntil(async () => ((await descriptors()) >= baseline + STATS_LIMITS.maxConnections ? true : undefined), {
      timeoutMs: 5000, what: `${STATS_LIMITS.maxConnections} slow clients held by the stats listener`,
    });

    const openedBefore = opened;
    const times: number[] = [];
    for (let i = 0; i < 10; i += 1) {
      const started = performance.now();
      const answer = await httpGet(`http://127.0.0.1:${port}/?format=json`, 500);
      times.push(Math.round(performance.now() - started));
      assert.equal(answer.status, 200);
      assert.equal((JSON.parse(answer.text) as { name: string }).name, 'lbtest');
      await sleep(100);
    }
    const churned = opened - openedBefore;
    sampling = false;
    await sampler;
    console.log(`stats requests while slow clients held the listener (${opened} opened, ${churned} while the requests ran): ${times.join(', ')} ms; descriptors ${baseline} at rest, at most ${peak}`);
    assert.ok(churned >= STATS_LIMITS.maxConnections, `slow clients kept coming while the requests ran (${churned})`);
    assert.ok(peak <= baseline + STATS_LIMITS.maxConnections + 1, `the balancer held ${peak - baseline} stats connections at once (cap ${STATS_LIMITS.maxConnections}, +1 for an instant)`);

    // No new slow clients: those held are closed by the head timeout (3 s, checked every 0.5 s), not kept.
    coming = false;
    const stoppedAt = Date.now();
    await pollUntil(async () => ((await descriptors()) === baseline ? true : undefined), {
      timeoutMs: STATS_LIMITS.headersTimeoutMs + 1500, intervalMs: 100, what: 'the held slow clients closed by the head timeout',
    });
    console.log(`the last slow clients were closed ${Date.now() - stoppedAt} ms after the last came`);
  } finally {
    coming = false;
    sampling = false;
    await sampler;
    for (const socket of slow) socket.destroy();
    child.kill('SIGTERM');
    await child;
    await output;
  }
});
