// `--tls terminate`: the balancer is the client's TLS server, with the very certificate and key the lab's
// servers present, and each server's TLS client, verified against the lab's CA. It then reads every
// StartupMessage and CancelRequest (a cancel sent inside TLS is routed by its key like a plaintext one)
// and relays the protocol in clear between two TLS sessions. Channel binding (tls-server-end-point)
// still verifies: it hashes the certificate the client saw, which is the one the server hashes too.
import net from 'node:net';
import tls from 'node:tls';
import { LabError } from '../common/errors.js';
import { readNoFollow } from '../common/safe-files.js';
import type { BalancerTls } from './config.js';

/** What a terminating balancer holds: the context it serves clients with, the CA it checks servers with. */
export interface TerminatingTls {
  clientContext: tls.SecureContext;
  serverCa: string;
}

/** ALPN of PostgreSQL 17: required of a direct TLS client, checked when an SSLRequest client sends one. */
export const POSTGRES_ALPN = 'postgresql';

/** The certificate, key and CA of a `--tls terminate` balancer, read once at start (never through a link). */
export async function loadTerminatingTls(settings: BalancerTls): Promise<TerminatingTls | null> {
  if (settings.mode !== 'terminate') return null;
  const read = async (file: string, what: string) => {
    const text = await readNoFollow(file);
    if (!text) throw new LabError('STATE', `--tls terminate needs the lab's ${what} ${file}, which is missing: the lab was made with --tls off (rebuild it with TLS) or its tls/ dir was removed`);
    return text;
  };
  const [cert, key, ca] = await Promise.all([read(settings.certFile, 'server certificate'), read(settings.keyFile, 'server key'), read(settings.caFile, 'CA certificate')]);
  try {
    // PostgreSQL's own floor (ssl_min_protocol_version): TLS 1.2.
    return { clientContext: tls.createSecureContext({ cert, key, minVersion: 'TLSv1.2' }), serverCa: ca };
  } catch (error) {
    throw new LabError('STATE', `--tls terminate: the lab's certificate ${settings.certFile} or key ${settings.keyFile} cannot be used: ${(error as Error).message}`);
  }
}

/**
 * The client's TLS, served by the balancer on `raw`. `prefix`: bytes already read from it (a direct TLS
 * client's ClientHello), read again by the TLS layer. A client offering ALPN must offer `postgresql`, as
 * PostgreSQL 17 requires; `direct` clients must offer it (the server checks after the handshake).
 */
export function acceptClientTls(raw: net.Socket, terminating: TerminatingTls, prefix: Buffer | null): tls.TLSSocket {
  if (prefix) {
    raw.pause();
    raw.unshift(prefix);
  }
  return new tls.TLSSocket(raw, {
    isServer: true,
    secureContext: terminating.clientContext,
    ALPNCallback: ({ protocols }) => (protocols.includes(POSTGRES_ALPN) ? POSTGRES_ALPN : undefined),
  });
}

/**
 * The server's TLS after it answered 'S' on `raw`: the balancer is its client, offering ALPN postgresql
 * and verifying its certificate against the lab's CA and the address it was dialled at.
 */
export function connectServerTls(raw: net.Socket, host: string, terminating: TerminatingTls): tls.TLSSocket {
  return tls.connect({
    socket: raw,
    ca: terminating.serverCa,
    host,
    ...(net.isIP(host) ? {} : { servername: host }),
    ALPNProtocols: [POSTGRES_ALPN],
    minVersion: 'TLSv1.2',
  });
}
