// pglab as a library, in-process, as a developer's test suite uses it: Lab.start with replicas, SQL on the
// primary read back on a replica after waitForCatchup, the in-process balancer routing around a killed
// replica and taking it back, a promotion, disposal; two labs at once each with their own password and CA;
// the caller's PG* variables untouched; bad options refused naming the property; the CLI on a library lab.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import pg from 'pg';
import { Lab, LabError } from '../src/index.js';
import { execa } from 'execa';
import { labBin } from './helpers/lab.js';

/** The CLI on a lab dir, without the suite's helper (which points this process's PG* variables at the lab). */
async function runLab(labDir: string, args: string[], options: { timeout: number }) {
  const result = await execa('node', [labBin, '--lab-dir', labDir, ...args], { reject: false, timeout: options.timeout, env: { NO_COLOR: '1' } });
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

const exists = (file: string) => stat(file).then(() => true, () => false);

async function scalar<T>(config: pg.ClientConfig, sql: string): Promise<T> {
  const client = new pg.Client({ ...config, connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return Object.values((await client.query(sql)).rows[0] as Record<string, unknown>)[0] as T;
  } finally {
    await client.end().catch(() => undefined);
  }
}

test('Lab.start: write on the primary, read on a replica, the balancer routes around a killed replica, promote, dispose', async () => {
  const callers = { PGPASSWORD: 'the-callers-own', PGSSLMODE: 'disable', PGPASSFILE: '/nonexistent/callers-pgpass' };
  const saved = Object.fromEntries(Object.keys(callers).map((k) => [k, process.env[k]]));
  Object.assign(process.env, callers);
  const events: string[] = [];
  let lab: Lab | undefined;
  let other: Lab | undefined;
  try {
    lab = await Lab.start({ replicas: 2, onEvent: (e) => events.push(e.type) });
    assert.deepEqual(lab.nodes.map((n) => `${n.name}:${n.role}`).sort(), ['master1:primary', 'replica1:replica', 'replica2:replica']);
    assert.ok(events.includes('step'), 'progress is told as events');
    // A second lab in the same process: its own password and CA.
    other = await Lab.start({});
    assert.notEqual(lab.primary.connectionConfig().password, other.primary.connectionConfig().password);
    await assert.rejects(scalar({ ...other.primary.connectionConfig(), password: lab.primary.connectionConfig().password }, 'select 1'), /password authentication failed/);
    assert.equal(await scalar<number>(other.primary.connectionConfig(), 'select 1 as one'), 1);
    assert.equal(await scalar<boolean>(lab.primary.connectionConfig(), 'select ssl from pg_stat_ssl where pid = pg_backend_pid()'), true, 'TLS by default');

    await lab.primary.query('create table t (id int)');
    await lab.primary.query('insert into t select generate_series(1, 100)');
    await lab.waitForCatchup();
    const [row] = await lab.node('replica1').query<{ n: string }>('select count(*)::text as n from t');
    assert.equal(row!.n, '100');
    // The same through a URL (libpq's form) and through a pool.
    const pool = new pg.Pool({ connectionString: lab.node('replica2').connectionString() });
    try {
      assert.equal((await pool.query('select count(*)::int as n from t')).rows[0].n, 100);
    } finally {
      await pool.end();
    }

    const lb = await lab.balancer();
    assert.match(lb.statsUrl, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    await lb.waitFor('replica1', 'UP');
    await lb.waitFor('replica2', 'UP');
    const status = await runLab(lab.dir, ['balancer', 'status', '--json'], { timeout: 30_000 });
    assert.equal(status.exitCode, 0, status.stderr);
    assert.match(status.stdout, /"name": "lb"/, 'the CLI sees the library\'s balancer');
    const stop = await runLab(lab.dir, ['balancer', 'stop', '--name', 'lb'], { timeout: 30_000 });
    assert.equal(stop.exitCode, 3, 'the CLI does not signal the program running an in-process balancer');
    assert.match(stop.stderr, /inside the program that started it/);

    await lab.node('replica1').kill();
    await lb.waitFor('replica1', 'DOWN', { timeoutMs: 10_000 });
    const ports = new Set<number>();
    for (let i = 0; i < 6; i += 1) ports.add(await scalar<number>(lb.connectionConfig(), 'select inet_server_port()'));
    assert.deepEqual([...ports], [lab.node('replica2').port], 'every session went to the replica left');
    await lab.node('replica1').start();
    await lb.waitFor('replica1', 'UP', { timeoutMs: 15_000 });

    const promoted = await lab.promote('replica2');
    assert.equal(promoted.role, 'primary');
    assert.equal(lab.primary.name, 'replica2');
    assert.equal(await scalar<boolean>(lab.primary.connectionConfig(), 'select pg_is_in_recovery()'), false);
    await lab.primary.query('insert into t values (101)');
    await lab.waitForCatchup();
    assert.equal((await lab.node('replica1').query<{ n: number }>('select count(*)::int as n from t'))[0]!.n, 101, 'replica1 follows the new primary');
    const sample = await lab.stat.replication();
    assert.equal(sample.master?.name, 'replica2');
    assert.deepEqual(sample.rows.map((r) => `${r.name} ${r.state}`), ['null local', 'replica1 streaming'], 'the seed\'s table: the master\'s own row, then its standbys');

    for (const [name, value] of Object.entries(callers)) assert.equal(process.env[name], value, `${name} is the caller's after the lab's work`);
    const dir = lab.dir;
    await lab.close();
    await lab.close(); // twice: a no-op
    assert.equal(await exists(dir), false, 'a lab made in a temp dir is removed with it');
    await assert.rejects(lab.primary.query('select 1'), (e: unknown) => e instanceof LabError && e.code === 'STATE' && /was closed/.test(e.message));
    for (const [name, value] of Object.entries(callers)) assert.equal(process.env[name], value, `${name} is the caller's after disposal`);
  } finally {
    await lab?.close().catch(() => undefined);
    await other?.close().catch(() => undefined);
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
});

test('Lab.start makes its replicas as copies of the master before its first start: each streams through its own slot, synchronous if asked, PostgreSQL 11 too; without the template they are base backups', async () => {
  const steps: string[] = [];
  {
    await using lab = await Lab.start({ replicas: 2, sync: true, pg: 11, onEvent: (e) => (e.type === 'step' ? steps.push(e.message) : undefined) });
    assert.ok(steps.some((m) => /^replica1, replica2: copies of master1's data dir before its first start/.test(m)), steps.join('\n'));
    assert.ok(!steps.some((m) => /base backup|CHECKPOINT/.test(m)), 'no base backup taken');
    const slots = await lab.primary.query<{ slot_name: string; active: boolean }>('select slot_name, active from pg_replication_slots order by 1');
    assert.deepEqual(slots.map((r) => `${r.slot_name} ${r.active}`), ['pglab_replica1 true', 'pglab_replica2 true']);
    assert.equal((await lab.node('replica1').query<{ n: number }>('select count(*)::int as n from pg_replication_slots'))[0]!.n, 0, 'the master\'s slots are not copied');
    const sync = await lab.primary.query<{ application_name: string; sync_state: string }>('select application_name, sync_state from pg_stat_replication order by 1');
    assert.deepEqual(sync.map((r) => `${r.application_name} ${r.sync_state}`), ['replica1 quorum', 'replica2 quorum']);
    await lab.primary.query('create table t as select generate_series(1, 10) as id');
    await lab.waitForCatchup();
    assert.equal((await lab.node('replica2').query<{ n: number }>('select count(*)::int as n from t'))[0]!.n, 10);
    assert.match((await lab.node('replica1').query<{ server_version_num: string }>('show server_version_num'))[0]!.server_version_num, /^11/);
    assert.ok(await exists(`${lab.dir}/replica1/recovery.conf`), 'PostgreSQL 11\'s standby configuration');
  }
  steps.length = 0;
  await using plain = await Lab.start({ replicas: 1, initdbTemplate: false, onEvent: (e) => (e.type === 'step' ? steps.push(e.message) : undefined) });
  assert.ok(steps.some((m) => /base backup .* into .*replica1/.test(m)), steps.join('\n'));
  assert.equal((await plain.primary.query<{ n: number }>("select count(*)::int as n from pg_stat_replication where state = 'streaming'"))[0]!.n, 1);
});

test('bad options are refused naming the property; Lab.open of no lab; keep leaves a lab the CLI and Lab.open take up', async () => {
  await assert.rejects(Lab.start({ replicas: -1 }), (e: unknown) => e instanceof LabError && e.code === 'USAGE' && /replicas must be a whole number/.test(e.message));
  await assert.rejects(Lab.start({ replicas: 1, tls: 'yes' as never }), /Lab\.start: tls must be 'on' or 'off' or 'required'/);
  await assert.rejects(Lab.start({ replica: 2 } as never), /unknown option "replica"/);
  await assert.rejects(Lab.open('/nonexistent/lab'), (e: unknown) => e instanceof LabError && e.code === 'NOT_FOUND');

  let kept: Lab | undefined;
  let opened: Lab | undefined;
  try {
    kept = await Lab.start({ keep: true, tls: 'off', auth: 'trust' });
    await assert.rejects(kept.balancer({ interMs: 0 }), /interMs must be a whole number/);
    assert.throws(() => kept!.node('nope'), /Unknown node "nope" \(nodes in this lab: master1\)/);
    const dir = kept.dir;
    await kept.close();
    assert.equal(kept.keptDir, dir);
    assert.ok(await exists(`${dir}/lab.json`), 'kept');
    await assert.rejects(Lab.start({ dir }), (e: unknown) => e instanceof LabError && e.code === 'CONFLICT' && /Lab\.open/.test(e.message));
    const status = await runLab(dir, ['status', '--json'], { timeout: 30_000 });
    assert.equal(status.exitCode, 0, status.stderr);
    assert.match(status.stdout, /"master1"/);
    opened = await Lab.open(dir);
    await opened.primary.start();
    assert.equal((await opened.primary.query<{ one: number }>('select 1 as one'))[0]!.one, 1);
    await opened.close(); // detaches: the node keeps running
    assert.ok(await exists(`${dir}/lab.json`));
    opened = await Lab.open(dir);
    await opened.destroy();
    assert.equal(await exists(`${dir}/lab.json`), false);
  } finally {
    await opened?.destroy().catch(() => undefined);
    await kept?.destroy().catch(() => undefined);
  }
});

test('a lab with hosts: a partition from `await using` cuts a replica off (the balancer marks it DOWN) and heals when its scope ends', async () => {
  await using lab = await Lab.start({ replicas: 1, hosts: true });
  assert.notEqual(lab.node('replica1').host, '127.0.0.1', 'a node on a host of its own');
  await using lb = await lab.balancer({ pool: 'replicas' });
  await lb.waitFor('replica1', 'UP');
  {
    await using cut = await lab.node('replica1').partition();
    assert.equal(cut.kind, 'partition');
    await lb.waitFor('replica1', 'DOWN', { timeoutMs: 10_000 });
    assert.deepEqual((await lab.faults()).map((f) => `${f.node} ${f.kind}`), ['replica1 partition']);
  }
  assert.deepEqual(await lab.faults(), [], 'healed when the block ended');
  await lb.waitFor('replica1', 'UP', { timeoutMs: 15_000 });
  assert.equal(await scalar<number>(lb.connectionConfig(), 'select 1 as one'), 1);
});

test('what the drills are built on: balancers in processes of their own (built-in and HAProxy), a host crash, a promotion\'s figures, follow and rewind results', async () => {
  await using lab = await Lab.start({ replicas: 2 });
  await using builtin = await lab.balancerProcess({ name: 'lbp', pool: 'replicas' });
  await using haproxy = await lab.balancerProcess({ name: 'hx', engine: 'haproxy', pool: 'replicas', interMs: 500, fall: 2, rise: 1, checkTimeoutMs: 400 });
  assert.notEqual(builtin.pid, process.pid, 'a process of its own');
  // An error below the library says what to do in the library's terms.
  await assert.rejects(lab.node('replica1').partition(), (e: unknown) =>
    e instanceof LabError && e.code === 'USAGE' && /^node\.partition\(\) needs a lab made with hosts: true .*`Lab\.start\(\{ hosts: true \}\)`/.test(e.message) && !/`lab |--hosts/.test(e.message));
  assert.equal(haproxy.engine, 'haproxy');
  assert.ok(haproxy.warnings.some((w) => /HAProxy has no sql check/.test(w)), haproxy.warnings.join('; '));
  await builtin.waitUp(2, { timeoutMs: 15_000 });
  await haproxy.waitUp(2, { timeoutMs: 15_000, checked: true });
  assert.equal(await scalar<boolean>(builtin.connectionConfig(), 'select pg_is_in_recovery()'), true, 'through the built-in daemon to a replica');
  assert.equal(await scalar<boolean>(haproxy.connectionConfig(), 'select pg_is_in_recovery()'), true, 'through HAProxy to a replica');
  const status = await runLab(lab.dir, ['balancer', 'status', '--json'], { timeout: 30_000 });
  assert.match(status.stdout, /"name": "lbp"/);
  assert.match(status.stdout, /"name": "hx"/);

  // pglab's load generator through the built-in daemon: reads on the replicas only.
  const init = await lab.initBench({ scale: 1 });
  assert.equal(init.accounts, 100_000);
  await lab.waitForCatchup();
  const seconds: number[] = [];
  const load = await lab.workload(builtin, { mode: 'select', clients: 2, durationMs: 1500, connectPerTx: true, onSample: (sample) => seconds.push(sample.second) });
  assert.ok(load.summary.ops > 0 && load.summary.errors === 0, JSON.stringify(load.summary));
  assert.deepEqual(Object.keys(load.summary.by_port).map(Number).sort(), [lab.node('replica1').port, lab.node('replica2').port].sort(), 'every read on a replica');
  assert.ok(seconds.length >= 1, 'a sample a second');
  assert.throws(() => lab.workload(builtin, { mode: 'select' } as never), (e: unknown) => e instanceof LabError && e.code === 'USAGE' && /^lab\.workload: durationMs must be a whole number/.test(e.message));

  // A host crash of replica1: every process at once; both balancers take it out.
  const crashed = await lab.node('replica1').crash();
  assert.ok(crashed.processes >= 2, `the postmaster and its children: ${crashed.processes}`);
  const seen = await builtin.waitFor('replica1', 'DOWN', { timeoutMs: 10_000 });
  assert.ok(seen >= crashed.killedAtMs, 'waitFor resolves with when it was seen');
  await haproxy.waitFor('replica1', 'DOWN', { timeoutMs: 10_000 });
  assert.equal(await builtin.kill(), true);
  assert.equal(await builtin.kill(), false, 'a balancer that is gone is not signalled again');

  // A failover by hand, as lab demo primary-failover does it: crash the primary, promote alone, re-point, rewind.
  await lab.node('replica1').start();
  await lab.waitForCatchup();
  await lab.primary.crash({ isolateMs: 100 });
  const promoted = await lab.promote('replica2', { others: 'leave' });
  assert.equal(promoted.timeline, 2);
  assert.equal(promoted.previousPrimary, 'master1');
  assert.deepEqual(promoted.followed, []);
  assert.ok(promoted.elapsedMs > 0);
  const followed = await lab.node('replica1').follow('replica2');
  assert.equal(followed.primary, 'replica2');
  const rewound = await lab.node('master1').rewind({ primary: 'replica2' });
  assert.equal(rewound.primary, 'replica2');
  assert.ok((await lab.pgRewindMissing()) === undefined ? rewound.rebuilt === undefined : rewound.baseBackup !== undefined, JSON.stringify(rewound));
  await lab.waitForCatchup();
  const sample = await lab.stat.replication();
  assert.deepEqual(sample.rows.map((r) => `${r.name} ${r.state}`).sort(), ['master1 streaming', 'null local', 'replica1 streaming']);
  await haproxy.stop();
  const after = await runLab(lab.dir, ['balancer', 'status', '--json'], { timeout: 30_000 });
  assert.doesNotMatch(after.stdout, /"name": "hx"/, 'stopped and forgotten');
});
