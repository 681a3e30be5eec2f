// Issue 17, --hosts on the docker runtime: each node's container starts with no network of the engine's,
// its namespace is named as the node's (`ip netns attach`) and linked to the lab's bridge like a process
// node's. Replication streams between namespaces, the balancer reaches the replica at its address,
// partition and delay work unchanged in the container's namespace, a restart gets a new namespace linked
// again, and destroy leaves no namespace, link, rule, relay or container, also after a kill -9 of the CLI.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { before, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { execa } from 'execa';
import { queryRows } from '../src/postgres/client.js';
import { containerName } from '../src/runtime/docker/labels.js';
import { prepareDocker, withDockerCliLab, type DockerReadiness } from './helpers/docker.js';
import { isRoot, leftovers, msUntil, relayProcesses, roundTripMs, waitWriteLag } from './helpers/hosts.js';
import { freePorts, labBin, labJson, runLab, stopwatch, tempDir } from './helpers/lab.js';

let docker: DockerReadiness;

before(async () => {
  docker = isRoot ? await prepareDocker() : { skipReason: 'needs root' };
  if (docker.skipReason) console.log(`docker --hosts tests skipped: ${docker.skipReason}`);
});

async function labIndex(labDir: string): Promise<number> {
  return (JSON.parse(await readFile(path.join(labDir, 'lab.json'), 'utf8')) as { hosts: { index: number } }).hosts.index;
}

/** The container's network mode, and the named namespace its PID 1 runs in (`ip netns identify`). */
async function containerNetwork(container: string): Promise<{ mode: string; netns: string }> {
  const { stdout } = await execa('docker', ['inspect', '-f', '{{.HostConfig.NetworkMode}} {{.State.Pid}}', container]);
  const [mode, pid] = stdout.trim().split(' ');
  return { mode: mode!, netns: (await execa('ip', ['netns', 'identify', pid!])).stdout.trim() };
}

/** The lab's containers, running or not, as `docker ps -a` lists them by the lab's label. */
async function labContainers(labId: string): Promise<string[]> {
  const { stdout } = await execa('docker', ['ps', '-a', '--format', '{{.Names}}', '--filter', `label=pglab.lab=${labId}`]);
  return stdout.split('\n').filter(Boolean);
}

