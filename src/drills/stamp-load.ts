// The load of `lab demo stale-reads`: one writer stamps an increasing counter on the primary and keeps,
// in memory, when each stamp was acknowledged and where the primary's WAL stood; readers read the stamp
// through a balancer and each read is judged against what the writer had acknowledged when the read was
// sent: how many ms ago the first stamp it did not see was acknowledged, and how many bytes of WAL lie
// between the newest acknowledged stamp and the one it saw.
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { labClientConfig } from '../postgres/client.js';
import { lsnToNumber } from '../postgres/recovery.js';

export const STAMP_TABLE = 'stamp';

/**
 * One row. `pad` (stored uncompressed) gives each stamp a known WAL weight, so a lag bound in bytes
 * (1MB) is reached in about a second, as it would be under a real write load.
 */
export const CREATE_STAMP_TABLE = [
  `CREATE TABLE ${STAMP_TABLE} (counter bigint NOT NULL, at timestamptz NOT NULL, lsn pg_lsn NOT NULL, pad text NOT NULL)`,
  `ALTER TABLE ${STAMP_TABLE} ALTER COLUMN pad SET STORAGE EXTERNAL`,
  `INSERT INTO ${STAMP_TABLE} VALUES (0, clock_timestamp(), pg_current_wal_insert_lsn(), '')`,
];

export interface Stamp {
  counter: number;
  /** Date.now() when the UPDATE (autocommit) was acknowledged. */
  ackedAt: number;
  /** pg_current_wal_insert_lsn() right after the stamp's UPDATE record (its commit record follows). */
  lsn: number;
}

export class StampWriter {
  /** stamps[i] is counter i; stamps[0] the row as created. */
  readonly stamps: Stamp[] = [];
  readonly errors: { at: number; message: string }[] = [];
  private stopped = false;
  private done: Promise<void> | null = null;
  /** Why the writer gave up (over 100 errors); stop() throws it. */
  private failure: unknown = null;

  /** `host`: where the primary is reached (its namespace's address in a lab made with --hosts, nodeAddress). */
  constructor(private readonly options: { host: string; port: number; database: string; everyMs: number; padBytes: number; maxStamps: number }) {}

  /** The newest acknowledged counter now. */
  get latest(): number {
    return this.stamps.length - 1;
  }

  /** A session on the primary; `broken` once it had a connection error (it answers no query after that). */
  private async connect(): Promise<{ client: pg.Client; broken: () => boolean }> {
    const client = new pg.Client(labClientConfig({ host: this.options.host, port: this.options.port, user: 'postgres', database: this.options.database, connectionTimeoutMillis: 5000, query_timeout: 5000, application_name: 'lab-demo-stamp-writer' }));
    let broken = false;
    client.on('error', () => (broken = true));
    client.on('end', () => (broken = true));
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    return { client, broken: () => broken };
  }

  async start(): Promise<void> {
    const session = await this.connect();
    const first = (await session.client.query<{ lsn: string; counter: string }>(`SELECT counter::text, lsn::text FROM ${STAMP_TABLE}`)).rows[0]!;
    if (Number(first.counter) !== 0) throw new Error(`table ${STAMP_TABLE} does not start at counter 0`);
    this.stamps.push({ counter: 0, ackedAt: Date.now(), lsn: lsnToNumber(first.lsn) });
    this.done = this.loop(session).catch((error: unknown) => {
      this.failure = error;
    });
  }

  private async loop(first: { client: pg.Client; broken: () => boolean }): Promise<void> {
    let session: typeof first | null = first;
    try {
      while (!this.stopped && this.stamps.length <= this.options.maxStamps) {
        const next = this.stamps.length;
        const started = Date.now();
        try {
          // A session that broke is replaced (its error was counted): the stamps go on.
          session ??= await this.connect();
          const { client } = session;
          const pad = randomBytes(Math.ceil(this.options.padBytes / 2)).toString('hex').slice(0, this.options.padBytes);
          const row = (await client.query<{ lsn: string }>(
            `UPDATE ${STAMP_TABLE} SET counter = $1, at = clock_timestamp(), lsn = pg_current_wal_insert_lsn(), pad = $2 RETURNING lsn::text`,
            [next, pad],
          )).rows[0]!;
          this.stamps.push({ counter: next, ackedAt: Date.now(), lsn: lsnToNumber(row.lsn) });
        } catch (error) {
          // One session on the primary, which no fault of this drill touches: an error is reported, not hidden.
          this.errors.push({ at: Date.now(), message: error instanceof Error ? error.message : String(error) });
          if (this.errors.length > 100) throw error;
          if (session?.broken()) {
            await session.client.end().catch(() => undefined);
            session = null;
          }
        }
        await delay(Math.max(0, started + this.options.everyMs - Date.now()));
      }
    } finally {
      await session?.client.end().catch(() => undefined);
    }
  }

