// Issue 22, item 3: a `lab replica add` that fails is refused before the copy where it can be (a port another
// process holds, a port its OS user cannot bind, a master that does not answer), and a failure after it began
// (a full disk, a server that does not start, SIGTERM) undoes what it made: no slot on the master, no record
// in lab.json, no data dir (a user's empty dir stays, empty and as it was). Then the same add succeeds.
// One master for every case; real servers through the real CLI; every listener and mount released in finally.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { chmod, lstat, mkdir, readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { isPortFree } from '../src/common/ports.js';
import { queryRows } from '../src/postgres/client.js';
import { freePorts, labBin, labJson, processesMentioning, runLab, withTempLab, type CliResult } from './helpers/lab.js';

const NAME = 'replica1';

/** A listener of the test's own on 127.0.0.1:port: "another process" holding the port. */
async function listenOn(port: number): Promise<net.Server> {
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host: '127.0.0.1' }, resolve);
  });
  return server;
}

const close = (server: net.Server | undefined) => new Promise<void>((resolve) => (server?.listening ? server.close(() => resolve()) : resolve()));

/** The `lab: ` line of a failed command: exactly one, and the exit code. */
function failedWith(result: CliResult, exitCode: number, pattern: RegExp): string {
  assert.equal(result.exitCode, exitCode, `expected exit ${exitCode}, got ${result.exitCode}:\n${result.stderr}${result.stdout}`);
  const lines = result.stderr.split('\n').filter((line) => line.startsWith('lab: '));
  assert.equal(lines.length, 1, `one error line expected:\n${result.stderr}`);
  assert.match(lines[0]!, pattern);
  process.stderr.write(`# exit ${result.exitCode}: ${lines[0]}\n`);
  return lines[0]!;
}

/**
 * `lab replica add` with its progress on stderr; `onLine` sees each line as it comes (to act at a step).
 * Never throws on a non-zero exit.
 */
async function addWatched(labDir: string, args: string[], onLine: (line: string, child: ReturnType<typeof execa>) => void): Promise<CliResult> {
  const child = execa('node', [labBin, '--lab-dir', labDir, 'replica', 'add', ...args], { reject: false, timeout: 120_000, env: { NO_COLOR: '1' } });
  let pending = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) onLine(line, child);
  });
  const result = await child;
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

/** Nothing of NAME is left: no record, no slot, no log, no process, and the data dir as it was before the add. */
async function assertNothingLeft(labDir: string, masterPort: number, datadir: string, userDir?: { uid: number; gid: number; mode: number }): Promise<void> {
  const state = JSON.parse(await readFile(path.join(labDir, 'lab.json'), 'utf8'));
  assert.deepEqual(state.nodes.map((n: { name: string }) => n.name), ['master1'], 'lab.json lists the master only');
  const slots = await queryRows<{ slot_name: string }>({ port: masterPort }, 'SELECT slot_name FROM pg_replication_slots');
  assert.deepEqual(slots, [], 'no replication slot on the master');
  await assert.rejects(stat(path.join(labDir, 'log', `${NAME}.log`)), { code: 'ENOENT' }, 'no log of the node');
  assert.deepEqual(await processesMentioning(datadir), [], 'no process of the data dir');
  if (!userDir) {
    await assert.rejects(lstat(datadir), { code: 'ENOENT' }, `${datadir} is gone`);
    return;
  }
  assert.deepEqual(await readdir(datadir), [], `${datadir} is empty`);
  const info = await stat(datadir);
  assert.deepEqual({ uid: info.uid, gid: info.gid, mode: info.mode & 0o7777 }, userDir, 'the user\'s dir has its owner and mode back');
}

/** A port below ip_unprivileged_port_start that nothing listens on (22 when free), or undefined. */
async function privilegedFreePort(): Promise<{ port?: number; start: number }> {
  const start = Number((await readFile('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8')).trim());
  for (const port of [22, ...Array.from({ length: Math.max(0, start - 1) }, (_, i) => start - 1 - i)]) {
    if (port < start && port > 0 && (await isPortFree(port))) return { port, start };
  }
  return { start };
}

