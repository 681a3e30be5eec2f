// The password for a connection, from the pgpass file libpq would read (PGPASSFILE, else ~/.pgpass):
// lines of hostname:port:database:username:password, `*` matching anything, `\` escaping `:` and `\`.
// node-postgres's own pgpass support is deprecated (and prints so); this is the same lookup.
import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { clientEnv } from './client-env.js';

export interface PgpassTarget {
  host?: string;
  port?: number | string;
  database?: string;
  user?: string;
}

function fieldsOf(line: string): string[] {
  const fields: string[] = [];
  let current = '';
  for (let i = 0; i < line.length; i += 1) {
    const char = line[i]!;
    if (char === '\\' && i + 1 < line.length) current += line[++i];
    else if (char === ':') {
      fields.push(current);
      current = '';
    } else current += char;
  }
  fields.push(current);
  return fields;
}

/**
 * The first matching password, or undefined; like libpq, a file others can read is ignored. The files:
 * PGPASSFILE (the lab's, once pglab set it), then the user's own one it replaced, then ~/.pgpass.
 */
export function pgpassLookup(target: PgpassTarget, env: NodeJS.ProcessEnv = clientEnv()): string | undefined {
  const files = [env.PGPASSFILE, env.PGLAB_USER_PGPASSFILE, env.PGPASSFILE ? undefined : path.join(homedir(), '.pgpass')];
  for (const file of files) {
    const found = file ? lookupIn(file, target) : undefined;
    if (found !== undefined) return found;
  }
  return undefined;
}

function lookupIn(file: string, target: PgpassTarget): string | undefined {
  let text: string;
  try {
    if ((statSync(file).mode & 0o077) !== 0) return undefined;
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const wanted = [target.host ?? 'localhost', String(target.port ?? 5432), target.database ?? target.user ?? '', target.user ?? ''];
  for (const line of text.split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    const fields = fieldsOf(line);
    if (fields.length < 5) continue;
    if (wanted.every((value, i) => fields[i] === '*' || fields[i] === value)) return fields.slice(4).join(':');
  }
  return undefined;
}
