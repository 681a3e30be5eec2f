// The recovery.conf path: PostgreSQL 11 from the npm registry's embedded binaries, backed up by
// Debian's newer pg_basebackup, a master with three streaming replicas.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { freePorts, lab, labJson, withTempLab } from './helpers/lab.js';

test('PostgreSQL 11: master and three replicas stream with recovery.conf', async () => {
  const versions = await labJson<{ major: number; canAddReplicas: boolean }[]>('/nonexistent-lab', 'versions');
  assert.ok(versions.some((v) => v.major === 11 && v.canAddReplicas), 'the pg11 dev dependency provides PostgreSQL 11');

  await withTempLab(async (labDir) => {
    const [m, ...replicas] = await freePorts(4);
    const started = await labJson(labDir, '--pg', '11', 'master', 'start', '--port', String(m));
    assert.match(started.version, /^11\./);
    for (const [i, port] of replicas.entries()) {
      await lab(labDir, 'replica', 'add', `replica${i + 1}`, path.join(labDir, `replica${i + 1}`), String(port));
    }
    const replica1 = path.join(labDir, 'replica1');
    const recoveryConf = await readFile(path.join(replica1, 'recovery.conf'), 'utf8');
    assert.match(recoveryConf, /standby_mode = 'on'/);
    assert.match(recoveryConf, new RegExp(`primary_conninfo = 'host=127.0.0.1 port=${m} user=postgres application_name=replica1 password=''[A-Za-z0-9_-]{24}'''`));
    assert.doesNotMatch(recoveryConf, /channel_binding/);
    await assert.rejects(stat(path.join(replica1, 'standby.signal')), { code: 'ENOENT' });
    assert.match(await readFile(path.join(replica1, 'postgresql.conf'), 'utf8'), /wal_keep_segments = 8/);

    const status = await labJson(labDir, 'status');
    assert.deepEqual(status.nodes.map((n: { replication: string }) => n.replication), ['primary', 'streaming', 'streaming', 'streaming']);

    await lab(labDir, 'node', 'kill', 'replica2');
    await lab(labDir, 'replica', 'add', 'replica2', path.join(labDir, 'replica2'), String(replicas[1]));
    const after = await labJson(labDir, 'status');
    assert.equal(after.nodes[2].replication, 'streaming');
  });
});
