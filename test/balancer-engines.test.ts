// `lab balancer start --config FILE` (a HAProxy configuration run by the built-in balancer) and
// `--engine haproxy` (the same pool run by the real HAProxy), against a real lab.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { queryRows } from '../src/postgres/client.js';
import { freePorts, lab, labJson, runLab, withTempLab } from './helpers/lab.js';

async function serverPorts(port: number, times: number): Promise<Set<number>> {
  const seen = new Set<number>();
  for (let i = 0; i < times; i++) {
    const rows = await queryRows<{ p: number }>({ port }, 'SELECT inet_server_port() AS p');
    seen.add(Number(rows[0]!.p));
  }
  return seen;
}

test('--config runs a HAProxy configuration with the built-in balancer; --engine haproxy runs HAProxy', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1, r2, listen, stats, hListen, hStats] = await freePorts(7);
    await lab(labDir, 'master', 'start', '--port', String(m));
    await lab(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1));
    await lab(labDir, 'replica', 'add', 'replica2', path.join(labDir, 'replica2'), String(r2));

    // The seed's 1.5 syntax, with this lab's ports, plus a directive we do not support.
    const configFile = path.join(path.dirname(labDir), 'seed-haproxy.cfg');
    await writeFile(configFile, [
      'global', '    maxconn 4096', 'defaults', '    mode tcp', '    retries 3', '    timeout connect 10s', '    timeout client 1m', '    timeout server 1m', '    timeout check 5s',
      `listen pgsql 127.0.0.1:${listen}`, '    mode tcp', '    balance roundrobin', '    option pgsql-check user postgres', '    option tcplog',
      `    server replica1 127.0.0.1:${r1} check inter 1000`, `    server replica2 127.0.0.1:${r2} check inter 1000`,
      `listen stats 127.0.0.1:${stats}`, '    mode http', '    stats enable', '    stats uri /stats', '',
    ].join('\n'));
    const fromFile = await runLab(labDir, ['balancer', 'start', '--name', 'seed', '--config', configFile, '--json']);
    assert.equal(fromFile.exitCode, 0, fromFile.stderr);
    assert.match(fromFile.stderr, /option tcplog.* not supported/i, 'an unsupported directive is named, not dropped');
    const record = JSON.parse(fromFile.stdout);
    assert.equal(record.listen, `127.0.0.1:${listen}`);
    assert.equal(record.stats, `127.0.0.1:${stats}/stats`);
    assert.deepEqual(await serverPorts(listen!, 4), new Set([r1, r2]));
    const seedPidFile = path.join(labDir, 'balancer', 'seed.pid');
    assert.equal((await readFile(seedPidFile, 'utf8')).trim(), String(record.pid), 'a pid file in the lab\'s balancer dir');

    const started = await labJson(labDir, 'balancer', 'start', '--name', 'hx', '--engine', 'haproxy', '--listen', `127.0.0.1:${hListen}`, '--stats', `127.0.0.1:${hStats}`);
    assert.equal(started.engine, 'haproxy');
    assert.deepEqual(await serverPorts(hListen!, 4), new Set([r1, r2]));

    // Both read by the watchers, each in its own way (JSON under the file's stats uri, HAProxy's CSV)
    const sample = await labJson(labDir, 'stat', 'balancer');
    const byName = Object.fromEntries(sample.balancers.map((b: { name: string }) => [b.name, b]));
    for (const name of ['seed', 'hx']) {
      assert.equal(byName[name].up, true, `${name}: ${byName[name].reason}`);
      assert.deepEqual(byName[name].servers.map((s: { name: string }) => s.name).sort(), ['replica1', 'replica2']);
    }
    assert.match(byName.hx.url, /;csv$/);
    assert.match(byName.seed.url, /\/stats\?format=json$/);

    const renderedCfg = started.configFile as string;
    await stat(renderedCfg);
    assert.equal((await readFile(path.join(labDir, 'balancer', 'hx.pid'), 'utf8')).trim(), String(started.pid));
    await lab(labDir, 'balancer', 'stop', '--name', 'hx');
    await assert.rejects(stat(path.join(labDir, 'balancer', 'hx.pid')), { code: 'ENOENT' }, 'stop removes the pid file');
    await assert.rejects(stat(renderedCfg), { code: 'ENOENT' }, 'stop removes the haproxy.cfg the lab rendered');
    await lab(labDir, 'destroy', '--yes');
    await assert.rejects(stat(seedPidFile), { code: 'ENOENT' }, 'destroy removes the pid files');
    assert.match(await readFile(configFile, 'utf8'), /listen pgsql/, 'the user\'s own configuration file is kept');
  });
});
