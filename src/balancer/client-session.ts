// One client connection, from its first byte to its close. The connection phase is where the balancer
// earns its keep: the client's startup message is kept, and until the server's ReadyForQuery a server
// that refuses, resets or answers "starting up / shutting down" is replaced by the next one, so the
// client never sees an error another replica could have saved. After ReadyForQuery Node relays the
// bytes; a session that lasts is then handed to the kernel relay (kernel-relay.ts) where it can run.
//
// Encryption passes through by default, end to end, as an L4 balancer's does (channel binding keeps
// working with any certificate). When every server is known to accept TLS (a lab with TLS; a server that
// answered 'S' before) the balancer answers an SSLRequest 'S' itself and opens a server connection only
// once the client's ClientHello has arrived, so a client that stops there costs no server connection;
// otherwise the SSLRequest / GSSENCRequest goes to the server picked and its one-byte answer is relayed.
// Until the server's first TLS byte the same retries apply (refused, reset, closed, silent: the request
// and the ClientHello are replayed on the next server); after it the session is opaque bytes bound to
// that server; after 'N' the plaintext startup goes on on that same server connection, as before. A
// PostgreSQL 17 direct TLS client (first byte 0x16, a ClientHello) is the same with its first bytes
// replayed until the server's first byte. A server connection whose client is still in its TLS
// handshake holds one of the early connects (32), so stalled handshakes cannot fill the servers.
// Node follows a TLS session's records (tls-records.ts): the session goes to the kernel relay with the
// client's first request (the client then waits for the answer, the server has not given it yet); a
// GSS session with the server's 'G' (the one moment both sides are known to be quiet).
//
// With `--tls terminate` (tls-terminate.ts) the balancer is the client's TLS server and the server's TLS
// client instead: the session is plaintext to it, so it is relayed as one (by Node: the kernel cannot
// relay between two TLS sessions) and a CancelRequest sent inside TLS is routed by its key.
import net from 'node:net';
import { constants } from 'node:os';
import { messageOf } from '../common/errors.js';
import { onTimeTimeout } from '../common/on-time-timeout.js';
import type { BackendServer, LiveSession } from './backend-server.js';
import type { CancelLimiter } from './cancel-limit.js';
import { LAB_LIMIT_DEFAULTS, type BalancerConfig } from './config.js';
import type { KernelRelay, RelayHandle } from './kernel-relay.js';
import {
  FrameCounter, GSSENC_REQUEST, MessageReader, SSL_REQUEST, SSL_REQUEST_PACKET, TLS_HANDSHAKE, errorResponse, parseErrorFields, parseStartupPacket, untypedPacketLength,
  type ServerMessage,
} from './protocol.js';
import { TlsSessionWatch } from './tls-records.js';
import { POSTGRES_ALPN, acceptClientTls, connectServerTls, type TerminatingTls } from './tls-terminate.js';

export interface SessionContext {
  config: BalancerConfig;
  pick(exclude: ReadonlySet<BackendServer>): BackendServer | undefined;
  serverCount(): number;
  /** The server that owns a backend key (pid + secret), for CancelRequest. */
  keyOwner(key: string): BackendServer | undefined;
  setKeyOwner(key: string, server: BackendServer | undefined): void;
  /** Servers with a TLS/GSS session: a CancelRequest with an unknown key may be for one of those. */
  encryptedSessionServers(): BackendServer[];
  /** `--tls terminate`: the balancer's own TLS, both sides; null when TLS passes through. */
  terminate: TerminatingTls | null;
  /** Every usable server is known to accept TLS: the balancer may answer an SSLRequest 'S' itself. */
  serversAcceptTls(): boolean;
  /** A TLS session's first request had a CancelRequest's size and its server closed without an answer. */
  encryptedCancelSeen(server: BackendServer, peer: string): void;
  /** Bounds the CancelRequests relayed, and counts them. */
  cancels: CancelLimiter;
  /** Passive detection: the server refused, reset, or said it does not accept connections. */
  markDown(server: BackendServer, status: string, message: string): void;
  log(line: string): void;
  /** The kernel relay for established sessions, when this balancer uses it. */
  relay: KernelRelay | null;
  /** Round trips a session makes through Node before the kernel relay takes it (0: from the start). */
  kernelRelayAfter: number;
  sessionOpened(session: ClientSession): void;
  sessionClosed(session: ClientSession): void;
  /**
   * Every usable server is at its maxconn (or said "too many clients"): the client should wait in the
   * queue rather than be refused.
   */
  serversBusy(): boolean;
  /** Wait for a server slot (HAProxy's queue, bounded by `timeout queue`). */
  enqueue(waiter: QueueWaiter): void;
  leaveQueue(waiter: QueueWaiter): void;
  /**
   * A server connection for a client whose startup packet is still incomplete, or whose TLS handshake
   * is not done: false when the budget is spent.
   */
  takeEarlyBudget(): boolean;
  releaseEarlyBudget(): void;
  /** Wait for an early-connect slot (newest first; bounded by `timeout queue`), which `resume` then holds. */
  waitEarlyBudget(waiter: QueueWaiter): void;
  leaveEarlyBudgetWait(waiter: QueueWaiter): void;
  /** Clients are waiting for an early-connect slot. */
  earlyBudgetContended(): boolean;
}

/** A client in the queue: resumed when a slot frees, or told it waited too long. */
export interface QueueWaiter {
  resume(): void;
  expire(waitedMs: number): void;
}

/** Set on a server connection once it belongs to an established session (its slot moves to `sessions`). */
const SLOT_HANDED = Symbol('slot handed to the session');
type ServerSocket = net.Socket & { [SLOT_HANDED]?: boolean };

/**
 * A connection to `server` that holds one of its maxconn slots while the client is in its connection
 * phase; bindTo hands the slot to the established session, whose end frees it.
 */
function connectServer(server: BackendServer): ServerSocket {
  const socket: ServerSocket = net.connect({ host: server.config.host, port: server.config.port });
  server.connecting += 1;
  socket.once('close', () => {
    if (socket[SLOT_HANDED]) return;
    socket[SLOT_HANDED] = true;
    server.connecting -= 1;
    server.released();
  });
  return socket;
}

/** The established session owns the server connection's slot now. */
function handSlot(server: BackendServer, socket: ServerSocket): void {
  if (socket[SLOT_HANDED]) return;
  socket[SLOT_HANDED] = true;
  server.connecting -= 1;
}

/** SQLSTATEs of a startup FATAL that another server could do better: not accepting, too many. */
const RETRYABLE_STARTUP_ERRORS = new Set(['57P03', '53300', '57P01', '57P02']);
/**
 * The bound on a server's first answer to a new connection: answerMs, never over the connect timeout
 * and kept under half the connection phase, so that a client whose first server hangs is still saved
 * by the next.
 */
export function answerBound(config: BalancerConfig): number {
  const connectMs = config.timeouts.connectMs || 5000;
  // The phase as armPhaseTimer bounds it (a file without `timeout connect` gives 1 s).
  const phase = Math.max(config.timeouts.connectMs, 1000);
  return Math.max(100, Math.min(config.timeouts.answerMs ?? LAB_LIMIT_DEFAULTS.answerMs, connectMs, Math.floor(phase / 2)));
}

/** Client bytes held while the session is being established (the client should send nothing then). */
const MAX_PENDING_CLIENT_BYTES = 65_536;

