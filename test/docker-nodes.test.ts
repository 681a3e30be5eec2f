// Nodes as containers against the real local engine: master + 2 streaming replicas, docker kill,
// re-add, status from the container's state, and cleanup by label.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { execa } from 'execa';
import { pollUntil } from '../src/common/poll.js';
import { queryRows } from '../src/postgres/client.js';
import { listLabContainers, removeLabContainers } from '../src/runtime/docker/lab.js';
import type { LabError } from '../src/common/errors.js';
import { imagePostgresUser, killNodeContainer, nodeContainerLogs, nodeContainerStatus, startNodeContainer, stopNodeContainer } from '../src/runtime/docker/node.js';
import { addDockerReplica, prepareDocker, startDockerMaster, waitStreaming, withDockerLab, type DockerReadiness } from './helpers/docker.js';
import { freePorts, repoRoot, stopwatch } from './helpers/lab.js';

let docker: DockerReadiness;

before(async () => {
  docker = await prepareDocker();
  if (docker.skipReason) console.log(`docker tests skipped: ${docker.skipReason}`);
});

test('master and two replicas as containers stream; a killed replica is re-added; cleanup removes every labelled container', async (t) => {
  if (!docker.image) return t.skip(docker.skipReason);
  const mark = stopwatch(t);
  await withDockerLab(docker.image, async (lab) => {
    const [m, r1, r2] = await freePorts(3);
    const master = lab.spec('master1', m!);
    const replica1 = lab.spec('replica1', r1!);
    const replica2 = lab.spec('replica2', r2!);
    await startDockerMaster(lab, master);
    await addDockerReplica(lab, replica1, m!);
    await addDockerReplica(lab, replica2, m!);
    mark('master + 2 replicas streaming');

    const streaming = await queryRows<{ application_name: string; client_addr: string }>(
      { port: m! },
      "SELECT application_name, client_addr::text FROM pg_stat_replication WHERE state = 'streaming' ORDER BY 1",
    );
    assert.deepEqual(streaming.map((row) => row.application_name), ['replica1', 'replica2']);
    assert.ok(streaming.every((row) => row.client_addr === '127.0.0.1/32'), 'replicas connect over loopback (host networking)');
    const [inRecovery] = await queryRows<{ r: boolean }>({ port: r1! }, 'SELECT pg_is_in_recovery() AS r');
    assert.equal(inRecovery?.r, true);

    // A write on the master reaches a replica container.
    await queryRows({ port: m! }, 'CREATE TABLE docker_probe AS SELECT 42 AS answer');
    await pollUntil(
      async () => ((await queryRows<{ answer: number }>({ port: r2! }, 'SELECT answer FROM docker_probe').catch(() => []))[0]?.answer === 42 ? true : undefined),
      { timeoutMs: 10_000, intervalMs: 50, what: 'the probe table on replica2' },
    );

    const servers = await listLabContainers(lab.labId);
    assert.deepEqual(servers.map((c) => `${c.node}:${c.role}:${c.state}`).sort(), ['master1:server:running', 'replica1:server:running', 'replica2:server:running']);
    const { stdout: byLabel } = await execa('docker', ['ps', '-q', '--no-trunc', '--filter', `label=pglab.lab=${lab.labId}`]);
    assert.deepEqual(byLabel.split('\n').filter(Boolean).sort(), servers.map((c) => c.id).sort(), 'docker ps by label sees the same containers');

    // docker kill, as seed 004 does: the container's state says crashed, the master loses the walsender.
    const running = await nodeContainerStatus(replica2, 'running');
    assert.equal(running.status, 'running');
    mark('before docker kill');
    const killed = await killNodeContainer(replica2);
    assert.equal(killed.pid, running.pid);
    const crashed = await nodeContainerStatus(replica2, 'running');
    assert.deepEqual([crashed.status, crashed.exitCode], ['crashed', 137]);
    await pollUntil(
      async () => ((await queryRows({ port: m! }, "SELECT 1 FROM pg_stat_replication WHERE application_name = 'replica2'")).length === 0 ? true : undefined),
      { timeoutMs: 90_000, intervalMs: 100, what: 'the master to drop replica2' },
    );

    mark('master dropped replica2');
    // Re-add: rebuilt from a fresh base backup in place of the killed container.
    await addDockerReplica(lab, replica2, m!);
    await waitStreaming(m!, 'replica1');
    mark('replica2 re-added and streaming');
    assert.equal((await nodeContainerStatus(replica2, 'running')).status, 'running');
    assert.match(await nodeContainerLogs(replica2), /ready to accept read-only connections|started streaming WAL/);

    // docker stop is a clean (fast) shutdown: stopped, not crashed.
    await stopNodeContainer(replica1);
    const stopped = await nodeContainerStatus(replica1, 'running');
    assert.deepEqual([stopped.status, stopped.exitCode], ['stopped', 0]);

    // A killed master comes back in a new container: its postmaster.pid names pid 1, which PostgreSQL
    // recognises as stale because the new postmaster is pid 1 too; crash recovery keeps the data.
    await killNodeContainer(master);
    await startNodeContainer(master);
    const [answer] = await queryRows<{ answer: number }>({ port: m! }, 'SELECT answer FROM docker_probe');
    assert.equal(answer?.answer, 42);
    await waitStreaming(m!, 'replica2');
    mark('master killed and restarted');

    const removed = await removeLabContainers(lab.labId);
    assert.equal(removed.length, 3);
    assert.deepEqual(await listLabContainers(lab.labId), []);
    mark('containers removed');
  });
});

test('with no engine at DOCKER_HOST the runtime says what to install or start', async (t) => {
  if (!docker.image) return t.skip(docker.skipReason);
  const script = `
    const { dockerEngine } = await import(${JSON.stringify(`${repoRoot}/dist/src/runtime/docker/engine.js`)});
    try { await dockerEngine(); console.log('connected'); } catch (error) { console.log(JSON.stringify({ code: error.code, message: error.message })); }`;
  const { stdout } = await execa('node', ['--input-type=module', '-e', script], {
    env: { DOCKER_HOST: 'unix:///nonexistent/docker.sock' },
    timeout: 30_000,
  });
  const error = JSON.parse(stdout) as { code: string; message: string };
  assert.equal(error.code, 'ENVIRONMENT');
  assert.match(error.message, /No Docker engine answers at DOCKER_HOST=unix:\/\/\/nonexistent\/docker.sock: start that engine, or unset DOCKER_HOST/);
});

test('an image that is neither local nor pullable names scripts/build-image.sh', async (t) => {
  if (!docker.image) return t.skip(docker.skipReason);
  await assert.rejects(imagePostgresUser('pglab/postgres:0-missing', 'no-lab'), (error: LabError) => {
    assert.equal(error.code, 'ENVIRONMENT');
    assert.match(error.message, /Image pglab\/postgres:0-missing is not on the Docker engine and could not be pulled: build the local one with scripts\/build-image.sh/);
    return true;
  });
});
