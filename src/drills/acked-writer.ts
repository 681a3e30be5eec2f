// The write side of the primary failover drill: clients that insert rows numbered by a client-side
// sequence and count a number only once its COMMIT was acknowledged. After the drill the numbers
// missing on the new primary are the acknowledged commits the failover lost.
import { setTimeout as delay } from 'node:timers/promises';
import { setMaxListeners } from 'node:events';
import pg from 'pg';
import { labClientConfig } from '../postgres/client.js';

export const ACKED_TABLE = 'acked';
export const CREATE_ACKED_TABLE = `CREATE TABLE ${ACKED_TABLE} (seq bigint PRIMARY KEY, client int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`;

export interface WriterOptions {
  url: string;
  /** The connect timeout (default 1000 ms). */
  connectTimeoutMs?: number;
  clients: number;
  durationMs: number;
  /** A bound besides the duration. */
  maxWrites: number;
  /** A COMMIT not answered within this is an error (its outcome unknown: "in doubt"). */
  queryTimeoutMs: number;
  /** Pause before reconnecting after an error. */
  retryMs: number;
  /**
   * The writers go on past the duration until this settles: a drill's failover that ends late (a loaded
   * machine) still gets its first write on the new primary measured, not cut off by the clock.
   */
  until?: Promise<unknown>;
}

export interface WriterResult {
  startedEpochMs: number;
  durationMs: number;
  /** Acknowledged sequence numbers with Date.now() of the acknowledgement and the server's port. */
  acked: { seq: number; at: number; port: number }[];
  /** Sequence numbers sent whose COMMIT got an error or no answer: committed or not, nobody was told. */
  inDoubt: number[];
  errors: { atMs: number; message: string }[];
  /** Acknowledged commits per whole second since the start. */
  perSecond: number[];
  /** Attempts (a connect and its INSERT) that took SLOW_MS or more: Date.now() at the start, how long, the error if any. */
  slow: { at: number; tookMs: number; error: string | null }[];
}

/** An attempt this long or longer is recorded in `slow` (a client that hung). */
export const SLOW_MS = 200;

export async function runAckedWriter(options: WriterOptions, signal: AbortSignal): Promise<WriterResult> {
  setMaxListeners(options.clients + 16, signal); // each client's retry pause listens to it
  const startedEpochMs = Date.now();
  const deadline = startedEpochMs + options.durationMs;
  const acked: WriterResult['acked'] = [];
  const inDoubt: number[] = [];
  const errors: WriterResult['errors'] = [];
  const slow: WriterResult['slow'] = [];
  let next = 1;
  let held = options.until !== undefined;
  options.until?.then(
    () => (held = false),
    () => (held = false),
  );
  const running = () => !signal.aborted && (Date.now() < deadline || held) && next <= options.maxWrites;

  const worker = async (id: number) => {
    let client: pg.Client | null = null;
    let port = 0;
    while (running()) {
      let seq: number | null = null;
      const began = Date.now();
      try {
        if (!client) {
          const fresh = new pg.Client(labClientConfig({ connectionString: options.url, connectionTimeoutMillis: options.connectTimeoutMs ?? 1000, query_timeout: options.queryTimeoutMs, application_name: 'lab-demo-writer' }));
          fresh.on('error', () => undefined); // the query in flight rejects too
          client = fresh;
          await fresh.connect();
          // Which server the balancer chose: an acknowledgement from the dead master's lingering
          // backends is not a write on the new primary.
          port = Number((await fresh.query<{ p: number }>('SELECT inet_server_port() AS p')).rows[0]!.p);
        }
        seq = next++;
        await client.query(`INSERT INTO ${ACKED_TABLE} (seq, client) VALUES ($1, $2)`, [seq, id]);
        acked.push({ seq, at: Date.now(), port });
        if (Date.now() - began >= SLOW_MS) slow.push({ at: began, tookMs: Date.now() - began, error: null });
      } catch (error) {
        if (Date.now() - began >= SLOW_MS) slow.push({ at: began, tookMs: Date.now() - began, error: error instanceof Error ? error.message : String(error) });
        if (seq !== null) inDoubt.push(seq);
        errors.push({ atMs: Date.now() - startedEpochMs, message: error instanceof Error ? error.message : String(error) });
        const dead = client;
        client = null;
        dead?.end().catch(() => undefined);
        await delay(options.retryMs, undefined, { signal }).catch(() => undefined);
      }
    }
    await client?.end().catch(() => undefined);
  };
  await Promise.all(Array.from({ length: options.clients }, (_, i) => worker(i + 1)));
  const durationMs = Date.now() - startedEpochMs;
  const perSecond = Array.from({ length: Math.ceil(durationMs / 1000) }, () => 0);
  for (const { at } of acked) perSecond[Math.min(perSecond.length - 1, Math.floor((at - startedEpochMs) / 1000))]! += 1;
  return { startedEpochMs, durationMs, acked, inDoubt, errors, perSecond, slow };
}
