// Write downtime of a planned switchover: pglab's (`lab.switchover`, writers through a `--pool primary`
// built-in balancer) beside Patroni 3.0's (`patronictl switchover`, writers through HAProxy with Patroni's
// documented health check on GET /primary), in one run, measured the same way (benchmarks/write-load.ts):
// 2 writers, one INSERT per transaction, reconnect at once on an error; per round the write downtime is
// the longest gap between two acknowledged commits around the switch; lost = acknowledged ids missing on
// the final primary. Patroni runs from Debian's packages (patroni 3.0.2, etcd-server 3.4) on loopback:
// one etcd member, three Patroni members managing PostgreSQL 15 as OS user postgres, one HAProxy with two
// listeners (Patroni's documented `inter 3s fall 3 rise 2`, and a tuned `inter 500ms fall 1 rise 1`).
//   node dist/benchmarks/switchover-patroni.js   (BENCH_ROUNDS=5 switchovers per setting; BENCH_INSTALL=1
//   installs patroni and etcd-server with apt-get when they are missing; BENCH_ONLY=pglab|patroni runs one
//   side; BENCH_KEEP=1 keeps Patroni's temp dir with its logs)
import { spawn } from 'node:child_process';
import { access, chown, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { execa } from 'execa';
import pg from 'pg';
import { Lab } from '../src/index.js';
import { findHaproxy } from '../src/haproxy/engine.js';
import { findFreePorts } from '../src/common/ports.js';
import { pollUntil } from '../src/common/poll.js';
import { isRunning } from '../src/common/processes.js';
import { lookupUser, type OsUser } from '../src/postgres/os-user.js';
import { median } from './median.js';
import { downtime, lostSql, startLoad, waitAcks, type Load } from './write-load.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 50) throw new Error(`BENCH_ROUNDS must be 1..50, not ${process.env.BENCH_ROUNDS}`);
const WRITERS = 2;
const PG_BIN = '/usr/lib/postgresql/15/bin';
const MEMBERS = ['pg1', 'pg2', 'pg3'];

interface Round {
  downtime: number;
  /** How long the switch command took (lab.switchover, patronictl). */
  commandMs: number;
  ok: boolean;
}

interface Series {
  label: string;
  rounds: Round[];
  lost: number;
  acked: number;
  writerErrors: number;
}

// ---------------------------------------------------------------------------------------------- packages

async function exists(file: string): Promise<boolean> {
  return access(file).then(() => true, () => false);
}

async function ensurePackages(): Promise<void> {
  const missing: string[] = [];
  if (!(await exists('/usr/bin/patroni')) || !(await exists('/usr/bin/patronictl'))) missing.push('patroni');
  if (!(await exists('/usr/bin/etcd'))) missing.push('etcd-server');
  if (!(await exists(path.join(PG_BIN, 'postgres')))) missing.push('postgresql-15');
  await findHaproxy().catch(() => missing.push('haproxy'));
  if (missing.length === 0) return;
  if (process.env.BENCH_INSTALL !== '1') {
    console.log(`missing Debian packages: install them with \`apt-get install -y ${missing.join(' ')}\` (or run with BENCH_INSTALL=1)`);
    process.exit(2);
  }
  console.error(`installing ${missing.join(' ')} (BENCH_INSTALL=1)`);
  await execa('apt-get', ['install', '-y', ...missing], { env: { DEBIAN_FRONTEND: 'noninteractive' }, stdio: 'inherit', timeout: 600_000 });
}

// ---------------------------------------------------------------------------------------------- processes

interface Started {
  name: string;
  pid: number;
  log: string;
}

function userEnv(user: OsUser, home: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) if (value !== undefined && !name.startsWith('PG')) env[name] = value;
  return { ...env, LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8', HOME: home, USER: user.name, LOGNAME: user.name };
}

/** A long-running program as `user` (uid/gid, as src/postgres/run.ts runs PostgreSQL's), output to `log`. */
async function startAs(name: string, user: OsUser | undefined, file: string, args: string[], log: string, env: Record<string, string>): Promise<Started> {
  const handle = await open(log, 'a', 0o600);
  try {
    if (user) await chown(log, user.uid, user.gid);
    const child = spawn(file, args, { uid: user?.uid, gid: user?.gid, env, cwd: '/', stdio: ['ignore', handle.fd, handle.fd] });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    child.on('exit', () => undefined);
    return { name, pid: child.pid!, log };
  } finally {
    await handle.close();
  }
}

/** SIGTERM, up to `graceMs`, then SIGKILL; only while /proc says the pid still runs `expect`. */
async function stopPid(pid: number, expect: string, graceMs: number): Promise<void> {
  const runs = async () => (await isRunning(pid)) && (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes(expect);
  if (!(await runs())) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && (await runs())) await delay(100);
  if (await runs()) process.kill(pid, 'SIGKILL');
}

async function tail(file: string, lines = 15): Promise<string> {
  return (await readFile(file, 'utf8').catch(() => '')).split('\n').slice(-lines).join('\n');
}

async function getJson(url: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: response.status, body };
}

