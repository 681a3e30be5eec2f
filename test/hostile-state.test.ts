// Issue 15, items 5-8: a forged lab.json, a destroy killed with SIGKILL, two builds of one node at once,
// and bad command lines. Real servers through the real CLI; every process started here is released in
// finally, by pid.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isRunning } from '../src/common/processes.js';
import { execa } from 'execa';
import { pollUntil } from '../src/common/poll.js';
import { freePorts, lab, labBin, labJson, runLab, withTempLab, type CliResult } from './helpers/lab.js';

/** Failed with exactly one line on stderr matching `pattern`, and this exit code. */
function assertOneLine(result: CliResult, pattern: RegExp, exitCode: number): void {
  assert.equal(result.exitCode, exitCode, `expected exit ${exitCode}, got ${result.exitCode}:\n${result.stderr}${result.stdout}`);
  const lines = result.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${result.stderr}`);
  assert.match(lines[0]!, /^lab: /);
  assert.match(lines[0]!, pattern);
}

/** A root-owned (the test's user) 0600 file with random bytes. */
async function makeVictim(file: string): Promise<{ file: string; bytes: Buffer }> {
  await mkdir(path.dirname(file), { recursive: true });
  const bytes = randomBytes(256);
  await writeFile(file, bytes, { mode: 0o600 });
  return { file, bytes };
}

async function assertUnchanged(victim: { file: string; bytes: Buffer }): Promise<void> {
  assert.ok((await readFile(victim.file)).equals(victim.bytes), `${victim.file} was changed`);
  assert.equal((await stat(victim.file)).mode & 0o777, 0o600);
}

/** A `sleep` of our own: the "unrelated process" whose pid is planted in lab.json. */
function startSleep(argv0?: string): ChildProcess {
  return spawn('sleep', ['600'], { stdio: 'ignore', ...(argv0 ? { argv0 } : {}) });
}

function release(child: ChildProcess | undefined): void {
  if (child?.pid && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

test('a forged lab.json: a bad field is named in one line by every command; paths and pids it names are never touched', async () => {
  await withTempLab(async (labDir) => {
    const [m] = await freePorts(1);
    await lab(labDir, 'master', 'start', '--port', String(m));
    const stateFile = path.join(labDir, 'lab.json');
    const original = await readFile(stateFile, 'utf8');
    const root = path.dirname(labDir);
    const victim = await makeVictim(path.join(root, 'x', 'victim'));
    const victimLog = await makeVictim(path.join(root, 'victim.log'));
    const victimCfg = await makeVictim(path.join(root, 'victim.cfg'));
    const sleeper = startSleep();
    const disguised = startSleep('balancer'); // argv[0] says balancer: its command line is still not `lab balancer start --foreground`
    try {
      const forge = async (change: (state: any) => void) => {
        const state = JSON.parse(original);
        change(state);
        await writeFile(stateFile, JSON.stringify(state), { mode: 0o600 });
      };
      const node = (fields: object) => ({ ...JSON.parse(original).nodes[0], role: 'replica', port: m! + 1, ...fields });
      const refusedBy = async (pattern: RegExp) => {
        for (const args of [['status'], ['destroy', '--yes'], ['node', 'stop', 'master1'], ['balancer', 'status'], ['env'], ['master', 'start', '--port', String(m)]]) {
          assertOneLine(await runLab(labDir, args), pattern, 6);
        }
      };
      await forge((s) => s.nodes.push(node({ name: '../../x/victim', datadir: path.join(root, 'r9') })));
      await refusedBy(/^lab: lab\.json: nodes\[1\]\.name "\.\.\/\.\.\/x\/victim" is not a valid node name: fix or remove the file$/);
      await forge((s) => s.nodes.push(node({ name: 'replica9', datadir: '/etc' })));
      await refusedBy(/lab\.json: nodes\[1\]\.datadir "\/etc" is not a data dir the lab would use/);
      await forge((s) => s.nodes.push(node({ name: 'replica9', datadir: path.join(root, 'r9'), port: 70000 })));
      await refusedBy(/lab\.json: nodes\[1\]\.port 70000 is not a port from 1 to 65535/);
      await forge((s) => s.nodes.push(node({ name: 'replica9', datadir: `${root}/a/../r9` })));
      await refusedBy(/nodes\[1\]\.datadir .* is not an absolute, normalized path/);
      await forge((s) => (s.nodes[0].role = 'boss'));
      await refusedBy(/lab\.json: nodes\[0\]\.role "boss" is not one of primary, replica/);
      await forge((s) => s.balancers.push({ name: 'lb', engine: 'builtin', listen: '127.0.0.1:1', stats: '', pid: -5, pool: 'replicas', logFile: victimLog.file, startedAt: '' }));
      await refusedBy(/lab\.json: balancers\[0\]\.pid -5 is not a process id/);
      await forge((s) => (s.labId = 42));
      await refusedBy(/lab\.json: labId 42 is not a string/);
      for (const victimFile of [victim, victimLog, victimCfg]) await assertUnchanged(victimFile);

      // Fields of the right form that name things the lab did not make: accepted, and never acted on.
      const foreignDir = path.join(root, 'foreign');
      await mkdir(foreignDir);
      await writeFile(path.join(foreignDir, 'postmaster.pid'), `${sleeper.pid}\n${foreignDir}\n`);
      const record = (name: string, pid: number, extra: object = {}) => ({
        name, engine: 'builtin', listen: '127.0.0.1:1', stats: '', pid, pool: 'replicas', logFile: victimLog.file, configFile: victimCfg.file, startedAt: '', ...extra,
      });
      await forge((s) => {
        s.nodes.push(node({ name: 'replica9', datadir: foreignDir, datadirCreated: true }));
        s.balancers.push(record('lb', sleeper.pid!), record('lb2', disguised.pid!, { startTime: 1 }), record('lb3', disguised.pid!));
      });
      const status = await labJson(labDir, 'status');
      assert.notEqual(status.nodes[1].status, 'running', 'a postmaster.pid naming a sleep is not a running node');
      const balancers = await labJson<{ name: string; running: boolean }[]>(labDir, 'balancer', 'status');
      assert.deepEqual(balancers.map((b) => [b.name, b.running]), [['lb', false], ['lb2', false], ['lb3', false]]);
      const destroyed = await runLab(labDir, ['destroy', '--yes', '--json']);
      assert.equal(destroyed.exitCode, 0, destroyed.stderr);
      const result = JSON.parse(destroyed.stdout) as { stopped: string[]; removed: string[]; kept: { path: string; why: string }[] };
      assert.deepEqual(result.stopped, ['master1']);
      const kept = result.kept.map((k) => k.path);
      for (const file of [foreignDir, victimLog.file, victimCfg.file]) assert.ok(kept.includes(file), `${file} listed as kept: ${destroyed.stdout}`);
      assert.ok(result.removed.includes(path.join(labDir, 'master1')), destroyed.stdout);
      assert.ok(result.removed.includes(stateFile), destroyed.stdout);
      for (const victimFile of [victim, victimLog, victimCfg]) await assertUnchanged(victimFile);
      assert.deepEqual(await readdir(foreignDir), ['postmaster.pid']);
      assert.ok(await isRunning(sleeper.pid!), 'the sleep named as a postmaster and a balancer is alive');
      assert.ok(await isRunning(disguised.pid!), 'the sleep named "balancer" is alive');
    } finally {
      release(sleeper);
      release(disguised);
    }
  });
});

test('a running balancer is signalled only with the start time recorded at launch', async () => {
  await withTempLab(async (labDir) => {
    const [m, listen, stats] = await freePorts(3);
    await lab(labDir, 'master', 'start', '--port', String(m));
    const started = await labJson<{ pid: number; startTime: number }>(labDir, 'balancer', 'start', '--pool', 'primary', '--listen', `127.0.0.1:${listen}`, '--stats', `127.0.0.1:${stats}`);
    assert.ok(Number.isInteger(started.startTime), 'the record carries the start time');
    const stateFile = path.join(labDir, 'lab.json');
    const edit = async (change: (record: any) => void) => {
      const state = JSON.parse(await readFile(stateFile, 'utf8'));
      change(state.balancers[0]);
      await writeFile(stateFile, JSON.stringify(state), { mode: 0o600 });
    };
    try {
      // Another start time: some other process, for all the lab knows; never signalled
      await edit((record) => (record.startTime = started.startTime + 1));
      assert.deepEqual((await labJson<{ running: boolean }[]>(labDir, 'balancer', 'status')).map((b) => b.running), [false]);
      // No start time: a balancer runs there, but the lab cannot prove it is its own
      await edit((record) => delete record.startTime);
      const refused = await runLab(labDir, ['destroy', '--yes']);
      assert.equal(refused.exitCode, 6, refused.stderr);
      assert.match(refused.stderr, /^lab: destroy left something behind: balancer lb: pid \d+ runs a balancer but lab\.json records no start time for it, so it was not signalled; stop it yourself if it is this lab's; lab\.json still lists it/);
      assert.ok(await isRunning(started.pid), 'the balancer was not signalled');
      // With its start time back, the next destroy stops it and finishes
      await edit((record) => (record.startTime = started.startTime));
      const destroyed = await labJson<{ stopped: string[] }>(labDir, 'destroy', '--yes');
      assert.deepEqual(destroyed.stopped, ['balancer lb']);
      assert.equal(await isRunning(started.pid), false);
    } finally {
      if (await isRunning(started.pid)) process.kill(started.pid, 'SIGKILL');
    }
  });
});

/** Entries at the top of `dir`, or -1 once it is gone. */
async function entryCount(dir: string): Promise<number> {
  return readdir(dir).then(
    (entries) => entries.length,
    () => -1,
  );
}

test('lab destroy killed with SIGKILL at any moment is finished by running it again', async () => {
  for (const moment of ['a data dir shrinks', 'the first postmaster is gone', 'at once'] as const) {
    await withTempLab(async (labDir) => {
      const [m, r1, r2] = await freePorts(3);
      await lab(labDir, 'master', 'start', '--port', String(m));
      await execa('psql', ['-h', '127.0.0.1', '-p', String(m), '-U', 'postgres', '-d', 'postgres', '-qc', 'CREATE TABLE filler AS SELECT g, repeat(\'x\', 100) AS pad FROM generate_series(1, 40000) g'], { env: { PGSSLMODE: 'require' } });
      const replicas = [path.join(labDir, 'replica1'), path.join(labDir, 'replica2')];
      await lab(labDir, 'replica', 'add', 'replica1', replicas[0]!, String(r1));
      await lab(labDir, 'replica', 'add', 'replica2', replicas[1]!, String(r2));
      // Someone else's things beside the lab
      const root = path.dirname(labDir);
      const victim = await makeVictim(path.join(root, 'victim'));
      const foreign = path.join(root, 'foreign');
      await mkdir(foreign);
      await writeFile(path.join(foreign, 'keep.txt'), 'keep me');
      const masterPid = Number((await readFile(path.join(labDir, 'master1', 'postmaster.pid'), 'utf8')).split('\n')[0]);
      const before = await entryCount(replicas[0]!);

      const destroy = execa('node', [labBin, '--lab-dir', labDir, 'destroy', '--yes'], { reject: false });
      try {
        if (moment !== 'at once') {
          await pollUntil(
            async () => {
              if (destroy.exitCode !== null) return true;
              if (moment === 'the first postmaster is gone') return (await isRunning(masterPid)) ? undefined : true;
              const counts = await Promise.all(replicas.map(entryCount));
              return counts.some((count) => count < before) ? true : undefined;
            },
            { timeoutMs: 60_000, intervalMs: 2, what: `destroy to reach "${moment}"` },
          );
        }
        destroy.kill('SIGKILL');
        const killed = await destroy;
        if (killed.exitCode === 0) process.stderr.write(`# destroy finished before the kill (${moment})\n`);
      } finally {
        destroy.kill('SIGKILL');
      }
      const again = await runLab(labDir, ['destroy', '--yes']);
      assert.equal(again.exitCode, 0, `after a kill when ${moment}: ${again.stderr}${again.stdout}`);
      await assert.rejects(stat(labDir), { code: 'ENOENT' }, `nothing of the lab is left (${moment})`);
      await assertUnchanged(victim);
      assert.equal(await readFile(path.join(foreign, 'keep.txt'), 'utf8'), 'keep me');
    });
  }
});

