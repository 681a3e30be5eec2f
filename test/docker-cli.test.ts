// The docker runtime as a user drives it: the real CLI with --runtime docker, master + 2 replicas in
// containers, docker kill seen as crashed by `lab status` and `lab stat xact`, the built-in balancer
// marking the killed replica DOWN and taking it back after the re-add, runtimes never mixed, and
// `lab promote` through pg_promote(), `lab replica follow`, `lab node rewind` of the stopped old master,
// and `lab destroy --yes` leaving no container and no process.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { before, test } from 'node:test';
import { fetchBalancerStats } from '../src/commands/balancer.js';
import { pollUntil } from '../src/common/poll.js';
import type { BalancerRecord } from '../src/lab/state.js';
import { listLabContainers } from '../src/runtime/docker/lab.js';
import { prepareDocker, withDockerCliLab, type DockerReadiness } from './helpers/docker.js';
import { freePorts, lab, labJson, processesMentioning, runLab, stopwatch } from './helpers/lab.js';

let docker: DockerReadiness;

before(async () => {
  docker = await prepareDocker();
  if (docker.skipReason) console.log(`docker CLI tests skipped: ${docker.skipReason}`);
});

interface StatusJson {
  runtime: string;
  image?: string;
  nodes: { name: string; status: string; replication: string | null; pid: number | null; serverRole: string | null }[];
}

const statesOf = (status: StatusJson) => status.nodes.map((n) => `${n.name}:${n.status}:${n.replication}`);

