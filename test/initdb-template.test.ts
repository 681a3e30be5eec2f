// The cached initdb template (src/postgres/initdb-template.ts): a second master is a copy of the
// template the first one made, with its own password (scram over TLS: its password logs in, the other
// lab's does not), a replica streams from it; a template without its marker or with a file missing is
// not used and is made again; LAB_INITDB_TEMPLATE=off runs initdb.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { pollUntil } from '../src/common/poll.js';
import { readLabPassword, tlsPaths } from '../src/lab/access.js';
import { freePorts, labJson, runLab, tempDir, withTempLab, type CliResult } from './helpers/lab.js';

/** `lab master start` with the test's template cache; must succeed. */
async function startMaster(labDir: string, port: number, templates: string): Promise<CliResult> {
  const result = await runLab(labDir, ['master', 'start', '--port', String(port)], { env: { LAB_INITDB_TEMPLATE: templates } });
  assert.equal(result.exitCode, 0, `lab master start failed:\n${result.stderr}\n${result.stdout}`);
  return result;
}

/** The one complete template in `templates` (its dir), checked: root's dir, the OS user's 0700 data. */
async function onlyTemplate(templates: string): Promise<string> {
  const entries = (await readdir(templates)).filter((entry) => !entry.startsWith('.'));
  assert.equal(entries.length, 1, `one template expected in ${templates}: ${entries.join(', ')}`);
  const dir = path.join(templates, entries[0]!);
  const marker = JSON.parse(await readFile(path.join(dir, 'template.json'), 'utf8'));
  assert.equal(marker.key, entries[0]);
  assert.ok(!JSON.stringify(marker).includes('pwfile'), 'the key has no password file in it');
  const data = await stat(path.join(dir, 'data'));
  assert.equal(data.mode & 0o777, 0o700);
  return dir;
}

/** Logs in to the lab's master on `port` over TLS (verify-full, the lab's CA) with `password`: its ssl flag, or the error. */
async function login(labDir: string, port: number, password: string): Promise<string> {
  const client = new pg.Client({
    host: '127.0.0.1', port, user: 'postgres', database: 'postgres', password, connectionTimeoutMillis: 10_000,
    ssl: { ca: await readFile(tlsPaths(labDir).caCert, 'utf8') },
  });
  try {
    await client.connect();
    const { rows } = await client.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    return `ssl=${rows[0].ssl}`;
  } catch (error) {
    return `error: ${(error as Error).message}`;
  } finally {
    await client.end().catch(() => undefined);
  }
}

test('a second master is a copy of the cached template, with its own password; a replica streams from it', async () => {
  const templates = path.join(await tempDir('pglab-templates-'), 'templates');
  try {
    await withTempLab(async (first) => {
      await withTempLab(async (second) => {
        const [m1, m2, r1] = await freePorts(3);
        const made = await startMaster(first, m1, templates);
        assert.match(made.stderr, /initdb .* \(PostgreSQL [\d.]+, kept as the cached template\)/, made.stderr);
        const template = await onlyTemplate(templates);
        const copied = await startMaster(second, m2, templates);
        assert.match(copied.stderr, /initdb .* \(PostgreSQL [\d.]+, from the cached template\)/, copied.stderr);
        assert.equal(await onlyTemplate(templates), template, 'the second master used the same template');

        // The data dir is the lab's OS user's, 0700, as initdb leaves it.
        const [a, b] = await Promise.all([stat(path.join(first, 'master1')), stat(path.join(second, 'master1'))]);
        assert.equal(b.mode & 0o777, 0o700);
        assert.equal(b.uid, a.uid);

        const [pw1, pw2] = await Promise.all([readLabPassword(first, 'postgres'), readLabPassword(second, 'postgres')]);
        assert.ok(pw1 && pw2 && pw1 !== pw2, 'each lab has its own password');
        assert.equal(await login(first, m1, pw1), 'ssl=true');
        assert.equal(await login(second, m2, pw2), 'ssl=true');
        assert.match(await login(first, m1, pw2), /password authentication failed/);
        assert.match(await login(second, m2, pw1), /password authentication failed/);

        // A replica of the template-made master streams from it.
        const added = await runLab(second, ['replica', 'add', 'replica1', path.join(second, 'replica1'), String(r1)]);
        assert.equal(added.exitCode, 0, added.stderr);
        await pollUntil(async () => {
          const status = await labJson<{ nodes: { name: string; replication: string }[] }>(second, 'status');
          return status.nodes.find((n) => n.name === 'replica1')?.replication === 'streaming' ? true : undefined;
        }, { timeoutMs: 30_000, what: 'replica1 streaming from the template-made master' });
      }, 'lab-b');
    }, 'lab-a');
  } finally {
    await rm(path.dirname(templates), { recursive: true, force: true });
  }
});

test('a template without its marker or with a file missing is made again; LAB_INITDB_TEMPLATE=off runs initdb', async () => {
  const templates = path.join(await tempDir('pglab-templates-'), 'templates');
  try {
    const [port] = await freePorts(1);
    await withTempLab(async (labDir) => {
      assert.match((await startMaster(labDir, port!, templates)).stderr, /kept as the cached template/);
    }, 'made');
    // Half-made: no marker. It is set aside, and a new one made.
    await unlink(path.join(await onlyTemplate(templates), 'template.json'));
    await withTempLab(async (labDir) => {
      assert.match((await startMaster(labDir, port!, templates)).stderr, /kept as the cached template/);
    }, 'no-marker');
    // A file missing in the template's data: the copy differs, the template is discarded, initdb runs.
    const dir = await onlyTemplate(templates);
    const db = path.join(dir, 'data', 'base', '1');
    await unlink(path.join(db, (await readdir(db)).find((file) => /^\d+$/.test(file))!));
    await withTempLab(async (labDir) => {
      const result = await startMaster(labDir, port!, templates);
      assert.match(result.stderr, /from the cached template/);
      assert.match(result.stderr, /initdb template not used \(.*has \d+ files.*\): running initdb/);
      assert.equal(await login(labDir, port!, (await readLabPassword(labDir, 'postgres'))!), 'ssl=true');
    }, 'damaged');
    assert.deepEqual((await readdir(templates)).filter((entry) => !entry.startsWith('.')), [], 'the damaged template is gone');
    // Off: initdb, the step line as it always was, nothing cached.
    await withTempLab(async (labDir) => {
      const result = await startMaster(labDir, port!, 'off');
      assert.match(result.stderr, /initdb .* \(PostgreSQL [\d.]+\)\n/);
    }, 'off');
    assert.deepEqual(await readdir(templates), []);
  } finally {
    await rm(path.dirname(templates), { recursive: true, force: true });
  }
});
