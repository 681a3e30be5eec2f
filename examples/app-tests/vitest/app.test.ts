// vitest, TypeScript, `await using`: the lab and the balancer are disposed when the test's scope ends.
import { expect, test } from 'vitest';
import pg from 'pg';
import { Lab, LabError, type BalancerServerStats } from 'pglab';

test('an application pool keeps reading through the balancer while a replica dies', async () => {
  await using lab = await Lab.start({ replicas: 2 });
  await lab.primary.query('CREATE TABLE items (id int)');
  await lab.primary.query('INSERT INTO items VALUES (1), (2), (3)');
  await lab.waitForCatchup();

  await using lb = await lab.balancer();
  await lb.waitFor('replica2', 'UP');
  await lb.waitFor('replica1', 'UP');
  const pool = new pg.Pool({ ...lb.connectionConfig(), max: 2 });
  pool.on('error', () => undefined);
  try {
    expect((await pool.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(3);
    await lab.node('replica2').kill();
    const down: BalancerServerStats = await lb.waitFor('replica2', 'DOWN');
    expect(down.status).toBe('DOWN');
    // A pooled connection to the dead replica fails once; the next query gets a new session on replica1.
    let n: number | undefined;
    for (let attempt = 0; attempt < 3 && n === undefined; attempt += 1) {
      n = await pool.query('SELECT count(*)::int AS n FROM items').then((r) => r.rows[0].n as number, () => undefined);
    }
    expect(n).toBe(3);
  } finally {
    await pool.end();
  }
  await expect(lab.waitForCatchup({ timeoutMs: 300 })).rejects.toSatisfy((e: unknown) => e instanceof LabError && e.code === 'TIMEOUT');
});