test('a second `lab replica add` of a name being built is refused with exit 3; the first one finishes it', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1] = await freePorts(2);
    await lab(labDir, 'master', 'start', '--port', String(m));
    const datadir = path.join(labDir, 'replica1');
    const args = ['replica', 'add', 'replica1', datadir, String(r1)];
    const lockPath = path.join(labDir, 'lab.lock');

    // The first command is held (SIGSTOP) between its claim and its end, outside the lab's lock: the second
    // one then meets a live build whatever the machine's load, not a race it may or may not win.
    const first = execa('node', [labBin, '--lab-dir', labDir, ...args], { reject: false });
    try {
      await pollUntil(
        async () => {
          if (first.exitCode !== null) throw new Error(`the first add ended before it was held: ${(await first).stderr}`);
          const state = JSON.parse(await readFile(path.join(labDir, 'lab.json'), 'utf8'));
          if (state.nodes[1]?.builder?.pid !== first.pid) return undefined;
          first.kill('SIGSTOP');
          const holder = await readFile(lockPath, 'utf8').catch(() => '');
          if (holder.trim() !== String(first.pid)) return true;
          first.kill('SIGCONT'); // stopped inside the lock: let it go and catch it again
          return undefined;
        },
        { timeoutMs: 60_000, intervalMs: 2, what: 'the first add to claim replica1' },
      );
      const refused = await runLab(labDir, args);
      assertOneLine(refused, new RegExp(`^lab: Node "replica1" is being built by pid ${first.pid} since \\S+: wait for that command to finish, then run this one again$`), 3);
    } finally {
      first.kill('SIGCONT');
    }
    const built = await first;
    assert.equal(built.exitCode, 0, built.stderr);
    const status = await labJson(labDir, 'status');
    assert.deepEqual(status.nodes.map((n: { name: string; replication: string; status: string }) => [n.name, n.status, n.replication]), [
      ['master1', 'running', 'primary'],
      ['replica1', 'running', 'streaming'],
    ]);
    const state = JSON.parse(await readFile(path.join(labDir, 'lab.json'), 'utf8'));
    assert.equal(state.nodes[1].phase, 'ready');
    assert.equal(state.nodes[1].builder, undefined, 'the claim ends with the build');
  });
});

