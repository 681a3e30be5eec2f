// Issue 17, the faults that work on every lab: `lab fault pause` (SIGSTOP of a node's processes) and
// `lab fault lag` (WAL replay paused on a standby), listed, shown by status, healed, refused when they make
// no sense, and a paused node that `lab destroy` still stops (withTempLab checks no process is left); a
// `lab fault delay` killed with -9 half-way, which `lab fault list` names and heal cleans up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { execa } from 'execa';
import { withLock } from '../src/lab/state.js';
import { queryRows } from '../src/postgres/client.js';
import { childrenOf, procStat } from '../src/common/processes.js';
import { writePrivateFile } from '../src/common/safe-files.js';
import { freePorts, labBin, labJson, refused, runLab, withTempLab } from './helpers/lab.js';
import { isRoot, relayProcesses } from './helpers/hosts.js';

interface StatusJson {
  nodes: { name: string; pid: number | null; status: string; faults: string[]; serverProblem?: string }[];
}

const pollFor = async <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
};


test('fault pause / lag / list / heal on a master and one replica; destroy of a paused node (PostgreSQL 15)', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1] = await freePorts(2);
    await labJson(labDir, 'master', 'start', '--port', String(m));
    await labJson(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1));
    await queryRows({ port: m! }, 'CREATE TABLE t (x int)');

    // Bad input, one line each, non-zero exit, nothing recorded
    await refused(labDir, ['fault', 'pause', 'nosuch'], 5, /Unknown node "nosuch"/);
    await refused(labDir, ['fault', 'heal'], 6, /No fault to heal/);
    await refused(labDir, ['fault', 'heal', 'replica1'], 6, /no fault to heal/);
    await refused(labDir, ['fault', 'lag', 'master1'], 6, /is a primary/);
    await refused(labDir, ['fault', 'partition', 'replica1'], 2, /needs a lab made with --hosts/);
    await refused(labDir, ['fault', 'delay', 'replica1', '200ms'], 2, /needs a lab made with --hosts/);
    await refused(labDir, ['fault', 'loss', 'replica1', '10%'], 2, /needs a lab made with --hosts/);
    assert.deepEqual(await labJson(labDir, 'fault', 'list'), []);

    // pause: the postmaster and every child in state T, connections time out, status and list show it
    const paused = await labJson(labDir, 'fault', 'pause', 'replica1');
    const pid = paused.pid as number;
    const children = await childrenOf(pid);
    assert.ok(children.length >= 3, `postmaster ${pid} has its children (${children.join(' ')})`);
    for (const p of [pid, ...children]) assert.equal((await procStat(p))?.state, 'T', `process ${p} is stopped`);
    await assert.rejects(queryRows({ port: r1!, connectTimeoutMs: 1000 }, 'SELECT 1'), /timeout/i);
    await refused(labDir, ['fault', 'pause', 'replica1'], 3, /already paused/);
    await refused(labDir, ['fault', 'lag', 'replica1'], 6, /is paused/);
    const listed = await labJson(labDir, 'fault', 'list');
    assert.deepEqual(listed.map((f: any) => [f.node, f.kind, f.phase, f.pid]), [['replica1', 'pause', 'applied', pid]]);
    let status = await labJson<StatusJson>(labDir, 'status');
    const r1Status = status.nodes.find((n) => n.name === 'replica1')!;
    assert.deepEqual([r1Status.status, r1Status.faults, r1Status.serverProblem], ['running', ['pause'], 'not answering']);
    const table = (await runLab(labDir, ['status'])).stdout;
    assert.match(table, /replica1 .*running \(paused\)/);
    const state = JSON.parse(await readFile(path.join(labDir, 'lab.json'), 'utf8'));
    assert.equal(state.faults[0].kind, 'pause');
    // The watchers name it: the xact table's status column, the replication table's faults line, --json.
    const xact = (await runLab(labDir, ['stat', 'xact'])).stdout;
    assert.match(xact, /\| replica1 \| DOWN: not answering[^|\n]* \(paused\)/, xact);
    const xactJson = await labJson(labDir, 'stat', 'xact');
    assert.deepEqual(xactJson.rows.map((r: any) => [r.node, r.faults]).sort(), [['master1', []], ['replica1', ['paused']]]);
    const replication = (await runLab(labDir, ['stat', 'replication'])).stdout;
    assert.match(replication, /^faults: replica1 paused$/m, replication);
    assert.deepEqual((await labJson(labDir, 'stat', 'replication')).faults, [{ node: 'replica1', fault: 'paused' }]);

    // heal: it answers again; the record is gone
    const healed = await labJson(labDir, 'fault', 'heal', 'replica1');
    assert.deepEqual(healed.healed.map((h: any) => [h.node, h.kind]), [['replica1', 'pause']]);
    for (const p of [pid, ...children]) assert.notEqual((await procStat(p))?.state, 'T');
    await queryRows({ port: r1!, connectTimeoutMs: 2000 }, 'SELECT 1');
    assert.deepEqual(await labJson(labDir, 'fault', 'list'), []);

    // lag: WAL arrives but is not replayed; rows written on the primary stay invisible until heal
    await labJson(labDir, 'fault', 'lag', 'replica1');
    await refused(labDir, ['fault', 'lag', 'replica1'], 3, /already lagging/);
    await queryRows({ port: m! }, 'INSERT INTO t SELECT generate_series(1, 100)');
    const primaryLsn = (await queryRows<{ lsn: string }>({ port: m! }, 'SELECT pg_current_wal_lsn()::text AS lsn'))[0]!.lsn;
    await pollFor('replica1 to receive the WAL it does not replay', async () => {
      const [row] = await queryRows<{ received: boolean; behind: boolean; n: string }>(
        { port: r1! },
        `SELECT pg_last_wal_receive_lsn() >= '${primaryLsn}'::pg_lsn AS received,
                pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn() AS behind, (SELECT count(*) FROM t) AS n`,
      );
      assert.equal(row!.n, '0', 'the rows must not be visible on a lagging replica');
      return row!.received && row!.behind ? true : undefined;
    });
    status = await labJson<StatusJson>(labDir, 'status');
    assert.deepEqual(status.nodes.find((n) => n.name === 'replica1')!.faults, ['lag']);
    assert.match((await runLab(labDir, ['status'])).stdout, /replica1 .*running \(lag\)/);
    assert.match((await runLab(labDir, ['stat', 'xact'])).stdout, /\| replica1 \| up \(lag\)/);
    await labJson(labDir, 'fault', 'heal');
    await pollFor('the rows on replica1 after heal', async () => {
      const [row] = await queryRows<{ n: string }>({ port: r1! }, 'SELECT count(*) AS n FROM t');
      return row!.n === '100' ? true : undefined;
    });

    // destroy of a lab with a paused node finishes, and withTempLab checks that no process is left
    await labJson(labDir, 'fault', 'pause', 'replica1');
    const destroyed = await runLab(labDir, ['destroy', '--yes'], { timeout: 60_000 });
    assert.equal(destroyed.exitCode, 0, destroyed.stderr);
    assert.match(destroyed.stdout, /stopped: .*replica1/);
  });
});

