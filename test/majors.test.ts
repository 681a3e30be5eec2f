// Every PostgreSQL major a user runs (issue 16), as a user drives them: `lab versions install N` for
// the majors Debian 12 lacks, then on each major the lab core (master, two replicas, their standby
// configuration, data checked on the replicas, kill -9 and re-add, stop/start, the stat tables, the
// balancer's sql check with a lag bound, psql and pgbench 15 through it), a short `demo failover`,
// and `demo primary-failover` on 12, 16 and 18. LAB_TEST_MAJORS narrows the list (e.g. "17,18").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { fetchBalancerStats } from '../src/commands/balancer.js';
import type { BalancerRecord } from '../src/lab/state.js';
import { pollUntil } from '../src/common/poll.js';
import { queryRows } from '../src/postgres/client.js';
import { ensureMajor, freePorts, lab, labJson, repoRoot, runLab, withTempLab } from './helpers/lab.js';
import { runPrimaryDrill } from './helpers/primary-drill.js';

const ALL_MAJORS = [12, 13, 14, 15, 16, 17, 18];
const MAJORS = (process.env.LAB_TEST_MAJORS ?? ALL_MAJORS.join(','))
  .split(',')
  .map((m) => Number(m.trim()))
  .filter((m) => ALL_MAJORS.includes(m));
const PRIMARY_DRILL_MAJORS = [12, 16, 18];

interface StatusJson {
  nodes: { name: string; role: string; port: number; status: string; replication: string | null; version?: string }[];
}

/** The same answers on the primary and on a replica once it has replayed everything the primary wrote. */
async function sameData(primaryPort: number, replicaPort: number): Promise<void> {
  const [{ lsn }] = await queryRows<{ lsn: string }>({ port: primaryPort }, 'SELECT pg_current_wal_lsn()::text AS lsn');
  await pollUntil(
    async () => {
      const rows = await queryRows<{ caught: boolean }>({ port: replicaPort }, `SELECT pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn AS caught`);
      return rows[0]!.caught || undefined;
    },
    { timeoutMs: 30_000, what: `replica on ${replicaPort} replays up to ${lsn}` },
  );
  const sql = `SELECT (SELECT count(*) FROM pgbench_accounts) AS accounts, (SELECT sum(abalance) FROM pgbench_accounts) AS balance,
      (SELECT count(*) FROM pgbench_history) AS history, (SELECT sum(delta) FROM pgbench_history) AS deltas`;
  const [onPrimary, onReplica] = [await queryRows({ port: primaryPort }, sql), await queryRows({ port: replicaPort }, sql)];
  assert.deepEqual(onReplica, onPrimary, `replica on ${replicaPort} answers as the primary`);
}

const pgbenchEnv = { PGSSLMODE: 'verify-full' };

