// A lab's access as a user meets it: scram-sha-256 with the lab's generated password and TLS with the
// lab's own CA by default, `lab env` for psql, the balancer's sql check logging in with the password
// (a replica killed and restarted is UP again within 2 s; a refused password is L7AUTH, not L4CON),
// --tls required refusing plaintext, and --auth trust --tls off on purpose, with its warnings and the
// refusal to expose it on a non-loopback address.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { fetchBalancerStats } from '../src/commands/balancer.js';
import { pollUntil } from '../src/common/poll.js';
import type { BalancerRecord } from '../src/lab/state.js';
import { freePorts, lab, labJson, repoRoot, runLab, withTempLab } from './helpers/lab.js';

/** This process's environment without its PG* variables (and Node's extra CAs), plus `env`. */
function only(env: Record<string, string>): Record<string, string | undefined> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('PG') && name !== 'NODE_EXTRA_CA_CERTS'));
  return { ...clean, ...env };
}

/** psql with only the given environment for libpq (none of the test process's PG* variables). */
async function psql(env: Record<string, string>, conninfo: string, sql: string) {
  return execa('psql', [conninfo, '-wXAtc', sql], { env: only(env), extendEnv: false, reject: false, timeout: 20_000 });
}

/** A node program using node-postgres with no connection settings of its own: everything from `env`. */
async function nodePostgres(env: Record<string, string>, sql: string) {
  const program = `import pg from 'pg'; const c = new pg.Client(); await c.connect(); console.log((await c.query(${JSON.stringify(sql)})).rows[0].v); await c.end();`;
  return execa('node', ['--input-type=module', '-e', program], { cwd: repoRoot, env: only(env), extendEnv: false, reject: false, timeout: 20_000 });
}

