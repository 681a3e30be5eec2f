// pgbench's built-in scripts, run with `pg`: select-only (-S) and TPC-B-like (the default script).
import type pg from 'pg';
import type { WorkloadMode } from './types.js';

export const ACCOUNTS_PER_SCALE = 100_000;
const TELLERS_PER_SCALE = 10;

function randomInt(min: number, max: number): number {
  return min + Math.floor(Math.random() * (max - min + 1));
}

export type Transaction = (client: pg.Client) => Promise<void>;

export function transactionFor(mode: WorkloadMode, scale: number): Transaction {
  const accounts = scale * ACCOUNTS_PER_SCALE;
  if (mode === 'select') {
    return async (client) => {
      await client.query({ name: 'pglab_select', text: 'SELECT abalance FROM pgbench_accounts WHERE aid = $1', values: [randomInt(1, accounts)] });
    };
  }
  return async (client) => {
    const aid = randomInt(1, accounts);
    const tid = randomInt(1, TELLERS_PER_SCALE * scale);
    const bid = randomInt(1, scale);
    const delta = randomInt(-5000, 5000);
    await client.query('BEGIN');
    try {
      await client.query({ name: 'pglab_tpcb_1', text: 'UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2', values: [delta, aid] });
      await client.query({ name: 'pglab_tpcb_2', text: 'SELECT abalance FROM pgbench_accounts WHERE aid = $1', values: [aid] });
      await client.query({ name: 'pglab_tpcb_3', text: 'UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2', values: [delta, tid] });
      await client.query({ name: 'pglab_tpcb_4', text: 'UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2', values: [delta, bid] });
      await client.query({
        name: 'pglab_tpcb_5',
        text: 'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)',
        values: [tid, bid, aid, delta],
      });
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
  };
}
