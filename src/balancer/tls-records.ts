// What a TLS passthrough session shows of itself without its keys: the record layer. Every TLS record
// has a 5-byte plaintext header (content type, version, length), so a balancer that cannot read a
// session can still tell where the handshake ends and how long the client's first application record
// is. That is enough to hand the session to the kernel relay at a point where the client waits (its
// first request is on its way, the server has not answered yet), and to notice a CancelRequest sent
// inside TLS (16 bytes of plaintext: asyncpg, postgres.js, libpq 17's PQcancelCreate), whose key an
// L4 balancer cannot read.
import { RecordFramer } from './protocol.js';

export const TLS_CHANGE_CIPHER_SPEC = 0x14;
export const TLS_APPLICATION_DATA = 0x17;

/** RFC 8446 5.2: a record's payload is at most 2^14 + 256 bytes (2^14 + 2048 for TLS 1.2). */
const MAX_RECORD = 16_384 + 2048;

/** The records of one direction: a 5-byte header (type 20-24, version 3.x, length) before each. */
function tlsRecordReader(): RecordFramer {
  return new RecordFramer(5, (header) => {
    const type = header[0]!;
    const length = header.readUInt16BE(3);
    return type < TLS_CHANGE_CIPHER_SPEC || type > 0x18 || header[1] !== 3 || length > MAX_RECORD ? -1 : length;
  });
}

/**
 * Payload lengths of an application record holding exactly 16 bytes of plaintext, a CancelRequest's
 * size: TLS 1.3 (16 + content type + 16-byte tag), TLS 1.2 ChaCha20-Poly1305 (16 + tag) and AES-GCM
 * (8-byte explicit nonce + 16 + tag). A StartupMessage is never that short: it names at least a user.
 */
const CANCEL_RECORD_LENGTHS = new Set([32, 33, 40]);

/** An encrypted alert (TLS 1.3 close_notify: 2 bytes, content type, tag) is at most this long. */
const ENCRYPTED_ALERT_MAX = 19;

/**
 * One TLS passthrough session seen from the balancer: both directions' records. TLS 1.3 encrypts the
 * server's flight after its ServerHello and the client's Finished, which all go as application-data
 * records; TLS 1.2 sends none before the handshake is over. So the client's handshake is done at its
 * first application record, which in TLS 1.3 (the server sent encrypted records before it) is its
 * Finished, and its first request is the next one; in TLS 1.2 it is the request itself.
 */
export class TlsSessionWatch {
  private readonly client = tlsRecordReader();
  private readonly server = tlsRecordReader();
  private serverEncrypted = false;
  /** The client sent its Finished (TLS 1.3) or its first application record (TLS 1.2). */
  handshakeDone = false;
  /** The payload length of the client's first application record, once its header went by. */
  firstRequestLength: number | null = null;
  /** Application records the server sent after the client's first one, encrypted alerts aside. */
  serverAnswers = 0;

  fromServer(chunk: Buffer): void {
    this.server.push(chunk, (header, length) => {
      if (header[0] !== TLS_APPLICATION_DATA) return;
      if (!this.handshakeDone) this.serverEncrypted = true;
      else if (this.firstRequestLength !== null && length > ENCRYPTED_ALERT_MAX) this.serverAnswers += 1;
    });
  }

  /**
   * Feeds a client chunk: `handshake` when it completed the client's handshake, `requestEnded` when the
   * client's first request is complete and the chunk ends with it or after it on a record boundary.
   */
  fromClient(chunk: Buffer): { handshake: boolean; requestEnded: boolean } {
    let handshake = false;
    const whole = this.client.push(chunk, (header, length) => {
      if (header[0] !== TLS_APPLICATION_DATA || this.firstRequestLength !== null) return;
      if (!this.handshakeDone) {
        this.handshakeDone = handshake = true;
        if (this.serverEncrypted) return;
      }
      this.firstRequestLength = length;
    });
    return { handshake, requestEnded: whole && this.firstRequestLength !== null };
  }

  /** Not TLS after all (garbage after the server's 'S'): nothing more can be told. */
  get broken(): boolean {
    return this.client.broken || this.server.broken;
  }

  /** The client's first request has a CancelRequest's size. */
  get requestLooksLikeCancel(): boolean {
    return this.firstRequestLength !== null && CANCEL_RECORD_LENGTHS.has(this.firstRequestLength);
  }
}
