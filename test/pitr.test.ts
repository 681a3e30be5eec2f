// WAL archive and point-in-time recovery (PostgreSQL's src/test/recovery/t/003_recovery_targets.pl):
// a lab started with archive: true, a base backup, batches of rows between restore points, a transaction
// id, an LSN and a time; a restore to each target kind has exactly the rows of its point. --pause leaves
// the node paused in recovery. Refusals (future, before the first backup, past the archive's end) leave
// nothing. A failing archive_command is shown by status and the watcher, then heals. Prune, destroy.
// On PostgreSQL 15 and 12 (recovery.signal era; 12 promotes at the end of WAL when the target is not
// reached, where 13+ stop with FATAL: both are the same error here).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { Lab, LabError } from '../src/index.js';
import { pollUntil } from '../src/common/poll.js';
import { ensureMajor, runLab, stopwatch } from './helpers/lab.js';
import { findFreePorts } from '../src/common/ports.js';

const count = async (node: { query: Lab['primary']['query'] }) => (await node.query<{ n: number }>('select count(*)::int as n from t'))[0]!.n;
const exists = (file: string) => stat(file).then(() => true, () => false);

async function scenario(major: number, mark: (what: string) => void): Promise<void> {
  await using lab = await Lab.start({ archive: true, ...(major === 15 ? {} : { pg: major }) });
  const p = lab.primary;
  const refused = (code: string, pattern: RegExp) => (e: unknown) => e instanceof LabError && e.code === code && pattern.test(e.message);
  await p.query('create table t(id int)');

  // No backup yet: nothing to restore from, said before anything is made.
  await assert.rejects(lab.restore({ name: 'early', target: { immediate: true } }), refused('STATE', /No base backup in this lab yet: take one with `lab backup`/));
  mark('const b1 = await lab.backup();');
  const b1 = await lab.backup();
  assert.equal(b1.id, 'b1');
  assert.ok(await exists(path.join(lab.dir, 'backups', 'b1', 'PG_VERSION')));

  // Batches between the points: 10 at rp1, 25 at the xid's commit, 30 at the LSN, 40 at the time, 45 at the end.
  await p.query('insert into t select generate_series(1, 10)');
  await lab.restorePoint('rp1');
  await p.query('insert into t select generate_series(11, 20)');
  const [{ xid }] = await p.query<{ xid: string }>('with i as (insert into t select generate_series(21, 25)) select txid_current()::text as xid');
  await p.query('insert into t select generate_series(26, 30)');
  const [{ lsn }] = await p.query<{ lsn: string }>(`select ${major >= 10 ? 'pg_current_wal_lsn' : 'pg_current_xlog_location'}()::text as lsn`);
  await p.query('insert into t select generate_series(31, 40)');
  // The time: a millisecond after the last commit (the server's clock), and the next commit after it.
  const [{ ms }] = await p.query<{ ms: string }>('select (floor(extract(epoch from clock_timestamp()) * 1000) + 1)::bigint::text as ms');
  const time = new Date(Number(ms));
  await pollUntil(async () => ((await p.query<{ after: boolean }>('select clock_timestamp() > $1::timestamptz as after', [time.toISOString()]))[0]!.after ? true : undefined), { timeoutMs: 5000, intervalMs: 5, what: 'the clock to pass the target time' });
  await p.query('insert into t select generate_series(41, 45)');
  mark('await lab.restorePoint(end);');
  await lab.restorePoint('end');
  assert.equal(await count(p), 45);

  // Each target kind: exactly the rows of its point, promoted on a timeline of its own.
  const expected: [string, Parameters<Lab['restore']>[0]['target'], number][] = [
    ['byname', { name: 'rp1' }, 10], ['byxid', { xid }, 25], ['bytime', { time }, 40], ['immediate', { immediate: true }, 0],
  ];
  for (const [name, target, rows] of expected) {
    const node = await lab.restore({ name, target });
    assert.equal(node.restored.state, 'promoted', name);
    assert.equal(node.role, 'restored');
    assert.equal(await count(node), rows, `${name}: ${JSON.stringify(target)}`);
    assert.equal((await node.query<{ r: boolean }>('select pg_is_in_recovery() as r'))[0]!.r, false);
    assert.deepEqual(await node.query('show archive_mode'), [{ archive_mode: 'off' }], 'a restored node does not archive into the lab\'s archive');
  }
  mark('// The LSN through the CLI.');
  // The LSN through the CLI.
  const [port] = await findFreePorts(1);
  const cli = await runLab(lab.dir, ['node', 'restore', 'bylsn', path.join(lab.dir, 'bylsn'), String(port), '--target-lsn', lsn]);
  assert.equal(cli.exitCode, 0, cli.stderr);
  assert.match(cli.stdout, /^bylsn restored from backup b1 to LSN .*: promoted/m);
  assert.match(cli.stdout, /server: recovery stopping after WAL location \(LSN\)/);
  await lab.status(); // the library's view of lab.json, after the CLI changed it
  assert.equal(await count(lab.node('bylsn')), 30);
  await lab.removeReplica('bylsn');

  mark('// --pause:');
  // --pause: in recovery, replay paused at the restore point, its rows readable.
  const paused = await lab.restore({ name: 'paused', target: { name: 'rp1' }, pause: true });
  assert.equal(paused.restored.state, 'paused');
  assert.equal(await count(paused), 10);
  const pausedSql = major >= 14 ? "select pg_is_in_recovery() as r, pg_get_wal_replay_pause_state() = 'paused' as p" : 'select pg_is_in_recovery() as r, pg_is_wal_replay_paused() as p';
  assert.deepEqual(await paused.query(pausedSql), [{ r: true, p: true }]);

  mark('// Refusals, and nothing');
  // Refusals, and nothing left behind: no record, no data dir, no log.
  const nodesBefore = lab.nodes.map((n) => n.name).join(',');
  const nothingOf = async (name: string) => {
    assert.equal(lab.nodes.map((n) => n.name).join(','), nodesBefore);
    assert.equal(await exists(path.join(lab.dir, name)), false, `${name}'s data dir`);
    assert.equal(await exists(path.join(lab.dir, 'log', `${name}.log`)), false, `${name}'s log`);
  };
  await assert.rejects(lab.restore({ name: 'future', target: { time: new Date(Date.now() + 3_600_000) } }), refused('USAGE', /is in the future/));
  await assert.rejects(lab.restore({ name: 'future', target: { lsn: 'FF/0' } }), refused('USAGE', /Target LSN FF\/0 is in the future/));
  await nothingOf('future');
  await assert.rejects(lab.restore({ name: 'before', target: { time: new Date(Date.parse(b1.startedAt) - 60_000) } }), refused('USAGE', /is before the first base backup \(b1, consistent at LSN/));
  await nothingOf('before');
  mark('// Past the end:');
  // Past the end: rows committed but their WAL not archived yet (no switch since).
  await p.query('insert into t select generate_series(46, 50)');
  const [{ now }] = await p.query<{ now: string }>(`select ${major >= 10 ? 'pg_current_wal_lsn' : 'pg_current_xlog_location'}()::text as now`);
  await assert.rejects(lab.restore({ name: 'pastlsn', target: { lsn: now } }), refused('USAGE', /is past the end of the archive: the archive ends at LSN .* \(WAL file [0-9A-F]{24}\)/));
  mark('await nothingOf(pastlsn);');
  await nothingOf('pastlsn');
  await new Promise((resolve) => setTimeout(resolve, 20)); // the target time must be after the last commit
  await assert.rejects(lab.restore({ name: 'pasttime', target: { time: new Date() } }), refused('USAGE', /past the end of the archive: the last point that can be reached is LSN [0-9A-F]+\/[0-9A-F]+, the commit at /));
  mark('await nothingOf(pasttime);');
  await nothingOf('pasttime');

  // Archiving fails while the archive is not writable by the servers' user: shown, then healed.
  const archive = path.join(lab.dir, 'archive');
  await chmod(archive, 0o500);
  try {
    await assert.rejects(lab.restorePoint('blocked'), refused('COMMAND_FAILED', /archive_command failed for WAL file [0-9A-F]{24}: cp: cannot create regular file .*Permission denied/));
    const status = await lab.status();
    assert.ok(status.archive!.archiver!.failedCount > 0);
    assert.ok(status.warnings.some((w) => /archiving fails on master1/.test(w)), status.warnings.join('\n'));
    const watcher = await runLab(lab.dir, ['stat', 'replication']);
    assert.match(watcher.stdout, /archiving FAILS: last failure for [0-9A-F]{24}/);
    assert.match(watcher.stdout, /archived_count \|\s+last_archived_wal/);
  } finally {
    await chmod(archive, 0o700);
  }
  // A new segment wakes the archiver at once (after three failures it would otherwise wait 60 s).
  await p.query('insert into t values (0)');
  await p.query('delete from t where id = 0');
  await p.query(`select ${major >= 10 ? 'pg_switch_wal' : 'pg_switch_xlog'}()`);
  mark('await pollUntil(async () => ((await lab.');
  await pollUntil(async () => ((await lab.status()).warnings.some((w) => /archiving fails/.test(w)) ? undefined : true), { timeoutMs: 90_000, intervalMs: 500, what: 'the archiver to retry and succeed' });
  const json = JSON.parse((await runLab(lab.dir, ['stat', 'replication', '--json'])).stdout) as { archiver: { failedCount: number; lastArchivedWal: string } };
  assert.ok(json.archiver.failedCount > 0 && /^[0-9A-F]{24}/.test(json.archiver.lastArchivedWal));

  mark('// Prune:');
  // Prune: before b2, the WAL b2 does not need, b1 and the restore points before b2 go.
  const b2 = await lab.backup();
  const walBefore = (await readdir(archive)).filter((f) => /^[0-9A-F]{24}$/.test(f)).length;
  const pruned = await lab.pruneArchive(b2.id);
  assert.deepEqual(pruned.removedBackups, ['b1']);
  assert.ok(pruned.removedRestorePoints.includes('rp1'));
  assert.ok(pruned.removedFiles > 0 && (await readdir(archive)).filter((f) => /^[0-9A-F]{24}$/.test(f)).length < walBefore);
  assert.equal(await exists(path.join(lab.dir, 'backups', 'b1')), false);
  const after = await lab.restore({ name: 'afterprune', target: { immediate: true } });
  assert.equal(await count(after), 50, 'b2 has every row');

  mark('// Destroy:');
  // Destroy: the restored nodes, the backups and the archive go with the lab.
  const restoredDirs = lab.nodes.filter((n) => n.role === 'restored').map((n) => n.datadir);
  assert.equal(restoredDirs.length, 6);
  const destroyed = await runLab(lab.dir, ['destroy', '--yes']);
  assert.equal(destroyed.exitCode, 0, destroyed.stderr);
  for (const dir of [...restoredDirs, archive, path.join(lab.dir, 'backups')]) assert.equal(await exists(dir), false, dir);
}

test('PITR on PostgreSQL 15: every target kind gives the rows of its point; --pause; refusals leave nothing; archive failures shown; prune; destroy', async (t) => {
  await scenario(15, stopwatch(t));
});

test('PITR on PostgreSQL 12 (recovery.signal; a target not reached promotes at the end of WAL there): the same', async (t) => {
  await ensureMajor(12);
  await scenario(12, stopwatch(t));
});

test('lab.json: the archive record is checked field by field (a forged backup id or restore point is refused)', async () => {
  const { checkStateFile } = await import('../src/lab/state-check.js');
  const base = {
    format: 1, labId: 'lab-1', createdAt: 'now', labDirCreated: true, pg: { bindir: '/usr/lib/postgresql/15/bin', version: '15.1', major: 15 }, dbUser: 'postgres',
    nodes: [{ name: 'pitr1', role: 'restored', port: 5437, datadir: '/tmp/pgdata/pitr1', datadirCreated: true, phase: 'ready', expected: 'running', createdAt: 'now' }],
    balancers: [],
    archive: { since: 'now', backups: [{ id: 'b1', phase: 'ready', startedAt: 'now', startLsn: '0/3000028', stopLsn: '0/3000100', stoppedAt: 'now', nextXid: 740, segmentBytes: 16777216 }], restorePoints: [{ name: 'rp1', lsn: '0/4000000', at: 'now' }] },
  };
  assert.equal(checkStateFile(structuredClone(base)).archive!.backups[0]!.id, 'b1');
  const forged = (change: (s: any) => void) => {
    const s = structuredClone(base) as any;
    change(s);
    return () => checkStateFile(s);
  };
  assert.throws(forged((s) => (s.archive.backups[0].id = '../../etc')), /archive\.backups\[0\]\.id "..\/..\/etc" is not a backup id/);
  assert.throws(forged((s) => (s.archive.backups[0].stopLsn = "0/1'; rm")), /archive\.backups\[0\]\.stopLsn .* is not an LSN/);
  assert.throws(forged((s) => (s.archive.restorePoints[0].name = "x'y")), /archive\.restorePoints\[0\]\.name .* is not a restore point name/);
  assert.throws(forged((s) => (s.archive.restorePoints = {})), /archive\.restorePoints .* is not a list/);
  assert.throws(forged((s) => s.archive.backups.push({ ...s.archive.backups[0] })), /archive\.backups\[1\]\.name "b1" is listed twice/);
  assert.throws(forged((s) => (s.nodes[0].role = 'boss')), /is not one of primary, replica, restored/);
});

test('archiving lab: a standby archives nothing until promoted, then its new timeline (history file and segments) into the same archive', async () => {
  await using lab = await Lab.start({ archive: true, replicas: 1 });
  const archive = path.join(lab.dir, 'archive');
  assert.deepEqual(await lab.node('replica1').query('show archive_mode'), [{ archive_mode: 'on' }]);
  assert.deepEqual((await readdir(archive)).filter((f) => f.endsWith('.history')), []);
  const promotion = await lab.promote('replica1');
  await lab.primary.query('create table t as select 1 as id');
  await lab.primary.query('select pg_switch_wal()');
  const tli = promotion.timeline.toString(16).toUpperCase().padStart(8, '0');
  const files = await pollUntil(async () => {
    const names = await readdir(archive);
    return names.includes(`${tli}.history`) && names.some((f) => f.startsWith(tli) && /^[0-9A-F]{24}$/.test(f)) ? names : undefined;
  }, { timeoutMs: 30_000, intervalMs: 200, what: `timeline ${promotion.timeline} in the archive` });
  assert.ok(files.some((f) => f.startsWith('00000001')), 'timeline 1 is still there');
});