/** A server connection opened as soon as a client's first packet looks like PostgreSQL. */
interface EarlyConnection {
  server: BackendServer;
  socket: net.Socket;
  started: number;
  connectedAt: number | null;
  error: NodeJS.ErrnoException | null;
  closed: boolean;
  /** It answered an SSLRequest / GSSENCRequest with 'N': the client's next packet goes to it, no new attempt. */
  kept: boolean;
  /** Opened before the client's startup packet was complete: holds one of the bounded early connects. */
  budgeted?: boolean;
}

/** A server connection's fate noted while nobody else listens to it (early, or kept after 'N'). */
function watchConnection(server: BackendServer, socket: net.Socket, started: number, connectedAt: number | null, kept = false): EarlyConnection {
  const early: EarlyConnection = { server, socket, started, connectedAt, error: null, closed: false, kept };
  if (connectedAt === null) socket.once('connect', () => (early.connectedAt = Date.now()));
  socket.on('error', (error) => (early.error = error));
  socket.once('close', () => (early.closed = true));
  return early;
}

/**
 * What a client asked for before its startup message: replayed on each server tried until one answers.
 * `answered`: the balancer said 'S' itself; each server gets an SSLRequest of its own, and after its 'S'
 * the client's TLS bytes, as a direct TLS client's.
 */
interface Negotiation {
  kind: 'ssl' | 'gssenc' | 'direct' | 'answered';
  /** The 8-byte request, or every byte a (direct or answered) TLS client has sent so far. */
  replay: Buffer;
  /** The server connection the replay went to: a TLS client's next bytes follow it there. */
  sentOn: net.Socket | null;
}

/** The server's one-byte "go ahead" to an SSLRequest ('S') or a GSSENCRequest ('G'); 'N' declines both. */
const ACCEPT_BYTE = { ssl: 0x53, gssenc: 0x47 } as const;
const DECLINE_BYTE = 0x4e;
const REQUEST_NAME = { ssl: 'SSLRequest', gssenc: 'GSSENCRequest', direct: 'direct TLS ClientHello', answered: 'TLS ClientHello' } as const;

/**
 * An encrypted session cannot be parsed: it waits for an answer when the client's last bytes came after
 * the server's last ones, or the server's last bytes are this recent (a long answer still streaming);
 * in Node from its own chunks, in the kernel from the relay's receive timestamps (lastReceived).
 * Bytes a server sends on its own (TLS 1.3 session tickets right after the handshake, a NOTIFY) while a
 * query runs make it look answered: it is then closed like an idle one.
 */
const OPAQUE_QUIET_MS = 50;

/** A server chunk that ends with ReadyForQuery ('Z', length 5, status I/T/E): the server waits for the client. */
function endsWithReadyForQuery(chunk: Buffer): boolean {
  const n = chunk.length;
  return n >= 6 && chunk[n - 6] === 0x5a && chunk.readInt32BE(n - 5) === 5 && (chunk[n - 1] === 0x49 || chunk[n - 1] === 0x54 || chunk[n - 1] === 0x45);
}

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, value]) => [value, name]));

/** How long a hang-up waits for the kernel to send on what the other side had already received. */
const RELAY_DRAIN_MS = 200;

/** The file descriptor under a Node socket (Unix), or null. */
function socketFd(socket: net.Socket): number | null {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}

/**
 * `from`'s data to `to`, with backpressure and end propagation, as pipe() does; `inspect` sees each
 * chunk first and returns false when it took the chunk over (the kernel relay sends it).
 */
function forward(from: net.Socket, to: net.Socket, inspect: (chunk: Buffer) => boolean): void {
  let paused = false;
  from.on('data', (chunk: Buffer) => {
    // Once `to` has ended (its peer hung up) nothing more can reach it: a TLS close_notify, say.
    if (!inspect(chunk) || to.destroyed || to.writableEnded) return;
    if (!to.write(chunk) && !paused) {
      paused = true;
      from.pause();
      to.once('drain', () => {
        paused = false;
        from.resume();
      });
    }
  });
  from.on('end', () => to.end());
}

/**
 * A CancelRequest on a connection of its own, bounded by `timeoutMs` (a server reads it within
 * milliseconds); `done(answered)` once closed: answered when the server closed it after reading it.
 */
function sendCancel(server: BackendServer, packet: Buffer, timeoutMs: number, done: (answered: boolean) => void): void {
  const socket = net.connect({ host: server.config.host, port: server.config.port });
  let answered = false;
  socket.setTimeout(timeoutMs, () => socket.destroy());
  socket.on('error', () => undefined);
  socket.once('connect', () => socket.end(packet));
  socket.once('end', () => (answered = true));
  socket.once('close', (hadError) => done(answered && !hadError));
  socket.resume();
}

export function handleClient(client: net.Socket, context: SessionContext): ClientSession {
  const session = new ClientSession(client, context);
  session.start();
  return session;
}

/** A session relayed by the kernel: its handle, and its last byte counts once closed. */
interface KernelSession {
  relay: KernelRelay;
  handle: RelayHandle;
  final: [number, number, number, number] | null;
  idleTimer: NodeJS.Timeout | null;
}

export class ClientSession {
  private readonly startedAt = Date.now();
  private readonly peer: string;
  private input: Buffer = Buffer.alloc(0);
  private startupPacket: Buffer | null = null;
  private readonly tried = new Set<BackendServer>();
  private attempts = 0;
  private server: BackendServer | null = null;
  private upstream: net.Socket | null = null;
  private connectMs: number | null = null;
  private backendKey: string | null = null;
  private live: LiveSession | null = null;
  private ended = false;
  private phaseTimer: NodeJS.Timeout | null = null;
  /** In the queue, waiting for a server slot. */
  private queued: QueueWaiter | null = null;
  /** Attempts made before the last wait in the queue: each pass through the pool gets its own budget. */
  private attemptsBeforeQueue = 0;
  private pendingClient: Buffer[] = [];
  private pendingClientBytes = 0;
  /** Server asked for a password: bytes flow both ways, the startup can no longer be replayed. */
  private passthrough = false;
  private established = false;
  private early: EarlyConnection | null = null;
  /** The client sent something the server has not answered with ReadyForQuery yet. */
  private queryInFlight = false;
  /** Set when the server was marked down while a query ran: close as soon as it is answered. */
  private closingReason: string | null = null;
  private kernel: KernelSession | null = null;
  /** The kernel relay refused this session once: Node relays it to the end. */
  private kernelRefused = false;
  /** What the client had sent when an encrypted session went to the kernel (its SSLRequest). */
  private clientBytesAtHandoff = 0;
  /** An SSLRequest, GSSENCRequest or direct TLS start waiting for a server's first byte. */
  private negotiation: Negotiation | null = null;
  /** The session is encrypted end to end: opaque bytes from the server's 'S' / 'G' / first TLS byte on. */
  private encryption: 'tls' | 'gss' | null = null;
  private firstChunkSeen = false;
  /** Opaque sessions: who sent the last bytes, and when the server did (closeWhenIdle's heuristic). */
  private serverSpokeLast = true;
  private serverLastAt = 0;
  /** The balancer answered the client's SSLRequest 'S' itself: the client's ClientHello comes next. */
  private awaitingHello = false;
  /** `--tls terminate`: `client` is the balancer's TLS session with the client; servers get TLS of ours. */
  private terminated = false;
  /** The raw server connection under a terminated session's TLS (it holds the server's slot). */
  private upstreamRaw: net.Socket | null = null;
  /** A TLS passthrough session's records (where its handshake ends, its first request). */
  private tlsWatch: TlsSessionWatch | null = null;
  /** This session's server connection holds an early-connect slot until the client's TLS handshake is done. */
  private handshakeSlot = false;
  /** Waiting for an early-connect slot for its TLS handshake. */
  private slotWait: QueueWaiter | null = null;
  /** The TLS client's first request went by (to the kernel relay, or through Node). */
  private tlsRequestRelayed = false;
  /** The server's TLS handshake flight waits for the client's answer (awaitHandshakeAnswer). */
  private handshakeTimer: NodeJS.Timeout | null = null;
  /** A FATAL for the client when the balancer ends its idle session (its server marked down). */
  private farewell: Buffer | null = null;