test('lab --runtime docker: master + 2 replicas in containers, docker kill, balancer DOWN/UP, no mixing, promote, follow, rewind, destroy leaves nothing', async (t) => {
  if (!docker.image) return t.skip(docker.skipReason);
  const mark = stopwatch(t);
  const [m, r1, r2, listen, stats] = await freePorts(5);
  await withDockerCliLab(docker.image, ['--port', String(m)], async (labDir, labId) => {
    // Later commands need no --runtime: the lab records it (an explicit matching one is fine too).
    await lab(labDir, 'replica', 'add', 'replica1', `${labDir}/replica1`, String(r1));
    await lab(labDir, '--runtime', 'docker', 'replica', 'add', 'replica2', `${labDir}/replica2`, String(r2));
    mark('master + 2 replicas in containers');

    const status = await labJson<StatusJson>(labDir, 'status');
    assert.deepEqual([status.runtime, status.image], ['docker', docker.image]);
    assert.deepEqual(statesOf(status), ['master1:running:primary', 'replica1:running:streaming', 'replica2:running:streaming']);
    const servers = await listLabContainers(labId);
    assert.deepEqual(servers.map((c) => `${c.node}:${c.role}:${c.state}`).sort(), ['master1:server:running', 'replica1:server:running', 'replica2:server:running']);
    // The server's log is the lab's log file, as with processes.
    assert.match(await readFile(`${labDir}/log/replica2.log`, 'utf8'), /database system is ready to accept read-only connections/);

    // Mixing runtimes is refused (exit 3, CONFLICT), by flag and by environment.
    for (const attempt of [
      await runLab(labDir, ['--runtime', 'process', 'status']),
      await runLab(labDir, ['node', 'stop', 'replica1'], { env: { LAB_RUNTIME: 'process' } }),
      await runLab(labDir, ['--runtime', 'process', 'stat', 'xact']),
    ]) {
      assert.equal(attempt.exitCode, 3, attempt.stderr);
      assert.match(attempt.stderr, /runs its nodes on the docker runtime, not process/);
    }
    assert.equal((await labJson<StatusJson>(labDir, 'status')).nodes.find((n) => n.name === 'replica1')?.status, 'running', 'the refused stop did nothing');

    const record = await labJson<BalancerRecord>(labDir, 'balancer', 'start', '--listen', `127.0.0.1:${listen}`, '--stats', `127.0.0.1:${stats}`);
    const balancerSays = async (name: string) => (await fetchBalancerStats(record, 1000)).servers.find((s) => s.name === name)?.status;
    await pollUntil(async () => ((await fetchBalancerStats(record, 1000)).servers.every((s) => s.status === 'UP') ? true : undefined), {
      timeoutMs: 10_000, intervalMs: 50, what: 'both replicas UP in the balancer',
    });

    // docker kill, as seed 004 does: status says crashed, the watchers say why, the balancer drops it.
    const killed = await labJson<{ pid: number; killedAtMs: number }>(labDir, 'node', 'kill', 'replica2');
    assert.equal(killed.pid, status.nodes.find((n) => n.name === 'replica2')?.pid);
    const down = await pollUntil(async () => ((await balancerSays('replica2')) === 'DOWN' ? Date.now() : undefined), {
      timeoutMs: 15_000, intervalMs: 20, what: 'the balancer to mark replica2 DOWN',
    });
    mark(`replica2 DOWN in the balancer ${down - killed.killedAtMs} ms after docker kill`);
    const afterKill = await labJson<StatusJson>(labDir, 'status');
    assert.equal(afterKill.nodes.find((n) => n.name === 'replica2')?.status, 'crashed');
    assert.equal(afterKill.nodes.find((n) => n.name === 'replica1')?.status, 'running');
    const xact = await labJson<{ rows: { node: string; up: boolean; labState: string | null }[] }>(labDir, 'stat', 'xact');
    assert.deepEqual(xact.rows.map((r) => `${r.node}:${r.up}:${r.labState}`).sort(), ['master1:true:null', 'replica1:true:null', 'replica2:false:crashed']);

    // Re-add: rebuilt in a new container; the balancer takes it back.
    await lab(labDir, 'replica', 'add', 'replica2', `${labDir}/replica2`, String(r2));
    await pollUntil(async () => ((await balancerSays('replica2')) === 'UP' ? true : undefined), {
      timeoutMs: 15_000, intervalMs: 20, what: 'the balancer to take replica2 back',
    });
    mark('replica2 re-added and UP again');
    assert.deepEqual(statesOf(await labJson<StatusJson>(labDir, 'status')), ['master1:running:primary', 'replica1:running:streaming', 'replica2:running:streaming']);

    // Promotion asks the server (pg_promote()): the host's pg_ctl cannot write into the image user's data dir.
    await lab(labDir, 'node', 'stop', 'master1');
    const promoted = await labJson<{ name: string; timeline: number; previousPrimary: string }>(labDir, 'promote', 'replica1');
    assert.deepEqual([promoted.name, promoted.timeline, promoted.previousPrimary], ['replica1', 2, 'master1']);
    const afterPromote = await labJson<StatusJson>(labDir, 'status');
    assert.deepEqual(afterPromote.nodes.map((n) => `${n.name}:${n.status}:${n.serverRole}`), ['master1:stopped:null', 'replica1:running:primary', 'replica2:running:standby']);

    // replica2 follows the new primary: the standby files are rewritten for the image's user, the container restarted.
    const followed = await labJson<{ primary: string; syncState: string }>(labDir, 'replica', 'follow', 'replica2');
    assert.deepEqual([followed.primary, followed.syncState], ['replica1', 'async']);
    assert.deepEqual(statesOf(await labJson<StatusJson>(labDir, 'status')), ['master1:stopped:needs rewind', 'replica1:running:primary', 'replica2:running:streaming']);

    // The cleanly stopped old master comes back through pg_rewind in a one-off container of the image.
    const rewound = await labJson<{ primary: string; rewind: string }>(labDir, 'node', 'rewind', 'master1');
    assert.equal(rewound.primary, 'replica1');
    assert.deepEqual(statesOf(await labJson<StatusJson>(labDir, 'status')), ['master1:running:streaming', 'replica1:running:primary', 'replica2:running:streaming']);
    assert.deepEqual((await listLabContainers(labId)).map((c) => `${c.node}:${c.role}`).sort(), ['master1:server', 'replica1:server', 'replica2:server'], 'no one-off container is left');

    const destroyed = await labJson<{ stopped: string[] }>(labDir, 'destroy', '--yes');
    assert.ok(destroyed.stopped.includes('balancer lb'), destroyed.stopped.join(', '));
    assert.deepEqual(await listLabContainers(labId), [], 'destroy removes every container of the lab');
    assert.deepEqual(await processesMentioning(labDir), [], 'no server process is left');
    mark('destroyed');
  });
});
