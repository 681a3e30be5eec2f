// node:test, plain JavaScript on Node 20 (no `await using`): a lab per test, closed in `finally`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { Lab } from 'pglab';

async function one(config, sql) {
  const client = new pg.Client({ ...config, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return (await client.query(sql)).rows[0];
  } finally {
    await client.end();
  }
}

test('writes on the primary are read on a replica; the balancer routes around a killed replica; a replica is promoted', async () => {
  const lab = await Lab.start({ replicas: 2 });
  try {
    await lab.primary.query('CREATE TABLE orders (id int PRIMARY KEY)');
    await lab.primary.query('INSERT INTO orders SELECT generate_series(1, 10)');
    await lab.waitForCatchup();
    assert.equal((await one(lab.node('replica1').connectionConfig(), 'SELECT count(*)::int AS n FROM orders')).n, 10);

    const lb = await lab.balancer({ pool: 'replicas' });
    await lb.waitFor('replica1', 'UP');
    await lb.waitFor('replica2', 'UP');
    await lab.node('replica1').kill();
    await lb.waitFor('replica1', 'DOWN');
    for (let i = 0; i < 4; i += 1) {
      const row = await one(lb.connectionConfig(), 'SELECT inet_server_port() AS port, count(*)::int AS n FROM orders');
      assert.deepEqual(row, { port: lab.node('replica2').port, n: 10 });
    }

    await lab.promote('replica2');
    assert.equal(lab.primary.name, 'replica2');
    assert.equal((await one(lab.primary.connectionConfig(), 'SELECT pg_is_in_recovery() AS r')).r, false);
    await lab.primary.query('INSERT INTO orders VALUES (11)');
  } finally {
    await lab.close();
  }
});