  constructor(private client: net.Socket, private readonly context: SessionContext) {
    this.peer = `${client.remoteAddress ?? '?'}:${client.remotePort ?? '?'}`;
  }

  start(): void {
    this.context.sessionOpened(this);
    this.client.setNoDelay(true);
    this.listenToClient();
    this.armPhaseTimer();
  }

  private listenToClient(): void {
    // Once the kernel relays the session, Node's socket is closed while the connection lives on.
    this.client.on('error', (error) => this.kernel || this.end(`client error: ${error.message}`));
    this.client.on('close', () => this.kernel || this.end(this.startupPacket || this.established ? 'client closed' : 'client closed before its startup message'));
    this.client.on('data', (chunk: Buffer) => this.onClientData(chunk));
  }

  /**
   * `--tls terminate`: the balancer becomes the client's TLS server (after its own 'S', or on a direct
   * TLS client's ClientHello, `prefix`), and reads the startup from inside it, bounded by the phase.
   */
  private terminateClientTls(prefix: Buffer | null): void {
    const raw = this.client;
    raw.removeAllListeners('data');
    raw.removeAllListeners('close');
    raw.removeAllListeners('error');
    raw.on('error', () => undefined);
    if (!prefix) raw.write(Buffer.from([ACCEPT_BYTE.ssl]));
    const secure = acceptClientTls(raw, this.context.terminate!, prefix);
    this.client = secure;
    this.terminated = true;
    this.input = Buffer.alloc(0);
    this.listenToClient();
    secure.once('secure', () => {
      // PostgreSQL 17 refuses a direct TLS client without ALPN postgresql; so does the balancer.
      if (prefix && secure.alpnProtocol !== POSTGRES_ALPN) this.end('direct TLS client without ALPN postgresql');
    });
  }

  /**
   * A client that connects and says nothing (or too slowly), or whose session no server completes in
   * time, gets one FATAL and is closed, never waited on forever. Time in the queue does not count.
   */
  private armPhaseTimer(): void {
    if (this.phaseTimer) clearTimeout(this.phaseTimer);
    const limit = Math.max(this.context.config.timeouts.connectMs, 1000);
    this.phaseTimer = setTimeout(() => {
      const why = `no complete session after ${limit} ms`;
      if (this.kernel) {
        // A GSS session the kernel took at the server's 'G': a client that never sent its first token
        // holds a server connection for nothing (one that stalls later is bounded by the server's
        // authentication_timeout).
        const [fromClient] = this.kernel.relay.info(this.kernel.handle);
        if (this.encryption && fromClient <= this.clientBytesAtHandoff) this.end(`${why}: no handshake from the client`);
        return;
      }
      // A TLS client that did not finish its handshake in time, or never sent a ClientHello after 'S'.
      if (this.encryption || this.awaitingHello || this.negotiation?.kind === 'answered' || this.negotiation?.kind === 'direct') {
        return this.end(`${why}: the client's TLS handshake did not complete`);
      }
      if (this.terminated && !this.startupPacket) return this.end(`${why}: the client's TLS handshake or startup did not complete`);
      this.reject('08006', `lab balancer ${this.context.config.name}: ${why}`, why);
    }, limit);
  }

  private onClientData(chunk: Buffer): void {
    if (this.awaitingHello) return this.readClientHello(chunk);
    if (this.negotiation) return this.holdDuringNegotiation(this.negotiation, chunk);
    if (this.startupPacket === null) return this.readStartup(chunk);
    if (this.passthrough && this.upstream) {
      this.upstream.write(chunk);
      return;
    }
    this.pendingClient.push(chunk);
    this.pendingClientBytes += chunk.length;
    if (this.pendingClientBytes > MAX_PENDING_CLIENT_BYTES) this.end('client sent too much before the session was ready');
  }

  /**
   * Client bytes before the server's answer: a direct TLS client's go to the server (and are kept for a
   * replay); after an SSLRequest the client should wait for the answer, what it sends anyway waits too.
   */
  private holdDuringNegotiation(negotiation: Negotiation, chunk: Buffer): void {
    if (negotiation.kind === 'direct' || negotiation.kind === 'answered') {
      negotiation.replay = Buffer.concat([negotiation.replay, chunk]);
      if (negotiation.sentOn && negotiation.sentOn === this.upstream) negotiation.sentOn.write(chunk);
    } else {
      this.input = this.input.length ? Buffer.concat([this.input, chunk]) : chunk;
    }
    if (negotiation.replay.length + this.input.length > MAX_PENDING_CLIENT_BYTES) this.end('client sent too much before the server answered');
  }

  /**
   * Ask a server (picked, retried as for a startup) for the encryption the client wants. A TLS client's
   * server connection holds an early-connect slot until its handshake is done: past the cap it waits.
   */
  private negotiate(kind: Negotiation['kind'], replay: Buffer): void {
    this.negotiation = { kind, replay, sentOn: null };
    if (kind === 'gssenc') return this.connectNext();
    this.withHandshakeSlot(() => this.connectNext());
  }

  /** Runs `then` holding an early-connect slot: at once, or once one frees (newest waiter first). */
  private withHandshakeSlot(then: () => void): void {
    if (this.context.takeEarlyBudget()) {
      this.handshakeSlot = true;
      return then();
    }
    // Time waiting for a slot does not count in the connection phase; `timeout queue` bounds it.
    if (this.phaseTimer) clearTimeout(this.phaseTimer);
    this.phaseTimer = null;
    const waiter: QueueWaiter = {
      resume: () => {
        if (this.ended || this.slotWait !== waiter) return this.context.releaseEarlyBudget();
        this.slotWait = null;
        this.handshakeSlot = true;
        this.armPhaseTimer();
        then();
      },
      expire: (waitedMs) => {
        if (this.ended || this.slotWait !== waiter) return;
        this.slotWait = null;
        this.end(`no server connection for a TLS handshake after ${waitedMs} ms: ${LAB_LIMIT_DEFAULTS.earlyConnects} handshakes in progress`);
      },
    };
    this.slotWait = waiter;
    this.context.waitEarlyBudget(waiter);
  }

  /** The client's TLS handshake is done (or its session ended): its slot goes to the next handshake. */
  private releaseHandshakeSlot(): void {
    if (!this.handshakeSlot) return;
    this.handshakeSlot = false;
    this.context.releaseEarlyBudget();
  }

