// TLS for the tests' fake peers: a throw-away CA and a server certificate for 127.0.0.1 / localhost
// made with the openssl CLI (labs have their own CA, src/lab/tls-certs.ts), and writing a file into a
// data dir as the postgres OS user.
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { lookupUser } from '../../src/postgres/os-user.js';
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