test('a fault recorded but maybe not applied (the CLI killed after SIGSTOP): heal and destroy resume the node', async () => {
  await withTempLab(async (labDir) => {
    const [m] = await freePorts(1);
    await labJson(labDir, 'master', 'start', '--port', String(m));
    const status = await labJson<StatusJson>(labDir, 'status');
    const pid = status.nodes[0]!.pid!;
    // What a `lab fault pause` killed between SIGSTOP and marking the fault applied leaves behind.
    const statePath = path.join(labDir, 'lab.json');
    const state = JSON.parse(await readFile(statePath, 'utf8'));
    state.faults = [{ node: 'master1', kind: 'pause', phase: 'applying', since: new Date().toISOString(), pid }];
    await writePrivateFile(statePath, JSON.stringify(state));
    process.kill(pid, 'SIGSTOP');
    const listed = await labJson(labDir, 'fault', 'list');
    assert.equal(listed[0].phase, 'applying');
    await refused(labDir, ['fault', 'pause', 'master1'], 3, /already paused .*maybe/);

    // a bad faults entry is refused on read, in one line
    const bad = { ...state, faults: [{ ...state.faults[0], node: 'ghost' }] };
    await writePrivateFile(statePath, JSON.stringify(bad));
    await refused(labDir, ['fault', 'list'], 6, /lab.json: faults\[0\]\.node "ghost" is not a node of this lab/);
    await writePrivateFile(statePath, JSON.stringify(state));

    // destroy resumes it before stopping it (else pg_ctl stop would wait forever)
    const destroyed = await runLab(labDir, ['destroy', '--yes'], { timeout: 60_000 });
    assert.equal(destroyed.exitCode, 0, destroyed.stderr);
  });
});

