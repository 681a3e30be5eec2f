// Issue 17, hosts of their own: `lab master start --hosts` puts every node in a network namespace with its
// own address (10.213.N.x on bridge pglN); replication, status, the watchers and a balancer reach them
// there; `lab fault partition` and `loss` drop packets in the node's namespace; destroy leaves no
// namespace, link or rule, also after a kill -9 of the CLI in the middle of `master start --hosts`.
// `delay` relays the node's traffic through a process of pglab's own and shows as round trips and lag.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { execa } from 'execa';
import { queryRows } from '../src/postgres/client.js';
import { isRoot, leftovers, msUntil, relayProcesses, roundTripMs, waitWriteLag } from './helpers/hosts.js';
import { freePorts, labBin, labJson, refused, runLab, tempDir, withTempLab } from './helpers/lab.js';
import { pollUntil } from '../src/common/poll.js';

/** Until table t on the node at `target` holds `rows` rows (a node cut off or lossy may fail a query meanwhile), at most 30 s. */
async function rowsArrive(target: { host: string; port: number; connectTimeoutMs: number }, rows: number, what: string): Promise<void> {
  await pollUntil(async () => ((await queryRows<{ n: string }>(target, 'SELECT count(*) AS n FROM t'))[0]!.n === String(rows) ? true : undefined), { timeoutMs: 30_000, intervalMs: 200, what });
}