for (const major of MAJORS) {
  test(`PostgreSQL ${major}: master, two replicas, data on the replicas, kill -9 and re-add, stat tables, the balancer's sql check`, async () => {
    await ensureMajor(major);
    await withTempLab(async (labDir) => {
      const [m, r1, r2, listen, stats] = await freePorts(5);
      const started = await labJson(labDir, '--pg', String(major), 'master', 'start', '--port', String(m));
      assert.match(started.version, new RegExp(`^${major}\\.`));
      await execa('pgbench', ['-i', '-s', '2', '-q', '-h', '127.0.0.1', '-p', String(m), 'postgres'], { env: pgbenchEnv });

      for (const [name, port] of [['replica1', r1], ['replica2', r2]] as const) {
        // A write load while the base backup runs: the replica must hold it all once caught up.
        const writes = execa('pgbench', ['-n', '-c', '2', '-t', '300', '-h', '127.0.0.1', '-p', String(m), 'postgres'], { env: pgbenchEnv, reject: false });
        const added = await labJson(labDir, 'replica', 'add', name, path.join(labDir, name), String(port));
        assert.equal(added.upstream, 'master1');
        const result = await writes;
        assert.equal(result.exitCode, 0, String(result.stderr));
        await sameData(m!, port!);
      }
      const replica2 = path.join(labDir, 'replica2');
      await stat(path.join(replica2, 'standby.signal'));
      const conf = await readFile(path.join(replica2, 'postgresql.conf'), 'utf8');
      assert.match(conf, major >= 13 ? /wal_keep_size = 128MB/ : /wal_keep_segments = 8/);

      let status = await labJson<StatusJson>(labDir, 'status');
      assert.deepEqual(status.nodes.map((n) => [n.name, n.status, n.replication]), [
        ['master1', 'running', 'primary'],
        ['replica1', 'running', 'streaming'],
        ['replica2', 'running', 'streaming'],
      ]);

      // The stat tables read every major's catalogs.
      const replication = await labJson<{ up: boolean; rows: { name: string; state: string; lagBytes: number | null }[] }>(labDir, 'stat', 'replication');
      assert.equal(replication.up, true);
      assert.deepEqual(replication.rows.filter((r) => r.name).map((r) => [r.name, r.state]).sort(), [['replica1', 'streaming'], ['replica2', 'streaming']]);
      assert.ok(replication.rows.filter((r) => r.name).every((r) => typeof r.lagBytes === 'number'), JSON.stringify(replication.rows));
      const xact = await labJson<{ rows: { node: string; up: boolean; xactCommit: number | null }[] }>(labDir, 'stat', 'xact');
      assert.deepEqual(xact.rows.map((r) => [r.node, r.up, typeof r.xactCommit]).sort(), [['master1', true, 'number'], ['replica1', true, 'number'], ['replica2', true, 'number']]);

      // The balancer's sql check (role and lag) on this major; psql 15 and pgbench 15 through it, over TLS.
      const record = await labJson<BalancerRecord>(labDir, 'balancer', 'start', '--listen', `127.0.0.1:${listen}`, '--stats', `127.0.0.1:${stats}`, '--max-lag', '16MB');
      await pollUntil(async () => ((await fetchBalancerStats(record)).servers.every((s) => s.status === 'UP') ? true : undefined), { timeoutMs: 10_000, what: 'both replicas UP' });
      const servers = (await fetchBalancerStats(record)).servers;
      assert.deepEqual(servers.map((s) => [s.name, s.role]), [['replica1', 'replica'], ['replica2', 'replica']]);
      const psql = await execa('psql', ['-XAtc', 'SELECT pg_is_in_recovery(), current_setting(\'server_version_num\')::int / 10000', `host=127.0.0.1 port=${listen} dbname=postgres sslmode=verify-full`]);
      assert.equal(psql.stdout.trim(), `t|${major}`);
      const select = await execa('pgbench', ['-n', '-S', '-c', '4', '-t', '50', '-h', '127.0.0.1', '-p', String(listen), 'postgres'], { env: pgbenchEnv });
      assert.match(select.stdout, /number of failed transactions: 0|number of transactions actually processed: 200\/200/);

      // kill -9 a replica: the balancer drops it; re-added, it is taken back and holds the data.
      await lab(labDir, 'node', 'kill', 'replica2');
      await pollUntil(async () => ((await fetchBalancerStats(record)).servers.find((s) => s.name === 'replica2')?.status === 'DOWN' ? true : undefined), { timeoutMs: 5000, what: 'replica2 DOWN' });
      const readded = await labJson(labDir, 'replica', 'add', 'replica2', replica2, String(r2));
      assert.equal(readded.rebuilt, true);
      await pollUntil(async () => ((await fetchBalancerStats(record)).servers.every((s) => s.status === 'UP') ? true : undefined), { timeoutMs: 10_000, what: 'replica2 UP again' });
      await sameData(m!, r2!);

      await lab(labDir, 'node', 'stop', 'replica1');
      await lab(labDir, 'node', 'start', 'replica1');
      status = await labJson<StatusJson>(labDir, 'status');
      assert.deepEqual(status.nodes.map((n) => n.replication), ['primary', 'streaming', 'streaming']);
      await lab(labDir, 'balancer', 'stop');
    });
  });

  test(`PostgreSQL ${major}: demo failover (short)`, async () => {
    await ensureMajor(major);
    await withTempLab(async (labDir) => {
      const reportDir = path.join(path.dirname(labDir), 'report');
      const result = await runLab(labDir, ['--pg', String(major), 'demo', 'failover', '--replicas', '2', '--scale', '1', '--duration', '20s', '--kill-at', '5s', '--recover-at', '8s', '--report', reportDir]);
      assert.equal(result.exitCode, 0, `${result.stderr}\n${result.stdout}`);
      const report = JSON.parse(await readFile(path.join(reportDir, 'report.json'), 'utf8'));
      const f = report.figures;
      console.log(`PostgreSQL ${major} demo failover: detection ${f.detection_ms} ms, re-admission ${f.readmission_ms} ms, errors after detection ${f.errors_after_detection}`);
      assert.ok(f.detection_ms !== null && f.detection_ms < 1000, `detection_ms ${f.detection_ms}`);
      assert.ok(f.readmission_ms !== null && f.readmission_ms >= 0 && f.readmission_ms < 2000, `readmission_ms ${f.readmission_ms} (from the server's own "ready to accept" log line)`);
      assert.equal(f.errors_after_detection, 0, JSON.stringify(report.errors));
      // Both serve at the end when the rebuilt replica was back with time to spare (a loaded machine can
      // stretch the rebuild to the end of the load; the report says so and the rest still holds).
      const at = (kind: string) => report.events.find((e: { kind: string; at_ms: number }) => e.kind === kind)?.at_ms as number | undefined;
      const spare = (at('stop') ?? 0) - (at('readmission') ?? Infinity);
      if (spare >= 3000) assert.equal(f.serving_at_end, 'replica1, replica2', `re-admitted ${spare} ms before the end of the load`);
      else console.log(`PostgreSQL ${major}: replica2 re-admitted ${spare} ms before the end of the load: serving at the end not judged`);
    });
  });

  if (PRIMARY_DRILL_MAJORS.includes(major)) {
    test(`PostgreSQL ${major}: demo primary-failover (async)`, async () => {
      await ensureMajor(major);
      await withTempLab(async (labDir) => {
        const { figures, stdout } = await runPrimaryDrill(labDir, ['--partition', '300ms', '--duration', '20s'], {
          global: ['--pg', String(major)],
          step9: major === 15 ? undefined : 'step 9:',
        });
        console.log(`PostgreSQL ${major} primary-failover: lost_commits ${figures.lost_commits} of ${figures.acknowledged_commits}, write downtime ${figures.write_downtime_ms} ms`);
        assert.match(stdout, /step 9:/);
        assert.ok(figures.write_downtime_ms !== null && figures.write_downtime_ms < 10_000, `write downtime ${figures.write_downtime_ms}`);
      });
    });
  }
}