  /**
   * After the balancer's own 'S': the client's bytes are kept until its first TLS record (the ClientHello)
   * is complete, and only then does a server get a connection. Anything but a handshake record is not TLS.
   */
  private readClientHello(chunk: Buffer): void {
    this.input = this.input.length ? Buffer.concat([this.input, chunk]) : chunk;
    if (this.input[0] !== TLS_HANDSHAKE) return this.end('client sent no TLS ClientHello after S');
    if (this.input.length < 5) return;
    const recordEnd = 5 + this.input.readUInt16BE(3);
    if (this.input.length > MAX_PENDING_CLIENT_BYTES) return this.end('client sent too much before the server answered');
    if (this.input.length < recordEnd) return;
    this.awaitingHello = false;
    const hello = this.input;
    this.input = Buffer.alloc(0);
    this.negotiate('answered', hello);
  }

  private readStartup(chunk: Buffer): void {
    if (!this.firstChunkSeen && chunk.length > 0) {
      this.firstChunkSeen = true;
      // PostgreSQL 17's direct TLS: a ClientHello where a length would be (libpq sslnegotiation=direct).
      if (chunk[0] === TLS_HANDSHAKE) return this.context.terminate ? this.terminateClientTls(chunk) : this.negotiate('direct', chunk);
    }
    this.input = this.input.length ? Buffer.concat([this.input, chunk]) : chunk;
    if (!this.early && this.input.length >= 8 && untypedPacketLength(this.input) >= 0) {
      const code = this.input.readInt32BE(4);
      // An SSLRequest the balancer will answer itself needs no server connection yet.
      if ((code === SSL_REQUEST && !this.answersSslRequest()) || code === GSSENC_REQUEST || code >> 16 === 3) this.connectEarly();
    }
    for (;;) {
      const length = untypedPacketLength(this.input);
      if (length === 0) return;
      if (length < 0) return this.reject('08P01', 'invalid startup packet', 'invalid startup packet');
      const packet = Buffer.from(this.input.subarray(0, length));
      this.input = this.input.subarray(length);
      const parsed = parseStartupPacket(packet);
      switch (parsed.kind) {
        case 'ssl':
          if (this.terminated) return this.reject('08P01', 'SSLRequest inside TLS', 'SSLRequest inside TLS');
          if (this.answersSslRequest()) return this.answerSslRequest();
          // Relayed to a server; on its 'N' readStartup goes on with what the client sends next.
          return this.negotiate(parsed.kind, packet);
        case 'gssenc':
          if (this.terminated) return this.reject('08P01', 'GSSENCRequest inside TLS', 'GSSENCRequest inside TLS');
          return this.negotiate(parsed.kind, packet);
        case 'cancel':
          return this.forwardCancel(parsed.key, parsed.packet);
        case 'invalid':
          return this.reject('08P01', parsed.reason, parsed.reason);
        case 'startup':
          this.startupPacket = packet;
          if (this.input.length) this.onClientData(this.input);
          this.input = Buffer.alloc(0);
          return this.connectNext();
      }
    }
  }

  /** The balancer says 'S' itself: it terminates TLS, or every server is known to accept it. */
  private answersSslRequest(): boolean {
    return this.context.terminate !== null || this.context.serversAcceptTls();
  }

  /** 'S' from the balancer: TLS of its own (terminate), or the client's ClientHello awaited (passthrough). */
  private answerSslRequest(): void {
    // A server connection kept after its 'N' to a GSSENCRequest is not needed: the client now wants TLS.
    const kept = this.takeEarly();
    if (kept) kept.socket.destroy();
    if (this.input.length) return this.reject('08P01', 'unencrypted data after SSL request', 'unencrypted data after SSL request');
    if (this.context.terminate) return this.terminateClientTls(null);
    this.client.write(Buffer.from([ACCEPT_BYTE.ssl]));
    this.awaitingHello = true;
  }

  /**
   * A plaintext session's key is known: its server gets the cancel. An encrypted session's key went by
   * inside TLS, so a key nobody knows goes to every server with an encrypted session: PostgreSQL ignores
   * a cancel whose key matches none of its backends. The limiter (cancel-limit.ts) bounds both; a cancel
   * past a bound is dropped: its connection is closed, as PostgreSQL closes every cancel connection.
   */
  private forwardCancel(key: string, packet: Buffer): void {
    const owner = this.context.keyOwner(key);
    const encrypted = owner ? [] : this.context.encryptedSessionServers();
    const verdict = this.context.cancels.admit({ key, owner, encrypted, clientAddress: this.client.remoteAddress ?? '?' });
    if (!verdict.ok) return this.end(verdict.message);
    const timeoutMs = answerBound(this.context.config);
    for (const server of verdict.targets) sendCancel(server, packet, timeoutMs, (answered) => verdict.done(server, answered));
    if (owner) {
      this.server = owner;
      return this.end('cancel request forwarded');
    }
    const skipped = encrypted.length - verdict.targets.length;
    this.end(`cancel request for an unknown key sent to ${verdict.targets.length} server(s) with encrypted sessions${skipped ? ` (${skipped} skipped: too many cancels of ours open)` : ''}`);
  }

  /**
   * Open the server connection while the client is still negotiating (SSLRequest, startup message),
   * as HAProxy does at accept: the TCP handshake overlaps the client's round trips. Only for a client
   * that speaks PostgreSQL, so garbage and silent clients cost no server connection.
   */
  private connectEarly(): void {
    // A complete SSLRequest is taken at once; only partial startup packets spend the bounded budget,
    // so clients that send 8 bytes and stall cannot hold server connections (issue 15).
    if (!this.context.takeEarlyBudget()) return;
    const server = this.context.pick(this.tried);
    if (!server) return this.context.releaseEarlyBudget();
    const socket = connectServer(server);
    socket.setNoDelay(true);
    this.early = watchConnection(server, socket, Date.now(), null);
    this.early.budgeted = true;
  }

  private dropEarly(early: EarlyConnection): void {
    if (early.budgeted) this.context.releaseEarlyBudget();
    early.budgeted = false;
  }

  /** The early (or kept) connection, once, if it is still worth using; a stale one is closed. */
  private takeEarly(): EarlyConnection | null {
    const early = this.early;
    this.early = null;
    if (!early) return null;
    this.dropEarly(early);
    if (!early.server.usable) {
      early.socket.destroy();
      return null;
    }
    return early;
  }

  /** Try the next server, or give the client one clear error when none is left. */
  private connectNext(): void {
    if (this.ended) return;
    const maxAttempts = this.attemptsBeforeQueue + this.context.config.retries + Math.max(1, this.context.serverCount());
    const early = this.takeEarly();
    // The server that just answered 'N' takes the client's next packet: the same attempt goes on.
    if (early?.kept) return this.connectTo(early.server, early);
    let server = early?.server ?? (this.attempts < maxAttempts ? this.context.pick(this.tried) : undefined);
    if (!server && this.attempts < maxAttempts && this.tried.size) {
      // Every usable server was tried once: a retry may still land (HAProxy's `retries`).
      this.tried.clear();
      server = this.context.pick(this.tried);
    }
    // Every server is at its maxconn or said "too many clients": wait for a slot (HAProxy's queue).
    if (!server && this.context.serversBusy()) return this.waitInQueue();
    if (!server) {
      const why = this.attempts ? `no server accepted the session after ${this.attempts} attempt(s)` : 'no server of the pool is up';
      return this.reject('57P03', `lab balancer ${this.context.config.name}: ${why}`, why);
    }
    if (this.attempts > 0) {
      server.retries += 1;
      if (this.server && this.server !== server) server.redispatches += 1;
    }
    this.attempts += 1;
    this.tried.add(server);
    this.server = server;
    this.connectTo(server, early ?? undefined);
  }

