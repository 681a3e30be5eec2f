// The balancer as a user runs it: `lab balancer start` in the background in front of a real lab,
// round robin across two replicas, a replica killed with SIGKILL (measured: out of the pool within 1 s
// while new clients keep connecting), re-added (back within 2 s of accepting connections), stats in
// every format, several named instances, clear clashes, stop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { execa } from 'execa';
import { fetchBalancerStats } from '../src/commands/balancer.js';
import type { BalancerRecord } from '../src/lab/state.js';
import { pollUntil } from '../src/common/poll.js';
import { isRunning } from '../src/common/processes.js';
import { freePorts, lab, labBin, labJson, runLab, withTempLab } from './helpers/lab.js';
import { kernelRelaySkip } from './helpers/balancer-fakes.js';

async function serverPort(port: number): Promise<number> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return Number((await client.query<{ port: string }>('SELECT current_setting(\'port\') AS port')).rows[0]!.port);
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function statusOf(record: BalancerRecord, name: string): Promise<string | undefined> {
  return (await fetchBalancerStats(record)).servers.find((s) => s.name === name)?.status;
}

test('lab balancer: round robin, SIGKILL detection, re-admission, stats formats, instances', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1, r2, listen, stats, listen2, stats2, listen3, stats3] = await freePorts(9);
    await lab(labDir, 'master', 'start', '--port', String(m));
    await lab(labDir, 'replica', 'add', 'replica1', `${labDir}/replica1`, String(r1));
    await lab(labDir, 'replica', 'add', 'replica2', `${labDir}/replica2`, String(r2));

    const record = await labJson<BalancerRecord>(labDir, 'balancer', 'start', '--listen', `127.0.0.1:${listen}`, '--stats', `127.0.0.1:${stats}`);
    assert.equal(record.name, 'lb');
    assert.equal(record.listen, `127.0.0.1:${listen}`);
    assert.ok(await isRunning(record.pid), 'the balancer outlives the CLI that started it');

    // Round robin: new connections alternate between the two replicas.
    await pollUntil(async () => ((await fetchBalancerStats(record)).servers.every((s) => s.status === 'UP') ? true : undefined), { timeoutMs: 5000, what: 'both replicas UP' });
    const ports: number[] = [];
    for (let i = 0; i < 6; i += 1) ports.push(await serverPort(listen!));
    assert.deepEqual([...new Set(ports)].sort(), [r1, r2].sort());
    assert.equal(ports.filter((p) => p === r1).length, 3, `round robin spreads evenly: ${ports.join(',')}`);

    // Stats: JSON (with roles from the sql check), HAProxy CSV both ways, Prometheus, HTML, read-only.
    const json = await fetchBalancerStats(record);
    assert.deepEqual(json.servers.map((s) => [s.name, s.status, s.role]), [['replica1', 'UP', 'replica'], ['replica2', 'UP', 'replica']]);
    assert.equal(json.servers.reduce((t, s) => t + s.sessionsTotal, 0), 6);
    for (const path of ['/;csv', '/?format=csv']) {
      const csv = await (await fetch(`http://127.0.0.1:${stats}${path}`)).text();
      assert.match(csv, /^# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout/);
      // slim: the per-server maxconn the sql check derived from max_connections (100 - 3 reserved - 2).
      assert.match(csv, /\nlb,replica1,0,0,0,\d+,95,3,\d+,\d+,.*,UP,1,/);
    }
    const metrics = await (await fetch(`http://127.0.0.1:${stats}/metrics`)).text();
    assert.match(metrics, /lab_balancer_server_up\{balancer="lb",server="replica2"\} 1/);
    assert.match(metrics, /# TYPE lab_balancer_server_sessions_total counter/);
    const html = await fetch(`http://127.0.0.1:${stats}/`);
    assert.match(html.headers.get('content-type') ?? '', /text\/html/);
    assert.match(await html.text(), /replica2/);
    assert.equal((await fetch(`http://127.0.0.1:${stats}/`, { method: 'POST' })).status, 405);

    // SIGKILL replica2 while clients keep opening sessions through the balancer.
    const before = await labJson<{ nodes: { name: string; pid: number }[] }>(labDir, 'status');
    const victim = before.nodes.find((n) => n.name === 'replica2')!.pid;
    let stop = false;
    const outcome = { connected: 0, connectFailures: [] as string[], cutSessions: 0 };
    const clients = (async () => {
      const deadline = Date.now() + 20_000;
      for (let i = 0; i < 2000 && !stop && Date.now() < deadline; i += 1) {
        const client = new pg.Client({ host: '127.0.0.1', port: listen, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 5000 });
        client.on('error', () => undefined);
        try {
          await client.connect();
          outcome.connected += 1;
        } catch (error) {
          outcome.connectFailures.push((error as Error).message);
          continue;
        }
        // A session already established on the killed server is closed at once: that is expected.
        await client.query('SELECT 1').catch(() => (outcome.cutSessions += 1));
        await client.end().catch(() => undefined);
      }
    })();
    await pollUntil(async () => (outcome.connected > 5 ? true : undefined), { timeoutMs: 5000, what: 'clients to run' });
    process.kill(victim, 'SIGKILL');
    const killedAt = Date.now();
    await pollUntil(async () => ((await statusOf(record, 'replica2')) === 'DOWN' ? true : undefined), { timeoutMs: 5000, intervalMs: 10, what: 'replica2 DOWN' });
    const detectionMs = Date.now() - killedAt;
    const connectedAtDetection = outcome.connected;
    await pollUntil(async () => (outcome.connected > connectedAtDetection + 20 ? true : undefined), { timeoutMs: 10_000, what: 'clients after the kill' });
    stop = true;
    await clients;
    console.log(`SIGKILL detection: ${detectionMs} ms; ${outcome.connected} sessions opened, ${outcome.connectFailures.length} connect failures, ${outcome.cutSessions} established session(s) cut`);
    assert.ok(detectionMs < 1500, `replica2 out of the pool ${detectionMs} ms after SIGKILL`);
    // The lab asks for a password (scram): a client whose SCRAM exchange with replica2 was under way when
    // it died cannot be moved to another server (the exchange is bound to that server's nonce, and the
    // balancer has no password to replay). Those, and only those, may fail; every other one is saved.
    const midAuthentication = (message: string) => /unexpected postmaster exit|Connection terminated unexpectedly/.test(message);
    assert.deepEqual(outcome.connectFailures.filter((m) => !midAuthentication(m)), [], 'no client that could be saved fails to connect while a replica dies');
    assert.ok(outcome.connectFailures.length <= 2, `at most the exchanges under way at the kill: ${outcome.connectFailures.join('; ')}`);
    const down = (await fetchBalancerStats(record)).servers.find((s) => s.name === 'replica2')!;
    assert.equal(down.downTransitions, 1);
    assert.notEqual(down.checkMessage, '');
    const status = await labJson<{ name: string; relay: string; servers: { name: string; status: string }[] }[]>(labDir, 'balancer', 'status');
    assert.equal(status[0]!.servers.find((s) => s.name === 'replica2')!.status, 'DOWN');
    assert.equal(status[0]!.relay, kernelRelaySkip() ? 'node' : 'kernel', 'the CLI-started balancer takes the kernel relay where it can');

    // Re-add: measured from the first moment replica2 accepts a login to the moment it is UP again.
    let acceptedAt = 0;
    let upAt = 0;
    let watching = true;
    const watchAccept = (async () => {
      while (watching && !acceptedAt) {
        try {
          await serverPort(r2!);
          acceptedAt = Date.now();
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      }
    })();
    const watchUp = (async () => {
      while (watching && !upAt) {
        if ((await statusOf(record, 'replica2')) === 'UP') upAt = Date.now();
        else await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    try {
      await lab(labDir, 'replica', 'add', 'replica2', `${labDir}/replica2`, String(r2));
      await pollUntil(async () => (acceptedAt && upAt ? true : undefined), { timeoutMs: 10_000, what: 'replica2 accepting and UP' });
    } finally {
      watching = false;
      await Promise.all([watchAccept, watchUp]);
    }
    console.log(`re-admission: UP ${upAt - acceptedAt} ms after replica2 first accepted a login`);
    assert.ok(upAt - acceptedAt < 2000, `replica2 back in the pool ${upAt - acceptedAt} ms after accepting connections`);
    const again = new Set<number>();
    for (let i = 0; i < 4; i += 1) again.add(await serverPort(listen!));
    assert.deepEqual([...again].sort(), [r1, r2].sort());

    // Several instances; a name or a port in use is a clear CONFLICT.
    const clashName = await runLab(labDir, ['balancer', 'start', '--listen', `127.0.0.1:${listen2}`, '--stats', `127.0.0.1:${stats2}`]);
    assert.equal(clashName.exitCode, 3);
    assert.match(clashName.stderr, /Balancer "lb" is already running/);
    const clashPort = await runLab(labDir, ['balancer', 'start', '--name', 'lb2', '--listen', `127.0.0.1:${listen}`, '--stats', `127.0.0.1:${stats2}`]);
    assert.equal(clashPort.exitCode, 3);
    assert.match(clashPort.stderr, new RegExp(`--listen 127.0.0.1:${listen} is already in use`));
    const second = await labJson<BalancerRecord>(labDir, 'balancer', 'start', '--name', 'lb2', '--listen', `127.0.0.1:${listen2}`, '--stats', `127.0.0.1:${stats2}`, '--balance', 'leastconn', '--check', 'pgsql');
    assert.ok([r1, r2].includes(await serverPort(listen2!)));
    assert.equal((await labJson<unknown[]>(labDir, 'balancer', 'status')).length, 2);
    const stopped = await labJson<{ wasRunning: boolean }>(labDir, 'balancer', 'stop', '--name', 'lb2');
    assert.equal(stopped.wasRunning, true);
    assert.equal(await isRunning(second.pid), false);

    // --foreground: attached to this terminal; Ctrl-C stops it and the lab no longer lists it.
    const attached = execa('node', [labBin, '--lab-dir', labDir, 'balancer', 'start', '--foreground', '--name', 'lb3', '--listen', `127.0.0.1:${listen3}`, '--stats', `127.0.0.1:${stats3}`], { reject: false });
    try {
      await pollUntil(async () => ((await labJson<{ name: string; running: boolean }[]>(labDir, 'balancer', 'status')).some((b) => b.name === 'lb3' && b.running) ? true : undefined), {
        timeoutMs: 10_000, what: 'lb3 to run in the foreground',
      });
      assert.ok([r1, r2].includes(await serverPort(listen3!)));
      attached.kill('SIGINT');
      assert.equal((await attached).exitCode, 0);
      assert.deepEqual((await labJson<{ name: string }[]>(labDir, 'balancer', 'status')).map((b) => b.name), ['lb']);
    } finally {
      attached.kill('SIGKILL');
      await attached.catch(() => undefined);
    }
    // `lb` is left running on purpose: `lab destroy` (in withTempLab) must stop it.
  });
});
