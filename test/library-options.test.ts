// The library's options are checked before anything is made (no server needed): a wrong property is one
// USAGE LabError naming it. Part of `npm run test:unit`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lab, LabError } from '../src/index.js';
import { checkDatadirPath } from '../src/lab/datadir.js';
import { forLibrary, libraryMessage } from '../src/api/remedies.js';
import { checkBalancerOptions, checkBalancerProcessOptions, checkCatchupOptions, checkPromoteOptions, checkReplicaOptions, checkStartOptions } from '../src/api/options.js';

const usage = (pattern: RegExp) => (e: unknown) => e instanceof LabError && e.code === 'USAGE' && pattern.test(e.message) && !e.message.includes('\n');

test('Lab.start refuses bad options before it makes anything', async () => {
  await assert.rejects(Lab.start({ replicas: 1.5 }), usage(/^Lab\.start: replicas must be a whole number from 0 to 16, got 1\.5$/));
  await assert.rejects(Lab.start({ replicas: '2' as never }), usage(/replicas must be a whole number/));
  await assert.rejects(Lab.start({ auth: 'md5' as never }), usage(/auth must be 'scram' or 'trust'/));
  await assert.rejects(Lab.start({ runtime: 'k8s' as never }), usage(/runtime must be 'process' or 'docker'/));
  await assert.rejects(Lab.start({ keep: 'sometimes' as never }), usage(/keep must be true, false or 'on-failure'/));
  await assert.rejects(Lab.start({ pg: -3 }), usage(/pg must be a major version/));
  await assert.rejects(Lab.start({ onEvent: 'log' as never }), usage(/onEvent must be a function/));
  await assert.rejects(Lab.start({ replcas: 2 } as never), usage(/unknown option "replcas"/));
  await assert.rejects(Lab.start(null as never), usage(/options must be an object/));
  await assert.rejects(Lab.open(''), usage(/Lab\.open: dir must be a lab dir path/));
});

test('replica and balancer options: ports, durations and counts are typed numbers', () => {
  assert.throws(() => checkReplicaOptions({ port: 70000 }), usage(/lab\.addReplica: port must be a whole number from 1 to 65535/));
  assert.throws(() => checkReplicaOptions({ port: '5433' as never }), usage(/port must be a whole number/));
  assert.throws(() => checkBalancerOptions({ interMs: '2s' as never }), usage(/lab\.balancer: interMs must be a whole number/));
  assert.throws(() => checkBalancerOptions({ pool: 'readers' as never }), usage(/pool must be 'replicas' or 'primary' or 'all'/));
  assert.throws(() => checkBalancerOptions({ tls: 'on' as never }), usage(/tls must be 'passthrough' or 'terminate'/));
  assert.deepEqual(checkBalancerOptions({ interMs: 500, rise: 2 }).interMs, 500);
  assert.equal(checkStartOptions({ replicas: 0 }).replicas, 0);
  assert.throws(() => checkPromoteOptions({ formerPrimary: 'rewnd' }), usage(/lab\.promote: formerPrimary must be 'leave' or 'rewind'/));
  assert.throws(() => checkPromoteOptions({ other: 'follow' } as never), usage(/unknown option "other"/));
  assert.throws(() => checkCatchupOptions({ timeoutMs: -1 }), usage(/lab\.waitForCatchup: timeoutMs must be a whole number/));
  assert.throws(() => checkStartOptions({ port: 0 }), usage(/Lab\.start: port must be a whole number from 1 to 65535/));
  assert.throws(() => checkStartOptions({ initdbTemplate: true as never }), usage(/initdbTemplate must be a non-empty string/));
  assert.equal(checkStartOptions({ initdbTemplate: false }).initdbTemplate, false);
  assert.throws(() => checkBalancerOptions({ engine: 'haproxy' } as never), usage(/lab\.balancer: unknown option "engine"/), 'an in-process balancer is the built-in one');
  assert.throws(() => checkBalancerProcessOptions({ engine: 'nginx' as never }), usage(/lab\.balancerProcess: engine must be 'builtin' or 'haproxy'/));
  assert.throws(() => checkBalancerProcessOptions({ statsPort: 1.5 }), usage(/lab\.balancerProcess: statsPort must be a whole number/));
  assert.throws(() => checkBalancerProcessOptions({ retries: -1 }), usage(/lab\.balancerProcess: retries must be a whole number from 0/));
  assert.equal(checkBalancerProcessOptions({ engine: 'haproxy', connectTimeoutMs: 10_000 }).connectTimeoutMs, 10_000);
});

test('temp labs may live in /dev/shm (memory), and nothing else under /dev', () => {
  assert.equal(checkDatadirPath('/dev/shm/pglab-abc/master1'), '/dev/shm/pglab-abc/master1');
  for (const refused of ['/dev/shm', '/dev/shm/', '/dev/pgdata', '/dev/shm/../sda', '/run/shm/x']) {
    assert.throws(() => checkDatadirPath(refused), (e: unknown) => e instanceof LabError && e.code === 'UNSAFE' && /system path/.test(e.message), refused);
  }
});

test('an error raised below the library says what to do in the library\'s terms; the CLI\'s phrasing stays in facts', () => {
  const cases: [string, string][] = [
    ['Node "replica1" is not running: start it first (`lab node start replica1`)', 'Node "replica1" is not running: start it first (`lab.node(\'replica1\').start()`)'],
    [
      'lab fault partition needs a lab made with --hosts (nodes in network namespaces): `lab destroy --yes`, then `lab master start --hosts`; pause and lag work on every lab',
      'node.partition() needs a lab made with hosts: true (nodes in network namespaces): `lab.destroy()`, then `Lab.start({ hosts: true })`; pause and lag work on every lab',
    ],
    ['Node "replica2" is already paused since 2026-12-07T16:00:00Z: `lab fault heal replica2` first', 'Node "replica2" is already paused since 2026-12-07T16:00:00Z: `lab.node(\'replica2\').heal()` first'],
    ['Node "master1" is the lab\'s current primary: promote another node first (`lab promote NAME`)', 'Node "master1" is the lab\'s current primary: promote another node first (`lab.promote(name)`)'],
    ['PostgreSQL 13 is not installed here: `lab versions install 13`, or pass --pg with a bin dir', 'PostgreSQL 13 is not installed here: `lab versions install 13`, or pass pg with a bin dir'],
  ];
  for (const [cli, library] of cases) {
    assert.equal(libraryMessage(cli), library);
    const translated = forLibrary(new LabError('STATE', cli, { facts: { node: 'x' } })) as LabError;
    assert.ok(translated instanceof LabError);
    assert.equal(translated.message, library);
    assert.equal(translated.code, 'STATE');
    assert.deepEqual(translated.facts, { node: 'x', cliMessage: cli });
  }
  const plain = new LabError('USAGE', 'Lab.start: replicas must be a whole number from 0 to 16, got 1.5');
  assert.equal(forLibrary(plain), plain, 'a message in the library\'s terms is the same error');
});
