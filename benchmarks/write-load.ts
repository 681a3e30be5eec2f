// The write load of the switchover benchmarks (benchmarks/switchover.ts, benchmarks/switchover-patroni.ts):
// writers commit one INSERT per transaction through a balancer and reconnect at once on an error, each
// acknowledged id recorded with the time of its acknowledgement; optional readers. The write downtime of a
// switch is the longest gap between two acknowledged commits around it.
import pg from 'pg';

export interface Load {
  acked: { id: number; at: number }[];
  readerErrors: { at: number; message: string }[];
  writerErrors: number;
  stop(): Promise<void>;
}

export interface LoadOptions {
  /** Where the writers connect (a balancer's primary pool). */
  writer: () => pg.ClientConfig;
  writers: number;
  /** Where the readers connect (a replicas pool); no readers without it. */
  reader?: () => pg.ClientConfig;
  readers?: number;
  /** The table with an `id int primary key` column the writers insert into (default acked). */
  table?: string;
}

/** Writers (and readers) until stopped, each bounded to 1,000,000 statements. */
export function startLoad(options: LoadOptions): Load {
  const load: Load = { acked: [], readerErrors: [], writerErrors: 0, stop: async () => undefined };
  const table = options.table ?? 'acked';
  if (!/^[a-z_][a-z0-9_]*$/.test(table)) throw new Error(`bad table name ${table}`);
  let stopped = false;
  let next = 1;
  const loop = async (config: () => pg.ClientConfig, step: (client: pg.Client) => Promise<void>, onError: (error: unknown) => void) => {
    let client: pg.Client | undefined;
    for (let i = 0; !stopped && i < 1_000_000; i += 1) {
      try {
        if (!client) {
          client = new pg.Client({ ...config(), connectionTimeoutMillis: 2000, query_timeout: 2000 });
          client.on('error', () => undefined);
          await client.connect();
        }
        await step(client);
      } catch (error) {
        onError(error);
        await client?.end().catch(() => undefined);
        client = undefined;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
    await client?.end().catch(() => undefined);
  };
  const loops = [
    ...Array.from({ length: options.writers }, () =>
      loop(options.writer, async (client) => {
        const id = next++;
        await client.query(`insert into ${table}(id) values ($1)`, [id]);
        load.acked.push({ id, at: Date.now() });
      }, () => (load.writerErrors += 1)),
    ),
    ...Array.from({ length: options.reader ? (options.readers ?? 0) : 0 }, () =>
      loop(options.reader!, async (client) => {
        await client.query('select count(*) from pg_class');
      }, (error) => load.readerErrors.push({ at: Date.now(), message: error instanceof Error ? error.message : String(error) })),
    ),
  ];
  load.stop = async () => {
    stopped = true;
    await Promise.all(loops);
  };
  return load;
}

/** The longest gap between acknowledged commits from `from` until the first commit 1 s after `until`. */
export function downtime(load: Load, from: number, until: number): number {
  const times = load.acked.map((a) => a.at).filter((t) => t >= from - 1000);
  let longest = 0;
  for (let i = 1; i < times.length; i += 1) if (times[i - 1]! <= until + 1000) longest = Math.max(longest, times[i]! - times[i - 1]!);
  return longest;
}

/** Until `count` commits were acknowledged after `after`; throws after `timeoutMs` (default 30 s). */
export async function waitAcks(load: Load, after: number, count: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (load.acked.filter((a) => a.at > after).length < count) {
    if (Date.now() > deadline) throw new Error(`no acknowledged write within ${timeoutMs / 1000} s after ${new Date(after).toISOString()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The statement counting acknowledged ids ($1, an int[]) missing from `table` on the server it runs on. */
export function lostSql(table = 'acked'): string {
  return `select count(*)::int as n from unnest($1::int[]) as a(id) where id not in (select id from ${table})`;
}