test('two `lab replica add` of one new name at once: one builds it; the other is refused (exit 3) or, coming after it, rebuilds it', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1] = await freePorts(2);
    await lab(labDir, 'master', 'start', '--port', String(m));
    const datadir = path.join(labDir, 'replica1');
    const results = await Promise.all([0, 1].map(() => runLab(labDir, ['replica', 'add', 'replica1', datadir, String(r1)])));
    const codes = results.map((r) => r.exitCode).sort();
    // Which one wins depends on the machine's load; what the loser reads never does: a conflict, never a
    // check's answer from a state that was stale (the data dir "of another node", the port "in use").
    assert.ok(codes[0] === 0 && (codes[1] === 0 || codes[1] === 3), `exit codes ${codes.join(', ')}:\n${results.map((r) => r.stderr).join('\n')}`);
    const refused = results.find((r) => r.exitCode === 3);
    if (refused) assertOneLine(refused, /^lab: Node "replica1" (is being built by pid \d+ since \S+: wait for that command to finish|was added by another command while this one was checking: run this one again to rebuild it, or choose another name)/, 3);
    const status = await labJson(labDir, 'status');
    assert.deepEqual(status.nodes.map((n: { name: string; replication: string; status: string }) => [n.name, n.status, n.replication]), [
      ['master1', 'running', 'primary'],
      ['replica1', 'running', 'streaming'],
    ]);
  });
});

