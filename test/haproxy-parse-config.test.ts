// Reading HAProxy configurations: the seed's (1.5 syntax), lab/haproxy.cfg, frontend/backend pairs,
// time units, old timeout keywords, warnings for everything not supported, and errors with line numbers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { parseHaproxyConfig } from '../src/haproxy/parse-config.js';
import { readHaproxyConfigFile } from '../src/haproxy/read-config-file.js';
import { parseHaproxyTime } from '../src/haproxy/time-units.js';
import { LabError } from '../src/common/errors.js';
import { repoRoot, tempDir } from './helpers/lab.js';

// The seed's file as the 2015 RPM shipped it, with the post's listen sections.
const SEED_CFG = `
global
    log         127.0.0.1 local2
    chroot      /var/lib/haproxy
    pidfile     /var/run/haproxy.pid
    maxconn     4000
    user        haproxy
    group       haproxy
    daemon

defaults
    mode                    tcp
    log                     global
    retries                 3
#    option redispatch
    timeout connect         10s
    timeout client          1m
    timeout server          1m
    timeout check           5s
    maxconn                 3000

listen pgsql 0.0.0.0:15432
    mode tcp
    balance roundrobin
    option pgsql-check user snaga
    server replica1 127.0.0.1:5433 check inter 10000
    server replica2 127.0.0.1:5434 check inter 10000
    server replica3 127.0.0.1:5435 check inter 10000

listen stats *:6080
    mode http
    stats enable
    stats uri /stats
    stats refresh 30s
`;

function usageError(text: string, pattern: RegExp): void {
  assert.throws(
    () => parseHaproxyConfig(text),
    (error: unknown) => error instanceof LabError && error.code === 'USAGE' && pattern.test(error.message),
  );
}

test('the seed configuration in 1.5 syntax: pool, check, retries, no redispatch, timeouts, stats', () => {
  const config = parseHaproxyConfig(SEED_CFG);
  assert.equal(config.name, 'pgsql');
  assert.deepEqual(config.listen, { host: '0.0.0.0', port: 15432 });
  assert.deepEqual(config.stats, { host: '0.0.0.0', port: 6080, uri: '/stats' });
  assert.equal(config.statsRefreshS, 30);
  assert.deepEqual(config.nonLoopbackAddresses, ['0.0.0.0:15432 (listen pgsql)', '0.0.0.0:6080 (stats stats)']);
  assert.equal(config.algorithm, 'roundrobin');
  assert.equal(config.retries, 3);
  assert.equal(config.redispatch, false);
  assert.deepEqual(config.timeouts, { connectMs: 10_000, clientMs: 60_000, serverMs: 60_000 });
  assert.equal(config.check.type, 'pgsql');
  assert.equal(config.check.user, 'snaga');
  assert.equal(config.pool.source, 'static');
  const servers = config.pool.source === 'static' ? config.pool.servers : [];
  assert.deepEqual(servers.map((s) => `${s.name} ${s.host}:${s.port} ${s.check}`), [
    'replica1 127.0.0.1:5433 true', 'replica2 127.0.0.1:5434 true', 'replica3 127.0.0.1:5435 true',
  ]);
  // inter 10000 on the server line: fastinter and downinter follow it, as in HAProxy; rise/fall stay 2/3.
  const effective = { ...config.check, ...servers[0]!.checkOverrides };
  assert.equal(effective.interMs, 10_000);
  assert.equal(effective.fastinterMs, 10_000);
  assert.equal(effective.downinterMs, 10_000);
  assert.equal(effective.rise, 2);
  assert.equal(effective.fall, 3);
  // Every global line and each harmless defaults line is named, with its line number.
  // maxconn: the listen section's (from defaults) wins over global's, as in HAProxy.
  assert.equal(config.maxconn, 3000);
  assert.ok(!config.warnings.some((w) => /'maxconn'/.test(w)), config.warnings.join('\n'));
  for (const [line, word] of [[3, 'log'], [4, 'chroot'], [5, 'pidfile'], [7, 'user'], [8, 'group'], [9, 'daemon'], [13, 'log']] as const) {
    assert.ok(
      config.warnings.some((w) => w.startsWith(`line ${line}: '${word}' is not supported and was ignored`)),
      `no warning for line ${line} '${word}' in:\n${config.warnings.join('\n')}`,
    );
  }
  assert.ok(!config.warnings.some((w) => /redispatch/.test(w)), 'a commented-out redispatch is a comment, not a warning');
});

