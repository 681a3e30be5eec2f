// Primary failover on the docker runtime: docker kill the master, promote, follow, and `lab node
// rewind` of the killed master (pg_rewind in a one-off container, the dead container's postmaster.pid
// cleared) until it streams on the new timeline, and of an old primary started by mistake (its
// container stopped first); then `lab demo primary-failover` on containers, whose crash freezes and
// kills the master container's processes from the host, checked like the process drill.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { before, test } from 'node:test';
import { pollUntil } from '../src/common/poll.js';
import { queryRows } from '../src/postgres/client.js';
import { listLabContainers, removeLabContainers } from '../src/runtime/docker/lab.js';
import { prepareDocker, type DockerReadiness } from './helpers/docker.js';
import { freePorts, lab, labJson, withTempLab } from './helpers/lab.js';
import { runPrimaryDrill } from './helpers/primary-drill.js';

let docker: DockerReadiness;

before(async () => {
  docker = await prepareDocker();
  if (docker.skipReason) console.log(`docker failover tests skipped: ${docker.skipReason}`);
});

interface StatusJson {
  nodes: { name: string; role: string; status: string; replication: string | null; serverRole: string | null; timeline: number | null }[];
}

const labIdOf = async (labDir: string) => (JSON.parse(await readFile(path.join(labDir, 'lab.json'), 'utf8')) as { labId: string }).labId;

/** Runs `use` in a temp lab; afterwards (the lab destroyed by withTempLab) no container of it may be left. */
async function withDockerCliLab(use: (labDir: string) => Promise<void>): Promise<void> {
  let labId: string | undefined;
  try {
    await withTempLab(async (labDir) => {
      try {
        await use(labDir);
      } finally {
        labId = await labIdOf(labDir).catch(() => undefined);
      }
    });
  } finally {
    if (labId) {
      const left = await listLabContainers(labId);
      await removeLabContainers(labId);
      assert.deepEqual(left.map((c) => c.name), [], 'containers left behind by the test');
    }
  }
}

test('docker: kill the master, promote, follow, rewind the killed master (timeline 2); then rewind an old primary started by mistake (timeline 3)', async (t) => {
  if (!docker.image) return t.skip(docker.skipReason);
  await withDockerCliLab(async (labDir) => {
    const [m, r1, r2] = await freePorts(3);
    await lab(labDir, '--runtime', 'docker', 'master', 'start', '--port', String(m), '--image', docker.image!);
    await lab(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1));
    await lab(labDir, 'replica', 'add', 'replica2', path.join(labDir, 'replica2'), String(r2));
    await queryRows({ port: m! }, 'CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 1000)');

    await lab(labDir, 'node', 'kill', 'master1');
    assert.equal((await labJson<StatusJson>(labDir, 'status')).nodes.find((n) => n.name === 'master1')?.status, 'crashed');
    // Promote the replica that received the most WAL: the other can then follow it without a rewind.
    const received = async (port: number) =>
      BigInt((await queryRows<{ b: string }>({ port }, "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint AS b"))[0]!.b);
    const [winner, other] = (await received(r2!)) > (await received(r1!)) ? ['replica2', 'replica1'] : ['replica1', 'replica2'];
    const winnerPort = winner === 'replica1' ? r1! : r2!;
    const promoted = await labJson<{ timeline: number; previousPrimary: string }>(labDir, 'promote', winner);
    assert.deepEqual([promoted.previousPrimary, promoted.timeline], ['master1', 2]);
    assert.equal((await labJson<{ primary: string }>(labDir, 'replica', 'follow', other)).primary, winner);
    // Written on timeline 2 only: the rewound master must get it by streaming.
    await queryRows({ port: winnerPort }, 'INSERT INTO t VALUES (1001)');

    const rewound = await labJson<{ primary: string; rewind: string }>(labDir, 'node', 'rewind', 'master1');
    assert.equal(rewound.primary, winner);
    t.diagnostic(`pg_rewind said: ${rewound.rewind}`);

    const status = await labJson<StatusJson>(labDir, 'status');
    const expected = (name: string) => (name === winner ? `${name}:primary:running:primary:primary:2` : `${name}:replica:running:streaming:standby:2`);
    assert.deepEqual(
      status.nodes.map((n) => `${n.name}:${n.role}:${n.status}:${n.replication}:${n.serverRole}:${n.timeline}`),
      ['master1', 'replica1', 'replica2'].map(expected),
    );
    // The server's own word: in recovery, receiving timeline 2, and the row written after the fork replayed.
    const [row] = await queryRows<{ r: boolean; tli: number }>({ port: m! }, 'SELECT pg_is_in_recovery() AS r, received_tli AS tli FROM pg_stat_wal_receiver');
    assert.deepEqual([row!.r, row!.tli], [true, 2]);
    await pollUntil(async () => (Number((await queryRows<{ n: string }>({ port: m! }, 'SELECT count(*) AS n FROM t'))[0]!.n) === 1001 ? true : undefined), {
      timeoutMs: 10_000, intervalMs: 50, what: 'master1 to replay the row written on timeline 2',
    });
    assert.deepEqual((await listLabContainers(await labIdOf(labDir))).map((c) => `${c.node}:${c.role}:${c.state}`).sort(), [
      'master1:server:running', 'replica1:server:running', 'replica2:server:running',
    ], 'the rewind container is gone');

    // Back the other way, with the old primary started by mistake: rewind stops its container first.
    // A clean stop sends the standbys all its WAL, so either can be promoted and the other follow it.
    await lab(labDir, 'node', 'stop', winner);
    assert.equal((await labJson<{ timeline: number }>(labDir, 'promote', 'master1')).timeline, 3);
    await lab(labDir, 'replica', 'follow', other);
    await lab(labDir, 'node', 'start', winner);
    assert.equal((await queryRows<{ r: boolean }>({ port: winnerPort }, 'SELECT pg_is_in_recovery() AS r'))[0]!.r, false, `${winner} runs as a second primary`);
    await lab(labDir, 'node', 'rewind', winner);
    assert.deepEqual(
      (await labJson<StatusJson>(labDir, 'status')).nodes.map((n) => `${n.name}:${n.replication}:${n.timeline}`),
      ['master1:primary:3', 'replica1:streaming:3', 'replica2:streaming:3'],
    );
  });
});

test('docker: demo primary-failover on containers (async, 300 ms partition): the report counts the lost commits exactly', async (t) => {
  if (!docker.image) return t.skip(docker.skipReason);
  process.env.LAB_IMAGE = docker.image; // the demo's nodes use the local image
  await withDockerCliLab(async (labDir) => {
    const { figures, stdout } = await runPrimaryDrill(labDir, ['--partition', '300ms'], { global: ['--runtime', 'docker'] });
    console.log(`docker async: lost_commits ${figures.lost_commits} of ${figures.acknowledged_commits}, write downtime ${figures.write_downtime_ms} ms`);
    assert.match(stdout, /nodes in containers/);
    // The walsenders were found among the container's processes, from the postmaster's host pid.
    assert.match(stdout, /master1's [1-9]\d* walsenders frozen/);
    assert.match(stdout, /master1 rewound/);
    assert.ok(figures.write_downtime_ms !== null && figures.write_downtime_ms < 10_000, `write downtime ${figures.write_downtime_ms}`);
  });
});