test('unexpected arguments and unknown options are usage errors in one line (exit 2); nothing starts', async () => {
  await withTempLab(async (labDir) => {
    const [m] = await freePorts(1);
    assertOneLine(await runLab(labDir, ['master', 'start', '/tmp/x', String(m)]), /too many arguments for 'start'\. Expected 0 arguments but got 2\./, 2);
    assertOneLine(await runLab(labDir, ['replica', 'add', '-x']), /unknown option '-x'/, 2);
    assertOneLine(await runLab(labDir, ['status', 'extra']), /too many arguments for 'status'/, 2);
    assertOneLine(await runLab(labDir, ['node', 'stop', 'a', 'b']), /too many arguments for 'stop'/, 2);
    assertOneLine(await runLab(labDir, ['master', 'start', '--prot', String(m)]), /unknown option '--prot' \(Did you mean --port\?\)/, 2);
    assertOneLine(await runLab(labDir, ['--bogus', 'status']), /unknown option '--bogus'/, 2);
    await assert.rejects(stat(labDir), { code: 'ENOENT' }, 'nothing was created');
  });
});

test('file system errors are one line naming the path and what to do (exit 10), never a stack trace', async (t) => {
  await withTempLab(async (labDir) => {
    const [m] = await freePorts(1);
    const root = path.dirname(labDir);
    const file = path.join(root, 'plain-file');
    await writeFile(file, 'not a dir');
    assertOneLine(await runLab(labDir, ['master', 'start', '--port', String(m), '--datadir', path.join(file, 'master1')]), new RegExp(`cannot \\w+ ${file}/master1: a part of the path is not a directory \\(ENOTDIR\\): choose a path whose parents are all directories$`), 10);
    assertOneLine(await runLab(path.join(file, 'lab'), ['master', 'start', '--port', String(m)]), /: a part of the path is not a directory \(ENOTDIR\)/, 10);
    assertOneLine(await runLab(file, ['master', 'start', '--port', String(m)]), new RegExp(`The lab dir ${file} is not a directory: nothing was written; choose another path`), 4);
    assertOneLine(await runLab(file, ['status']), /is not a directory/, 4);

    // A read-only lab dir: a read-only bind mount in a private mount namespace (root), else skipped.
    const readOnly = path.join(root, 'ro-lab');
    await mkdir(readOnly, { mode: 0o711 });
    const script = `mount --make-rprivate / && mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && exec node "$2" --lab-dir "$1" master start --port "$3"`;
    const probe = await execa('unshare', ['-m', 'sh', '-c', 'mount --make-rprivate / && mount -t tmpfs -o ro none /mnt', 'probe'], { reject: false });
    if (probe.exitCode !== 0) {
      t.diagnostic(`no private mount namespace here (${probe.stderr.trim()}): the read-only case is not tested`);
      return;
    }
    const result = await execa('unshare', ['-m', 'sh', '-c', script, 'ro', readOnly, labBin, String(m)], { reject: false, env: { NO_COLOR: '1' } });
    assertOneLine(
      { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) },
      new RegExp(`cannot create directory ${readOnly}/\\S+: the file system is read-only \\(EROFS\\): use a lab dir \\(--lab-dir\\) and data dirs on a writable file system$`),
      10,
    );
    assert.deepEqual(await readdir(readOnly), []);

    // A full file system: a small tmpfs, filled, in a private mount namespace.
    const full = path.join(root, 'full');
    await mkdir(full);
    const fill = `mount --make-rprivate / && mount -t tmpfs -o size=16k,mode=755 none "$1" && (dd if=/dev/zero of="$1/fill" bs=1k count=64 2>/dev/null; true) && exec node "$2" --lab-dir "$1/lab" master start --port "$3"`;
    const filled = await execa('unshare', ['-m', 'sh', '-c', fill, 'full', full, labBin, String(m)], { reject: false, env: { NO_COLOR: '1' } });
    assertOneLine(
      { exitCode: filled.exitCode ?? -1, stdout: String(filled.stdout), stderr: String(filled.stderr) },
      new RegExp(`cannot \\w+( [\\w ]+)? ${full}/lab/\\S+: no space left on the device \\(ENOSPC\\): free some space and run the command again$`),
      10,
    );
    assert.deepEqual(await readdir(full), [], 'the tmpfs was private to the namespace');
  });
});