  private waitInQueue(): void {
    if (this.phaseTimer) clearTimeout(this.phaseTimer);
    this.phaseTimer = null;
    const waiter: QueueWaiter = {
      resume: () => {
        if (this.ended || this.queued !== waiter) return;
        this.queued = null;
        this.tried.clear();
        this.attemptsBeforeQueue = this.attempts;
        this.armPhaseTimer();
        this.connectNext();
      },
      expire: (waitedMs) => {
        if (this.ended || this.queued !== waiter) return;
        this.queued = null;
        const waited = `${Math.round(waitedMs / 100) / 10} s`;
        this.reject('53300', `lab balancer ${this.context.config.name}: all servers busy, waited ${waited}`, `all servers busy, waited ${waited} in the queue`);
      },
    };
    this.queued = waiter;
    this.context.enqueue(waiter);
  }

  private connectTo(server: BackendServer, early?: EarlyConnection): void {
    const negotiation = this.negotiation;
    const started = early?.started ?? Date.now();
    // A terminated session's server connection becomes TLS after the server's 'S': `upstream` then.
    let upstream: net.Socket = early?.socket ?? connectServer(server);
    const raw = upstream;
    upstream.setNoDelay(true);
    this.upstream = upstream;
    this.upstreamRaw = raw;
    // The balancer's own SSLRequest goes first (a client it answered 'S', a terminated session); the
    // server's 'S' is the balancer's, not relayed.
    let awaitingS = negotiation?.kind === 'answered' || (this.terminated && !negotiation);
    const reader = new MessageReader();
    const buffered: Buffer[] = [];
    let answered = false;
    let failed = false;
    const connectMs = this.context.config.timeouts.connectMs || 5000;
    // Until the server's first byte the startup can be replayed: a server that has not answered within
    // answerMs (a frozen postmaster, a full accept queue) loses the client to the next server, and is
    // marked down as a refused connection is. After its first byte, the connection phase's bound.
    // One timer per attempt, as before: at answerMs it fails a silent server, or re-arms for the rest.
    const answerMs = answerBound(this.context.config);
    const deadline = Date.now() + connectMs;
    // Timers that fire late (this process stalled) are not held against the server (on-time-timeout.ts).
    const onTimer = () => {
      if (!answered) return fail(upstream.connecting ? 'L4TOUT' : 'L7TOUT', `no answer within ${answerMs} ms`, true);
      timer = onTimeTimeout(() => fail('L7TOUT', `no answer within ${connectMs} ms`, false), Math.max(0, deadline - Date.now()));
    };
    let timer = onTimeTimeout(onTimer, answerMs);

    const fail = (status: string, message: string, markDown: boolean) => {
      if (failed || this.ended || this.upstream !== upstream || this.established) return;
      failed = true;
      timer.clear();
      upstream.destroy();
      server.connectionErrors += 1;
      // Mid-authentication the client waits for the server's next message: a FATAL of ours is one.
      if (this.passthrough) {
        const why = `server ${server.name} failed during authentication: ${message}`;
        return this.reject('08006', `lab balancer ${this.context.config.name}: ${why}`, why);
      }
      if (markDown) this.context.markDown(server, status, message);
      this.context.log(`${this.context.config.name} retry client=${this.peer} server=${server.name} reason="${message}"`);
      this.connectNext();
    };

    const sendStartup = () => {
      if (!early?.kept) this.connectMs = Date.now() - started;
      if (awaitingS) return void upstream.write(SSL_REQUEST_PACKET);
      if (negotiation) negotiation.sentOn = upstream;
      upstream.write(negotiation ? negotiation.replay : this.startupPacket!);
    };
    const onError = (error: NodeJS.ErrnoException) => {
      const passive = error.code === 'ECONNREFUSED' || error.code === 'ECONNRESET' || error.code === 'EPIPE';
      fail('L4CON', error.code === 'ECONNREFUSED' ? 'connection refused' : error.message, passive);
    };
    // A server before 17 closes on a direct TLS ClientHello, any server on one it cannot serve: no
    // reason to mark it down for that (it closing on the balancer's own SSLRequest is a startup's close).
    const onClose = () =>
      (negotiation?.kind === 'direct' || negotiation?.kind === 'answered') && !awaitingS
        ? fail('L4CON', `server closed the connection on a ${REQUEST_NAME[negotiation.kind]}`, false)
        : fail('L4CON', `server closed the connection during ${negotiation ? `its ${REQUEST_NAME[negotiation.kind]}` : awaitingS ? 'its SSLRequest' : 'startup'}`, true);
    /** The server's 'S' to the balancer's SSLRequest: the client's ClientHello follows, or the balancer's own TLS. */
    const onOwnSslAnswer = (chunk: Buffer) => {
      awaitingS = false;
      if (chunk.length !== 1 || (chunk[0] !== ACCEPT_BYTE.ssl && chunk[0] !== DECLINE_BYTE)) return fail('L7RSP', 'not an answer to SSLRequest', false);
      server.acceptsTls = chunk[0] === ACCEPT_BYTE.ssl;
      if (!server.acceptsTls) return fail('L7RSP', 'server does not accept TLS (N to an SSLRequest)', false);
      if (negotiation) {
        negotiation.sentOn = upstream;
        return void upstream.write(negotiation.replay);
      }
      // --tls terminate: TLS of the balancer's own, then the client's startup inside it.
      raw.off('data', onData);
      raw.off('error', onError);
      raw.off('close', onClose);
      const secure = connectServerTls(raw, server.config.host, this.context.terminate!);
      upstream = secure;
      this.upstream = secure;
      secure.on('error', onError);
      secure.on('close', onClose);
      secure.on('data', onData);
      secure.once('secureConnect', () => secure.write(this.startupPacket!));
    };
    upstream.on('error', onError);
    upstream.on('close', onClose);
    // An early connection may already be connected, or already failed, before the startup arrived.
    if (early?.error) queueMicrotask(() => onError(early.error!));
    else if (early?.closed) queueMicrotask(onClose);
    else if (early?.connectedAt) sendStartup();
    else upstream.once('connect', sendStartup);
    const onData = (chunk: Buffer): void => {
      // The postmaster forked a backend for this connection: evidence that it is busy, not hung, should
      // the check's own new connection wait meanwhile (BackendServer.answeringSince).
      if (!answered) server.noteAnswered("a client's connection");
      answered = true;
      if (awaitingS) return onOwnSslAnswer(chunk);
      if (negotiation) {
        timer.clear();
        const problem = this.onNegotiationAnswer(negotiation, server, upstream, started, chunk);
        return problem ? fail('L7RSP', problem, false) : undefined;
      }
      let messages: ServerMessage[];
      try {
        messages = reader.push(chunk);
      } catch {
        return fail('L7RSP', 'not a PostgreSQL answer', false);
      }
      // One write per chunk, not per message: a startup answer is a dozen small messages.
      const forward: Buffer[] = [];
      const flush = () => {
        if (forward.length) this.client.write(forward.length === 1 ? forward[0]! : Buffer.concat(forward));
        forward.length = 0;
      };
      for (const [index, message] of messages.entries()) {
        if (this.passthrough) forward.push(message.raw);
        else buffered.push(message.raw);
        switch (message.type) {
          case 'R':
            if (!this.passthrough && message.body.readInt32BE(0) !== 0) {
              // A password exchange cannot be replayed: from here the client talks to this server.
              this.passthrough = true;
              forward.push(...buffered);
              buffered.length = 0;
              flush();
              this.flushPendingClient(upstream);
            }
            break;
          case 'K':
            this.backendKey = message.body.toString('hex');
            break;
          case 'E': {
            const fields = parseErrorFields(message.body);
            // Too many clients: no new connection to it until one of ours closes; the next server, or the queue.
            if (fields.C === '53300') server.noteFull();
            if (!this.passthrough && RETRYABLE_STARTUP_ERRORS.has(fields.C ?? '')) {
              return fail('L7STS', fields.M ?? 'startup error', fields.C === '57P03' || fields.C === '57P01');
            }
            timer.clear();
            forward.push(...buffered);
            flush();
            upstream.destroy();
            return this.end(`server ${server.name} refused the session: ${fields.M ?? 'error'}`, true);
          }
          case 'Z': {
            timer.clear();
            // What came in the same chunk after ReadyForQuery is the session's too: a notice, a FATAL of a
            // terminated backend, the answer to a query the client sent with its password.
            const after = messages.slice(index + 1).map((m) => m.raw);
            const rest = after.length ? Buffer.concat([...after, reader.rest()]) : reader.rest();
            forward.push(...buffered, rest);
            return this.establish(server, upstream, Buffer.concat(forward), rest);
          }
        }
      }
      flush();
    };
    upstream.on('data', onData);
  }