test('a new lab: scram and TLS by default, lab env, the sql check with the password, L7AUTH', async () => {
  await withTempLab(async (labDir) => {
    const [m, r1, listen, stats] = await freePorts(4);
    await lab(labDir, 'master', 'start', '--port', String(m));
    await lab(labDir, 'replica', 'add', 'replica1', path.join(labDir, 'replica1'), String(r1));

    const env = await labJson<Record<string, string>>(labDir, 'env');
    assert.deepEqual(Object.keys(env).sort(), ['NODE_EXTRA_CA_CERTS', 'PGDATABASE', 'PGHOST', 'PGPASSFILE', 'PGPORT', 'PGSSLMODE', 'PGSSLROOTCERT', 'PGUSER']);
    assert.equal(env.PGPORT, String(m));
    assert.equal(env.PGSSLMODE, 'verify-full');
    const pass = await stat(env.PGPASSFILE!);
    assert.equal(pass.mode & 0o777, 0o600, 'the pgpass file is readable by the invoking user only');
    assert.equal(pass.uid, process.geteuid!());
    const status = await labJson(labDir, 'status');
    assert.deepEqual(status.access, { auth: 'scram', tls: 'on', passFile: env.PGPASSFILE, caCert: env.PGSSLROOTCERT });

    // No password, no entry: not even the postgres OS user gets in, over TCP or the socket.
    const noPassword = await psql({ PGPASSFILE: '/dev/null' }, `host=127.0.0.1 port=${m} user=postgres dbname=postgres`, 'SELECT 1');
    assert.notEqual(noPassword.exitCode, 0);
    assert.match(noPassword.stderr, /no password supplied/);
    const asPostgres = await execa('su', ['postgres', '-c', `psql -h /tmp -p ${m} -U postgres -w -XAtc 'SELECT 1' postgres`], { reject: false, timeout: 20_000 });
    assert.notEqual(asPostgres.exitCode, 0, 'the socket asks for the password too');
    const wrong = await psql({ PGPASSWORD: 'not-the-password' }, `host=127.0.0.1 port=${m} user=postgres dbname=postgres`, 'SELECT 1');
    assert.match(wrong.stderr, /password authentication failed for user "postgres"/);

    // With `lab env`: verify-full against the lab's CA, channel binding, and replication over TLS.
    const ssl = await psql(env, '', 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    assert.equal(ssl.stdout.trim(), 't', ssl.stderr);
    const localhost = await psql(env, 'host=localhost', 'SELECT 1');
    assert.equal(localhost.stdout.trim(), '1', `the certificate names localhost too: ${localhost.stderr}`);
    const binding = await psql(env, 'channel_binding=require', 'SELECT 1');
    assert.equal(binding.stdout.trim(), '1', binding.stderr);
    const replication = await psql(env, '', 'SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)');
    assert.equal(replication.stdout.trim(), 't', `the standby streams over TLS: ${replication.stderr}`);

    // node-postgres reads PGSSLMODE=verify-full as TLS verified against Node's CAs, not PGSSLROOTCERT:
    // with `lab env`'s NODE_EXTRA_CA_CERTS it verifies the lab's CA; without it the certificate is refused.
    const sslQuery = 'SELECT ssl AS v FROM pg_stat_ssl WHERE pid = pg_backend_pid()';
    const fromNode = await nodePostgres(env, sslQuery);
    assert.equal(fromNode.stdout.trim(), 'true', `node-postgres with lab env: ${fromNode.stderr}`);
    const { NODE_EXTRA_CA_CERTS: _ca, ...withoutCa } = env;
    const refusedByNode = await nodePostgres(withoutCa, sslQuery);
    assert.notEqual(refusedByNode.exitCode, 0);
    assert.match(refusedByNode.stderr, /certificate/, 'without NODE_EXTRA_CA_CERTS, Node does not know the lab\'s CA');
    // `lab env --help` names every variable it prints, each with what it is for.
    const help = await lab(labDir, 'env', '--help');
    for (const name of Object.keys(env)) assert.match(help, new RegExp(`^ {2}[A-Z_, ]*\\b${name}\\b[A-Z_, ]* {2,}\\S`, 'm'), `lab env --help explains ${name}:\n${help}`);

    // The balancer's sql check logs in with the lab's password: UP, and UP again within 2 s of a restart.
    const record = await labJson<BalancerRecord>(labDir, 'balancer', 'start', '--listen', `127.0.0.1:${listen}`, '--stats', `127.0.0.1:${stats}`);
    const serverOf = async () => (await fetchBalancerStats(record)).servers.find((s) => s.name === 'replica1');
    await pollUntil(async () => ((await serverOf())?.status === 'UP' ? true : undefined), { timeoutMs: 5000, what: 'replica1 UP through the sql check' });
    await lab(labDir, 'node', 'kill', 'replica1');
    await pollUntil(async () => ((await serverOf())?.status === 'DOWN' ? true : undefined), { timeoutMs: 5000, what: 'replica1 DOWN after kill -9' });
    await lab(labDir, 'node', 'start', 'replica1');
    const started = Date.now();
    await pollUntil(async () => ((await serverOf())?.status === 'UP' ? true : undefined), { timeoutMs: 2000, intervalMs: 20, what: 'replica1 UP within 2 s of accepting connections' });
    const upAfterMs = Date.now() - started;
    // `lab node start` waited with the password: no connection of it is left stuck in authentication.
    const stuck = await psql({ ...env, PGPORT: String(r1) }, '', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND state IS NULL");
    assert.equal(stuck.stdout.trim(), '0', stuck.stderr);

    // A password the server refuses is an authentication failure of its own in the stats.
    const other = 'changed-by-the-test';
    assert.equal((await psql(env, '', `ALTER ROLE postgres PASSWORD '${other}'`)).exitCode, 0);
    try {
      // The check keeps its connection between checks: end it, so the next one logs in again.
      const otherEnv = { ...env, PGPORT: String(r1), PGPASSFILE: '/dev/null', PGPASSWORD: other };
      await pollUntil(async () => ((await psql(otherEnv, '', 'SELECT 1')).stdout.trim() === '1' ? true : undefined), { timeoutMs: 5000, what: 'the new password on replica1' });
      await psql(otherEnv, '', "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'lab-balancer-check'");
      const refused = await pollUntil(async () => {
        const server = await serverOf();
        return server?.status === 'DOWN' && server.checkStatus === 'L7AUTH' ? server : undefined;
      }, { timeoutMs: 10_000, what: 'the check to report L7AUTH' });
      assert.match(refused.checkMessage ?? '', /password authentication failed/);
    } finally {
      const restore = await psql({ ...env, PGPASSFILE: '/dev/null', PGPASSWORD: other }, '', `ALTER ROLE postgres PASSWORD '${(await labPassword(env.PGPASSFILE!))}'`);
      assert.equal(restore.exitCode, 0, restore.stderr);
    }
    await pollUntil(async () => ((await serverOf())?.status === 'UP' ? true : undefined), { timeoutMs: 5000, what: 'replica1 UP again with the lab password restored' });
    process.stdout.write(`# replica1 UP ${upAfterMs} ms after lab node start returned\n`);
  });
});

async function labPassword(pgpass: string): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  return (await readFile(pgpass, 'utf8')).split('\n')[0]!.split(':').slice(4).join(':');
}

test('--tls required refuses plaintext TCP; --auth trust --tls off warns and is kept off other machines', async () => {
  await withTempLab(async (labDir) => {
    const [m] = await freePorts(1);
    await lab(labDir, 'master', 'start', '--port', String(m), '--tls', 'required');
    const env = await labJson<Record<string, string>>(labDir, 'env');
    const plain = await psql({ ...env, PGSSLMODE: 'disable' }, '', 'SELECT 1');
    assert.notEqual(plain.exitCode, 0);
    assert.match(plain.stderr, /no pg_hba.conf entry .* no encryption/);
    assert.equal((await psql(env, '', 'SELECT 1')).stdout.trim(), '1');
    const again = await runLab(labDir, ['master', 'start', '--port', String(m), '--tls', 'off']);
    assert.equal(again.exitCode, 3, 'other settings for an existing lab are a conflict');
    assert.match(again.stderr, /was made with --auth scram --tls required/);
  });
  await withTempLab(async (labDir) => {
    const [m, listen, stats] = await freePorts(3);
    const made = await runLab(labDir, ['master', 'start', '--port', String(m), '--auth', 'trust', '--tls', 'off']);
    assert.equal(made.exitCode, 0, made.stderr);
    assert.match(made.stderr, /WARNING: --auth trust: every local OS user can connect as the superuser/);
    assert.match(made.stderr, /WARNING: --tls off/);
    const env = await labJson<Record<string, string>>(labDir, 'env');
    assert.equal(env.PGPASSFILE, undefined);
    assert.equal(env.PGSSLMODE, 'disable');
    assert.equal((await psql({ PGPASSFILE: '/dev/null' }, `host=127.0.0.1 port=${m} user=postgres dbname=postgres`, 'SELECT 1')).stdout.trim(), '1');
    // Not exposed by accident: no socket is opened, nothing recorded.
    const exposed = await runLab(labDir, ['balancer', 'start', '--listen', `0.0.0.0:${listen}`, '--stats', `127.0.0.1:${stats}`]);
    assert.equal(exposed.exitCode, 4, exposed.stderr);
    assert.match(exposed.stderr, /would open a lab made with --auth trust and --tls off to other machines: .* add --insecure/);
    assert.equal(exposed.stderr.trim().split('\n').length, 1, 'one line');
    const bad = await runLab(labDir, ['master', 'start', '--auth', 'md5']);
    assert.equal(bad.exitCode, 2);
  });
});