  /** Stop writing; throws when the writer had given up (over 100 errors). */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
    if (this.failure) throw new Error(`the stamp writer gave up after ${this.errors.length} errors, the last: ${this.errors.at(-1)?.message}`);
  }
}

export interface StampRead {
  /** Date.now() when the SELECT was sent (the connection already made). */
  at: number;
  /** The read's answer came back this many ms later. */
  took_ms: number;
  /**
   * Its new connection took this long (TLS and login): the balancer chose the server when it began, so a
   * read is sent this long after the balancer's verdict on that server was last in force.
   */
  connect_ms: number;
  /** The server that answered (inet_server_port()). */
  port: number;
  counter: number;
  /** The newest counter the writer had acknowledged when the read was sent. */
  latest: number;
  /** Sent minus the acknowledgement of the first stamp it did not see (0 when it saw the newest). */
  ms_behind: number;
  /** WAL between the newest acknowledged stamp and the one it saw (0 when it saw the newest). */
  bytes_behind: number;
  /**
   * The same age as ms_behind, taken when the answer came back (at + took_ms): what the client holds.
   * A read answered late (a slow link) is older on arrival than when sent; the rule judges ms_behind.
   */
  ms_old_on_arrival: number;
}

export interface ReadError {
  at: number;
  message: string;
}

export interface ReadersResult {
  reads: StampRead[];
  errors: ReadError[];
}

/**
 * `clients` readers, a new connection per read (so every read is routed by the balancer's current view:
 * an L4 balancer cannot move a session already on a replica that is drained), until `until()` (Date.now()):
 * the drill moves the end when a fault takes its time to apply.
 */
export async function runStampReaders(
  writer: StampWriter,
  options: { url: string; clients: number; until: () => number; maxReads: number; connectTimeoutMs: number; queryTimeoutMs: number },
  signal: AbortSignal,
): Promise<ReadersResult> {
  const reads: StampRead[] = [];
  const errors: ReadError[] = [];
  const running = () => !signal.aborted && Date.now() < options.until() && reads.length + errors.length < options.maxReads;
  const worker = async () => {
    while (running()) {
      const client = new pg.Client(labClientConfig({ connectionString: options.url, connectionTimeoutMillis: options.connectTimeoutMs, query_timeout: options.queryTimeoutMs, application_name: 'lab-demo-stamp-reader' }));
      client.on('error', () => undefined);
      let failedAt: number | null = null;
      try {
        const connecting = Date.now();
        await client.connect();
        const latest = writer.latest;
        const at = Date.now();
        const row = (await client.query<{ counter: string; port: number }>(`SELECT counter::text, inet_server_port() AS port FROM ${STAMP_TABLE}`)).rows[0]!;
        const tookMs = Date.now() - at;
        reads.push(judgeRead(writer.stamps, { at, took_ms: tookMs, connect_ms: at - connecting, port: Number(row.port), counter: Number(row.counter), latest }));
      } catch (error) {
        failedAt = Date.now();
        errors.push({ at: failedAt, message: error instanceof Error ? error.message : String(error) });
      } finally {
        await client.end().catch(() => undefined);
      }
      if (failedAt !== null) await delay(50, undefined, { signal }).catch(() => undefined);
    }
  };
  await Promise.all(Array.from({ length: options.clients }, () => worker()));
  return { reads, errors };
}

/** How far behind a read was, from the writer's records (the stamps acknowledged by its arrival included). */
export function judgeRead(stamps: Stamp[], read: Pick<StampRead, 'at' | 'took_ms' | 'connect_ms' | 'port' | 'counter' | 'latest'>): StampRead {
  const arrival = read.at + read.took_ms;
  const firstUnseen = stamps[read.counter + 1];
  const onArrival = firstUnseen && firstUnseen.ackedAt <= arrival ? arrival - firstUnseen.ackedAt : 0;
  if (read.counter >= read.latest) return { ...read, ms_behind: 0, bytes_behind: 0, ms_old_on_arrival: onArrival };
  return {
    ...read,
    ms_behind: Math.max(0, read.at - firstUnseen!.ackedAt),
    bytes_behind: Math.max(0, stamps[read.latest]!.lsn - stamps[read.counter]!.lsn),
    ms_old_on_arrival: onArrival,
  };
}

/** The newest stamp acknowledged at or before `epochMs` (binary search over the acknowledgement times). */
export function latestAt(stamps: Stamp[], epochMs: number): Stamp {
  let lo = 0;
  let hi = stamps.length - 1;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (stamps[mid]!.ackedAt <= epochMs) lo = mid;
    else hi = mid - 1;
  }
  return stamps[lo]!;
}