  /**
   * The server's first byte after a request: 'S' / 'G' (or any byte after a direct ClientHello) make the
   * session opaque on this server; 'N' is relayed and the server connection kept for the client's next
   * packet. Anything else is a failure (the next server is tried); its description is returned.
   */
  private onNegotiationAnswer(negotiation: Negotiation, server: BackendServer, upstream: net.Socket, started: number, chunk: Buffer): string | null {
    const { kind } = negotiation;
    // A TLS client's ClientHello went with the replay: any byte is the server's handshake.
    if (kind === 'direct' || kind === 'answered') {
      this.negotiation = null;
      this.relayEncrypted(server, upstream, 'tls', chunk, negotiation.replay);
      return null;
    }
    if (chunk[0] === ACCEPT_BYTE[kind]) {
      this.negotiation = null;
      if (kind === 'ssl') server.acceptsTls = true;
      this.relayEncrypted(server, upstream, kind === 'gssenc' ? 'gss' : 'tls', chunk, null);
      return null;
    }
    if (chunk[0] !== DECLINE_BYTE || chunk.length !== 1) return `not an answer to ${REQUEST_NAME[kind]}`;
    if (kind === 'ssl') server.acceptsTls = false;
    // The plaintext startup follows: no TLS handshake holds this connection any more.
    this.releaseHandshakeSlot();
    upstream.removeAllListeners('data');
    upstream.removeAllListeners('error');
    upstream.removeAllListeners('close');
    this.early = watchConnection(server, upstream, started, Date.now(), true);
    this.upstream = null;
    this.negotiation = null;
    this.client.write(chunk);
    this.readStartup(Buffer.alloc(0));
    return null;
  }

  private flushPendingClient(upstream: net.Socket): void {
    for (const chunk of this.pendingClient) upstream.write(chunk);
    this.pendingClient = [];
    this.pendingClientBytes = 0;
  }

  /**
   * The server said ReadyForQuery: the session is established. Node relays it, counting requests
   * (Query, Sync, FunctionCall) and ReadyForQuery answers; once the session has had
   * `kernelRelayAfter` round trips and waits for the client, the kernel takes over (relayInKernel).
   * `toClient` is the end of the startup answer, which is round trip 0.
   */
  private establish(server: BackendServer, upstream: net.Socket, toClient: Buffer, rest: Buffer): void {
    if (this.ended) return;
    if (this.backendKey) this.context.setKeyOwner(this.backendKey, server);
    this.bindTo(server, upstream);
    const serverFrames = new FrameCounter();
    serverFrames.push(rest, () => undefined);
    if (this.pendingClient.length === 0 && this.context.kernelRelayAfter === 0 && this.relayInKernel(upstream, toClient)) return;
    this.client.write(toClient);
    this.flushPendingClient(upstream);
    this.watchIdleInNode(upstream);
    this.relayInNode(upstream, serverFrames);
  }

  /** The session is established on `server`: its connection-phase listeners go, it counts as a session. */
  private bindTo(server: BackendServer, upstream: net.Socket): void {
    this.established = true;
    handSlot(server, this.upstreamRaw ?? upstream);
    upstream.removeAllListeners('data');
    upstream.removeAllListeners('close');
    upstream.removeAllListeners('error');
    upstream.on('error', (error) => this.end(`server error: ${error.message}`));
    // A client that hung up first is the reason, even when the server's close is reported first.
    upstream.on('close', () => this.end(this.client.readableEnded ? 'client closed' : 'server closed'));
    this.client.removeAllListeners('data');
    // A TLS session's phase ends with the client's handshake (tlsHandshakeDone), a GSS one's with its
    // second flight; a plaintext (or terminated) one's now.
    if (this.encryption === 'gss') this.boundHandshake(upstream);
    else if (!this.encryption && this.phaseTimer) clearTimeout(this.phaseTimer);
    this.live = {
      bytes: () => (this.kernel ? this.kernelBytes(this.kernel) : [this.client.bytesRead, this.client.bytesWritten]),
      close: (reason) => this.end(reason),
      closeWhenIdle: (reason, graceMs) => this.closeWhenIdle(reason, graceMs),
      encrypted: this.encryption !== null,
    };
    server.addSession(this.live);
  }

  /**
   * A GSS session holds a server connection from the server's 'G' on, so a client that sent only a
   * GSSENCRequest must not keep it: the connection phase's bound runs on until the client's second
   * flight (after its first token and the server's answer), then stops. Flights are counted as client
   * bytes that follow server bytes.
   */
  private boundHandshake(upstream: net.Socket): void {
    let flights = 0;
    let serverSpoke = true;
    const onServer = () => {
      serverSpoke = true;
    };
    const onClient = () => {
      if (!serverSpoke) return;
      serverSpoke = false;
      flights += 1;
      if (flights < 2) return;
      if (this.phaseTimer) clearTimeout(this.phaseTimer);
      this.phaseTimer = null;
      upstream.off('data', onServer);
      this.client.off('data', onClient);
    };
    upstream.on('data', onServer);
    this.client.on('data', onClient);
  }

  /** --client-timeout / --server-timeout while Node relays. */
  private watchIdleInNode(upstream: net.Socket): void {
    const { clientMs, serverMs } = this.context.config.timeouts;
    if (clientMs > 0) this.client.setTimeout(clientMs, () => this.end('client timeout'));
    if (serverMs > 0) upstream.setTimeout(serverMs, () => this.end('server timeout'));
  }

