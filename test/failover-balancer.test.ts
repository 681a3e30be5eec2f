// The `rw` balancer (pool: the lab's primary, sql check) after a promotion: it routes to the new
// primary within a second, and an old master restarted by mistake (two servers answering
// pg_is_in_recovery() = false) never gets a session: the lab state decides who is primary.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { pollUntil } from '../src/common/poll.js';
import { queryRows } from '../src/postgres/client.js';
import { freePorts, lab, labJson, withTempLab } from './helpers/lab.js';

const portThrough = async (listen: number) =>
  Number((await queryRows<{ p: number }>({ port: listen, connectTimeoutMs: 1000 }, 'SELECT inet_server_port() AS p'))[0]!.p);

test('rw balancer: follows the promoted replica within 1 s, never routes to an old master started by mistake', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1, listen, stats] = await freePorts(4);
    await lab(labDir, 'master', 'start', '--port', String(m));
    await lab(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1));
    await lab(labDir, 'balancer', 'start', '--name', 'rw', '--pool', 'primary', '--listen', `127.0.0.1:${listen}`, '--stats', `127.0.0.1:${stats}`);
    await pollUntil(async () => ((await portThrough(listen!)) === m ? true : undefined), { timeoutMs: 10_000, what: 'rw to route to master1' });

    await lab(labDir, 'node', 'kill', 'master1');
    await lab(labDir, 'promote', 'replica1');
    const promotedAt = Date.now();
    await pollUntil(async () => ((await portThrough(listen!)) === r1 ? true : undefined), { timeoutMs: 5000, intervalMs: 20, what: 'rw to route to replica1' });
    const followMs = Date.now() - promotedAt;
    console.log(`rw routes to the new primary ${followMs} ms after lab promote returned`);
    assert.ok(followMs < 1000, `rw followed the new primary after ${followMs} ms`);

    // The old master is started by mistake, not rewound: two primaries at once.
    assert.match(await lab(labDir, 'node', 'start', 'master1'), /WARNING: master1 was the primary before a promotion and was not rewound: it runs as a second primary/);
    assert.equal((await queryRows<{ r: boolean }>({ port: m! }, 'SELECT pg_is_in_recovery() AS r'))[0]!.r, false);
    const status = await labJson<{ warnings: string[] }>(labDir, 'status');
    assert.match(status.warnings.join('\n'), /master1 runs as a primary \(timeline 1\) but the lab's primary is replica1: rewind it/);
    const text = await lab(labDir, 'status');
    assert.match(text, /WARNING: master1 runs as a primary/);

    const deadline = Date.now() + 3000;
    const seen = new Set<number>();
    for (let i = 0; i < 100 && Date.now() < deadline; i++) seen.add(await portThrough(listen!));
    assert.deepEqual([...seen], [r1], 'every session through rw lands on the lab\'s primary');
    const balancers = await labJson<{ name: string; servers: { name: string; status: string }[] }[]>(labDir, 'balancer', 'status');
    assert.deepEqual(balancers[0]!.servers.map((s) => [s.name, s.status]), [['replica1', 'UP']]);

    // Rewinding it makes it a replica again; the pool stays the new primary.
    await lab(labDir, 'node', 'rewind', 'master1');
    assert.equal((await queryRows<{ r: boolean }>({ port: m! }, 'SELECT pg_is_in_recovery() AS r'))[0]!.r, true);
    assert.equal(await portThrough(listen!), r1);
  });
});
