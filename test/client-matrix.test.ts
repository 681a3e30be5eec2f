// The client matrix (issue 14): a lab built with the real CLI, scram + TLS as `lab master start` makes it,
// and seven PostgreSQL clients through the built-in balancer, which passes TLS end to end: psycopg 3,
// asyncpg, pgjdbc, node-postgres, postgres.js, psql and pgbench. Each client connects with sslmode
// require / verify-full / prefer (and must end on TLS), logs in with the lab's password and is refused
// with a wrong one (28P01), runs the extended protocol, COPY in and out and a cancel; psql also
// channel_binding=require, pgbench a bounded select-only run. asyncpg and postgres.js send their
// CancelRequest inside a new TLS session (the others in plaintext), which a passthrough balancer cannot
// read: this one-server pool takes it to the session's server, a larger pool may not (see
// clients/cancel-through-tls.ts). The drivers are in test/clients/; they take everything from
// `lab env --balancer lb --json`, the contract of issue 14, and from nothing else.
//
// The balancer pools the primary: COPY FROM and pgbench -i write. The replica makes it a lab as the
// README builds one (a replica cloned from a TLS + scram primary must stream).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { fetchBalancerStats } from '../src/commands/balancer.js';
import type { BalancerRecord } from '../src/lab/state.js';
import { freePorts, lab, labJson, runLab, withTempLab } from './helpers/lab.js';
import { LAB_ENV_KEYS, formatMatrix, matrixFailures, runMatrix, runtimeOf, type LabEnv } from './clients/matrix.js';

test('client matrix: psycopg, asyncpg, JDBC, node-postgres, postgres.js, psql, pgbench through the balancer with TLS and SCRAM', { timeout: 270_000 }, async () => {
  // A missing runtime fails here, named, before any lab is built (scripts/setup.sh installs them all).
  const runtimes = await Promise.all(['psycopg', 'asyncpg', 'jdbc', 'psql', 'pgbench'].map(async (client) => ({ client, ...(await runtimeOf(client)) })));
  const missing = runtimes.filter((r) => !r.ok).map((r) => `${r.client}: ${r.why}`);
  assert.deepEqual(missing, [], `client runtimes missing (run scripts/setup.sh as root):\n${missing.join('\n')}`);

  await withTempLab(async (labDir) => {
    const started = Date.now();
    const [master, replica, listen, stats] = await freePorts(4);
    await lab(labDir, 'master', 'start', '--port', String(master));
    await lab(labDir, 'replica', 'add', 'replica1', `${labDir}/replica1`, String(replica));
    const balancer = await labJson<BalancerRecord>(labDir, 'balancer', 'start', '--name', 'lb', '--listen', `127.0.0.1:${listen}`, '--stats', `127.0.0.1:${stats}`, '--pool', 'primary');

    // The contract: `lab env --balancer lb --json`, and the same as `export` lines without --json.
    const json = await runLab(labDir, ['env', '--balancer', 'lb', '--json']);
    assert.equal(json.exitCode, 0, `\`lab env --balancer lb --json\` failed (exit ${json.exitCode}); it is issue 14's contract (scram + TLS labs, TLS through the balancer): this test passes once that work is on the branch.\n${json.stderr}`);
    const env = JSON.parse(json.stdout) as LabEnv;
    for (const key of LAB_ENV_KEYS) assert.equal(typeof env[key], 'string', `lab env --json: ${key} is a string (${JSON.stringify(env)})`);
    assert.equal(env.PGHOST, '127.0.0.1', 'the balancer listens on 127.0.0.1');
    assert.equal(env.PGPORT, String(listen), "--balancer lb gives the balancer's port, not the primary's");
    assert.equal(env.PGSSLMODE, 'verify-full', 'a new lab has TLS on, so clients verify the server');
    assert.equal(env.PGSSLROOTCERT, path.join(labDir, 'tls', 'ca.crt'));
    const passfile = await stat(env.PGPASSFILE);
    assert.equal(passfile.mode & 0o777, 0o600, `PGPASSFILE ${env.PGPASSFILE} is private`);
    assert.ok(path.resolve(env.PGPASSFILE).startsWith(labDir + path.sep), `PGPASSFILE ${env.PGPASSFILE} is in the lab dir`);
    const exports = await lab(labDir, 'env', '--balancer', 'lb');
    for (const key of LAB_ENV_KEYS) assert.match(exports, new RegExp(`^export ${key}=`, 'm'), `plain \`lab env\` exports ${key}`);

    const before = await fetchBalancerStats(balancer);
    const matrixStarted = Date.now();
    const runs = await runMatrix(env);
    const seconds = (Date.now() - matrixStarted) / 1000;
    const after = await fetchBalancerStats(balancer);
    console.log(formatMatrix(runs, `client matrix through the balancer lb (127.0.0.1:${listen}, pool primary), ${seconds.toFixed(1)} s:`));

    assert.deepEqual(matrixFailures(runs), [], 'every client passes every one of its checks');
    const sessions = (s: typeof before) => s.servers.reduce((total, server) => total + server.sessionsTotal, 0);
    assert.ok(sessions(after) - sessions(before) >= 30, `the clients' sessions went through the balancer (${sessions(before)} -> ${sessions(after)})`);
    console.log(`client matrix: lab built and matrix run in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });
});
