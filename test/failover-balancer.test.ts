// The `rw` balancer (pool: the lab's primary, sql check) after a promotion: it routes to the new
// primary within a second, and an old master restarted by mistake (two servers answering
// pg_is_in_recovery() = false) never gets a session: the lab state decides who is primary, and a
// fixed pool from a HAProxy file (`--config --pool primary`) fences it by its older timeline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pollUntil } from '../src/common/poll.js';
import { queryRows } from '../src/postgres/client.js';
import { freePorts, lab, labJson, runLab, withTempLab } from './helpers/lab.js';

const portThrough = async (listen: number) =>
  Number((await queryRows<{ p: number }>({ port: listen, connectTimeoutMs: 1000 }, 'SELECT inet_server_port() AS p'))[0]!.p);

test('rw balancer: follows the promoted replica within 1 s, never routes to an old master started by mistake', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1, listen, stats, listen2, stats2] = await freePorts(6);
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
    for (let i = 0; i < 100 && (i === 0 || Date.now() < deadline); i++) seen.add(await portThrough(listen!));
    assert.deepEqual([...seen], [r1], 'every session through rw lands on the lab\'s primary');
    type Servers = { name: string; servers: { name: string; status: string; checkMessage: string }[] }[];
    const balancers = await labJson<Servers>(labDir, 'balancer', 'status');
    assert.deepEqual(balancers[0]!.servers.map((s) => [s.name, s.status]), [['master1', 'DOWN'], ['replica1', 'UP']]);
    assert.match(balancers[0]!.servers[0]!.checkMessage, /former primary, not rewound since a promotion: fenced out of the pool \(`lab node rewind master1`\)/);

    // The same two servers as a fixed list: both say they are primary; the timelines decide.
    const config = path.join(labDir, 'rw2.cfg');
    await writeFile(config, [
      'listen rw2',
      `    bind 127.0.0.1:${listen2}`,
      `    server master1 127.0.0.1:${m} check`,
      `    server replica1 127.0.0.1:${r1} check`,
      '',
    ].join('\n'));
    const withoutSql = await runLab(labDir, ['balancer', 'start', '--name', 'rw2', '--config', config, '--pool', 'primary', '--stats', `127.0.0.1:${stats2}`]);
    assert.equal(withoutSql.exitCode, 2);
    assert.match(withoutSql.stderr, /^lab: --pool primary needs to know each server's role, which only the sql check sees .*: add --check sql$/m);
    await lab(labDir, 'balancer', 'start', '--name', 'rw2', '--config', config, '--pool', 'primary', '--check', 'sql', '--stats', `127.0.0.1:${stats2}`);
    const rw2 = async () => (await labJson<Servers>(labDir, 'balancer', 'status', '--name', 'rw2'))[0]!.servers;
    await pollUntil(async () => ((await rw2()).find((s) => s.name === 'replica1')?.status === 'UP' ? true : undefined), { timeoutMs: 5000, what: 'rw2 to admit replica1' });
    const fenced = (await rw2()).find((s) => s.name === 'master1')!;
    assert.equal(fenced.status, 'DOWN');
    assert.match(fenced.checkMessage, /^a second primary on timeline 1: replica1 is the primary on timeline 2; fenced out of the pool$/);
    const seen2 = new Set<number>();
    const deadline2 = Date.now() + 3000; // its own bound: a loaded machine may have used up the first one
    for (let i = 0; i < 50 && (i === 0 || Date.now() < deadline2); i++) seen2.add(await portThrough(listen2!));
    assert.deepEqual([...seen2], [r1], 'every session through rw2 lands on the newer timeline');

    // Rewinding it makes it a replica again; the pool stays the new primary.
    await lab(labDir, 'node', 'rewind', 'master1');
    assert.equal((await queryRows<{ r: boolean }>({ port: m! }, 'SELECT pg_is_in_recovery() AS r'))[0]!.r, true);
    assert.equal(await portThrough(listen!), r1);
    await pollUntil(async () => ((await labJson<Servers>(labDir, 'balancer', 'status', '--name', 'rw'))[0]!.servers.length === 1 ? true : undefined), {
      timeoutMs: 5000, what: 'the rewound master1 to leave the rw pool',
    });
    const rewound = await pollUntil(async () => {
      const row = (await rw2()).find((s) => s.name === 'master1')!;
      return /replica/.test(row.checkMessage) ? row : undefined;
    }, { timeoutMs: 5000, what: 'rw2 to see master1 as a replica' });
    assert.equal(rewound.status, 'DOWN');
    assert.match(rewound.checkMessage, /is a replica \(in recovery\): not eligible for the primary pool/);
  });
});
