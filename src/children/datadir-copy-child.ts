// The file copy of pglab's own base backup (src/postgres/base-backup.ts), run as a child process with
// the uid/gid of the OS user that owns the data (never root writing in a postgres-owned dir). It is
// passed to `node -e` as text, so it imports node: modules only and needs no file readable by that user.
//
// argv after `-e`: a JSON { source, target }. stdout: JSON lines
//   {"type":"total","bytes":N,"files":N}   the size computed first, after the exclusions
//   {"type":"progress","bytes":N}          at most every 200 ms
//   {"type":"copied","bytes":N,"files":N,"vanished":N}
//   {"type":"written","files":[...]}       after stdin gave {"files":{"backup_label":"...", ...}}
//   {"type":"error","message":"...","code":"ENOSPC","syscall":"copyfile","path":"...","dest":"...","bytes":N}
//                                          before it exits 1: the parent turns a file system error into one line
// Each file is copied by the kernel (copyFile: copy_file_range), never held in memory; modes are kept.
// What is skipped is what pg_basebackup skips (src/backend/backup/basebackup.c, excludeDirContents and
// excludeFiles, plus temporary files); pg_control is copied last, as BASE_BACKUP sends it.
import { constants } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, open, readdir, readlink, symlink } from 'node:fs/promises';
import path from 'node:path';

/** Directories whose contents are not copied (the directories themselves are, with their modes). */
const EXCLUDE_DIR_CONTENTS = ['pg_stat_tmp', 'pg_replslot', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_subtrans', 'pg_wal'];
/**
 * Files never copied; names ending in * match as a prefix. standby.signal/recovery.signal: the lab writes its
 * own; pglab.node: the lab's marker, which the target carries (its own node's) before the copy starts.
 */
const EXCLUDE_FILES = [
  'pglab.node', 'postgresql.auto.conf.tmp', 'current_logfiles.tmp', 'current_logfiles', 'pg_internal.init*', 'backup_label', 'backup_label.old', 'tablespace_map',
  'backup_manifest', 'postmaster.pid', 'postmaster.opts', 'standby.signal', 'recovery.signal', 'pgsql_tmp*',
];

interface Entry { rel: string; kind: 'dir' | 'file' | 'link'; mode: number; size: number }

function excludedFile(name: string): boolean {
  return EXCLUDE_FILES.some((pattern) => (pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern));
}

const isVanished = (error: unknown) => (error as NodeJS.ErrnoException).code === 'ENOENT';

async function walk(source: string): Promise<Entry[]> {
  const entries: Entry[] = [];
  const visit = async (rel: string, keepContents: boolean, depth: number): Promise<void> => {
    let names: string[];
    try {
      names = (await readdir(path.join(source, rel))).sort();
    } catch (error) {
      if (isVanished(error)) return;
      throw error;
    }
    for (const name of names) {
      if (excludedFile(name)) continue;
      const childRel = rel ? path.join(rel, name) : name;
      let info;
      try {
        info = await lstat(path.join(source, childRel));
      } catch (error) {
        if (isVanished(error)) continue;
        throw error;
      }
      if (info.isDirectory()) {
        entries.push({ rel: childRel, kind: 'dir', mode: info.mode & 0o7777, size: 0 });
        // pg_wal/archive_status stays (empty), as pg_basebackup keeps it.
        if (childRel === path.join('pg_wal', 'archive_status')) continue;
        const skipContents = depth === 0 && EXCLUDE_DIR_CONTENTS.includes(name);
        if (skipContents && name === 'pg_wal') {
          entries.push({ rel: path.join('pg_wal', 'archive_status'), kind: 'dir', mode: info.mode & 0o7777, size: 0 });
          continue;
        }
        if (!skipContents && keepContents) await visit(childRel, true, depth + 1);
      } else if (info.isSymbolicLink()) {
        if (rel === 'pg_tblspc') throw new Error(`tablespace ${childRel}: pglab's own base backup copies no tablespaces (a copy on the same host would share the directory)`);
        entries.push({ rel: childRel, kind: 'link', mode: 0, size: 0 });
      } else if (info.isFile()) {
        entries.push({ rel: childRel, kind: 'file', mode: info.mode & 0o7777, size: info.size });
      }
    }
  };
  await visit('', true, 0);
  const control = path.join('global', 'pg_control');
  const last = entries.findIndex((e) => e.rel === control);
  if (last >= 0) entries.push(...entries.splice(last, 1));
  return entries;
}

function say(message: object): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** A new file, never through a link, never over an existing one. */
async function writeNew(file: string, content: string): Promise<void> {
  const handle = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Bytes copied so far (reported with an error too). */
let done = 0;

async function main(): Promise<void> {
  const { source, target, workers = 1 } = JSON.parse(process.argv[process.argv.length - 1]!) as { source: string; target: string; workers?: number };
  process.umask(0o077);
  const entries = await walk(source);
  const total = entries.reduce((sum, e) => sum + e.size, 0);
  say({ type: 'total', bytes: total, files: entries.filter((e) => e.kind === 'file').length });
  let files = 0;
  let vanished = 0;
  let lastSaid = 0;
  const progress = (force = false) => {
    const now = Date.now();
    if (force || now - lastSaid >= 200) {
      lastSaid = now;
      say({ type: 'progress', bytes: done });
    }
  };
  const copyOne = async (entry: Entry): Promise<void> => {
    const from = path.join(source, entry.rel);
    const to = path.join(target, entry.rel);
    try {
      if (entry.kind === 'link') {
        await symlink(await readlink(from), to);
        return;
      }
      // COPYFILE_EXCL: never over an existing file; the kernel copies (copy_file_range), the mode comes along.
      await copyFile(from, to, constants.COPYFILE_EXCL);
      await chmod(to, entry.mode);
      const copied = (await lstat(to)).size;
      done += copied;
      files += 1;
    } catch (error) {
      if (!isVanished(error)) throw error;
      vanished += 1; // dropped, truncated away or recycled during the copy: WAL replay recreates what counts
      return;
    }
    progress();
  };
  // Directories first (in order), then the files, `workers` at a time (libuv's thread pool runs the
  // copies side by side: one per core), pg_control alone at the very end.
  for (const entry of entries) {
    if (entry.kind !== 'dir') continue;
    const to = path.join(target, entry.rel);
    await mkdir(to, { mode: entry.mode });
    await chmod(to, entry.mode);
  }
  const queue = entries.filter((e) => e.kind !== 'dir');
  const control = queue.pop();
  let next = 0;
  await Promise.all(Array.from({ length: Math.max(1, workers) }, async () => {
    while (next < queue.length) await copyOne(queue[next++]!);
  }));
  if (control) await copyOne(control);
  progress(true);
  say({ type: 'copied', bytes: done, files, vanished });
  const input = await readStdin();
  if (!input.trim()) return;
  const { files: toWrite } = JSON.parse(input) as { files: Record<string, string> };
  for (const [name, content] of Object.entries(toWrite)) {
    if (name.includes('/')) throw new Error(`refusing to write ${name}`);
    await writeNew(path.join(target, name), content);
  }
  say({ type: 'written', files: Object.keys(toWrite) });
}

main().catch((error: unknown) => {
  const { message, code, syscall, path: file, dest } = error as NodeJS.ErrnoException & { dest?: string };
  say({ type: 'error', message: message ?? String(error), code, syscall, path: file, dest, bytes: done });
  process.stderr.write(`${message ?? String(error)}\n`);
  process.exit(1);
});
