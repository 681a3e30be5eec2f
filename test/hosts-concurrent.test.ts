// Two labs made with --hosts at the same moment each claim a bridge index of their own (the bridge's
// creation is the claim); destroying one leaves the other's bridge, namespace and server answering; a lab
// whose lab.json names another live lab's index refuses to touch it, and its destroy leaves it alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { execa } from 'execa';
import { queryRows } from '../src/postgres/client.js';
import { isRoot, leftovers } from './helpers/hosts.js';
import { freePorts, refused, runLab, tempDir, useLabEnv } from './helpers/lab.js';

const readLab = async (labDir: string) => JSON.parse(await readFile(path.join(labDir, 'lab.json'), 'utf8'));

/** SELECT 1 on the lab's master1 at its own address (the lab's password and CA in the environment). */
async function answers(labDir: string, index: number, port: number): Promise<boolean> {
  await useLabEnv(labDir);
  const rows = await queryRows<{ a: string }>({ host: `10.213.${index}.10`, port, connectTimeoutMs: 3000 }, 'SELECT host(inet_server_addr()) AS a');
  return rows[0]?.a === `10.213.${index}.10`;
}

async function linkLine(name: string): Promise<string | undefined> {
  return (await execa('ip', ['-o', 'link', 'show'])).stdout.split('\n').find((line) => new RegExp(`^\\d+: ${name}[:@]`).test(line));
}

const hasNetns = async (netns: string) => (await execa('ip', ['netns', 'list'])).stdout.split('\n').some((line) => line.split(' ')[0] === netns);

test('--hosts: two labs started at the same moment get their own bridges; one destroyed leaves the other; a lab.json naming another lab\'s index touches nothing of it', { skip: !isRoot && 'needs root' }, async () => {
  const root = await tempDir();
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((name) => path.join(root, name)) as [string, string, string, string];
  const [pa, pb, pc, pd] = (await freePorts(4)) as [number, number, number, number];
  const indexes: number[] = [];
  try {
    const started = await Promise.all([runLab(a, ['master', 'start', '--hosts', '--port', String(pa)]), runLab(b, ['master', 'start', '--hosts', '--port', String(pb)])]);
    for (const run of started) assert.equal(run.exitCode, 0, run.stderr);
    const retried = started.some((run) => /was just made by another lab/.test(run.stdout + run.stderr));
    const [sa, sb] = [await readLab(a), await readLab(b)];
    const [ia, ib] = [sa.hosts.index as number, sb.hosts.index as number];
    indexes.push(ia, ib);
    console.log(`# two labs at once: bridges pgl${ia} and pgl${ib}${retried ? ' (one found its first pick taken and took the next)' : ' (no collision this run)'}`);
    assert.notEqual(ia, ib);
    assert.equal(sa.nodes[0].host.netns, `pglab-${ia}-master1`);
    assert.equal(sb.nodes[0].host.netns, `pglab-${ib}-master1`);
    // Each bridge carries its lab's alias.
    assert.match((await linkLine(`pgl${ia}`)) ?? '', new RegExp(`alias pglab:${sa.labId}`));
    assert.match((await linkLine(`pgl${ib}`)) ?? '', new RegExp(`alias pglab:${sb.labId}`));
    assert.ok(await answers(a, ia, pa));
    assert.ok(await answers(b, ib, pb));

    // A lab whose recorded index another lab claimed first (as when both picked it at once): its master
    // start finds the bridge taken, records the next free index and claims that.
    await mkdir(d);
    await writeFile(path.join(d, 'lab.json'), JSON.stringify({ ...sa, labId: randomUUID(), labDirCreated: false, nodes: [], balancers: [], hosts: { index: ib, bridge: `pgl${ib}` } }, null, 2));
    const madeD = await runLab(d, ['master', 'start', '--hosts', '--port', String(pd)]);
    assert.equal(madeD.exitCode, 0, madeD.stderr);
    assert.match(madeD.stderr, new RegExp(`bridge pgl${ib} was just made by another lab: taking pgl\\d+`));
    const id = (await readLab(d)).hosts.index as number;
    indexes.push(id);
    assert.ok(![ia, ib].includes(id), `d took pgl${id}`);
    assert.ok(await answers(d, id, pd));
    assert.equal((await runLab(d, ['destroy', '--yes'])).exitCode, 0);
    assert.deepEqual(await leftovers(id), []);
    assert.ok(await answers(b, ib, pb));

    // Destroying a leaves b's bridge, namespace and server.
    const destroyedA = await runLab(a, ['destroy', '--yes']);
    assert.equal(destroyedA.exitCode, 0, destroyedA.stderr);
    assert.deepEqual(await leftovers(ia), []);
    assert.ok(await linkLine(`pgl${ib}`));
    assert.ok(await hasNetns(`pglab-${ib}-master1`));
    assert.ok(await answers(b, ib, pb));

    // A lab whose lab.json was edited to name b's index: refused in one line, its destroy leaves b alone.
    const madeC = await runLab(c, ['master', 'start', '--hosts', '--port', String(pc)]);
    assert.equal(madeC.exitCode, 0, madeC.stderr);
    const original = await readFile(path.join(c, 'lab.json'), 'utf8');
    const sc = JSON.parse(original);
    const ic = sc.hosts.index as number;
    indexes.push(ic);
    assert.notEqual(ic, ib);
    sc.hosts = { index: ib, bridge: `pgl${ib}` };
    sc.nodes[0].host = { netns: `pglab-${ib}-master1`, veth: `pgl${ib}-10`, address: `10.213.${ib}.10` };
    await writeFile(path.join(c, 'lab.json'), JSON.stringify(sc, null, 2));
    await refused(c, ['fault', 'partition', 'master1'], 4, new RegExp(`bridge pgl${ib} is another lab's \\(pglab:${sb.labId}\\).*nothing was touched`));
    await refused(c, ['node', 'restart', 'master1'], 4, new RegExp(`bridge pgl${ib} is another lab's`));
    const destroyedC = await runLab(c, ['destroy', '--yes']);
    assert.equal(destroyedC.exitCode, 0, destroyedC.stderr);
    assert.match(destroyedC.stdout, new RegExp(`kept: bridge pgl${ib}, namespaces pglab-${ib}-\\*, links pgl${ib}-\\* \\(the bridge is another lab's \\(pglab:${sb.labId}\\)`));
    assert.ok(await linkLine(`pgl${ib}`));
    assert.ok(await linkLine(`pgl${ib}-10`));
    assert.ok(await hasNetns(`pglab-${ib}-master1`));
    assert.ok(await answers(b, ib, pb));
    // c's own network is still there (its edited record did not name it): a destroy with its true record removes it.
    assert.ok(await linkLine(`pgl${ic}`));
    await mkdir(c, { recursive: true }); // the first destroy removed the dir it had made
    await writeFile(path.join(c, 'lab.json'), original);
    const destroyedC2 = await runLab(c, ['destroy', '--yes']);
    assert.equal(destroyedC2.exitCode, 0, destroyedC2.stderr);
    assert.deepEqual(await leftovers(ic), []);

    const destroyedB = await runLab(b, ['destroy', '--yes']);
    assert.equal(destroyedB.exitCode, 0, destroyedB.stderr);
    for (const index of indexes) assert.deepEqual(await leftovers(index), []);
  } finally {
    for (const dir of [a, b, c, d]) await runLab(dir, ['destroy', '--yes']).catch(() => undefined);
    await execa('rm', ['-rf', root]);
  }
  for (const index of indexes) assert.deepEqual(await leftovers(index), []);
});