test('--hosts: master and 2 replicas in namespaces, status, stat, balancer, partition and heal timed, loss, delay, bad input, destroy leaves nothing', { skip: !isRoot && 'needs root' }, async () => {
  let index = 0;
  await withTempLab(async (labDir) => {
    const [m, r1, r2, lbPort, lbStats] = await freePorts(5);
    const master = await labJson(labDir, 'master', 'start', '--hosts', '--port', String(m));
    const state = JSON.parse(await readFile(path.join(labDir, 'lab.json'), 'utf8'));
    index = state.hosts.index;
    const net = `10.213.${index}`;
    assert.equal(master.address, `${net}.10`);
    await labJson(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1));
    await labJson(labDir, 'replica', 'add', 'replica2', path.join(labDir, 'replica2'), String(r2));
    const netns = (await execa('ip', ['netns', 'list'])).stdout;
    for (const node of ['master1', 'replica1', 'replica2']) assert.match(netns, new RegExp(`pglab-${index}-${node}`));

    // Replication between namespaces: the primary sees each replica at its own address.
    const masterConn = { host: `${net}.10`, port: m!, connectTimeoutMs: 3000 };
    const rows = await queryRows<{ name: string; addr: string; state: string }>(masterConn, 'SELECT application_name AS name, host(client_addr) AS addr, state FROM pg_stat_replication ORDER BY 1');
    assert.deepEqual(rows.map((r) => [r.name, r.addr, r.state]), [['replica1', `${net}.11`, 'streaming'], ['replica2', `${net}.12`, 'streaming']]);
    // Nothing listens on loopback: the node is on its host only.
    await assert.rejects(queryRows({ port: m!, connectTimeoutMs: 1000 }, 'SELECT 1'));
    const status = await labJson(labDir, 'status');
    assert.deepEqual(status.nodes.map((n: any) => [n.name, n.status, n.serverRole]), [['master1', 'running', 'primary'], ['replica1', 'running', 'standby'], ['replica2', 'running', 'standby']]);
    const replication = (await runLab(labDir, ['stat', 'replication'])).stdout;
    assert.match(replication, new RegExp(`replica1 \\| ${net.replace(/\./g, '\\.')}\\.11`));
    const xact = (await runLab(labDir, ['stat', 'xact'])).stdout;
    assert.equal((xact.match(/\| postgres /g) ?? []).length, 3, xact);
    const env = (await runLab(labDir, ['env'])).stdout;
    assert.match(env, new RegExp(`PGHOST='${net}\\.10'`));
    // bench run --port P goes to the node listening on P, at its host's address.
    const selectOne = path.join(labDir, 'select1.sql');
    await writeFile(selectOne, 'SELECT 1;\n');
    const atPort = await runLab(labDir, ['bench', 'run', '--port', String(r1), '--json', '--', '-n', '-t', '5', '-f', selectOne]);
    assert.equal(atPort.exitCode, 0, atPort.stderr);
    assert.deepEqual(JSON.parse(atPort.stdout).target, { host: `${net}.11`, port: r1, via: `node replica1 (port ${r1})` });

    // A balancer on the host in front of the replicas.
    await labJson(labDir, 'balancer', 'start', '--listen', `127.0.0.1:${lbPort}`, '--stats', `127.0.0.1:${lbStats}`);
    await msUntil(lbStats!, 'replica1', 'UP');
    await msUntil(lbStats!, 'replica2', 'UP');
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      seen.add((await queryRows<{ a: string }>({ port: lbPort!, connectTimeoutMs: 3000 }, 'SELECT host(inet_server_addr()) AS a'))[0]!.a);
    }
    assert.deepEqual([...seen].sort(), [`${net}.11`, `${net}.12`]);

    // Bad input: one line each, nothing recorded.
    await refused(labDir, ['fault', 'partition', 'nosuch'], 5, /Unknown node "nosuch"/);
    await refused(labDir, ['fault', 'loss', 'replica2', '150%'], 2, /Invalid loss "150%"/);
    await refused(labDir, ['fault', 'loss', 'replica2', '0'], 2, /Invalid loss "0"/);
    await refused(labDir, ['fault', 'delay', 'replica2', '-5ms'], 2, /unknown option '-5ms'/);
    await refused(labDir, ['fault', 'delay', 'replica2', '5parsecs'], 2, /Invalid delay "5parsecs"/);
    await refused(labDir, ['fault', 'delay', 'replica2', '100ms', '--jitter', '200ms'], 2, /more than the delay/);
    await refused(labDir, ['fault', 'partition', 'master1', '--from', 'master1'], 2, /from itself/);
    await refused(labDir, ['fault', 'partition', 'master1', '--from', 'nosuch'], 5, /Unknown node "nosuch"/);
    await refused(labDir, ['fault', 'heal'], 6, /No fault to heal/);
    assert.deepEqual(await labJson(labDir, 'fault', 'list'), []);

    // partition replica1: DOWN at the balancer, connections hang (bounded), the primary stops hearing it.
    const before = (await queryRows<{ lsn: string }>(masterConn, 'SELECT pg_current_wal_lsn()::text AS lsn'))[0]!.lsn;
    const cutStart = Date.now();
    const cut = await labJson(labDir, 'fault', 'partition', 'replica1');
    const cutMs = Date.now() - cutStart;
    assert.deepEqual(cut.peers, [`${net}.0/24`]);
    const toDown = await msUntil(lbStats!, 'replica1', 'DOWN');
    console.log(`# partition replica1: DOWN at the balancer ${toDown} ms after \`lab fault partition\` returned (the command took ${cutMs} ms; check inter 1000 + timeout 400)`);
    assert.ok(toDown <= 1600, `DOWN after ${toDown} ms`);
    await refused(labDir, ['fault', 'partition', 'replica1'], 3, /already partitioned/);
    const hangStart = Date.now();
    await assert.rejects(queryRows({ host: `${net}.11`, port: r1!, connectTimeoutMs: 1000 }, 'SELECT 1'), /timeout/i);
    assert.ok(Date.now() - hangStart >= 900, 'the connection hung until its timeout');
    for (let i = 0; i < 4; i++) {
      assert.equal((await queryRows<{ a: string }>({ port: lbPort!, connectTimeoutMs: 3000 }, 'SELECT host(inet_server_addr()) AS a'))[0]!.a, `${net}.12`);
    }
    await queryRows(masterConn, 'CREATE TABLE t AS SELECT generate_series(1, 1000) AS x');
    await delay(1000);
    const progress = await queryRows<{ name: string; behind: boolean }>(masterConn, `SELECT application_name AS name, flush_lsn < pg_current_wal_lsn() AS behind FROM pg_stat_replication`);
    const r1Row = progress.find((r) => r.name === 'replica1');
    assert.ok(!r1Row || r1Row.behind, `the primary sees no progress from replica1 (${JSON.stringify(progress)}, from ${before})`);
    assert.equal(progress.find((r) => r.name === 'replica2')?.behind, false);
    const listed = await labJson(labDir, 'fault', 'list');
    assert.deepEqual(listed.map((f: any) => [f.node, f.kind, f.phase]), [['replica1', 'partition', 'applied']]);
    assert.match((await runLab(labDir, ['status'])).stdout, /replica1 .*running \(partition\)/);
    const rules = (await execa('ip', ['netns', 'exec', `pglab-${index}-replica1`, 'iptables', '-S'])).stdout;
    assert.match(rules, /-A PGL-PART-IN -s 10\.213\.\d+\.0\/24 ! -i lo -j DROP/);

    // heal: UP again, replica1 catches up.
    const healStart = Date.now();
    await labJson(labDir, 'fault', 'heal', 'replica1');
    const healMs = Date.now() - healStart;
    const toUp = (await msUntil(lbStats!, 'replica1', 'UP')) + healMs;
    console.log(`# heal replica1: UP at the balancer ${toUp} ms after \`lab fault heal\` started (the command took ${healMs} ms)`);
    assert.ok(toUp <= 2000, `UP after ${toUp} ms`);
    assert.doesNotMatch((await execa('ip', ['netns', 'exec', `pglab-${index}-replica1`, 'iptables', '-S'])).stdout, /PGL-/);
    await rowsArrive({ host: `${net}.11`, port: r1!, connectTimeoutMs: 2000 }, 1000, 'replica1 to catch up after heal');

    // partition --from: only master1's links to replica2 cut.
    const partial = await labJson(labDir, 'fault', 'partition', 'master1', '--from', 'replica2');
    assert.deepEqual(partial.peers, [`${net}.12`]);
    await queryRows(masterConn, 'SELECT 1'); // the host still reaches master1
    await labJson(labDir, 'fault', 'heal', 'master1');

    // loss 20% on replica2: replication keeps streaming, rows arrive.
    const lossy = await labJson(labDir, 'fault', 'loss', 'replica2', '20%');
    assert.equal(lossy.percent, 20);
    await queryRows(masterConn, 'INSERT INTO t SELECT generate_series(1001, 2000)');
    const lossStart = Date.now();
    await rowsArrive({ host: `${net}.12`, port: r2!, connectTimeoutMs: 3000 }, 2000, 'replica2 to replay under 20% loss');
    const streaming = await queryRows<{ state: string }>(masterConn, `SELECT state FROM pg_stat_replication WHERE application_name = 'replica2'`);
    assert.deepEqual(streaming.map((r) => r.state), ['streaming']);
    console.log(`# loss 20% on replica2: 1000 rows replayed after ${Date.now() - lossStart} ms, still streaming`);

    await labJson(labDir, 'fault', 'heal', 'replica2');

    // delay 100ms on replica2: every round trip to it takes about 100 ms more, and the primary sees it as lag.
    const roundTrips = () => roundTripMs(`${net}.12`, r2!);
    const baseline = await roundTrips();
    const delayed = await labJson(labDir, 'fault', 'delay', 'replica2', '100ms');
    assert.ok(delayed.pid > 0);
    await refused(labDir, ['fault', 'delay', 'replica2', '50ms'], 3, /already delayed/);
    const slow = await roundTrips();
    console.log(`# delay 100ms on replica2: SELECT 1 round trip ${baseline.toFixed(1)} ms -> ${slow.toFixed(1)} ms (median of 5)`);
    assert.ok(slow - baseline >= 90 && slow - baseline <= 200, `round trip ${baseline} -> ${slow} ms`);
    const writeLag = await waitWriteLag(masterConn, 'replica2', 0.09);
    console.log(`# delay 100ms on replica2: the primary's write_lag for it is ${(writeLag * 1000).toFixed(0)} ms`);
    assert.ok(writeLag < 0.5, `write_lag ${writeLag} s`);
    await labJson(labDir, 'fault', 'heal', 'replica2');
    assert.ok((await roundTrips()) < baseline + 50, 'healed: round trips as before');
    assert.deepEqual(await relayProcesses(index), []);

    // destroy with faults still in force (a partition and a delay relay): nothing of the lab is left.
    await labJson(labDir, 'fault', 'delay', 'replica2', '50ms', '--jitter', '10ms');
    assert.equal((await relayProcesses(index)).length, 1);
    await labJson(labDir, 'fault', 'partition', 'replica1');
    const destroyed = await runLab(labDir, ['destroy', '--yes']);
    assert.equal(destroyed.exitCode, 0, destroyed.stderr);
    assert.deepEqual(await leftovers(index), []);
    assert.deepEqual(await relayProcesses(index), []);
  });
  assert.deepEqual(await leftovers(index), []);
});