test('lab fault delay killed with -9 half-way: list says its command is gone, heal stops the relay it left', { skip: !isRoot && 'needs root (a lab made with --hosts)' }, async () => {
  await withTempLab(async (labDir) => {
    const [m] = await freePorts(1);
    await labJson(labDir, 'master', 'start', '--hosts', '--port', String(m));
    const statePath = path.join(labDir, 'lab.json');
    const readLab = async () => JSON.parse(await readFile(statePath, 'utf8'));
    const { index } = (await readLab()).hosts;
    const netns = `pglab-${index}-master1`;

    // Caught half-way: once the record says applying, the test takes the lab's lock, so the command cannot
    // mark the fault applied; it starts the relay and adds its rules, then waits for the lock, and is killed.
    const child = execa('node', [labBin, '--lab-dir', labDir, 'fault', 'delay', 'master1', '100ms'], { reject: false });
    try {
      const deadline = Date.now() + 30_000;
      let caught = false;
      while (!caught) {
        assert.ok(Date.now() < deadline, 'lab fault delay never recorded its fault as applying');
        const recorded = (await readLab()).faults?.[0];
        if (recorded?.phase === 'applying') {
          caught = await withLock(labDir, async () => {
            const fault = (await readLab()).faults?.[0];
            assert.equal(fault?.phase, 'applying', 'the fault was marked applied before the test could hold the lock');
            assert.equal(fault.applier.pid, child.pid, 'the record names the command applying it');
            await pollFor('the relay and its nat rules', async () => {
              const rules = (await execa('ip', ['netns', 'exec', netns, 'iptables-save', '-t', 'nat'])).stdout;
              return (await relayProcesses(index)).length === 1 && /REDIRECT/.test(rules) ? true : undefined;
            });
            child.kill('SIGKILL');
            await child;
            return true;
          });
        }
        await delay(5);
      }
    } finally {
      child.kill('SIGKILL');
      await child;
    }
    assert.equal((await relayProcesses(index)).length, 1, 'the killed command left its relay running');

    const [listed] = await labJson(labDir, 'fault', 'list');
    assert.deepEqual([listed.node, listed.kind, listed.phase, listed.applier.pid, listed.applierGone], ['master1', 'delay', 'applying', child.pid, true]);
    const table = (await runLab(labDir, ['fault', 'list'])).stdout;
    assert.match(table, new RegExp(`master1 \\| delay \\| applying \\(pid ${child.pid} gone\\)`), table);
    assert.match(table, new RegExp(`^note: master1 delay was left applying by pid ${child.pid}, which is gone \\(killed half-way\\): it may be in force \\(its relay may still run\\); \`lab fault heal master1\` or \`lab destroy\` cleans it up$`, 'm'), table);

    const healed = await labJson(labDir, 'fault', 'heal', 'master1');
    assert.match(healed.healed[0].outcome, /relay stopped and nat rules removed/);
    assert.deepEqual(await relayProcesses(index), [], 'heal stopped the relay the killed command left');
    assert.deepEqual(await labJson(labDir, 'fault', 'list'), []);
  });
});
