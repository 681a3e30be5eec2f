// `lab stat balancer` reads each balancer's JSON stats over HTTP. The balancer is another helper's
// work; here a tiny HTTP server plays it (the test is about the client side), recorded in a real lab's
// state like `lab balancer start` records one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { execa } from 'execa';
import { freePorts, lab, labBin, labJson, runLab, withTempLab } from './helpers/lab.js';
import { parseBlocks } from './helpers/stat-output.js';
import { updateState, type BalancerRecord } from '../src/lab/state.js';
import type { BalancerStats } from '../src/balancer/stats-types.js';
import type { BalancersSample, TopSample } from '../src/commands/stat.js';

function serverStats(name: string, port: number, overrides: Partial<BalancerStats['servers'][number]> = {}): BalancerStats['servers'][number] {
  return {
    name, address: `127.0.0.1:${port}`, status: 'UP', checkStatus: 'L7OK', checkMessage: 'replica, lag 0 bytes', lastChangeS: 65,
    downtimeS: 0, checksFailed: 0, downTransitions: 0, sessionsCurrent: 3, sessionsMax: 7, sessionsTotal: 120, bytesIn: 1, bytesOut: 2,
    connectionErrors: 0, retries: 0, redispatches: 0, weight: 1, role: 'replica', lagBytes: 0, ...overrides,
  };
}

const STATS: BalancerStats = {
  name: 'lb', engine: 'builtin', listen: '127.0.0.1:15432', uptimeS: 300, sessionsCurrent: 3, sessionsTotal: 125,
  servers: [
    serverStats('replica1', 5433),
    serverStats('replica2', 5434, { status: 'DOWN', checkStatus: 'L4CON', checkMessage: 'connection refused', lastChangeS: 12, sessionsCurrent: 0, sessionsTotal: 5, connectionErrors: 4, role: null, lagBytes: null }),
  ],
};

/** A fake balancer stats endpoint: JSON at `uri`?format=json, or never answering when `hang`. */
async function fakeStats(uri: string, options: { hang?: boolean } = {}): Promise<{ address: string; requests: string[]; close(): Promise<void> }> {
  const requests: string[] = [];
  const server = http.createServer((request, response) => {
    requests.push(request.url ?? '');
    if (options.hang) return; // accepts, never answers
    const url = new URL(request.url ?? '/', 'http://x');
    if (url.pathname !== uri || url.searchParams.get('format') !== 'json') {
      response.writeHead(404).end('not here');
      return;
    }
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(STATS));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** A pid that belonged to a process that has exited: the record must never point at a live stranger. */
async function deadPid(): Promise<number> {
  const child = execa('node', ['-e', '']);
  await child;
  return child.pid!;
}

async function record(name: string, stats: string): Promise<BalancerRecord> {
  return { name, engine: 'builtin', listen: '127.0.0.1:15432', stats, pid: await deadPid(), pool: 'replicas', logFile: `/nonexistent/${name}.log`, startedAt: new Date().toISOString() };
}

test('lab stat balancer: one row per server from the stats JSON; a dead or silent balancer is a DOWN line', async () => {
  const lb = await fakeStats('/');
  const lb2 = await fakeStats('/stats');
  const silent = await fakeStats('/', { hang: true });
  const [closedPort] = await freePorts(1);
  try {
    await withTempLab(async (labDir) => {
      const [m] = await freePorts(1);
      await lab(labDir, 'master', 'start', '--port', String(m));
      assert.match((await runLab(labDir, ['stat', 'balancer'])).stderr, /No balancer in this lab: start one with `lab balancer start`/);
      const records = [
        await record('lb', lb.address),
        await record('lb2', `${lb2.address}/stats`),
        await record('gone', `127.0.0.1:${closedPort}`),
        await record('silent', silent.address),
      ];
      await updateState(labDir, (state) => {
        state.balancers.push(...records);
      });
      try {
        const stdout = await lab(labDir, 'stat', 'balancer', '--name', 'lb');
        const lines = stdout.split('\n');
        assert.match(lines[0]!, /^\*{6} .+ \*{6}$/);
        assert.equal(lines[1], 'balancer lb (listen 127.0.0.1:15432, sessions 3 current / 125 total)');
        assert.equal(
          lines[2],
          '   name   |    address     | status |           check           | since | sess_cur | sess_total | conn_err |  role   | lag_bytes',
        );
        assert.deepEqual(lines.slice(4, 6), [
          ' replica1 | 127.0.0.1:5433 | UP     | L7OK replica, lag 0 bytes | 1m05s |        3 |        120 |        0 | replica |         0',
          ' replica2 | 127.0.0.1:5434 | DOWN   | L4CON connection refused  |   12s |        0 |          5 |        4 |         |',
        ]);
        assert.deepEqual(lb.requests, ['/?format=json']);

        const started = Date.now();
        const all = await labJson<BalancersSample>(labDir, 'stat', 'balancer');
        assert.ok(Date.now() - started < 5000, 'a silent balancer costs at most the timeout');
        assert.deepEqual(all.balancers.map((b) => [b.name, b.up, b.reason]), [
          ['lb', true, null],
          ['lb2', true, null],
          ['gone', false, 'connection refused'],
          ['silent', false, 'not answering: no answer within 1s'],
        ]);
        assert.equal(all.balancers[1]!.url, `http://${lb2.address}/stats?format=json`);
        assert.deepEqual(all.balancers[0]!.servers, STATS.servers);

        const text = await lab(labDir, 'stat', 'balancer', '--name', 'gone');
        assert.match(text, new RegExp(`balancer gone \\(listen 127.0.0.1:15432, stats http://127.0.0.1:${closedPort}/\\?format=json\\)\\nDOWN: connection refused`));

        const watched = await lab(labDir, 'stat', 'balancer', '--name', 'lb', '--watch', '0.2', '--count', '3');
        assert.equal(parseBlocks(watched, true).length, 3);
        assert.equal(lb.requests.length, 1 + 1 + 3);

        const bad = await runLab(labDir, ['stat', 'balancer', '--name', 'nosuch']);
        assert.equal(bad.exitCode, 5);
        assert.match(bad.stderr, /No balancer named "nosuch" in this lab \(balancers: lb, lb2, gone, silent\)/);

        const top = await lab(labDir, 'top', '--once');
        assert.match(top, /^replication \(master master1, port \d+\)$/m);
        assert.match(top, /^transactions \(database postgres\)$/m);
        assert.match(top, /^balancer lb \(listen 127.0.0.1:15432, sessions 3 current \/ 125 total\)$/m);
        assert.match(top, /^balancer silent .*\nDOWN: not answering: no answer within 1s$/m);
        // A reader that goes away (| head) ends the watch cleanly, as Ctrl-C does.
        const headed = await execa('bash', ['-c', `set -o pipefail; node ${labBin} --lab-dir ${labDir} stat xact --watch 0.2 | head -3`], { reject: false, timeout: 30_000 });
        assert.deepEqual([headed.exitCode, String(headed.stderr), String(headed.stdout).split('\n').length], [0, '', 3]);

        const topJson = await labJson<TopSample>(labDir, 'top', '--once');
        assert.deepEqual(Object.keys(topJson), ['at', 'replication', 'xact', 'balancers']);
        assert.deepEqual([topJson.replication.up, topJson.xact.rows.length, topJson.balancers.length], [true, 1, 4]);
      } finally {
        // The records name no live process; take them out so destroy has nothing to stop.
        await updateState(labDir, (state) => {
          state.balancers = [];
        });
      }
    });
  } finally {
    await Promise.all([lb.close(), lb2.close(), silent.close()]);
  }
});