// ---------------------------------------------------------------------------------------------- pglab

async function benchPglab(): Promise<Series> {
  const lab = await Lab.start({ replicas: 2 });
  runningLab = lab;
  try {
    const rw = await lab.balancerProcess({ name: 'rw', pool: 'primary' });
    try {
      await lab.primary.query('create table acked (id int primary key)');
      const load = startLoad({ writer: () => rw.connectionConfig(), writers: WRITERS });
      const series: Series = { label: 'pglab, built-in balancer --pool primary', rounds: [], lost: 0, acked: 0, writerErrors: 0 };
      try {
        await waitAcks(load, 0, 200);
        for (let round = 0; round < rounds; round += 1) {
          const target = lab.primary.name === 'master1' ? 'replica1' : 'master1';
          const from = Date.now();
          let ok = true;
          try {
            await lab.switchover(target);
          } catch (error) {
            ok = false;
            console.error(`pglab switchover to ${target} failed: ${error instanceof Error ? error.message : String(error)}`);
          }
          const until = Date.now();
          await waitAcks(load, until + 1000, 50);
          const row = { downtime: downtime(load, from, until), commandMs: until - from, ok };
          series.rounds.push(row);
          console.error(`pglab switchover ${round + 1}/${rounds} to ${target}: write downtime ${row.downtime} ms, lab.switchover ${row.commandMs} ms`);
        }
      } finally {
        await load.stop();
      }
      await lab.waitForCatchup();
      const [row] = await lab.primary.query<{ n: number }>(lostSql(), [load.acked.map((a) => a.id)]);
      return { ...series, lost: row!.n, acked: load.acked.length, writerErrors: load.writerErrors };
    } finally {
      await rw.stop().catch(() => undefined);
    }
  } finally {
    runningLab = undefined;
    await lab.close();
  }
}

// ---------------------------------------------------------------------------------------------- Patroni

interface Cluster {
  dir: string;
  user: OsUser;
  env: Record<string, string>;
  etcd?: Started;
  patroni: Started[];
  haproxy?: Started;
  /** Per member: REST API and PostgreSQL ports. */
  rest: Map<string, number>;
  pgPort: Map<string, number>;
  /** HAProxy listeners: Patroni's documented check, and the tuned one. */
  documentedPort: number;
  tunedPort: number;
}

interface ClusterMember {
  name: string;
  role: string;
  state: string;
}

function patroniYaml(c: Cluster, name: string, etcdPort: number): string {
  const data = path.join(c.dir, name);
  // Patroni's documented postgres0.yml shape, with loopback ports and the DCS defaults (ttl 30,
  // loop_wait 10, retry_timeout 10, maximum_lag_on_failover 1 MiB); server settings as pglab's lab/postgresql.conf.
  return `scope: pglab-bench
name: ${name}
log:
  dir: ${c.dir}/log-${name}
restapi:
  listen: 127.0.0.1:${c.rest.get(name)}
  connect_address: 127.0.0.1:${c.rest.get(name)}
etcd3:
  hosts: 127.0.0.1:${etcdPort}
bootstrap:
  dcs:
    ttl: 30
    loop_wait: 10
    retry_timeout: 10
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: 'on'
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 128MB
        wal_log_hints: 'on'
        checkpoint_timeout: 60min
  initdb:
  - encoding: UTF8
  - locale: C
  pg_hba:
  - local all all trust
  - host replication replicator 127.0.0.1/32 trust
  - host all all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:${c.pgPort.get(name)}
  connect_address: 127.0.0.1:${c.pgPort.get(name)}
  data_dir: ${data}
  bin_dir: ${PG_BIN}
  pgpass: ${c.dir}/pgpass-${name}
  authentication:
    replication:
      username: replicator
      password: rep-pass
    superuser:
      username: postgres
      password: su-pass
    rewind:
      username: rewind_user
      password: rewind-pass
  parameters:
    unix_socket_directories: '${c.dir}'
tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
  nosync: false
`;
}

