// Bad input gets one clear line, a non-zero exit code, and nothing is lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { clientTool, type Installation } from '../src/postgres/installation.js';
import { freePorts, lab, labBin, labJson, runLab, tempDir, withTempLab } from './helpers/lab.js';

/** The command failed with exactly one line on stderr matching `pattern`. */
function assertOneLineError(result: { exitCode: number; stderr: string }, pattern: RegExp, exitCode?: number): void {
  assert.notEqual(result.exitCode, 0, 'expected a non-zero exit code');
  if (exitCode !== undefined) assert.equal(result.exitCode, exitCode);
  const lines = result.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${result.stderr}`);
  assert.match(lines[0]!, /^lab: /);
  assert.match(lines[0]!, pattern);
}

test('bad ports, names, paths and unknown nodes are refused with one clear line', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1] = await freePorts(2);
    assertOneLineError(await runLab(labDir, ['master', 'start', '--port', '70000']), /Invalid port "70000": expected an integer from 1 to 65535/, 2);
    assertOneLineError(await runLab(labDir, ['master', 'start', '--port', 'abc']), /Invalid port "abc"/, 2);
    assertOneLineError(await runLab(labDir, ['replica', 'add', 'replica1', path.join(labDir, 'r1'), String(r1)]), /No lab in .*run `lab master start` first/, 5);
    assertOneLineError(await runLab(labDir, ['master', 'start', '--datadir', '/usr/local/pgdata', '--port', String(m)]), /Refusing data dir \/usr\/local\/pgdata: it is a system path/, 4);

    await lab(labDir, 'master', 'start', '--port', String(m));
    assertOneLineError(await runLab(labDir, ['replica', 'add', 'replica1', '/etc/pg', String(r1)]), /system path/, 4);
    assertOneLineError(await runLab(labDir, ['replica', 'add', 'bad name', path.join(labDir, 'x'), String(r1)]), /Invalid node name "bad name"/, 2);
    assertOneLineError(await runLab(labDir, ['replica', 'add', 'replica1', path.join(labDir, 'r1'), String(m)]), /Port \d+ is already used by node "master1"/, 3);
    assertOneLineError(await runLab(labDir, ['replica', 'add', 'master1', path.join(labDir, 'r1'), String(r1)]), /already exists in this lab as the master/, 3);
    assertOneLineError(await runLab(labDir, ['node', 'stop', 'nosuch']), /Unknown node "nosuch" \(nodes in this lab: master1\)/, 5);
    assertOneLineError(await runLab(labDir, ['node', 'kill', 'nosuch']), /Unknown node "nosuch"/, 5);
    assertOneLineError(await runLab(labDir, ['destroy']), /pass --yes to confirm/, 2);

    await lab(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1));
    assertOneLineError(await runLab(labDir, ['replica', 'add', 'replica1', path.join(labDir, 'elsewhere'), String(r1)]), /already exists with data dir/, 3);
    assertOneLineError(await runLab(labDir, ['replica', 'add', 'replica2', path.join(labDir, 'replica1', 'sub'), '1']), /overlaps the data dir/, 3);
  });
});

test('a port held by another process is refused, naming the process', async () => {
  await withTempLab(async (labDir) => {
    const [m, busy] = await freePorts(2);
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(busy, '127.0.0.1', resolve));
    try {
      assertOneLineError(await runLab(labDir, ['master', 'start', '--port', String(busy)]), new RegExp(`Port ${busy} .* already in use by pid ${process.pid} \\(node\\)`), 3);
      await lab(labDir, 'master', 'start', '--port', String(m));
      assertOneLineError(await runLab(labDir, ['replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(busy)]), /already in use by pid/, 3);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

test('a data dir the lab did not create is never deleted', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1] = await freePorts(2);
    const foreign = path.join(path.dirname(labDir), 'precious');
    await mkdir(foreign, { recursive: true });
    await writeFile(path.join(foreign, 'important.txt'), 'keep me');

    assertOneLineError(await runLab(labDir, ['master', 'start', '--datadir', foreign, '--port', String(m)]), /exists, is not empty and was not created by this lab; nothing was deleted/, 4);
    await lab(labDir, 'master', 'start', '--port', String(m));
    assertOneLineError(await runLab(labDir, ['replica', 'add', 'replica1', foreign, String(r1)]), /was not created by this lab; nothing was deleted/, 4);
    await lab(labDir, 'destroy', '--yes');
    assert.deepEqual(await readdir(foreign), ['important.txt']);
    assert.equal(await readFile(path.join(foreign, 'important.txt'), 'utf8'), 'keep me');

    // An empty dir of the user's own is used, and kept (emptied) by destroy
    const empty = path.join(path.dirname(labDir), 'mine');
    await mkdir(empty);
    await lab(labDir, 'master', 'start', '--datadir', empty, '--port', String(m));
    await lab(labDir, 'destroy', '--yes');
    assert.deepEqual(await readdir(empty), []);
  });
});

test('no PostgreSQL, no master running, a version without pg_basebackup', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1] = await freePorts(2);
    assertOneLineError(await runLab(labDir, ['--pg', '/nonexistent/bin', 'master', 'start', '--port', String(m)]), /No runnable PostgreSQL in \/nonexistent\/bin/, 5);
    assertOneLineError(await runLab(labDir, ['--pg', '99', 'master', 'start', '--port', String(m)]), /PostgreSQL 99 is not available \(found: .*15\./, 5);
    await lab(labDir, 'master', 'start', '--port', String(m));
    await lab(labDir, 'node', 'stop', 'master1');
    assertOneLineError(await runLab(labDir, ['replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1)]), /Master "master1" is stopped: start it first/, 6);
    assertOneLineError(await runLab(labDir, ['--pg', '11', 'status']), /This lab's nodes run PostgreSQL 15 .*PostgreSQL 11 from --pg cannot replicate from them/, 3);
  });
  // pg_basebackup refuses servers newer than itself: no installation can back up a version 99
  const future: Installation = { bindir: '/opt/pg99/bin', source: 'test', version: '99.0', major: 99, tools: {} };
  await assert.rejects(clientTool(future, 'pg_basebackup'), /PostgreSQL 99.0 in \/opt\/pg99\/bin has no pg_basebackup, and no installation of version 99 or newer has one/);
});

test('the state file survives kill -9 of the CLI, and status reconciles with reality', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1] = await freePorts(2);
    await lab(labDir, 'master', 'start', '--port', String(m));
    // Kill the CLI in the middle of a replica add (after its state update, during the base backup or start)
    const child = execa('node', [labBin, '--lab-dir', labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1)], { reject: false });
    await new Promise<void>((resolve) => {
      child.stderr!.on('data', (chunk: Buffer) => {
        if (/base backup|pg_basebackup/.test(chunk.toString())) resolve();
      });
      void child.then(() => resolve());
    });
    child.kill('SIGKILL');
    await child;
    const state = JSON.parse(await readFile(path.join(labDir, 'lab.json'), 'utf8'));
    assert.equal(state.nodes.length, 2);
    assert.notEqual(state.nodes[1].phase, 'ready');
    const status = await labJson(labDir, 'status');
    assert.ok(['building', 'crashed', 'running'].includes(status.nodes[1].status), status.nodes[1].status);
    // A half-built node is refused by every command that would use it, with what to do instead
    for (const args of [['promote', 'replica1'], ['replica', 'follow', 'replica1'], ['node', 'rewind', 'replica1'], ['node', 'start', 'replica1']]) {
      assertOneLineError(await runLab(labDir, args), /Node "replica1" was never finished \(its build was interrupted\): re-(add it|run the command)/);
    }
    // Re-running the same command finishes the job
    await lab(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1));
    assert.equal((await labJson(labDir, 'status')).nodes[1].replication, 'streaming');
    // No temp files left next to the state file
    assert.deepEqual((await readdir(labDir)).filter((f) => f.endsWith('.tmp')), []);
  });
});

test('runs as a normal user too (no root, no --os-user)', async (t) => {
  const passwd = await readFile('/etc/passwd', 'utf8');
  const line = passwd.split('\n').find((l) => l.startsWith('postgres:'));
  if (process.geteuid?.() !== 0 || !line) {
    t.skip('needs root and an OS user "postgres" to switch to');
    return;
  }
  const [, , uid, gid] = line.split(':');
  const root = await tempDir();
  const labDir = path.join(root, 'lab');
  await mkdir(labDir);
  await execa('chown', ['-R', `${uid}:${gid}`, root]);
  const asPostgres = { uid: Number(uid), gid: Number(gid), env: { HOME: root, NO_COLOR: '1' } };
  try {
    const [m, r1] = await freePorts(2);
    const started = await runLab(labDir, ['master', 'start', '--port', String(m), '--json'], asPostgres);
    assert.equal(started.exitCode, 0, started.stderr);
    const added = await runLab(labDir, ['replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1)], asPostgres);
    assert.equal(added.exitCode, 0, added.stderr);
    const status = JSON.parse((await runLab(labDir, ['status', '--json'], asPostgres)).stdout);
    assert.deepEqual(status.nodes.map((n: { replication: string }) => n.replication), ['primary', 'streaming']);
    const state = JSON.parse(await readFile(path.join(labDir, 'lab.json'), 'utf8'));
    assert.equal(state.osUser, undefined, 'a normal user runs PostgreSQL as itself');
    // Without root, no BPF: the balancer relays through Node, and --relay kernel is refused in one line.
    const [lb, lbStats] = await freePorts(2);
    const addresses = ['--listen', `127.0.0.1:${lb}`, '--stats', `127.0.0.1:${lbStats}`];
    const refused = await runLab(labDir, ['balancer', 'start', '--relay', 'kernel', ...addresses], asPostgres);
    assert.equal(refused.exitCode, 2, refused.stderr);
    assert.match(refused.stderr, /^lab: --relay kernel: [^\n]*; use --relay node or auto$/);
    const balancer = await runLab(labDir, ['balancer', 'start', ...addresses, '--json'], asPostgres);
    assert.equal(balancer.exitCode, 0, balancer.stderr);
    const stats = (await (await fetch(`http://127.0.0.1:${lbStats}/?format=json`)).json()) as { relay: string };
    assert.equal(stats.relay, 'node');
  } finally {
    const destroyed = await runLab(labDir, ['destroy', '--yes'], asPostgres);
    await rm(root, { recursive: true, force: true });
    assert.equal(destroyed.exitCode, 0, destroyed.stderr);
  }
});

test('as root without the postgres user, a clear error says what to pass', async (t) => {
  if (process.geteuid?.() !== 0) {
    t.skip('only meaningful as root');
    return;
  }
  await withTempLab(async (labDir) => {
    const [m] = await freePorts(1);
    assertOneLineError(await runLab(labDir, ['--os-user', 'no-such-user-pglab', 'master', 'start', '--port', String(m)]), /OS user "no-such-user-pglab" \(from --os-user\) does not exist/, 9);
    assertOneLineError(await runLab(labDir, ['--os-user', 'root', 'master', 'start', '--port', String(m)]), /is root; PostgreSQL refuses to run as root/, 2);
  });
});
