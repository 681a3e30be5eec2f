// Issue 14: with `trust`, any local user can run commands as the postgres OS user (COPY ... TO PROGRAM),
// who owns <lab-dir>/log and the data dirs. Root must never write through a path that user controls: the
// lab dir is root's (0711), the balancers' files live in <lab-dir>/balancer/ (0700), every file is opened
// without following a link, and every command refuses a lab dir or lab.json someone else could tamper with.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, chown, lchown, lstat, mkdir, readFile, readdir, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { pollUntil } from '../src/common/poll.js';
import { lookupUser, type OsUser } from '../src/postgres/os-user.js';
import { freePorts, lab, labJson, runLab, tempDir, withTempLab, type CliResult } from './helpers/lab.js';

/** Refused in one line with exit 4 (UNSAFE), the line matching `pattern`. */
function assertUnsafe(result: CliResult, pattern: RegExp): void {
  assert.equal(result.exitCode, 4, `expected exit 4, got ${result.exitCode}:\n${result.stderr}${result.stdout}`);
  const lines = result.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${result.stderr}`);
  assert.match(lines[0]!, /^lab: /);
  assert.match(lines[0]!, pattern);
}

/** The postgres OS user, when the test runs as root (else the test is skipped). */
async function postgresUser(t: TestContext): Promise<OsUser | undefined> {
  const user = process.geteuid?.() === 0 ? await lookupUser('postgres') : undefined;
  if (!user) t.skip('needs root and an OS user "postgres"');
  return user;
}

/** A command run as `user` (the attacker's side); never throws. */
function runAs(user: OsUser, command: string, args: string[]) {
  return execa(command, args, { uid: user.uid, gid: user.gid, reject: false });
}

/** A root-owned 0600 file with random bytes: what a planted link points at. */
async function makeVictim(dir: string): Promise<{ file: string; bytes: Buffer }> {
  const file = path.join(dir, 'victim');
  const bytes = randomBytes(256);
  await writeFile(file, bytes, { mode: 0o600 });
  return { file, bytes };
}

async function assertUnchanged(victim: { file: string; bytes: Buffer }): Promise<void> {
  assert.ok((await readFile(victim.file)).equals(victim.bytes), `${victim.file} was written through a link`);
  const info = await stat(victim.file);
  assert.equal(info.uid, 0);
  assert.equal(info.mode & 0o777, 0o600);
}

interface Scene {
  labDir: string;
  masterPort: number;
  /** Free ports for the test's balancer. */
  ports: number[];
  postgres: OsUser;
  victim: { file: string; bytes: Buffer };
}

/** A temporary lab with its master running, the postgres OS user, and a victim file beside the lab dir. */
async function withMasterLab(t: TestContext, ports: number, use: (scene: Scene) => Promise<void>): Promise<void> {
  const postgres = await postgresUser(t);
  if (!postgres) return;
  await withTempLab(async (labDir) => {
    const [masterPort, ...free] = await freePorts(1 + ports);
    const victim = await makeVictim(path.dirname(labDir));
    await lab(labDir, 'master', 'start', '--port', String(masterPort));
    await use({ labDir, masterPort: masterPort!, ports: free, postgres, victim });
  });
}

function mode(info: { mode: number }): number {
  return info.mode & 0o7777;
}

test('a new lab: lab dir 0711, balancer dir 0700 with 0600 root files; the postgres user cannot reach them, and its links are not followed', async (t) => {
  await withMasterLab(t, 2, async ({ labDir, ports: [listen, stats], postgres, victim }) => {
    const labInfo = await stat(labDir);
    assert.equal(mode(labInfo), 0o711, 'the lab dir a new lab creates');
    assert.equal(labInfo.uid, 0);
    assert.equal(mode(await stat(path.join(labDir, 'lab.json'))), 0o600);

    // The postgres user can write log/ (the server logs), but neither the lab dir nor the balancer dir.
    for (const planted of [path.join(labDir, 'balancer'), path.join(labDir, 'balancer-lb.pid'), path.join(labDir, 'lab.json.tmp')]) {
      const attempt = await runAs(postgres, 'ln', ['-s', victim.file, planted]);
      assert.notEqual(attempt.exitCode, 0, `the postgres user could create ${planted}`);
    }
    // Where older labs put the balancer's log: a link there must not be followed (it is no longer used).
    const legacyLog = path.join(labDir, 'log', 'balancer-lb.log');
    assert.equal((await runAs(postgres, 'ln', ['-s', victim.file, legacyLog])).exitCode, 0);

    const started = await labJson(labDir, 'balancer', 'start', '--listen', `127.0.0.1:${listen}`, '--stats', `127.0.0.1:${stats}`);
    const balancerDir = path.join(labDir, 'balancer');
    assert.equal(started.logFile, path.join(balancerDir, 'lb.log'));
    const dirInfo = await lstat(balancerDir);
    assert.ok(dirInfo.isDirectory());
    assert.equal(mode(dirInfo), 0o700);
    assert.equal(dirInfo.uid, 0);
    for (const file of ['lb.log', 'lb.pid']) {
      const info = await lstat(path.join(balancerDir, file));
      assert.ok(info.isFile(), file);
      assert.equal(mode(info), 0o600, file);
      assert.equal(info.uid, 0, file);
    }
    assert.equal((await readFile(path.join(balancerDir, 'lb.pid'), 'utf8')).trim(), String(started.pid));
    // Written by the balancer through the fd its parent opened (batched lines: flushed within 100 ms)
    await pollUntil(async () => /lb listening on/.test(await readFile(path.join(balancerDir, 'lb.log'), 'utf8')) || undefined, {
      timeoutMs: 10_000, intervalMs: 50, what: 'the balancer to log that it listens',
    });
    assert.ok((await lstat(legacyLog)).isSymbolicLink());
    await assertUnchanged(victim);

    await lab(labDir, 'balancer', 'stop');
    await assert.rejects(stat(path.join(balancerDir, 'lb.pid')), { code: 'ENOENT' }, 'stop removes the pid file');
    await assertUnchanged(victim);
  });
});

test('links or foreign files at the balancer log and pid paths: start refused in one line, nothing written through them', async (t) => {
  await withMasterLab(t, 2, async ({ labDir, ports: [listen, stats], postgres, victim }) => {
    // The postgres user cannot reach <lab-dir>/balancer/ (first test): the links are put there as root
    // and given to postgres, the worst case the checks and O_NOFOLLOW must still hold against.
    const balancerDir = path.join(labDir, 'balancer');
    await mkdir(balancerDir, { mode: 0o700 });
    const addresses = ['--listen', `127.0.0.1:${listen}`, '--stats', `127.0.0.1:${stats}`];
    const stateBefore = await readFile(path.join(labDir, 'lab.json'));
    for (const [file, why] of [['lb.log', /lb\.log is a symbolic link: nothing was written/], ['lb.pid', /lb\.pid is a symbolic link: nothing was written/]] as const) {
      const planted = path.join(balancerDir, file);
      await symlink(victim.file, planted);
      await lchown(planted, postgres.uid, postgres.gid);
      assertUnsafe(await runLab(labDir, ['balancer', 'start', ...addresses]), why);
      assertUnsafe(await runLab(labDir, ['status']), why);
      await assertUnchanged(victim);
      assert.ok((await readFile(path.join(labDir, 'lab.json'))).equals(stateBefore), 'lab.json untouched');
      await rm(planted);
    }
    // A plain file of another user at the log path
    const foreign = path.join(balancerDir, 'lb.log');
    await writeFile(foreign, 'theirs');
    await chown(foreign, postgres.uid, postgres.gid);
    assertUnsafe(await runLab(labDir, ['balancer', 'start', ...addresses]), new RegExp(`lb\\.log belongs to uid ${postgres.uid}, not to the user running lab`));
    assert.equal(await readFile(foreign, 'utf8'), 'theirs');
    await rm(foreign);
    assert.deepEqual(await readdir(balancerDir), [], 'nothing written in the balancer dir');
    assert.ok((await readFile(path.join(labDir, 'lab.json'))).equals(stateBefore), 'lab.json untouched');
    // Once they are gone, it starts
    await lab(labDir, 'balancer', 'start', ...addresses);
    await assertUnchanged(victim);
  });
});

test('a lab dir that is a link, belongs to another user or is writable by others is refused, and so are a lab.json others could change and a data dir path that is a link', async (t) => {
  const postgres = await postgresUser(t);
  if (!postgres) return;
  const [m] = await freePorts(1);
  const root = await tempDir();
  try {
    // Before any lab exists: master start writes nothing in any of these
    const real = path.join(root, 'real');
    await mkdir(real, { mode: 0o755 });
    const link = path.join(root, 'link');
    await symlink(real, link);
    const theirs = path.join(root, 'theirs');
    await mkdir(theirs, { mode: 0o755 });
    await chown(theirs, postgres.uid, postgres.gid);
    const open = path.join(root, 'open');
    await mkdir(open);
    await chmod(open, 0o777);
    for (const [dir, why] of [
      [link, /The lab dir .*\/link is a symbolic link: nothing was written/],
      [theirs, new RegExp(`The lab dir .*/theirs belongs to uid ${postgres.uid}, not to the user running lab: nothing was written`)],
      [open, /The lab dir .*\/open is writable by others \(mode 777\): nothing was written; chmod go-w it/],
    ] as const) {
      assertUnsafe(await runLab(dir, ['master', 'start', '--port', String(m)]), why);
      assertUnsafe(await runLab(dir, ['status']), why);
      assertUnsafe(await runLab(dir, ['balancer', 'stop']), why);
    }
    for (const dir of [real, theirs, open]) assert.deepEqual(await readdir(dir), [], `${dir} stays empty`);
    // Not writable by others (0755, as tests make their temp dirs): used as it is
    assert.equal(mode(await stat(root)), 0o755);
  } finally {
    await rm(root, { recursive: true, force: true });
  }

  await withMasterLab(t, 0, async ({ labDir, masterPort: port, postgres }) => {
    const stateFile = path.join(labDir, 'lab.json');
    const before = await readFile(stateFile);
    const refuse = async (why: RegExp) => {
      for (const args of [['status'], ['master', 'start', '--port', String(port)], ['destroy', '--yes']]) assertUnsafe(await runLab(labDir, args), why);
      assert.ok((await readFile(stateFile)).equals(before), 'lab.json untouched');
    };
    await chmod(stateFile, 0o646);
    await refuse(/lab\.json is writable by others \(mode 646\): nothing was written/);
    await chmod(stateFile, 0o600);
    await chown(stateFile, postgres.uid, postgres.gid);
    await refuse(new RegExp(`lab\\.json belongs to uid ${postgres.uid}, not to the user running lab`));
    await chown(stateFile, 0, 0);
    await rename(stateFile, `${stateFile}.real`);
    await symlink(`${stateFile}.real`, stateFile);
    await refuse(/lab\.json is a symbolic link/);
    await rm(stateFile);
    await rename(`${stateFile}.real`, stateFile);
    await chmod(labDir, 0o777);
    await refuse(/The lab dir .* is writable by others \(mode 777\)/);
    await chmod(labDir, 0o711);
    assert.equal((await labJson(labDir, 'status')).nodes[0].status, 'running');

    // A data dir path the postgres user made a link (to an empty dir of root's): not followed, nothing chowned
    const rootOnly = path.join(path.dirname(labDir), 'root-only');
    await mkdir(rootOnly, { mode: 0o700 });
    const scratch = path.join(path.dirname(labDir), 'scratch');
    await mkdir(scratch);
    await chown(scratch, postgres.uid, postgres.gid);
    const planted = path.join(scratch, 'replica1');
    assert.equal((await runAs(postgres, 'ln', ['-s', rootOnly, planted])).exitCode, 0);
    const [r1] = await freePorts(1);
    assertUnsafe(await runLab(labDir, ['replica', 'add', 'replica1', planted, String(r1)]), /Data dir .* exists and is not a directory \(a symbolic link is not followed\)/);
    const rootOnlyInfo = await stat(rootOnly);
    assert.equal(rootOnlyInfo.uid, 0, 'the link\'s target was not chowned');
    assert.deepEqual(await readdir(rootOnly), []);
  });
});

test('a lab made before the balancer dir: stop and destroy remove the old pid and log files, links unlinked, never written through', async (t) => {
  await withMasterLab(t, 0, async ({ labDir, postgres, victim }) => {
    // What an older pglab left: a record with its log in log/, the pid file beside lab.json (its process gone)
    const stateFile = path.join(labDir, 'lab.json');
    const state = JSON.parse(await readFile(stateFile, 'utf8'));
    const record = (name: string) => ({
      name, engine: 'builtin', listen: '127.0.0.1:1', stats: '', pid: 2 ** 22 + 1, pool: 'replicas',
      logFile: path.join(labDir, 'log', `balancer-${name}.log`), startedAt: new Date().toISOString(),
    });
    state.balancers = [record('old'), record('older')];
    await writeFile(stateFile, JSON.stringify(state));
    const oldPid = path.join(labDir, 'balancer-old.pid');
    await writeFile(oldPid, '4194305\n', { mode: 0o600 });
    const olderPid = path.join(labDir, 'balancer-older.pid');
    await writeFile(olderPid, '4194305\n', { mode: 0o600 });
    // ... and the postgres user's links at the old log paths
    for (const name of ['old', 'older']) {
      assert.equal((await runAs(postgres, 'ln', ['-s', victim.file, path.join(labDir, 'log', `balancer-${name}.log`)])).exitCode, 0);
    }

    assert.match(await lab(labDir, 'balancer', 'stop', '--name', 'old'), /balancer old was not running; its record was removed/);
    await assert.rejects(lstat(oldPid), { code: 'ENOENT' }, 'stop removes the old pid file');
    await lab(labDir, 'destroy', '--yes');
    for (const file of [olderPid, path.join(labDir, 'log', 'balancer-older.log')]) {
      await assert.rejects(lstat(file), { code: 'ENOENT' }, `destroy removes ${file}`);
    }
    await assertUnchanged(victim);
  });
});
