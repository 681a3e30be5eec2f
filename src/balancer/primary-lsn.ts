// The primary's end of WAL, sampled once a check interval, so a replica's lag can be measured against
// the primary and not only on the replica: a replica resumed after a freeze has received little of what
// it missed, and what it heard of the primary's WAL end is old too (the stale-reads drill).
import pg from 'pg';
import { destroySocket } from '../postgres/client.js';
import { dialectFor } from '../postgres/dialect.js';
import { lsnToNumber } from '../postgres/recovery.js';
import type { CheckSettings } from './config.js';
import { openCheckConnection, type PrimarySample, type Target } from './health-check.js';

/**
 * One connection kept open to the primary (the sql check's login), one small query per sample, bounded
 * by the check timeout. A failed sample drops the connection and keeps no value: `fresh()` then says
 * nothing once the last good sample is two intervals old, and the check works on the replica alone.
 */
export class PrimaryLsnSampler {
  private client: pg.Client | null = null;
  /** A login under way: a sample that timed out waiting for it does not start a second one. */
  private connecting: Promise<pg.Client> | null = null;
  private sql = '';
  private last: PrimarySample | null = null;
  private running = false;
  private closed = false;

  constructor(
    readonly name: string,
    readonly target: Target,
    private readonly settings: CheckSettings,
  ) {}

  /** The last sample when it is younger than two check intervals, else null. */
  fresh(now = Date.now()): PrimarySample | null {
    return this.last && now - this.last.at < 2 * this.settings.interMs ? this.last : null;
  }

  async sample(): Promise<void> {
    if (this.running || this.closed) return;
    this.running = true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('no answer')), this.settings.timeoutMs);
    });
    try {
      if (!this.client) {
        this.connecting ??= this.connect().finally(() => {
          this.connecting = null;
        });
      }
      const client = this.client ?? (await Promise.race([this.connecting!, timeout]));
      const result = await Promise.race([client.query<{ lsn: string | null }>(this.sql), timeout]);
      const lsn = result.rows[0]?.lsn;
      // A server in recovery is no primary (a stale lab.json, a demoted node): no reference.
      this.last = lsn ? { lsn: lsnToNumber(lsn), at: Date.now(), name: this.name } : null;
    } catch {
      this.last = null;
      if (this.client) this.drop(this.client);
    } finally {
      clearTimeout(timer);
      this.running = false;
    }
  }

  private async connect(): Promise<pg.Client> {
    const { client, versionNum } = await openCheckConnection(this.target, this.settings, (client) => {
      client.on('error', () => {
        if (this.client === client) this.drop(client);
      });
      client.on('end', () => {
        if (this.client === client) this.client = null;
      });
    });
    const d = dialectFor(Math.floor(versionNum / 10000));
    this.sql = `SELECT CASE WHEN NOT pg_is_in_recovery() THEN ${d.currentWriteLsn}::text END AS lsn`;
    if (this.closed) {
      client.end().catch(() => undefined);
      throw new Error('stopped');
    }
    this.client = client;
    return client;
  }

  private drop(client: pg.Client): void {
    if (this.client === client) this.client = null;
    destroySocket(client);
    client.end().catch(() => undefined);
  }

  close(): void {
    this.closed = true;
    this.last = null;
    if (this.client) {
      const client = this.client;
      this.client = null;
      client.end().catch(() => undefined);
    }
  }
}
