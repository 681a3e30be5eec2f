// Reading a server's own account of when something happened: the lab's log_line_prefix starts each
// line with `[%m]` (milliseconds, log_timezone UTC), e.g. "[2026-11-21 14:07:56.123 UTC] 2384: / LOG: ...".
import { readFile } from 'node:fs/promises';

const STAMP = /^\[(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?) UTC\]/;

/** Epoch ms of the first log line at or after `sinceEpochMs` whose text matches `pattern`. */
export async function logEventTime(logFile: string, pattern: RegExp, sinceEpochMs: number): Promise<number | undefined> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const stamp = STAMP.exec(line);
    if (!stamp || !pattern.test(line)) continue;
    const at = Date.parse(`${stamp[1]}T${stamp[2]}Z`);
    if (at >= sinceEpochMs) return at;
  }
  return undefined;
}

/** The server's "ready to accept connections" (or read-only connections, for a standby: "read only" before 14). */
export const READY_PATTERN = /database system is ready to accept (read[- ]only )?connections/;
