// The read-only stats listener: HTML at the base path, `?format=json`, `?format=csv` or HAProxy's `;csv`,
// and Prometheus text at /metrics. Anything but GET/HEAD is refused. Bounded (STATS_LIMITS): a cap on
// connections that slow clients cannot use to lock a real request out, header / request / idle timeouts
// of a few seconds.
import http from 'node:http';
import type net from 'node:net';
import type { BalancerStats } from './stats-types.js';
import { statsCsv, statsHtml, statsPrometheus } from './stats-format.js';

type Format = 'html' | 'json' | 'csv' | 'metrics';

/** What a request asks for, or undefined for a path we do not serve. */
export function requestedFormat(url: string, baseUri: string): Format | undefined {
  const pathOnly = url.split('?')[0]!;
  if (pathOnly === '/metrics') return 'metrics';
  if (!url.startsWith(baseUri)) return undefined;
  const rest = url.slice(baseUri.length);
  if (rest !== '' && !/^[;?&]/.test(rest)) return undefined;
  if (/(^|[;?&])csv\b|format=csv/.test(rest)) return 'csv';
  if (/(^|[;?&])json\b|format=json/.test(rest)) return 'json';
  return 'html';
}

/**
 * Bounds of the stats listener: it can never take the descriptors the client listener needs (the
 * balancer's maxconn leaves FD_RESERVE for it), nor keep a slow client for long.
 */
export const STATS_LIMITS = {
  /** Connections at once (one more for an instant: a new one is accepted, then one is closed); see capConnections. */
  maxConnections: 32,
  /** The whole request head must arrive within this. */
  headersTimeoutMs: 3000,
  /** The whole request, body included. */
  requestTimeoutMs: 5000,
  /** An idle keep-alive connection. */
  keepAliveTimeoutMs: 2000,
  /** A socket with no traffic at all (a slow reader of the answer, too). */
  idleTimeoutMs: 5000,
} as const;

export function createStatsServer(uri: string, snapshot: () => BalancerStats): http.Server {
  const base = uri || '/';
  const joiner = base.includes('?') ? '&' : '?';
  const server = http.createServer({
    headersTimeout: STATS_LIMITS.headersTimeoutMs,
    requestTimeout: STATS_LIMITS.requestTimeoutMs,
    keepAliveTimeout: STATS_LIMITS.keepAliveTimeoutMs,
    // Node checks the two timeouts above every 30 s unless told otherwise.
    connectionsCheckingInterval: 500,
  }, (request, response) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('read-only: GET or HEAD\n');
      return;
    }
    // Also at "/" when a configuration file moved the page (`stats uri /haproxy?stats`): tools that
    // read `<stats>/?format=json` work with every instance.
    const format = requestedFormat(request.url ?? '/', base) ?? requestedFormat(request.url ?? '/', '/');
    if (!format) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: the stats are at ${base}\n`);
      return;
    }
    const stats = snapshot();
    const [type, body] =
      format === 'json' ? ['application/json', `${JSON.stringify(stats, null, 2)}\n`]
      : format === 'csv' ? ['text/csv; charset=utf-8', statsCsv(stats)]
      : format === 'metrics' ? ['text/plain; version=0.0.4; charset=utf-8', statsPrometheus(stats)]
      : ['text/html; charset=utf-8', statsHtml(stats, { json: `${base}${joiner}format=json`, csv: `${base};csv`, metrics: '/metrics' })];
    response.writeHead(200, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
    response.end(request.method === 'HEAD' ? undefined : body);
  });
  capConnections(server, STATS_LIMITS.maxConnections);
  server.setTimeout(STATS_LIMITS.idleTimeoutMs, (socket) => socket.destroy());
  return server;
}

/**
 * At most `max` connections, without letting slow clients lock a real request out (Node's own
 * maxConnections closes every new connection while 32 slow ones wait out their 3 s head timeout). At
 * the cap, a new connection replaces the oldest one that is not being answered (its request head still
 * incomplete, or idle between requests), and is closed at once only when all are being answered, which
 * lasts as long as writing a few kB. A real client sends its head as it connects, so it is answered
 * unless `max` newer connections arrive in that instant; a slow client is closed sooner, never later.
 */
function capConnections(server: http.Server, max: number): void {
  /** Open connections in the order they came, each with its requests being answered. */
  const open = new Map<net.Socket, { answering: number }>();
  server.on('connection', (socket: net.Socket) => {
    if (open.size >= max) {
      const idle = [...open].find(([, state]) => state.answering === 0)?.[0];
      if (!idle) {
        socket.destroy();
        return;
      }
      open.delete(idle);
      idle.destroy();
    }
    open.set(socket, { answering: 0 });
    socket.once('close', () => open.delete(socket));
  });
  server.on('request', (request: http.IncomingMessage, response: http.ServerResponse) => {
    const state = open.get(request.socket);
    if (!state) return;
    state.answering += 1;
    response.once('close', () => {
      state.answering -= 1;
    });
  });
}
