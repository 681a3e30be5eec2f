// The few pieces of PostgreSQL's wire protocol (v3) a TCP balancer must understand: the length-prefixed
// packets a client opens with, the typed messages a server answers until ReadyForQuery, and an
// ErrorResponse we can send ourselves.

export const PROTOCOL_V3 = 196608; // 3.0
export const SSL_REQUEST = 80877103;
export const GSSENC_REQUEST = 80877104;
export const CANCEL_REQUEST = 80877102;

/** An 8-byte SSLRequest, as the balancer sends it itself (to a server, after answering its client 'S'). */
export const SSL_REQUEST_PACKET: Buffer = (() => {
  const packet = Buffer.alloc(8);
  packet.writeInt32BE(8, 0);
  packet.writeInt32BE(SSL_REQUEST, 4);
  return packet;
})();
/** The first byte of a TLS handshake record: a PostgreSQL 17 client's direct TLS ClientHello. */
export const TLS_HANDSHAKE = 0x16;

/** A client's first packets are tiny; anything bigger is garbage or an attack. */
export const MAX_STARTUP_PACKET = 10_240;

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; key: string; packet: Buffer }
  | { kind: 'startup'; packet: Buffer; params: Record<string, string> }
  | { kind: 'invalid'; reason: string };

/** Length of the first complete untyped packet in `buffer`, 0 if incomplete, -1 if invalid. */
export function untypedPacketLength(buffer: Buffer): number {
  if (buffer.length < 4) return 0;
  const length = buffer.readInt32BE(0);
  if (length < 8 || length > MAX_STARTUP_PACKET) return -1;
  return buffer.length >= length ? length : 0;
}

export function parseStartupPacket(packet: Buffer): StartupPacket {
  const code = packet.readInt32BE(4);
  if (code === SSL_REQUEST && packet.length === 8) return { kind: 'ssl' };
  if (code === GSSENC_REQUEST && packet.length === 8) return { kind: 'gssenc' };
  if (code === CANCEL_REQUEST && packet.length >= 16) return { kind: 'cancel', key: packet.subarray(8).toString('hex'), packet };
  if (code >> 16 !== 3) return { kind: 'invalid', reason: `unsupported protocol ${code >> 16}.${code & 0xffff}` };
  const params: Record<string, string> = {};
  const fields = packet.subarray(8).toString('utf8').split('\0');
  for (let i = 0; i + 1 < fields.length && fields[i] !== ''; i += 2) params[fields[i]!] = fields[i + 1]!;
  if (!params.user) return { kind: 'invalid', reason: 'no user in the startup message' };
  return { kind: 'startup', packet, params };
}

export function startupMessage(params: Record<string, string>): Buffer {
  const body = Buffer.from(`${Object.entries(params).map(([k, v]) => `${k}\0${v}\0`).join('')}\0`, 'utf8');
  const header = Buffer.alloc(8);
  header.writeInt32BE(8 + body.length, 0);
  header.writeInt32BE(PROTOCOL_V3, 4);
  return Buffer.concat([header, body]);
}

export const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4]); // 'X'

export interface ServerMessage {
  type: string;
  body: Buffer;
  /** The whole message, header included, to forward as is. */
  raw: Buffer;
}

/** Splits a server's byte stream into typed messages; keeps the incomplete tail. */
export class MessageReader {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): ServerMessage[] {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const messages: ServerMessage[] = [];
    while (this.pending.length >= 5) {
      const length = this.pending.readInt32BE(1);
      if (length < 4) throw new Error(`invalid message length ${length}`);
      if (this.pending.length < length + 1) break;
      const raw = this.pending.subarray(0, length + 1);
      messages.push({ type: String.fromCharCode(raw[0]!), body: raw.subarray(5), raw });
      this.pending = this.pending.subarray(length + 1);
    }
    return messages;
  }

  /** Bytes received after the last complete message. */
  rest(): Buffer {
    return this.pending;
  }
}

/** Fields of an ErrorResponse / NoticeResponse: S severity, C SQLSTATE, M message. */
export function parseErrorFields(body: Buffer): Record<string, string> {
  const fields: Record<string, string> = {};
  let offset = 0;
  while (offset < body.length && body[offset] !== 0) {
    const code = String.fromCharCode(body[offset]!);
    const end = body.indexOf(0, offset + 1);
    if (end < 0) break;
    fields[code] = body.toString('utf8', offset + 1, end);
    offset = end + 1;
  }
  return fields;
}

export function errorResponse(sqlstate: string, message: string, severity = 'FATAL'): Buffer {
  const body = Buffer.from(`S${severity}\0V${severity}\0C${sqlstate}\0M${message}\0\0`, 'utf8');
  const header = Buffer.alloc(5);
  header.write('E', 0, 'latin1');
  header.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([header, body]);
}

/**
 * Walks length-prefixed records across chunks without copying them: a fixed-size header whose body
 * length `bodyLength` reads (negative: the bytes make no sense, and `broken` stays true). Used for
 * PostgreSQL's messages (FrameCounter) and TLS's records (tls-records.ts).
 */
export class RecordFramer {
  private readonly header: Buffer;
  private headerBytes = 0;
  private bodyLeft = 0;
  broken = false;

  constructor(headerSize: number, private readonly bodyLength: (header: Buffer) => number) {
    this.header = Buffer.alloc(headerSize);
  }

  /** Feeds `chunk`, calling `onHeader` per record header; true when the chunk ends where a record does. */
  push(chunk: Buffer, onHeader: (header: Buffer, bodyLength: number) => void): boolean {
    let at = 0;
    while (at < chunk.length && !this.broken) {
      if (this.bodyLeft > 0) {
        const take = Math.min(this.bodyLeft, chunk.length - at);
        this.bodyLeft -= take;
        at += take;
        continue;
      }
      this.header[this.headerBytes++] = chunk[at++]!;
      if (this.headerBytes < this.header.length) continue;
      this.headerBytes = 0;
      const length = this.bodyLength(this.header);
      if (length < 0) {
        this.broken = true;
        break;
      }
      this.bodyLeft = length;
      onHeader(this.header, length);
    }
    return !this.broken && this.bodyLeft === 0 && this.headerBytes === 0;
  }
}

/**
 * Follows the message framing of one direction of an established session without copying it: the
 * type of every message as its header goes by, and whether a chunk ends on a message boundary. Once
 * the framing makes no sense (a length under 4), `broken` stays true.
 */
export class FrameCounter {
  private readonly framer = new RecordFramer(5, (header) => header.readInt32BE(1) - 4);
  /** The type byte of the last message whose header was read. */
  lastType = -1;

  get broken(): boolean {
    return this.framer.broken;
  }

  /** Feeds `chunk`, calling `onType` per message header; true when the chunk ends where a message does. */
  push(chunk: Buffer, onType: (type: number) => void): boolean {
    return this.framer.push(chunk, (header) => {
      this.lastType = header[0]!;
      onType(this.lastType);
    });
  }
}