test('PostgreSQL 17 on the docker runtime: an image built from the cached binaries, a replica from pglab\'s own base backup, kill and re-add', async (t) => {
  const ensure = await execa(path.join(repoRoot, 'scripts', 'ensure-docker.sh'), { reject: false, timeout: 300_000, all: true });
  if (ensure.exitCode !== 0) {
    const reason = `no Docker engine can run here: ${String(ensure.all).trim().split('\n').pop()}`;
    console.log(`skipped: ${reason}`);
    t.skip(reason);
    return;
  }
  await ensureMajor(17);
  await lab('/nonexistent-lab', 'versions', 'image', '17');
  await withTempLab(async (labDir) => {
    const [m, r1] = await freePorts(2);
    const started = await labJson(labDir, '--pg', '17', '--runtime', 'docker', 'master', 'start', '--port', String(m));
    assert.match(started.version, /^17\./);
    await execa('pgbench', ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(m), 'postgres'], { env: pgbenchEnv });
    const added = await labJson(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1));
    assert.equal(added.baseBackup, 'pglab');
    await sameData(m!, r1!);
    await lab(labDir, 'node', 'kill', 'replica1');
    await execa('pgbench', ['-n', '-c', '2', '-t', '100', '-h', '127.0.0.1', '-p', String(m), 'postgres'], { env: pgbenchEnv });
    assert.equal((await labJson(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1))).rebuilt, true);
    await sameData(m!, r1!);
    const status = await labJson<StatusJson>(labDir, 'status');
    assert.deepEqual(status.nodes.map((n) => [n.name, n.replication]), [['master1', 'primary'], ['replica1', 'streaming']]);
  });
});