test('lab/haproxy.cfg is the seed adapted to loopback, is valid for HAProxy and needs no warning', async () => {
  const file = path.join(repoRoot, 'lab', 'haproxy.cfg');
  const config = parseHaproxyConfig(await readFile(file, 'utf8'));
  assert.deepEqual(config.listen, { host: '127.0.0.1', port: 15432 });
  assert.deepEqual(config.stats, { host: '127.0.0.1', port: 6080, uri: '/stats' });
  assert.deepEqual(config.nonLoopbackAddresses, []);
  assert.equal(config.check.type, 'pgsql');
  assert.equal(config.check.user, 'postgres');
  assert.equal(config.redispatch, false);
  assert.equal(config.retries, 3);
  assert.deepEqual(config.timeouts, { connectMs: 10_000, clientMs: 60_000, serverMs: 60_000 });
  const servers = config.pool.source === 'static' ? config.pool.servers : [];
  assert.deepEqual(servers.map((s) => s.port), [5433, 5434, 5435]);
  assert.ok(servers.every((s) => s.checkOverrides.interMs === 10_000));
  assert.deepEqual(config.warnings, []);
  const checked = await execa('haproxy', ['-c', '-f', file], { reject: false });
  assert.equal(checked.exitCode, 0, `haproxy -c rejected lab/haproxy.cfg:\n${checked.stderr}${checked.stdout}`);
});

test('current syntax: frontend + backend, leastconn, server options, default-server, old timeout keywords', () => {
  const config = parseHaproxyConfig(
    `defaults
  mode tcp
  contimeout 5000
  clitimeout 30s
  srvtimeout 2m
  option redispatch
  default-server inter 3s fall 2
frontend pg
  bind 127.0.0.1:6432
  default_backend replicas
backend replicas
  balance leastconn
  retries 5
  timeout check 1s
  server a 127.0.0.1:5433 check inter 500ms fastinter 100 downinter 1s rise 3 weight 50
  server b 127.0.0.1:5434 check backup
  server c 127.0.0.1:5435 disabled
listen stats
  bind 127.0.0.1:8404
  mode http
  stats uri /
`,
    { name: 'lb' },
  );
  assert.equal(config.name, 'lb');
  assert.deepEqual(config.listen, { host: '127.0.0.1', port: 6432 });
  assert.equal(config.algorithm, 'leastconn');
  assert.equal(config.retries, 5);
  assert.equal(config.redispatch, true);
  assert.deepEqual(config.timeouts, { connectMs: 5000, clientMs: 30_000, serverMs: 120_000 });
  assert.equal(config.check.type, 'tcp', 'plain check without pgsql-check is a TCP check');
  assert.equal(config.check.interMs, 3000);
  assert.equal(config.check.fall, 2);
  const [a, b, c] = config.pool.source === 'static' ? config.pool.servers : [];
  assert.deepEqual({ ...config.check, ...a!.checkOverrides }.interMs, 500);
  assert.deepEqual(a!.checkOverrides.fastinterMs, 100);
  assert.deepEqual(a!.checkOverrides.downinterMs, 1000);
  assert.deepEqual(a!.checkOverrides.rise, 3);
  assert.equal(a!.weight, 50);
  assert.equal(b!.backup, true);
  assert.equal(b!.check, true);
  assert.equal(c!.disabled, true);
  assert.equal(c!.check, false);
  assert.deepEqual(config.stats, { host: '127.0.0.1', port: 8404, uri: '/' });
  assert.deepEqual(config.warnings, []);
});

