// The seed's steps 1, 2 and 8 on PostgreSQL 15, as a user types them: master, three replicas, kill -9
// one, re-add it, stop/start/restart, destroy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { freePorts, lab, labJson, runLab, withTempLab } from './helpers/lab.js';

interface StatusJson {
  nodes: { name: string; role: string; port: number; pid: number | null; status: string; replication: string | null }[];
}

const byName = (status: StatusJson, name: string) => status.nodes.find((n) => n.name === name)!;

test('master, three streaming replicas, kill -9 and re-add, stop/start/restart, destroy (PostgreSQL 15)', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1, r2, r3] = await freePorts(4);
    const started = await labJson(labDir, 'master', 'start', '--port', String(m));
    assert.equal(started.action, 'created');
    assert.match(started.version, /^15\./);
    assert.equal(started.datadir, path.join(labDir, 'master1'));

    for (const [name, port] of [['replica1', r1], ['replica2', r2], ['replica3', r3]] as const) {
      const added = await labJson(labDir, 'replica', 'add', name, path.join(labDir, name), String(port));
      assert.equal(added.upstream, 'master1');
      assert.equal(added.rebuilt, false);
    }
    // v15: standby.signal and our own primary_conninfo (only host, port, user, application_name, the lab's password)
    const replica2 = path.join(labDir, 'replica2');
    await stat(path.join(replica2, 'standby.signal'));
    const autoConf = await readFile(path.join(replica2, 'postgresql.auto.conf'), 'utf8');
    assert.match(autoConf, new RegExp(`primary_conninfo = 'host=127.0.0.1 port=${m} user=postgres application_name=replica2 password=''[A-Za-z0-9_-]{24}'''`));
    assert.match(await readFile(path.join(replica2, 'postgresql.conf'), 'utf8'), /wal_keep_size = 128MB/);

    let status = await labJson<StatusJson>(labDir, 'status');
    assert.deepEqual(status.nodes.map((n) => [n.name, n.status, n.replication]), [
      ['master1', 'running', 'primary'],
      ['replica1', 'running', 'streaming'],
      ['replica2', 'running', 'streaming'],
      ['replica3', 'running', 'streaming'],
    ]);

    // The table looks like psql's
    const table = await lab(labDir, 'status');
    assert.match(table.split('\n')[0]!, /^\s+name\s+\|\s+role\s+\|\s+port\s+\|/);
    assert.match(table.split('\n')[1]!, /^-+\+-+\+/);

    // Demo step 6: kill -9 replica2; status says crashed, not running
    const killed = await labJson(labDir, 'node', 'kill', 'replica2');
    assert.equal(killed.pid, byName(status, 'replica2').pid);
    status = await labJson<StatusJson>(labDir, 'status');
    assert.equal(byName(status, 'replica2').status, 'crashed');
    assert.equal(byName(status, 'replica2').pid, null);

    // Demo step 8: the same add command rebuilds it and it streams again
    const readded = await labJson(labDir, 'replica', 'add', 'replica2', replica2, String(r2));
    assert.equal(readded.rebuilt, true);
    status = await labJson<StatusJson>(labDir, 'status');
    assert.equal(byName(status, 'replica2').replication, 'streaming');

    await lab(labDir, 'node', 'stop', 'replica3');
    status = await labJson<StatusJson>(labDir, 'status');
    assert.equal(byName(status, 'replica3').status, 'stopped');
    await lab(labDir, 'node', 'start', 'replica3');
    const restarted = await labJson(labDir, 'node', 'restart', 'replica1');
    status = await labJson<StatusJson>(labDir, 'status');
    assert.equal(byName(status, 'replica1').pid, restarted.pid);
    assert.equal(byName(status, 'replica3').status, 'running');

    // master start on a running lab is a no-op that says so
    assert.equal((await labJson(labDir, 'master', 'start', '--port', String(m))).action, 'already-running');

    const destroyed = await labJson(labDir, 'destroy', '--yes');
    assert.equal(destroyed.stopped.length, 4);
    for (const name of ['master1', 'replica1', 'replica2', 'replica3']) {
      await assert.rejects(stat(path.join(labDir, name)), { code: 'ENOENT' });
    }
  });
});

test('replicas can be added in parallel', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1, r2] = await freePorts(3);
    await lab(labDir, 'master', 'start', '--port', String(m));
    const results = await Promise.all([
      runLab(labDir, ['replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1)]),
      runLab(labDir, ['replica', 'add', 'replica2', path.join(labDir, 'replica2'), String(r2)]),
    ]);
    for (const result of results) assert.equal(result.exitCode, 0, result.stderr);
    const status = await labJson<StatusJson>(labDir, 'status');
    assert.deepEqual(status.nodes.map((n) => n.replication), ['primary', 'streaming', 'streaming']);
  });
});

test('help of every command ends with examples', async () => {
  for (const args of [[], ['master', 'start'], ['replica', 'add'], ['node', 'kill'], ['status'], ['destroy'], ['versions']]) {
    const result = await runLab('/nonexistent-lab', [...args, '--help']);
    assert.equal(result.exitCode, 0);
    assert.match(result.stdout, /Examples:\n\s+\$ lab /, `lab ${args.join(' ')} --help`);
  }
});