/** The haproxy.cfg Patroni ships (Debian: /usr/share/doc/patroni/examples/haproxy.cfg) checking GET /primary, and a tuned twin. */
function haproxyCfg(c: Cluster): string {
  const servers = (extra: string) => MEMBERS.map((m) => `    server ${m} 127.0.0.1:${c.pgPort.get(m)} maxconn 100 check port ${c.rest.get(m)}${extra}`).join('\n');
  return `global
    maxconn 100

defaults
    mode tcp
    retries 2
    timeout client 30m
    timeout connect 4s
    timeout server 30m
    timeout check 5s

listen primary_documented
    bind 127.0.0.1:${c.documentedPort}
    option httpchk GET /primary
    http-check expect status 200
    default-server inter 3s fall 3 rise 2 on-marked-down shutdown-sessions
${servers('')}

listen primary_tuned
    bind 127.0.0.1:${c.tunedPort}
    option httpchk GET /primary
    http-check expect status 200
    default-server inter 500ms fall 1 rise 1 on-marked-down shutdown-sessions
${servers('')}
`;
}

async function clusterMembers(c: Cluster): Promise<{ leader?: string; members: ClusterMember[] }> {
  for (const name of MEMBERS) {
    try {
      const { status, body } = await getJson(`http://127.0.0.1:${c.rest.get(name)}/cluster`);
      if (status !== 200 || typeof body !== 'object' || !body) continue;
      const members = ((body as { members?: ClusterMember[] }).members ?? []).map((m) => ({ name: m.name, role: m.role, state: m.state }));
      return { leader: members.find((m) => m.role === 'leader')?.name, members };
    } catch {
      // try the next member's API
    }
  }
  return { members: [] };
}

/** The leader runs, the two others run as replicas and stream from it (pg_stat_replication on the leader). */
async function waitHealthy(c: Cluster, timeoutMs: number): Promise<string> {
  return pollUntil(
    async () => {
      const { leader, members } = await clusterMembers(c);
      if (!leader || members.length !== MEMBERS.length || members.some((m) => m.state !== 'running' && m.state !== 'streaming')) return undefined;
      const client = new pg.Client({ host: '127.0.0.1', port: c.pgPort.get(leader), user: 'postgres', database: 'postgres', connectionTimeoutMillis: 2000, query_timeout: 2000 });
      client.on('error', () => undefined);
      try {
        await client.connect();
        const result = await client.query<{ n: number; recovery: boolean }>(`select (select count(*)::int from pg_stat_replication where state = 'streaming') as n, pg_is_in_recovery() as recovery`);
        const row = result.rows[0]!;
        return !row.recovery && row.n === MEMBERS.length - 1 ? leader : undefined;
      } finally {
        await client.end().catch(() => undefined);
      }
    },
    { timeoutMs, intervalMs: 250, what: 'a Patroni leader with two streaming replicas', detail: async () => JSON.stringify(await clusterMembers(c)) },
  );
}

async function startCluster(user: OsUser): Promise<Cluster> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pglab-patroni-'));
  await chown(dir, user.uid, user.gid);
  const [etcdClient, etcdPeer, documentedPort, tunedPort, ...rest] = await findFreePorts(4 + 2 * MEMBERS.length);
  const c: Cluster = {
    dir,
    user,
    env: userEnv(user, dir),
    patroni: [],
    rest: new Map(MEMBERS.map((m, i) => [m, rest[i]!])),
    pgPort: new Map(MEMBERS.map((m, i) => [m, rest[MEMBERS.length + i]!])),
    documentedPort: documentedPort!,
    tunedPort: tunedPort!,
  };
  running = c;
  try {
    await mkdir(path.join(dir, 'etcd'), { mode: 0o700 });
    await chown(path.join(dir, 'etcd'), user.uid, user.gid);
    const peer = `http://127.0.0.1:${etcdPeer}`;
    const client = `http://127.0.0.1:${etcdClient}`;
    c.etcd = await startAs('etcd', user, '/usr/bin/etcd', [
      '--name', 'bench', '--data-dir', path.join(dir, 'etcd'),
      '--listen-client-urls', client, '--advertise-client-urls', client,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `bench=${peer}`, '--initial-cluster-state', 'new', '--initial-cluster-token', 'pglab-bench',
    ], path.join(dir, 'etcd.log'), c.env);
    await pollUntil(async () => {
      const { body } = await getJson(`${client}/health`);
      return (body as { health?: string }).health === 'true' ? true : undefined;
    }, { timeoutMs: 30_000, intervalMs: 200, what: `etcd on ${client}`, detail: () => tail(c.etcd!.log) });

    for (const [i, name] of MEMBERS.entries()) {
      const config = path.join(dir, `${name}.yml`);
      await mkdir(path.join(dir, `log-${name}`), { mode: 0o700 });
      await chown(path.join(dir, `log-${name}`), user.uid, user.gid);
      await writeFile(config, patroniYaml(c, name, etcdClient!), { mode: 0o600 });
      await chown(config, user.uid, user.gid);
      c.patroni.push(await startAs(`patroni ${name}`, user, '/usr/bin/patroni', [config], path.join(dir, `patroni-${name}.out`), c.env));
      // The first member bootstraps (initdb) alone; the others then clone it.
      if (i === 0) {
        await pollUntil(async () => ((await clusterMembers(c)).leader === name ? true : undefined), {
          timeoutMs: 90_000, intervalMs: 500, what: `Patroni ${name} to bootstrap and lead`, detail: () => tail(path.join(dir, `log-${name}`, 'patroni.log')),
        });
      }
    }
    await waitHealthy(c, 120_000);

    const cfg = path.join(dir, 'haproxy.cfg');
    await writeFile(cfg, haproxyCfg(c), { mode: 0o600 });
    const haproxy = await findHaproxy();
    await execa(haproxy, ['-c', '-f', cfg], { timeout: 30_000 });
    c.haproxy = await startAs('haproxy', undefined, haproxy, ['-db', '-f', cfg], path.join(dir, 'haproxy.log'), { PATH: process.env.PATH ?? '/usr/bin:/bin' });
    return c;
  } catch (error) {
    await stopCluster(c);
    throw error;
  }
}

