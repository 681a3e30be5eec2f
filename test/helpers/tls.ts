// TLS for the tests, independent of how labs are built: a throw-away CA and a server certificate for
// 127.0.0.1 / localhost made with the openssl CLI, and `enableTls` that gives a running node of a lab
// that certificate and turns `ssl = on` (ALTER SYSTEM + reload).
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { lookupUser } from '../../src/postgres/os-user.js';
import { pollUntil } from '../../src/common/poll.js';
import { tempDir } from './lab.js';

export interface TestCa {
  dir: string;
  /** Path of the CA certificate (for sslrootcert / tls.connect's ca). */
  caFile: string;
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
  remove(): Promise<void>;
}

/** A CA and a server certificate signed by it, SAN IP:127.0.0.1 and DNS:localhost, in a temp dir. */
export async function makeTestCa(): Promise<TestCa> {
  const dir = await tempDir('pglab-tls-');
  try {
    const ssl = (...args: string[]) => execa('openssl', args, { cwd: dir });
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    await ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=pglab test CA');
    await ssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
    await execa('sh', ['-c', 'printf "subjectAltName=IP:127.0.0.1,DNS:localhost\\n" > san.ext'], { cwd: dir });
    await ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'san.ext');
    const [cert, key, ca] = await Promise.all(['server.crt', 'server.key', 'ca.crt'].map((f) => readFile(path.join(dir, f))));
    return { dir, caFile: path.join(dir, 'ca.crt'), cert: cert!, key: key!, ca: ca!, remove: () => rm(dir, { recursive: true, force: true }) };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/** Writes a file (0600) in a data dir as the postgres OS user when we are root: no root file, no link followed by root. */
export async function writeAsPostgres(file: string, content: string | Buffer): Promise<void> {
  const user = await lookupUser('postgres');
  const asOwner = user && process.geteuid?.() === 0 ? { uid: user.uid, gid: user.gid } : {};
  await execa('sh', ['-c', 'umask 077 && cat > "$1"', 'sh', file], { input: content, ...asOwner });
}

/**
 * server.crt / server.key (0600) into `datadir`, written by the postgres OS user itself (no file of
 * root's in its directory), then `ssl = on` and a reload; returns once a TLS connection works.
 */
export async function enableTls(ca: TestCa, datadir: string, port: number): Promise<void> {
  await writeAsPostgres(path.join(datadir, 'server.crt'), ca.cert);
  await writeAsPostgres(path.join(datadir, 'server.key'), ca.key);
  const psql = (conninfo: string, sql: string) => execa('psql', [conninfo, '-Atc', sql], { timeout: 20_000 });
  const plain = `host=127.0.0.1 port=${port} user=postgres dbname=postgres sslmode=disable`;
  await psql(plain, 'ALTER SYSTEM SET ssl = on');
  await psql(plain, 'SELECT pg_reload_conf()');
  await pollUntil(async () => ((await psql(`host=127.0.0.1 port=${port} user=postgres dbname=postgres sslmode=require`, 'SELECT 1')).stdout === '1' ? true : undefined), {
    timeoutMs: 10_000,
    what: `TLS on port ${port}`,
  });
}