test('the balancer log rotates by size, every generation 0600 and not a link', async () => {
  await withTempLab(async (labDir) => {
    const [m, listen, stats] = await freePorts(3);
    await lab(labDir, 'master', 'start', '--port', String(m));
    const started = await runLab(labDir, ['balancer', 'start', '--pool', 'primary', '--listen', `127.0.0.1:${listen}`, '--stats', `127.0.0.1:${stats}`], {
      env: { NO_COLOR: '1', LAB_BALANCER_LOG_SIZE: '2k', LAB_BALANCER_LOG_KEEP: '2' },
    });
    assert.equal(started.exitCode, 0, started.stderr);
    const log = path.join(labDir, 'balancer', 'lb.log');
    const generations = [log, `${log}.1`, `${log}.2`];
    await pollUntil(
      async () => {
        await execa('psql', ['-h', '127.0.0.1', '-p', String(listen), '-U', 'postgres', '-d', 'postgres', '-qAtc', 'SELECT 1'], { env: { PGSSLMODE: 'require' } });
        const present = await Promise.all(generations.map((file) => stat(file).then(() => true, () => false)));
        return present.every(Boolean) && (await stat(`${log}.1`)).size > 1000 ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 10, what: 'the balancer log to rotate twice' },
    );
    await assert.rejects(stat(`${log}.3`), { code: 'ENOENT' }, 'LAB_BALANCER_LOG_KEEP=2 keeps two generations');
    for (const file of generations) {
      const info = await lstat(file);
      assert.ok(info.isFile(), `${file} is a plain file`);
      assert.equal(info.mode & 0o777, 0o600, `${file} is readable by its owner only`);
      assert.equal(info.uid, process.geteuid?.());
      assert.ok(info.size <= 2048 + 1024, `${file} stays near the limit (${info.size} bytes)`);
    }
    assert.match(await readFile(log, 'utf8'), /client=127\.0\.0\.1/, 'the balancer still logs into the live file');
    await lab(labDir, 'balancer', 'stop');
  });
});