/** Every process we started, by pid (Patroni stops its PostgreSQL; a postmaster left behind is killed by its pid file), then the temp dir. */
async function stopCluster(c: Cluster): Promise<void> {
  if (c.haproxy) await stopPid(c.haproxy.pid, 'haproxy', 5000).catch(() => undefined);
  await Promise.all(c.patroni.map((p) => stopPid(p.pid, 'patroni', 40_000).catch(() => undefined)));
  for (const name of MEMBERS) {
    const pidFile = path.join(c.dir, name, 'postmaster.pid');
    const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).split('\n')[0]);
    if (Number.isInteger(pid) && pid > 0) await stopPid(pid, 'postgres', 10_000).catch(() => undefined);
  }
  if (c.etcd) await stopPid(c.etcd.pid, 'etcd', 10_000).catch(() => undefined);
  if (process.env.BENCH_KEEP !== '1') await rm(c.dir, { recursive: true, force: true });
  else console.error(`kept ${c.dir} (BENCH_KEEP=1)`);
}

async function patronictl(c: Cluster, args: string[]): Promise<{ ok: boolean; output: string }> {
  const result = await execa('/usr/bin/patronictl', ['-c', path.join(c.dir, 'pg1.yml'), ...args], {
    uid: c.user.uid, gid: c.user.gid, env: c.env, extendEnv: false, cwd: '/', reject: false, timeout: 120_000, stdin: 'ignore',
  });
  const output = `${String(result.stdout)}\n${String(result.stderr)}`.trim();
  return { ok: result.exitCode === 0 && /Successfully switched over/i.test(output), output };
}