test('docker --hosts: master + replica in their namespaces, streaming, balancer, partition and delay timed, restart, destroy leaves nothing', async (t) => {
  if (!docker.image) return t.skip(docker.skipReason);
  const mark = stopwatch(t);
  const [m, r1, lbPort, lbStats] = await freePorts(4);
  let index = 0;
  let id = '';
  await withDockerCliLab(docker.image, ['--hosts', '--port', String(m)], async (labDir, labId) => {
    id = labId;
    index = await labIndex(labDir);
    const net = `10.213.${index}`;
    // pg_basebackup in a one-off container on the host network reaches master1 at its address.
    const added = await labJson(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1), '--base-backup', 'pg_basebackup');
    assert.equal(added.baseBackup, 'pg_basebackup');
    mark('master1 + replica1 in containers on their hosts');

    const replicaContainer = containerName(labId, 'replica1', 'server');
    for (const node of ['master1', 'replica1']) {
      assert.deepEqual(await containerNetwork(containerName(labId, node, 'server')), { mode: 'none', netns: `pglab-${index}-${node}` });
    }
    // Replication between namespaces: the primary sees the replica at its own address.
    const masterConn = { host: `${net}.10`, port: m!, connectTimeoutMs: 3000 };
    const rows = await queryRows<{ name: string; addr: string; state: string }>(masterConn, 'SELECT application_name AS name, host(client_addr) AS addr, state FROM pg_stat_replication');
    assert.deepEqual(rows.map((r) => [r.name, r.addr, r.state]), [['replica1', `${net}.11`, 'streaming']]);
    // The server listens on its address only (and its Unix socket): nothing on the machine's loopback.
    const listening = (await execa('ip', ['netns', 'exec', `pglab-${index}-replica1`, 'ss', '-Hltn'])).stdout.trim().split('\n').map((l) => l.trim().split(/\s+/)[3]);
    assert.deepEqual(listening, [`${net}.11:${r1}`]);
    await assert.rejects(queryRows({ port: r1!, connectTimeoutMs: 1000 }, 'SELECT 1'));
    const status = await labJson(labDir, 'status');
    assert.deepEqual(status.nodes.map((n: any) => [n.name, n.status, n.serverRole]), [['master1', 'running', 'primary'], ['replica1', 'running', 'standby']]);

    // The balancer on the machine reaches the replica at its address.
    await labJson(labDir, 'balancer', 'start', '--listen', `127.0.0.1:${lbPort}`, '--stats', `127.0.0.1:${lbStats}`);
    await msUntil(lbStats!, 'replica1', 'UP');
    const [served] = await queryRows<{ a: string }>({ port: lbPort!, connectTimeoutMs: 3000 }, 'SELECT host(inet_server_addr()) AS a');
    assert.equal(served?.a, `${net}.11`);

    // partition: DROP rules in the container's namespace; DOWN, then UP after heal.
    const cutStart = Date.now();
    await labJson(labDir, 'fault', 'partition', 'replica1');
    const cutMs = Date.now() - cutStart;
    const toDown = await msUntil(lbStats!, 'replica1', 'DOWN');
    console.log(`# docker --hosts partition replica1: DOWN at the balancer ${toDown} ms after \`lab fault partition\` returned (the command took ${cutMs} ms)`);
    await assert.rejects(queryRows({ host: `${net}.11`, port: r1!, connectTimeoutMs: 1000 }, 'SELECT 1'), /timeout/i);
    const healStart = Date.now();
    await labJson(labDir, 'fault', 'heal', 'replica1');
    const toUp = Date.now() - healStart + (await msUntil(lbStats!, 'replica1', 'UP'));
    console.log(`# docker --hosts heal replica1: UP at the balancer ${toUp} ms after \`lab fault heal\` started`);
    assert.ok(toDown <= 1600 && toUp <= 2500, `DOWN after ${toDown} ms, UP after ${toUp} ms`);
    mark('partitioned, DOWN, healed, UP');

    // restart: a new container, a new namespace, named and linked again; streaming again from its address.
    await labJson(labDir, 'node', 'restart', 'replica1');
    assert.deepEqual(await containerNetwork(replicaContainer), { mode: 'none', netns: `pglab-${index}-replica1` });
    const again = Date.now();
    for (;;) {
      const back = await queryRows<{ addr: string }>(masterConn, `SELECT host(client_addr) AS addr FROM pg_stat_replication WHERE application_name = 'replica1' AND state = 'streaming'`);
      if (back[0]?.addr === `${net}.11`) break;
      assert.ok(Date.now() - again < 30_000, 'replica1 streams again after its restart');
      await delay(100);
    }
    mark('restarted in a new namespace, streaming');

    // delay: the relay runs in the container's namespace; the replica's walreceiver (the image's postgres
    // uid) is redirected through it too, so the primary sees the delay as write_lag.
    const baseline = await roundTripMs(`${net}.11`, r1!);
    await labJson(labDir, 'fault', 'delay', 'replica1', '100ms');
    const slow = await roundTripMs(`${net}.11`, r1!);
    console.log(`# docker --hosts delay 100ms on replica1: SELECT 1 round trip ${baseline.toFixed(1)} ms -> ${slow.toFixed(1)} ms (median of 5)`);
    assert.ok(slow - baseline >= 90 && slow - baseline <= 200, `round trip ${baseline} -> ${slow} ms`);
    const writeLag = await waitWriteLag(masterConn, 'replica1', 0.09);
    console.log(`# docker --hosts delay 100ms on replica1: the primary's write_lag for it is ${(writeLag * 1000).toFixed(0)} ms`);
    await labJson(labDir, 'fault', 'heal', 'replica1');
    assert.deepEqual(await relayProcesses(index), []);
    mark('delayed, healed');

    // destroy with a delay relay and a partition in force.
    await labJson(labDir, 'fault', 'delay', 'replica1', '50ms');
    await labJson(labDir, 'fault', 'partition', 'master1');
    const destroyed = await runLab(labDir, ['destroy', '--yes']);
    assert.equal(destroyed.exitCode, 0, destroyed.stderr);
    mark('destroyed');
  });
  assert.deepEqual(await leftovers(index), []);
  assert.deepEqual(await relayProcesses(index), []);
  assert.deepEqual(await labContainers(id), []);
});

test('docker --hosts: destroy after a kill -9 of `master start --hosts` once the container\'s namespace is named leaves nothing', async (t) => {
  if (!docker.image) return t.skip(docker.skipReason);
  const root = await tempDir();
  const labDir = path.join(root, 'lab');
  const [port] = await freePorts(1);
  const child = execa('node', [labBin, '--lab-dir', labDir, '--runtime', 'docker', 'master', 'start', '--hosts', '--image', docker.image, '--port', String(port)], { reject: false });
  let index = 0;
  let labId = '';
  const deadline = Date.now() + 60_000;
  for (;;) {
    const state = await readFile(path.join(labDir, 'lab.json'), 'utf8').then(JSON.parse, () => undefined);
    index = state?.hosts?.index ?? 0;
    labId = state?.labId ?? '';
    if (index && (await execa('ip', ['netns', 'list'])).stdout.includes(`pglab-${index}-master1`)) break;
    assert.ok(Date.now() < deadline, 'master start --hosts never named the container\'s namespace');
    await delay(10);
  }
  child.kill('SIGKILL');
  await child;
  let destroyed = await runLab(labDir, ['destroy', '--yes']);
  if (destroyed.exitCode !== 0) destroyed = await runLab(labDir, ['destroy', '--yes']); // a second destroy finishes
  assert.equal(destroyed.exitCode, 0, destroyed.stderr);
  assert.deepEqual(await leftovers(index), []);
  assert.deepEqual(await labContainers(labId), []);
  await execa('rm', ['-rf', root]);
});
