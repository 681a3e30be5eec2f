// The lab's own certificate authority and the servers' certificate, made once per lab with the
// openssl command (Debian's openssl package): an EC P-256 CA valid ten years, and a server
// certificate for 127.0.0.1, ::1 and localhost that every node of the lab serves, so clients can use
// sslmode=verify-full with the CA as their root certificate (`lab env` names it).
import { generateKeyPairSync } from 'node:crypto';
import { execa } from 'execa';
import { LabError, messageOf } from '../common/errors.js';
import { writePrivateFile } from '../common/safe-files.js';
import { hasLabTls, makeTlsDir, tlsPaths } from './access.js';

/**
 * The subjectAltName every node's certificate carries: the nodes listen on loopback. libpq before 14
 * compares only dNSName entries with the host as a string, so 127.0.0.1 is there as a name too.
 */
export const SERVER_NAMES = 'IP:127.0.0.1,IP:::1,DNS:localhost,DNS:127.0.0.1';

async function openssl(args: string[], input?: string): Promise<string> {
  try {
    const { stdout } = await execa('openssl', args, { input, stripFinalNewline: false, timeout: 30_000 });
    return stdout;
  } catch (error) {
    const e = error as { code?: string; stderr?: string };
    if (e.code === 'ENOENT') throw new LabError('ENVIRONMENT', 'No openssl command for the lab\'s TLS certificates: install it (apt-get install openssl) or pass --tls off');
    const last = (e.stderr ?? messageOf(error)).trim().split('\n').pop();
    throw new LabError('COMMAND_FAILED', `openssl ${args[0]} failed making the lab's certificates: ${last}`);
  }
}

/** A new EC P-256 key, PKCS#8 PEM (what `openssl genpkey -algorithm EC` writes), made in this process. */
const newKey = (): string => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

/**
 * Makes the lab's CA and server certificate unless they exist. `addresses`: a lab made with --hosts passes
 * every address its nodes can have (10.213.N.10-250): one certificate still serves every node. Two openssl
 * runs (the CA; the server's certificate, requested and signed at once): each run costs a process start.
 */
export async function ensureLabTls(labDir: string, labId: string, addresses: string[] = []): Promise<void> {
  if (await hasLabTls(labDir)) return;
  await makeTlsDir(labDir);
  const files = tlsPaths(labDir);
  await writePrivateFile(files.caKey, newKey());
  const caCert = await openssl([
    'req', '-new', '-x509', '-key', files.caKey, '-days', '3650', '-subj', `/CN=pglab lab ${labId.slice(0, 8)} CA`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await writePrivateFile(files.caCert, caCert, 0o644);
  await writePrivateFile(files.serverKey, newKey());
  const names = [SERVER_NAMES, ...addresses.flatMap((a) => [`IP:${a}`, `DNS:${a}`])].join(',');
  const serverCert = await openssl([
    'req', '-new', '-key', files.serverKey, '-subj', '/CN=localhost', '-CA', files.caCert, '-CAkey', files.caKey,
    '-set_serial', `0x${Date.now().toString(16)}`, '-days', '825',
    '-addext', `subjectAltName=${names}`, '-addext', 'basicConstraints=CA:FALSE', '-addext', 'keyUsage=critical,digitalSignature', '-addext', 'extendedKeyUsage=serverAuth',
  ]);
  await writePrivateFile(files.serverCert, serverCert, 0o644);
}