  /**
   * An encrypted session from the server's first byte (`fromServer`) on: opaque bytes both ways.
   * GSS has no framing Node can follow: the only moment known to be quiet on both sides is the server's
   * one-byte 'G' itself (the server waits for the client's first token, which the client cannot send
   * before it reads that byte), so the kernel relay takes the session there (it sends the byte once both
   * sockets are in the sockhash). TLS has its record layer (TlsSessionWatch): Node relays the handshake,
   * and the kernel takes the session with the client's first request (relayed by the kernel itself),
   * when the client waits for the answer and the server has not given it yet; a request with a
   * CancelRequest's size stays in Node, to see whether the server answers it. The BPF program's
   * ReadyForQuery notes mean nothing in TLS records (they never change what is relayed), so
   * closeWhenIdle judges such a session from the relay's receive timestamps. `clientTls`: what a direct
   * or answered TLS client sent before the server's first byte (its ClientHello), already relayed.
   */
  private relayEncrypted(server: BackendServer, upstream: net.Socket, kind: 'tls' | 'gss', fromServer: Buffer, clientTls: Buffer | null): void {
    if (this.ended) return;
    this.encryption = kind;
    this.bindTo(server, upstream);
    this.clientBytesAtHandoff = this.client.bytesRead;
    if (kind === 'gss' && fromServer.length === 1 && this.input.length === 0 && this.relayInKernel(upstream, fromServer)) return;
    const watch = kind === 'tls' ? new TlsSessionWatch() : null;
    this.tlsWatch = watch;
    // A direct or answered client's ClientHello, and the server's first TLS bytes (a relayed 'S' is no record).
    if (watch && clientTls) {
      watch.fromClient(clientTls);
      watch.fromServer(fromServer);
      this.awaitHandshakeAnswer(watch);
    }
    this.serverLastAt = Date.now();
    this.client.write(fromServer);
    if (this.input.length) {
      if (watch) this.watchClientTls(watch, upstream, this.input);
      upstream.write(this.input);
    }
    this.input = Buffer.alloc(0);
    this.watchIdleInNode(upstream);
    forward(this.client, upstream, (chunk) => {
      this.serverSpokeLast = false;
      return watch ? this.watchClientTls(watch, upstream, chunk) : true;
    });
    forward(upstream, this.client, (chunk) => {
      this.serverSpokeLast = true;
      this.serverLastAt = Date.now();
      if (watch) {
        watch.fromServer(chunk);
        this.awaitHandshakeAnswer(watch);
      }
      return true;
    });
  }

  /**
   * The server's handshake flight went to a client still in its handshake: it answers within a round
   * trip, or it is closed (a stalled handshake holds its server connection and early-connect slot
   * handshakeAnswerMs at most, 250 ms while others wait for one, not the whole connection phase).
   */
  private awaitHandshakeAnswer(watch: TlsSessionWatch): void {
    if (watch.handshakeDone || this.handshakeTimer) return;
    const limit = this.context.earlyBudgetContended() ? LAB_LIMIT_DEFAULTS.handshakeAnswerContendedMs : LAB_LIMIT_DEFAULTS.handshakeAnswerMs;
    this.handshakeTimer = setTimeout(() => this.end(`the client did not answer the server's TLS handshake within ${limit} ms`), limit);
  }

  private clearHandshakeTimer(): void {
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
  }

  /**
   * A TLS passthrough client's chunk: its handshake done ends the connection phase and frees its slot;
   * its first request, once whole, is where the kernel relay may take the session (the kernel sends the
   * chunk: false). A cancel-sized request stays in Node.
   */
  private watchClientTls(watch: TlsSessionWatch, upstream: net.Socket, chunk: Buffer): boolean {
    this.clearHandshakeTimer();
    const seen = watch.fromClient(chunk);
    if (seen.handshake) this.tlsHandshakeDone();
    if (!seen.requestEnded || this.tlsRequestRelayed) return true;
    this.tlsRequestRelayed = true;
    if (watch.requestLooksLikeCancel) return true;
    return !this.relayInKernel(upstream, null, chunk);
  }

  /** The client's TLS handshake is done: its connection phase ends, its server connection's slot is free. */
  private tlsHandshakeDone(): void {
    if (this.phaseTimer) clearTimeout(this.phaseTimer);
    this.phaseTimer = null;
    this.releaseHandshakeSlot();
  }

  /** Node relays both ways, with backpressure; each server chunk that leaves the client waiting may end it. */
  private relayInNode(upstream: net.Socket, serverFrames: FrameCounter): void {
    const client = this.client;
    const clientFrames = new FrameCounter();
    let requests = 0;
    let answers = 0;
    const countRequest = (type: number) => {
      if (type === 0x51 || type === 0x53 || type === 0x46) requests += 1; // Query, Sync, FunctionCall
    };
    const countAnswer = (type: number) => {
      if (type === 0x5a) answers += 1; // ReadyForQuery
    };
    forward(client, upstream, (chunk) => {
      clientFrames.push(chunk, countRequest);
      this.queryInFlight = true;
      return true;
    });
    forward(upstream, client, (chunk) => {
      const whole = serverFrames.push(chunk, countAnswer);
      const framed = !serverFrames.broken && !clientFrames.broken;
      const waiting = framed ? whole && serverFrames.lastType === 0x5a && answers >= requests : endsWithReadyForQuery(chunk);
      this.queryInFlight = !waiting;
      if (waiting && framed && answers >= this.context.kernelRelayAfter && this.relayInKernel(upstream, chunk)) return false;
      if (waiting && this.closingReason) queueMicrotask(() => this.end(this.closingReason!, true));
      return true;
    });
  }

  /**
   * Hands the established session to the kernel relay, when this balancer has it and nothing stands in
   * the way: IPv6 (the sockhash key is IPv4), bytes still queued in Node. It happens when the client
   * waits for `toClient` (ending with ReadyForQuery, every request answered), which the relay sends once
   * both sockets are in the sockhash: a client that waits for ReadyForQuery sends nothing that could
   * overtake it. A client that pipelines without waiting, in separate writes, exactly while the sockets
   * go into the map (microseconds), could see the relay send a chunk that arrived before the map ahead
   * of one redirected after it: the one ordering the handoff does not guarantee.
   */
  private relayInKernel(upstream: net.Socket, toClient: Buffer | null, toServer: Buffer | null = null): boolean {
    const relay = this.context.relay;
    // Two TLS sessions of the balancer's own (terminate) are relayed by Node: the kernel cannot decrypt.
    if (!relay || this.ended || this.kernelRefused || this.terminated) return false;
    if (this.client.remoteFamily !== 'IPv4' || upstream.remoteFamily !== 'IPv4') return false;
    if (this.client.writableLength > 0 || upstream.writableLength > 0) return false;
    const clientFd = socketFd(this.client);
    const serverFd = socketFd(upstream);
    if (clientFd === null || serverFd === null) return false;
    let handle: RelayHandle;
    try {
      handle = relay.open(clientFd, serverFd, toClient, (side, errno, clientClosed) => this.onRelayHangUp(side, errno, clientClosed), toServer);
    } catch (error) {
      this.kernelRefused = true;
      this.context.log(`${this.context.config.name} kernel relay refused client=${this.peer}, relaying through Node: ${messageOf(error)}`);
      return false;
    }
    this.kernel = { relay, handle, final: null, idleTimer: this.watchKernelIdle(relay, handle) };
    // The relay holds duplicates of both descriptors: Node's sockets go, the connections stay.
    for (const socket of [upstream, this.client]) {
      socket.removeAllListeners('data');
      socket.removeAllListeners('end');
      socket.setTimeout(0);
      socket.destroy();
    }
    upstream.removeAllListeners('close');
    upstream.removeAllListeners('error');
    upstream.on('error', () => undefined);
    this.upstream = null;
    return true;
  }

  private kernelBytes(kernel: KernelSession): [number, number] {
    const [bytesIn, bytesOut] = kernel.final ?? kernel.relay.info(kernel.handle);
    return [bytesIn, bytesOut];
  }