test('unsupported directives are named with their line, never dropped silently', () => {
  const config = parseHaproxyConfig(`global
  stats socket /run/haproxy.sock mode 660
defaults
  mode tcp
  timeout connect 1s
  timeout client 1s
  timeout server 1s
  timeout queue 5s
listen pgsql
  bind 127.0.0.1:15432 accept-proxy
  balance source
  option httpchk OPTIONS /master
  http-check expect status 200
  server a 127.0.0.1:5433 check port 8008 on-marked-down shutdown-sessions
  tcp-request inspect-delay 5s
resolvers dns
  nameserver ns1 127.0.0.1:53
`);
  const expected = [
    "line 2: 'stats socket' is not supported and was ignored",
    "line 10: 'bind options 'accept-proxy'' is not supported and was ignored",
    "line 11: 'balance source' is not supported and roundrobin is used instead",
    "line 12: 'option httpchk' is not supported and was ignored",
    "line 13: 'http-check expect' is not supported and was ignored",
    "line 14: 'port 8008' is not supported and was ignored",
    "line 14: 'on-marked-down shutdown-sessions' is not supported and was ignored",
    "line 15: 'tcp-request inspect-delay' is not supported and was ignored",
    "line 16: section 'resolvers' is not supported and was ignored",
  ];
  for (const start of expected) {
    assert.ok(config.warnings.some((w) => w.startsWith(start)), `missing warning "${start}" in:\n${config.warnings.join('\n')}`);
  }
  assert.equal(config.warnings.length, expected.length, config.warnings.join('\n'));
  assert.equal(config.algorithm, 'roundrobin');
  assert.equal(config.timeouts.queueMs, 5000, 'timeout queue is read');
});

test('errors say which line is wrong', () => {
  usageError('listen pgsql\n  bind 127.0.0.1:99999\n  server a 127.0.0.1:5433\n', /^line 2: .*invalid port '99999'/);
  usageError('listen pgsql\n  server a 127.0.0.1:5433\n', /^line 1: listen 'pgsql' has no listen address/);
  usageError('listen pgsql 127.0.0.1:15432\n  balance roundrobin\n', /^line 1: listen 'pgsql' has no servers/);
  usageError('  mode tcp\nlisten pgsql\n', /^line 1: 'mode' is outside of any section/);
  usageError('listen pgsql 127.0.0.1:15432\n  server a 127.0.0.1\n', /^line 2: server a has no port/);
  usageError('listen pgsql 127.0.0.1:15432\n  server a 127.0.0.1:5433 check inter soon\n', /^line 2: 'inter' needs a time/);
  usageError('listen pgsql 127.0.0.1:15432\n  option pgsql-check\n  server a 127.0.0.1:5433\n', /^line 2: 'option pgsql-check' needs 'user <name>'/);
  usageError('frontend pg\n  bind 127.0.0.1:1\n  default_backend nope\n', /^line 3: backend 'nope' is not defined/);
  usageError('listen stats\n  bind 127.0.0.1:1\n  mode http\n  stats enable\n', /no 'listen' or 'frontend' section in mode tcp/);
});

test('HAProxy time units', () => {
  assert.equal(parseHaproxyTime('10000'), 10_000);
  assert.equal(parseHaproxyTime('10s'), 10_000);
  assert.equal(parseHaproxyTime('500ms'), 500);
  assert.equal(parseHaproxyTime('1m'), 60_000);
  assert.equal(parseHaproxyTime('2h'), 7_200_000);
  assert.equal(parseHaproxyTime('1.5s'), undefined);
  assert.equal(parseHaproxyTime('-1'), undefined);
});

test('a configuration file: errors and warnings name the file', async () => {
  const dir = await tempDir('pglab-cfg-');
  try {
    const bad = path.join(dir, 'bad.cfg');
    await writeFile(bad, 'listen pgsql\n  bind 127.0.0.1:0\n  server a 127.0.0.1:5433\n');
    await assert.rejects(readHaproxyConfigFile(bad), (e: unknown) => e instanceof LabError && e.message.startsWith(`${bad} line 2: bind: invalid port '0'`));
    await assert.rejects(readHaproxyConfigFile(path.join(dir, 'missing.cfg')), (e: unknown) => e instanceof LabError && e.code === 'NOT_FOUND');
    const good = path.join(dir, 'good.cfg');
    await writeFile(good, 'global\n  daemon\nlisten pgsql 127.0.0.1:15432\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n  server a 127.0.0.1:5433 check\n');
    const config = await readHaproxyConfigFile(good, { name: 'lb' });
    assert.equal(config.name, 'lb');
    assert.deepEqual(config.warnings.map((w) => w.split(' (')[0]), [`${good} line 2: 'daemon' is not supported and was ignored`]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