async function benchPatroniSetting(c: Cluster, label: string, port: number, table: string): Promise<Series> {
  const config = () => ({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
  // HAProxy starts with every server up until its checks say otherwise: wait until a round of connections
  // (two per server, round robin) all reach a primary, so that only the leader is left in the pool.
  await pollUntil(async () => {
    for (let i = 0; i < 2 * MEMBERS.length; i += 1) {
      const probe = new pg.Client({ ...config(), connectionTimeoutMillis: 2000, query_timeout: 2000 });
      probe.on('error', () => undefined);
      try {
        await probe.connect();
        const result = await probe.query<{ recovery: boolean }>('select pg_is_in_recovery() as recovery');
        if (result.rows[0]!.recovery) return undefined;
      } finally {
        await probe.end().catch(() => undefined);
      }
    }
    return true;
  }, { timeoutMs: 60_000, intervalMs: 250, what: `only the primary behind HAProxy port ${port}` });
  const leader0 = await waitHealthy(c, 60_000);
  const admin = new pg.Client({ host: '127.0.0.1', port: c.pgPort.get(leader0), user: 'postgres', database: 'postgres', connectionTimeoutMillis: 5000, query_timeout: 5000 });
  admin.on('error', () => undefined);
  await admin.connect();
  try {
    await admin.query(`create table ${table} (id int primary key)`);
  } finally {
    await admin.end().catch(() => undefined);
  }
  const load: Load = startLoad({ writer: config, writers: WRITERS, table });
  const series: Series = { label, rounds: [], lost: 0, acked: 0, writerErrors: 0 };
  try {
    await waitAcks(load, 0, 200);
    for (let round = 0; round < rounds; round += 1) {
      const leader = await waitHealthy(c, 60_000);
      const candidate = leader === 'pg1' ? 'pg2' : 'pg1';
      const from = Date.now();
      const result = await patronictl(c, ['switchover', '--leader', leader, '--candidate', candidate, '--force']);
      const until = Date.now();
      if (!result.ok) console.error(`patronictl switchover to ${candidate} did not report success:\n${result.output}`);
      await waitAcks(load, until + 1000, 50, 60_000);
      const row = { downtime: downtime(load, from, until), commandMs: until - from, ok: result.ok };
      series.rounds.push(row);
      console.error(`Patroni (${label}) switchover ${round + 1}/${rounds} ${leader} -> ${candidate}: write downtime ${row.downtime} ms, patronictl ${row.commandMs} ms${result.ok ? '' : ' (no success reported)'}`);
    }
  } finally {
    await load.stop();
  }
  const leader = await waitHealthy(c, 60_000);
  const client = new pg.Client({ host: '127.0.0.1', port: c.pgPort.get(leader), user: 'postgres', database: 'postgres', connectionTimeoutMillis: 5000, query_timeout: 10_000 });
  await client.connect();
  try {
    const result = await client.query<{ n: number }>(lostSql(table), [load.acked.map((a) => a.id)]);
    return { ...series, lost: result.rows[0]!.n, acked: load.acked.length, writerErrors: load.writerErrors };
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function benchPatroni(): Promise<{ version: string; series: Series[] }> {
  const user = await lookupUser('postgres');
  if (!user || user.uid === 0) throw new Error('no unprivileged OS user postgres to run Patroni and PostgreSQL as');
  if (process.geteuid?.() !== 0) throw new Error('run as root: Patroni and PostgreSQL are started as OS user postgres');
  const version = (await execa('/usr/bin/patroni', ['--version'], { reject: false })).stdout.trim();
  const c = await startCluster(user);
  try {
    const documented = await benchPatroniSetting(c, 'Patroni + HAProxy, documented inter 3s fall 3 rise 2', c.documentedPort, 'acked_documented');
    const tuned = await benchPatroniSetting(c, 'Patroni + HAProxy, tuned inter 500ms fall 1 rise 1', c.tunedPort, 'acked_tuned');
    return { version, series: [documented, tuned] };
  } finally {
    running = undefined;
    await stopCluster(c);
  }
}

/** The lab and the Patroni cluster being measured, released on SIGINT or SIGTERM too (no finally runs then). */
let running: Cluster | undefined;
let runningLab: Lab | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`${signal}: stopping what the benchmark started`);
    const [c, lab] = [running, runningLab];
    running = runningLab = undefined;
    void Promise.allSettled([c ? stopCluster(c) : undefined, lab?.close()]).finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------------------------------------- main

await ensurePackages();
const only = process.env.BENCH_ONLY;
const results: Series[] = [];
if (only !== 'patroni') results.push(await benchPglab());
const patroni = only === 'pglab' ? { version: 'no Patroni (BENCH_ONLY=pglab)', series: [] } : await benchPatroni();
results.push(...patroni.series);

const pglabMedian = only === 'patroni' ? NaN : median(results[0]!.rounds.map((r) => r.downtime))!;
console.log(`${WRITERS} writers (one INSERT per transaction, reconnect at once), ${rounds} switchovers each; PostgreSQL 15; ${patroni.version}, etcd 3.4, HAProxy 2.6`);
console.log(' setting                                                | median downtime | max downtime | lost | failed writes | command median | ok  | pglab / this');
console.log('--------------------------------------------------------+-----------------+--------------+------+---------------+----------------+-----+-------------');
for (const s of results) {
  const m = median(s.rounds.map((r) => r.downtime))!;
  const max = Math.max(...s.rounds.map((r) => r.downtime));
  const command = median(s.rounds.map((r) => r.commandMs))!;
  const ok = `${s.rounds.filter((r) => r.ok).length}/${s.rounds.length}`;
  console.log(` ${s.label.padEnd(54)} | ${`${m.toFixed(0)} ms`.padStart(15)} | ${`${max} ms`.padStart(12)} | ${String(s.lost).padStart(4)} | ${String(s.writerErrors).padStart(13)} | ${`${command.toFixed(0)} ms`.padStart(14)} | ${ok.padStart(3)} | ${(pglabMedian / m).toFixed(2).padStart(11)}`);
}