  /**
   * --client-timeout / --server-timeout for a kernel-relayed session: TCP_INFO tells how long each
   * socket has been idle, read every quarter of the shorter timeout (Node's sockets time out to the ms).
   */
  private watchKernelIdle(relay: KernelRelay, handle: RelayHandle): NodeJS.Timeout | null {
    const { clientMs, serverMs } = this.context.config.timeouts;
    const shortest = Math.min(...[clientMs, serverMs].filter((ms) => ms > 0));
    if (!Number.isFinite(shortest)) return null;
    const timer = setInterval(() => {
      const [, , clientIdleMs, serverIdleMs] = relay.info(handle);
      if (clientMs > 0 && clientIdleMs >= clientMs) this.end('client timeout');
      else if (serverMs > 0 && serverIdleMs >= serverMs) this.end('server timeout');
    }, Math.max(10, Math.floor(shortest / 4)));
    timer.unref();
    return timer;
  }

  /**
   * One side of a kernel-relayed session hung up: let what it said reach the other side, then close.
   * A client that closed in order is the reason, even when the server side reports first.
   */
  private onRelayHangUp(side: 0 | 1, errno: number, clientClosed: boolean): void {
    if (clientClosed) return this.drainThenEnd('client closed');
    const who = side === 0 ? 'client' : 'server';
    this.drainThenEnd(errno ? `${who} error: ${ERRNO_NAMES.get(errno) ?? `errno ${errno}`}` : `${who} closed`);
  }

  private drainThenEnd(reason: string, graceful = false): void {
    const kernel = this.kernel!;
    const deadline = Date.now() + RELAY_DRAIN_MS;
    const step = (): void => {
      if (this.ended) return;
      if (kernel.relay.pending(kernel.handle) === 0 || Date.now() >= deadline) return this.end(reason, graceful);
      setTimeout(step, 1);
    };
    step();
  }

  /**
   * As closeWhenIdle, polling `inFlight` where no server chunk can be inspected: the kernel relay's
   * BPF program, or the opaque heuristic of an encrypted session. `close` ends a session found idle.
   */
  private closeWhenPolledIdle(inFlight: () => boolean, close: () => void, reason: string, graceMs: number): void {
    if (!inFlight()) return close();
    const since = Date.now();
    const timer = setInterval(() => {
      if (this.ended) return clearInterval(timer);
      if (!inFlight()) {
        clearInterval(timer);
        close();
      } else if (Date.now() - since >= graceMs) {
        clearInterval(timer);
        this.end(`${reason}, its query unanswered after ${graceMs} ms`);
      }
    }, 5);
  }

  private closeWhenIdle(reason: string, graceMs: number): void {
    // A session the balancer can frame (plaintext, or TLS it terminates) is told why, as PostgreSQL tells
    // its sessions when it shuts down: a FATAL once it is idle, not a silent close.
    if (!this.encryption && this.server) {
      const server = this.server;
      this.farewell = errorResponse('57P01', `terminating connection: lab balancer ${this.context.config.name}: ${reason}: ${server.name} (${server.checkStatus} ${server.checkMessage}); connect again to reach a server that is up`);
    }
    const kernel = this.kernel;
    if (kernel && this.encryption) {
      // The same heuristic as Node's below, from when each socket last received bytes.
      const inFlight = () => {
        const [clientAgoMs, serverAgoMs] = kernel.relay.lastReceived(kernel.handle);
        return clientAgoMs < serverAgoMs || serverAgoMs < OPAQUE_QUIET_MS;
      };
      return this.closeWhenPolledIdle(inFlight, () => this.drainThenEnd(reason, true), reason, graceMs);
    }
    if (kernel) return this.closeWhenPolledIdle(() => kernel.relay.inFlight(kernel.handle), () => this.drainThenEnd(reason, true), reason, graceMs);
    if (this.encryption) {
      const inFlight = () => !this.serverSpokeLast || Date.now() - this.serverLastAt < OPAQUE_QUIET_MS;
      return this.closeWhenPolledIdle(inFlight, () => this.end(reason, true), reason, graceMs);
    }
    if (!this.queryInFlight) return this.end(reason, true);
    this.closingReason = reason;
    setTimeout(() => this.end(`${reason}, its query unanswered after ${graceMs} ms`), graceMs).unref();
  }

  /** A FATAL of our own, then close (a client that sent garbage gets a protocol answer too). */
  private reject(sqlstate: string, message: string, reason: string): void {
    // A client in its TLS handshake (direct, or after the balancer's own 'S') cannot read a plaintext
    // ErrorResponse: it only sees the close. A terminated session's gets it inside TLS.
    const inHandshake = this.awaitingHello || this.negotiation?.kind === 'direct' || this.negotiation?.kind === 'answered';
    if (!this.client.destroyed) this.client.end(inHandshake ? Buffer.alloc(0) : errorResponse(sqlstate, message));
    this.end(reason, true);
  }

  /** Ends the session (the balancer is stopping, say). */
  close(reason: string): void {
    this.end(reason);
  }

  private end(reason: string, graceful = false): void {
    if (this.ended) return;
    this.ended = true;
    if (this.phaseTimer) clearTimeout(this.phaseTimer);
    this.clearHandshakeTimer();
    // The farewell goes only at a message boundary: a graceful end is one of an idle session.
    const farewell = graceful ? this.farewell : null;
    if (this.kernel) {
      if (this.kernel.idleTimer) clearInterval(this.kernel.idleTimer);
      this.kernel.final = this.kernel.relay.close(this.kernel.handle, farewell ?? undefined);
    }
    if (this.upstream) this.upstream.destroy();
    if (this.early) {
      this.dropEarly(this.early);
      this.early.socket.destroy();
    }
    if (this.queued) {
      this.context.leaveQueue(this.queued);
      this.queued = null;
    }
    if (this.slotWait) {
      this.context.leaveEarlyBudgetWait(this.slotWait);
      this.slotWait = null;
    }
    this.releaseHandshakeSlot();
    if (graceful) {
      // Let what we wrote reach the client, but never wait on it forever.
      if (farewell && !this.kernel && !this.client.destroyed) this.client.end(farewell);
      else this.client.end();
      setTimeout(() => this.client.destroy(), 1000).unref();
    } else {
      this.client.destroy();
    }
    if (this.live && this.server) this.server.removeSession(this.live);
    if (this.backendKey && this.server && this.context.keyOwner(this.backendKey) === this.server) {
      this.context.setKeyOwner(this.backendKey, undefined);
    }
    this.context.sessionClosed(this);
    // A cancel-sized first request inside TLS that the server closed on without an answer: a CancelRequest
    // the balancer could not read, which may have gone to a server other than its session's.
    const watch = this.tlsWatch;
    if (watch?.requestLooksLikeCancel && watch.serverAnswers === 0 && this.server && !this.kernel) this.context.encryptedCancelSeen(this.server, this.peer);
    const server = this.server ? this.server.name : '-';
    const connect = this.connectMs === null ? '-' : `${this.connectMs}ms`;
    const [bytesIn, bytesOut] = this.live ? this.live.bytes() : [this.client.bytesRead, this.client.bytesWritten];
    this.context.log(
      `${this.context.config.name} client=${this.peer} server=${server} connect=${connect} duration=${Date.now() - this.startedAt}ms ` +
        `in=${bytesIn} out=${bytesOut} attempts=${this.attempts} enc=${this.terminated ? 'tls-terminated' : this.encryption ?? 'none'} relay=${this.kernel ? 'kernel' : 'node'} end="${reason}"`,
    );
  }
}