test('a failed lab replica add is refused before the copy or undone; the same add then succeeds', async (t: TestContext) => {
  await withTempLab(async (labDir) => {
    const root = path.dirname(labDir);
    const [m, r] = await freePorts(2);
    await labJson(labDir, 'master', 'start', '--port', String(m));
    const datadir = path.join(labDir, NAME);
    const add = (dir: string, port: number) => runLab(labDir, ['replica', 'add', NAME, dir, String(port), '--json'], { timeout: 120_000 });

    // 1. A port another process listens on: exit 3 before anything is made, naming the holder.
    const holder = await listenOn(r!);
    try {
      failedWith(await add(datadir, r!), 3, new RegExp(`^lab: Port ${r} for replica "${NAME}" is already in use by pid ${process.pid} \\(\\S+\\): choose another port or stop that process$`));
    } finally {
      await close(holder);
    }
    await assertNothingLeft(labDir, m!, datadir);

    // 2. A port the postgres OS user cannot bind: exit 2 before the copy (it used to fail after it).
    const privileged = await privilegedFreePort();
    if (privileged.port === undefined) {
      t.diagnostic(`no free port below ip_unprivileged_port_start (${privileged.start}): the privileged-port case is not runnable here`);
    } else {
      t.diagnostic(`privileged port picked: ${privileged.port} (ip_unprivileged_port_start ${privileged.start})`);
      failedWith(await add(datadir, privileged.port), 2, new RegExp(`^lab: Port ${privileged.port} for replica "${NAME}" is below ${privileged.start} \\(net\\.ipv4\\.ip_unprivileged_port_start\\): PostgreSQL runs as the OS user postgres, who cannot bind it; choose a port from ${privileged.start} to 65535$`));
      await assertNothingLeft(labDir, m!, datadir);
    }

    // 3. A paused master: exit 7 within the bound, before anything is made.
    await labJson(labDir, 'fault', 'pause', 'master1');
    try {
      const began = Date.now();
      failedWith(await add(datadir, r!), 7, new RegExp(`^lab: the master master1 \\(127\\.0\\.0\\.1:${m}\\) did not answer within 3 s: it is paused \\(\`lab fault list\`\\): heal it \\(\`lab fault heal master1\`\\), then run the command again$`));
      t.diagnostic(`paused master refused after ${Date.now() - began} ms`);
    } finally {
      await labJson(labDir, 'fault', 'heal', 'master1');
    }
    await assertNothingLeft(labDir, m!, datadir);

    // 4. A file system too small for the copy: exit 10 naming the path, the slot dropped, the copied files removed.
    const small = path.join(root, 'small');
    await mkdir(small);
    const { stdout: du } = await execa('du', ['-sk', '--exclude=pg_wal', path.join(labDir, 'master1')]);
    const sizeKb = Math.max(4096, Math.floor(Number(du.split('\t')[0]) / 2));
    const mounted = await execa('mount', ['-t', 'tmpfs', '-o', `size=${sizeKb}k,mode=755`, 'none', small], { reject: false });
    if (mounted.exitCode !== 0) {
      t.diagnostic(`mount -t tmpfs refused (${String(mounted.stderr).trim()}): the full-disk case is not runnable here`);
    } else {
      try {
        t.diagnostic(`tmpfs of ${sizeKb} kB for a copy of about ${sizeKb * 2} kB`);
        const inSmall = path.join(small, NAME);
        failedWith(
          await add(inSmall, r!),
          10,
          new RegExp(`^lab: cannot copy the base backup into ${inSmall}: no space left on the device \\(ENOSPC\\) after [\\d.]+ of [\\d.]+ MB: free some space there, or choose a data dir on a file system with room for [\\d.]+ MB and more, then run the command again; undone: slot pglab_${NAME} dropped, data dir removed, ${NAME} removed from lab\\.json$`),
        );
        await assertNothingLeft(labDir, m!, inSmall);
        assert.deepEqual(await readdir(small), [], 'nothing is left on the small file system');
      } finally {
        await execa('umount', [small]);
      }
    }

    // 5. A server that does not start, after the slot exists and the copy is done: the port is taken when the
    //    slot step begins (after every check). The user's empty dir is emptied and given back as it was.
    const userDir = path.join(root, 'users-empty-dir');
    await mkdir(userDir);
    await chmod(userDir, 0o750);
    const before = await stat(userDir);
    let taker: net.Server | undefined;
    try {
      const result = await addWatched(labDir, [NAME, userDir, String(r)], (line) => {
        if (!taker && line.startsWith('==> replication slot')) taker = net.createServer().listen({ port: r!, host: '127.0.0.1' });
      });
      failedWith(result, 8, new RegExp(`^lab: ${NAME} did not start on port ${r}: .*; undone: (server stopped, )?slot pglab_${NAME} dropped, data dir emptied, ${NAME} removed from lab\\.json$`));
      assert.match(result.stderr, /could not bind IPv4 address "127\.0\.0\.1": Address already in use/, 'the server log\'s tail is shown under the line');
    } finally {
      await close(taker);
    }
    await assertNothingLeft(labDir, m!, userDir, { uid: before.uid, gid: before.gid, mode: 0o750 });

    // 6. SIGTERM during the base backup: the add stops and undoes what it made (exit 130).
    let signalled = false;
    const interrupted = await addWatched(labDir, [NAME, datadir, String(r)], (line, child) => {
      if (!signalled && line.startsWith('==> pglab base backup')) signalled = child.kill('SIGTERM');
    });
    assert.ok(signalled, `the add reached its base backup:\n${interrupted.stderr}`);
    failedWith(interrupted, 130, new RegExp(`^lab: Interrupted; undone: .*slot pglab_${NAME} dropped, data dir removed, ${NAME} removed from lab\\.json$`));
    await assertNothingLeft(labDir, m!, datadir);

    // The same add with good arguments succeeds, and streams through the one slot.
    const added = await labJson(labDir, 'replica', 'add', NAME, datadir, String(r));
    assert.equal(added.syncState, 'async');
    const slots = await queryRows<{ slot_name: string; active: boolean }>({ port: m! }, 'SELECT slot_name, active FROM pg_replication_slots');
    assert.deepEqual(slots, [{ slot_name: `pglab_${NAME}`, active: true }]);
  });
});
