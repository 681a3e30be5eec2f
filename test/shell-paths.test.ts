// Issue 22, item 2: pg_ctl starts the server through /bin/sh with the data dir and the log path in double
// quotes, so `$(...)` or a backtick in a lab dir or a data dir ran a command as the postgres OS user. Each
// character /bin/sh interprets there (` $ " \) and control characters (a newline) are refused in one line,
// exit 4, before anything is made; the injected `touch MARKER` never runs. A single quote and a space work.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { resolveInstallation } from '../src/postgres/installation.js';
import { freePorts, lab, labBin, refused, runLab, tempDir, withTempLab } from './helpers/lab.js';

/** A file the postgres OS user could create (in /tmp, sticky): an injected `touch` would make it. */
const marker = path.join(tmpdir(), `pglab-injected-${randomBytes(6).toString('hex')}`);

/** Path names holding each refused character; the first two would run `touch marker` through pg_ctl's shell. */
const BAD_NAMES: { name: string; holds: RegExp }[] = [
  { name: `inj\`touch ${marker}\`dir`, holds: /holds a backtick \(`\), which \/bin\/sh runs as a command/ },
  { name: `inj$(touch ${marker})dir`, holds: /holds a dollar sign \(\$\), which \/bin\/sh expands/ },
  { name: 'quote"dir', holds: /holds a double quote \("\)/ },
  { name: 'back\\slash', holds: /holds a backslash \(\\\)/ },
  { name: 'new\nline', holds: /holds a newline, which splits the lines of postmaster\.pid/ },
  { name: 'a\ttab', holds: /holds a tab/ },
];

const remedy = /: choose a path without ` \$ " \\ or control characters \(newlines\)$/;

async function exists(file: string): Promise<boolean> {
  return access(file).then(() => true, () => false);
}

/** `^lab: the WHAT "PATH" holds ...: choose ...`, the path shown JSON-quoted (a newline as \n: one line). */
function refusal(what: string, file: string, holds: RegExp): RegExp {
  const quoted = JSON.stringify(file).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^lab: the ${what} ${quoted} ${holds.source}.*${remedy.source}`);
}

test('a lab dir, data dir, bin dir or cache holding ` $ " \\ or a control character is refused before anything is made', async () => {
  const root = await tempDir();
  try {
    const [port] = await freePorts(1);
    for (const { name, holds } of BAD_NAMES) {
      const labDir = path.join(root, name);
      await refused(labDir, ['master', 'start', '--port', String(port)], 4, refusal('lab dir', labDir, holds));
      // A good lab dir with a bad data dir: not even the lab dir is made.
      const datadir = path.join(root, name, 'master1');
      await refused(path.join(root, 'lab'), ['master', 'start', '--datadir', datadir, '--port', String(port)], 4, refusal('data dir', datadir, holds));
      assert.deepEqual(await readdir(root), [], `something was made for ${JSON.stringify(name)}`);
    }
    // LAB_DIR as the issue gave it.
    const fromEnv = path.join(root, `inj$(touch ${marker})dir`);
    const result = await execa('node', [labBin, 'master', 'start', '--port', String(port)], { reject: false, env: { NO_COLOR: '1', LAB_DIR: fromEnv }, timeout: 30_000 });
    assert.equal(result.exitCode, 4, result.stderr);
    assert.match(result.stderr.trim(), refusal('lab dir', fromEnv, /holds a dollar sign/));

    // --pg BINDIR: pg_ctl and initdb hand the path of `postgres` to /bin/sh too (here a link to the real one).
    const bindir = (await resolveInstallation(undefined)).bindir;
    const linked = path.join(root, 'pg$HOME');
    await symlink(bindir, linked);
    await refused(path.join(root, 'lab'), ['--pg', linked, 'master', 'start', '--port', String(port)], 4, /^lab: the PostgreSQL bin dir ".*pg\$HOME" holds a dollar sign/);
    // The cache of `lab versions install`, whose majors' programs pg_ctl runs.
    const cache = path.join(root, `cache$(touch ${marker})`);
    const install = await runLab(path.join(root, 'lab'), ['versions', 'install', '17'], { env: { NO_COLOR: '1', LAB_PG_CACHE: cache }, timeout: 30_000 });
    assert.equal(install.exitCode, 4, install.stderr);
    assert.match(install.stderr.trim(), /^lab: the PostgreSQL cache \(LAB_PG_CACHE\) ".*cache\$\(touch .*\)" holds a dollar sign[^\n]*$/);
    assert.deepEqual(await readdir(root), ['pg$HOME'], 'only the test\'s own link is in the temp dir');
    assert.equal(await exists(marker), false, `${marker} was made: a command in a path ran`);
  } finally {
    await rm(root, { recursive: true, force: true });
    await rm(marker, { force: true });
  }
});

test("a replica's data dir holding ` $ \" \\ or a control character is refused, lab.json unchanged; a ' and a space work", async () => {
  try {
    await withTempLab(async (labDir) => {
      const root = path.dirname(labDir);
      const [m, r] = await freePorts(2);
      await lab(labDir, 'master', 'start', '--port', String(m)); // a lab dir named "it's a lab"
      const stateFile = path.join(labDir, 'lab.json');
      const state = await readFile(stateFile);
      const listing = async () => [await readdir(root), await readdir(labDir), await readdir(path.join(labDir, 'log'))];
      const before = await listing();
      for (const { name, holds } of BAD_NAMES) {
        const datadir = path.join(root, name);
        await refused(labDir, ['replica', 'add', 'replica1', datadir, String(r)], 4, refusal('data dir', datadir, holds));
        assert.ok((await readFile(stateFile)).equals(state), `lab.json changed by the refusal of ${JSON.stringify(name)}`);
        assert.deepEqual(await listing(), before, `something was made for ${JSON.stringify(name)}`);
      }
      assert.equal(await exists(marker), false, `${marker} was made: a command in a data dir ran`);

      // A single quote and a space reach no shell unquoted and no single-quoted config value: allowed.
      await lab(labDir, 'replica', 'add', 'replica1', path.join(root, "it's replica1"), String(r));

      // A path already in lab.json (hand-edited, or a lab of an earlier pglab) never reaches pg_ctl either.
      await lab(labDir, 'node', 'stop', 'replica1');
      const good = await readFile(stateFile, 'utf8');
      const hostile = path.join(root, `x$(touch ${marker})`);
      const forged = good.replace(JSON.stringify(path.join(root, "it's replica1")), JSON.stringify(hostile));
      assert.notEqual(forged, good, 'the replica\'s data dir is in lab.json');
      await writeFile(stateFile, forged);
      try {
        await refused(labDir, ['node', 'start', 'replica1'], 4, refusal('data dir', hostile, /holds a dollar sign/));
      } finally {
        await writeFile(stateFile, good);
      }
      assert.equal(await exists(marker), false, `${marker} was made: a command in a data dir from lab.json ran`);
    }, "it's a lab");
  } finally {
    await rm(marker, { force: true });
  }
});