test('--hosts: destroy after a kill -9 of `master start --hosts` half way leaves no namespace, link or rule', { skip: !isRoot && 'needs root' }, async () => {
  const root = await tempDir();
  for (const stage of ['record', 'bridge', 'namespace']) {
    const labDir = path.join(root, stage);
    const [port] = await freePorts(1);
    const child = execa('node', [labBin, '--lab-dir', labDir, 'master', 'start', '--hosts', '--port', String(port)], { reject: false });
    let index = 0;
    const deadline = Date.now() + 60_000;
    for (;;) {
      const state = await readFile(path.join(labDir, 'lab.json'), 'utf8').then(JSON.parse, () => undefined);
      index = state?.hosts?.index ?? 0;
      const links = index ? (await execa('ip', ['-o', 'link', 'show'])).stdout : '';
      const netns = index ? (await execa('ip', ['netns', 'list'])).stdout : '';
      if (stage === 'record' && index) break; // recorded, maybe not claimed yet
      if (stage === 'bridge' && new RegExp(`^\\d+: pgl${index}:`, 'm').test(links)) break;
      if (stage === 'namespace' && netns.includes(`pglab-${index}-master1`)) break;
      assert.ok(Date.now() < deadline, `master start --hosts never reached the ${stage}`);
      await delay(5);
    }
    child.kill('SIGKILL');
    await child;
    let destroyed = await runLab(labDir, ['destroy', '--yes']);
    if (destroyed.exitCode !== 0) destroyed = await runLab(labDir, ['destroy', '--yes']); // a second destroy finishes
    assert.equal(destroyed.exitCode, 0, `${stage}: ${destroyed.stderr}`);
    assert.deepEqual(await leftovers(index), [], `after a kill -9 at the ${stage}`);
  }
  await execa('rm', ['-rf', root]);
});

test('--hosts refused in one line where it cannot work: not root, a lab made without it', async () => {
  const root = await tempDir();
  try {
    const nobody = await execa('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'node', labBin, '--lab-dir', path.join(root, 'nobody'), 'master', 'start', '--hosts'], { reject: false, env: { NO_COLOR: '1' } });
    assert.notEqual(nobody.exitCode, 0);
    assert.equal(nobody.stderr.trim().split('\n').length, 1, nobody.stderr);
    assert.match(nobody.stderr, /--hosts needs root|permission|EACCES/);
  } finally {
    await execa('rm', ['-rf', root]);
  }
  await withTempLab(async (labDir) => {
    const [m] = await freePorts(1);
    await labJson(labDir, 'master', 'start', '--port', String(m));
    await refused(labDir, ['master', 'start', '--hosts', '--port', String(m)], 3, /made without --hosts/);
    await refused(labDir, ['fault', 'partition', 'master1'], 2, /needs a lab made with --hosts/);
  });
});
