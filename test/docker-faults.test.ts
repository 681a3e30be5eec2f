// Issue 17 on the docker runtime: `lab fault pause` is `docker pause` of the node's container (the engine
// freezes every process of it), heal is `docker unpause`; the balancer's check marks the paused replica
// DOWN and takes it back; `lab node restart` and `lab destroy` resume a paused node first (no container left).
import assert from 'node:assert/strict';
import path from 'node:path';
import { before, test } from 'node:test';
import { execa } from 'execa';
import { fetchBalancerStats } from '../src/commands/balancer.js';
import { pollUntil } from '../src/common/poll.js';
import type { BalancerRecord } from '../src/lab/state.js';
import { containerName } from '../src/runtime/docker/labels.js';
import { listLabContainers } from '../src/runtime/docker/lab.js';
import { prepareDocker, withDockerCliLab, type DockerReadiness } from './helpers/docker.js';
import { freePorts, labJson, refused, runLab, stopwatch } from './helpers/lab.js';

let docker: DockerReadiness;

before(async () => {
  docker = await prepareDocker();
  if (docker.skipReason) console.log(`docker fault tests skipped: ${docker.skipReason}`);
});

/** `docker inspect`'s own view of the container: its status word (running, paused, ...) and Paused. */
async function inspectState(container: string): Promise<string> {
  const { stdout } = await execa('docker', ['inspect', '-f', '{{.State.Status}} paused={{.State.Paused}}', container]);
  return stdout.trim();
}

interface StatusJson {
  nodes: { name: string; status: string; faults?: string[]; serverProblem?: string }[];
}

test('lab fault pause on docker: docker pause, balancer DOWN, heal UP, restart and destroy of a paused node', async (t) => {
  if (!docker.image) return t.skip(docker.skipReason);
  const mark = stopwatch(t);
  const [m, r1, listen, stats] = await freePorts(4);
  await withDockerCliLab(docker.image, ['--port', String(m)], async (labDir, labId) => {
    await labJson(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1));
    const record = await labJson<BalancerRecord>(labDir, 'balancer', 'start', '--listen', `127.0.0.1:${listen}`, '--stats', `127.0.0.1:${stats}`);
    const balancerSays = async () => (await fetchBalancerStats(record, 1000)).servers.find((s) => s.name === 'replica1')?.status;
    const until = (status: string, what: string) =>
      pollUntil(async () => ((await balancerSays().catch(() => undefined)) === status ? Date.now() : undefined), { timeoutMs: 15_000, intervalMs: 20, what });
    await until('UP', 'replica1 UP in the balancer');
    const container = containerName(labId, 'replica1', 'server');
    mark('master + replica1 in containers, balancer UP');

    // Bad input: one line, non-zero exit, nothing recorded.
    await refused(labDir, ['fault', 'pause', 'nosuch'], 5, /Unknown node "nosuch"/);
    assert.deepEqual(await labJson(labDir, 'fault', 'list'), []);

    // pause: the engine freezes the container; the balancer's check marks it DOWN.
    const pauseStart = Date.now();
    const paused = await labJson<{ pid: number; processes: number; how: string }>(labDir, 'fault', 'pause', 'replica1');
    const pauseMs = Date.now() - pauseStart;
    assert.match(paused.how, new RegExp(`docker pause of container ${container}`));
    assert.ok(paused.processes >= 3, `the postmaster and its children (${paused.processes})`);
    assert.equal(await inspectState(container), 'paused paused=true');
    const down = (await until('DOWN', 'the balancer to mark the paused replica1 DOWN')) - pauseStart - pauseMs;
    console.log(`# docker pause replica1: DOWN at the balancer ${down} ms after \`lab fault pause\` returned (the command took ${pauseMs} ms)`);
    await refused(labDir, ['fault', 'pause', 'replica1'], 3, /already paused/);
    const listed = await labJson(labDir, 'fault', 'list');
    assert.deepEqual(listed.map((f: any) => [f.node, f.kind, f.phase, f.pid]), [['replica1', 'pause', 'applied', paused.pid]]);
    const status = await labJson<StatusJson>(labDir, 'status');
    const r1Status = status.nodes.find((n) => n.name === 'replica1')!;
    assert.deepEqual([r1Status.status, r1Status.faults, r1Status.serverProblem], ['running', ['pause'], 'not answering']);

    // heal: docker unpause; UP again.
    const healStart = Date.now();
    const healed = await labJson<{ healed: { node: string; kind: string; outcome: string }[] }>(labDir, 'fault', 'heal', 'replica1');
    assert.match(healed.healed[0]!.outcome, /docker unpause/);
    assert.equal(await inspectState(container), 'running paused=false');
    const up = (await until('UP', 'the balancer to take replica1 back')) - healStart;
    console.log(`# docker unpause replica1: UP at the balancer ${up} ms after \`lab fault heal\` started`);
    mark('paused, DOWN, healed, UP');

    // restart of a paused node: unpaused first, then restarted (a new container); the fault is forgotten.
    await labJson(labDir, 'fault', 'pause', 'replica1');
    const restarted = await runLab(labDir, ['node', 'restart', 'replica1']);
    assert.equal(restarted.exitCode, 0, restarted.stderr);
    assert.equal(await inspectState(container), 'running paused=false');
    assert.deepEqual(await labJson(labDir, 'fault', 'list'), []);
    await until('UP', 'replica1 UP after its restart');
    mark('paused node restarted');

    // destroy while paused: no container of the lab is left.
    await labJson(labDir, 'fault', 'pause', 'replica1');
    assert.equal(await inspectState(container), 'paused paused=true');
    const destroyed = await runLab(labDir, ['destroy', '--yes']);
    assert.equal(destroyed.exitCode, 0, destroyed.stderr);
    assert.deepEqual(await listLabContainers(labId), []);
    const { stdout: byLabel } = await execa('docker', ['ps', '-aq', '--filter', `label=pglab.lab=${labId}`]);
    assert.equal(byLabel.trim(), '', 'docker ps -a by the lab\'s label is empty');
    mark('destroyed while paused');
  });
});
