// synchronous_standby_names on a primary: set with ALTER SYSTEM and a reload, so it survives restarts
// and needs no edit of the lab's postgresql.conf template.
import { withClient, type ConnectOptions } from './client.js';

/** Quorum commit: a COMMIT returns once ANY one of the listed standbys has flushed its WAL. */
export function syncStandbyNames(names: string[]): string {
  return names.length ? `ANY 1 (${names.map((n) => `"${n}"`).join(', ')})` : '';
}

export async function applySyncStandbys(conn: ConnectOptions, names: string[]): Promise<string> {
  const value = syncStandbyNames(names);
  await withClient(conn, async (client) => {
    // ALTER SYSTEM takes no bind parameters: quote the literal ourselves.
    await client.query(`ALTER SYSTEM SET synchronous_standby_names = '${value.replace(/'/g, "''")}'`);
    await client.query('SELECT pg_reload_conf()');
  });
  return value;
}
