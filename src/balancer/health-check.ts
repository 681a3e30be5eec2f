// Health checks, one kind per function, each bounded by the check timeout and returning what HAProxy's
// stats would show (L4OK, L4CON, L4TOUT, L7OK, L7STS, L7RSP) with a message a person can act on.
import net from 'node:net';
import pg from 'pg';
import { destroySocket, labClientConfig } from '../postgres/client.js';
import { dialectFor } from '../postgres/dialect.js';
import type { CheckSettings } from './config.js';
import type { CheckOutcome } from './backend-server.js';
import { lsnToNumber } from '../postgres/recovery.js';
import { MessageReader, TERMINATE, parseErrorFields, startupMessage } from './protocol.js';
import { onTimeTimeout } from '../common/on-time-timeout.js';

export interface Checker {
  /** `down`: the server is DOWN (out of the pool), so only whether it can come back matters. */
  run(state?: { down: boolean }): Promise<CheckOutcome>;
  close(): void;
}

export interface Target {
  host: string;
  port: number;
  /** The libpq environment the check's logins use (the lab's), captured when the balancer started. */
  clientEnv?: NodeJS.ProcessEnv;
}

/** The role a pool accepts: a primary never enters the replica pool and vice versa. */
/** The primary's end of WAL as primary-lsn.ts last sampled it. */
export interface PrimarySample {
  /** pg_current_wal_lsn() of the primary, in bytes. */
  lsn: number;
  /** Date.now() when the answer came back. */
  at: number;
  /** The primary's name in the pool or the lab, for messages. */
  name: string;
}

export type ExpectedRole = 'primary' | 'replica' | null;

export function createChecker(
  target: Target,
  settings: CheckSettings,
  options: {
    expectedRole: ExpectedRole;
    onLost: (message: string) => void;
    /** The primary's WAL end sampled by the balancer, when it knows the primary and a --max-lag is set. */
    primary?: () => PrimarySample | null;
    /**
     * Why the server is busy rather than hung since `since`, or null: its postmaster answered other new
     * connections of the balancer's meanwhile, cancels or clients' (BackendServer.answeringSince).
     */
    busySince?: (since: number) => string | null;
  },
): Checker {
  const busySince = options.busySince ?? (() => null);
  switch (settings.type) {
    case 'tcp':
      return { run: () => tcpCheck(target, settings.timeoutMs), close: () => undefined };
    case 'pgsql':
      return { run: () => busyProbe(target, settings, busySince), close: () => undefined };
    case 'sql':
      return new SqlChecker(target, settings, options.expectedRole, options.onLost, options.primary ?? (() => null), busySince);
    case 'none':
      return { run: async () => ({ ok: true, status: '', message: 'no check' }), close: () => undefined };
  }
}

function l4Failure(error: NodeJS.ErrnoException): CheckOutcome {
  return { ok: false, status: 'L4CON', message: error.code === 'ECONNREFUSED' ? 'connection refused' : error.message };
}

function tcpCheck(target: Target, timeoutMs: number): Promise<CheckOutcome> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: target.host, port: target.port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ ok: false, status: 'L4TOUT', message: `no connection after ${timeoutMs} ms` });
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.end();
      resolve({ ok: true, status: 'L4OK', message: 'connection accepted' });
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      resolve(l4Failure(error));
    });
  });
}

/**
 * HAProxy's pgsql-check: a StartupMessage with only `user`; `R` = healthy, `E` = down with the
 * server's message. Unlike HAProxy, a trusted login is ended with Terminate so the server logs nothing.
 */
export function pgsqlCheck(target: Target, settings: Pick<CheckSettings, 'user' | 'timeoutMs'>): Promise<CheckOutcome> {
  return new Promise((resolve) => {
    let done = false;
    const socket = net.connect({ host: target.host, port: target.port });
    const finish = (outcome: CheckOutcome) => {
      if (done) return;
      done = true;
      timer.clear();
      resolve(outcome);
    };
    // A timer that fires late (a busy or starved event loop) must not beat an answer already received.
    const timer = onTimeTimeout(() => {
      if (done) return;
      // Read before destroy(), which clears `connecting`: no SYN-ACK (L4TOUT, a host cut off) vs accepted and silent (L7TOUT, frozen).
      const status = socket.connecting ? 'L4TOUT' : 'L7TOUT';
      socket.destroy();
      finish({ ok: false, status, message: `not answering: a new connection got no answer within ${settings.timeoutMs} ms`, hung: true });
    }, settings.timeoutMs);
    const reader = new MessageReader();
    socket.once('connect', () => socket.write(startupMessage({ user: settings.user })));
    socket.on('data', (chunk) => {
      let messages;
      try {
        messages = reader.push(chunk);
      } catch {
        socket.destroy();
        return finish({ ok: false, status: 'L7RSP', message: 'not a PostgreSQL answer' });
      }
      const first = messages[0];
      if (!first) {
        if (reader.rest().length && !'RE'.includes(String.fromCharCode(reader.rest()[0]!))) {
          socket.destroy();
          finish({ ok: false, status: 'L7RSP', message: 'not a PostgreSQL answer' });
        }
        return;
      }
      if (first.type === 'R') {
        // AuthenticationOk: say goodbye properly. A password request: just close, which PostgreSQL
        // treats as a client that gave up, without logging anything.
        if (first.body.length >= 4 && first.body.readInt32BE(0) === 0) socket.end(TERMINATE);
        else socket.end();
        return finish({ ok: true, status: 'L7OK', message: 'PostgreSQL server is ok' });
      }
      socket.destroy();
      if (first.type === 'E') {
        const fields = parseErrorFields(first.body);
        return finish({ ok: false, status: 'L7STS', message: fields.M ?? 'error response', ...(fields.C === CANNOT_CONNECT_NOW ? { cannotConnectNow: true } : {}) });
      }
      finish({ ok: false, status: 'L7RSP', message: `unexpected message type "${first.type}"` });
    });
    socket.on('error', (error) => {
      finish(l4Failure(error));
    });
    socket.on('close', () => finish({ ok: false, status: 'L7RSP', message: 'connection closed without an answer' }));
  });
}

/** SQLSTATE of "the database system is starting up" (also: in recovery mode, shutting down). */
const CANNOT_CONNECT_NOW = '57P03';
/** The error code openCheckConnection gives a login that got a TCP connection and no session in time. */
const LOGIN_TIMEOUT = 'LOGIN_TIMEOUT';
/**
 * pgsqlCheck, except that a new connection left unanswered while the postmaster answered the cancels
 * the balancer relays to it is an ordinary failed check (`fall` applies), not `hung` (DOWN at once).
 */
async function busyProbe(target: Target, settings: CheckSettings, busySince: (since: number) => string | null): Promise<CheckOutcome> {
  const started = Date.now();
  const probe = await pgsqlCheck(target, settings);
  const busy = probe.hung ? busySince(started) : null;
  return busy ? { ok: false, status: probe.status, message: `${probe.message}, but ${busy}` } : probe;
}

interface RoleRow {
  recovery: boolean;
  /** max_connections - superuser_reserved_connections: what ordinary clients may open. */
  client_slots: number | null;
  lag_bytes: string | null;
  lag_s: number | null;
  /** A replica's replay LSN as text, and now() - its last replayed commit's timestamp. */
  replay_lsn: string | null;
  replay_age_s: number | null;
  /** A primary's current WAL file name starts with its timeline, in hex. */
  tli_hex: string | null;
}

/**
 * Logs in and asks the server its role and replay lag. The connection stays open between checks:
 * when it drops (the server was killed) we hear it at once, not `fall` checks later. A kept backend
 * answers even when the postmaster is frozen (SIGSTOP) or its accept queue is full, so each check also
 * proves that a NEW connection gets an answer (pgsqlCheck's startup, closed at the server's first
 * message, before any password): no answer within the check timeout is `hung`, DOWN at once.
 * A server DOWN without a kept connection gets the login alone: it is the new connection this check
 * proves answers, and a probe beside it would only double the connections to a server that refuses
 * them or is starting up (and, waited for first, delay the login by a round trip: issue 22).
 */
class SqlChecker implements Checker {
  private client: pg.Client | null = null;
  /** A login under way, shared by the checks that need it: never two logins at once. */
  private connecting: Promise<pg.Client> | null = null;
  private sql = '';
  private closed = false;

  constructor(
    private readonly target: Target,
    private readonly settings: CheckSettings,
    private readonly expectedRole: ExpectedRole,
    private readonly onLost: (message: string) => void,
    private readonly primary: () => PrimarySample | null,
    private readonly busySince: (since: number) => string | null,
  ) {}

  async run(state = { down: false }): Promise<CheckOutcome> {
    const established = this.client !== null;
    if (!established && state.down) return this.query();
    const started = Date.now();
    const query = this.query();
    const probe = await pgsqlCheck(this.target, this.settings);
    // Refused, reset: the role query says it too (or will, at the next check); a hang only the probe sees.
    if (!probe.hung) return query;
    // A login under way is not waited for: it may take longer than the check timeout (see
    // openCheckConnection), and the next check takes it over.
    if (!established) return { ...probe, role: null, backendsSilent: false };
    const outcome = await query;
    // A hang the balancer itself may cause: its new connection waited behind the cancels and the client
    // connections we relay. The role query answered and the postmaster answered other new connections of
    // ours meanwhile: busy, not hung, not DOWN.
    const busy = outcome.ok ? this.busySince(started) : null;
    if (busy) return { ...outcome, message: `${outcome.message}; ${probe.message}, but ${busy}` };
    // The role query on the check's established session left unanswered too: the backends are silent as well.
    return { ...probe, role: null, backendsSilent: outcome.status === 'L7TOUT' };
  }

  private async query(): Promise<CheckOutcome> {
    let client: pg.Client;
    try {
      client = this.client ?? (await (this.connecting ??= this.connect().finally(() => {
        this.connecting = null;
      })));
    } catch (error) {
      return this.connectFailure(error);
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer after ${this.settings.timeoutMs} ms`)), this.settings.timeoutMs);
      });
      const result = await Promise.race([client.query<RoleRow>(this.sql), timeout]);
      return this.judge(result.rows[0]!);
    } catch (error) {
      this.drop(client);
      const message = error instanceof Error ? error.message : String(error);
      return { ok: false, status: /no answer/.test(message) ? 'L7TOUT' : 'L7STS', message, role: null };
    } finally {
      clearTimeout(timer);
    }
  }

  private judge(row: RoleRow): CheckOutcome {
    const role = row.recovery ? 'replica' : 'primary';
    const extra = { clientSlots: row.client_slots === null ? null : Number(row.client_slots) };
    const lagBytes = row.lag_bytes === null ? (row.recovery ? 0 : null) : Math.max(0, Number(row.lag_bytes));
    if (this.expectedRole && role !== this.expectedRole) {
      const message = role === 'primary'
        ? 'is a primary (not in recovery): not eligible for the replica pool'
        : 'is a replica (in recovery): not eligible for the primary pool';
      return { ok: false, status: 'L7STS', message, role, lagBytes, ...extra };
    }
    if (role === 'replica') {
      const own = lagBytes ?? 0;
      let lagS = row.lag_s === null ? 0 : Math.max(0, Number(row.lag_s));
      // Against the primary (a sample younger than two intervals): what it had written and this replica
      // has not replayed. A replica back from a freeze hears of that WAL only as it reads it.
      const primary = this.primary();
      const behind = primary && row.replay_lsn ? primary.lsn - lsnToNumber(row.replay_lsn) : null;
      const byPrimary = behind !== null && behind >= own;
      const bytes = byPrimary ? behind : own;
      // Replay short of the primary's WAL end: its last replayed commit's age counts, even when it has
      // replayed all it received.
      if (behind !== null && behind > 0 && row.replay_age_s !== null) lagS = Math.max(lagS, Number(row.replay_age_s));
      const fmt = (n: number) => `${n} bytes${n >= 100_000 ? ` (${(n / 1048576).toFixed(1)} MB)` : ''}`;
      const shown = fmt(bytes);
      // Which reference gave the figure: the primary's sample, or the WAL end the replica heard of (that
      // sample is up to two intervals old, so a replica streaming normally is often nearer to it).
      const reference = byPrimary
        ? ` behind the primary ${primary!.name}`
        : behind !== null ? ` behind the WAL end the replica heard of (the primary ${primary!.name}'s sample: ${fmt(Math.max(0, behind))})` : '';
      const { maxLagBytes, maxLagSeconds } = this.settings;
      if (maxLagBytes !== null && bytes > maxLagBytes) {
        return { ok: true, drain: true, status: 'L7OK', message: `replay lag ${shown}${reference}, over the maximum ${maxLagBytes}`, role, lagBytes: bytes, ...extra };
      }
      if (maxLagSeconds !== null && lagS > maxLagSeconds) {
        const why = behind !== null && behind > 0 && (row.lag_s === null || Number(row.lag_s) < lagS) ? ` (last replayed commit; ${shown} behind the primary ${primary!.name})` : '';
        return { ok: true, drain: true, status: 'L7OK', message: `replay lag ${lagS.toFixed(1)} s${why}, over the maximum ${maxLagSeconds} s`, role, lagBytes: bytes, ...extra };
      }
      return { ok: true, status: 'L7OK', message: `replica, replay lag ${shown}${reference}`, role, lagBytes: bytes, ...extra };
    }
    const timeline = row.tli_hex ? parseInt(row.tli_hex, 16) : null;
    return { ok: true, status: 'L7OK', message: timeline ? `primary, timeline ${timeline}` : 'primary', role, lagBytes, timeline, ...extra };
  }

  private async connect(): Promise<pg.Client> {
    const { client, versionNum } = await openCheckConnection(this.target, this.settings, (client) => {
      const lost = (why: string) => {
        if (this.client !== client) return;
        this.drop(client);
        if (!this.closed) this.onLost(why);
      };
      client.on('error', (error) => lost(`check connection lost: ${error.message}`));
      client.on('end', () => lost('check connection closed by the server'));
    });
    this.sql = roleQuery(versionNum);
    if (this.closed) {
      client.end().catch(() => undefined);
      throw new Error('check stopped');
    }
    this.client = client;
    return client;
  }

  private connectFailure(error: unknown): CheckOutcome {
    const e = error as NodeJS.ErrnoException & { code?: string };
    if (e.code === 'ECONNREFUSED') return { ok: false, status: 'L4CON', message: 'connection refused', role: null };
    if (e.code === LOGIN_TIMEOUT) return { ok: false, status: 'L7TOUT', message: e.message, role: null };
    if (/timeout/i.test(e.message ?? '') || e.code === 'ETIMEDOUT') return { ok: false, status: 'L4TOUT', message: `no connection after ${this.settings.timeoutMs} ms`, role: null };
    // A password the server refused, or none to give: a status of its own, so nobody reads it as a dead server.
    if ((typeof e.code === 'string' && e.code.startsWith('28')) || /password|SASL|SCRAM/i.test(e.message ?? '')) {
      return { ok: false, status: 'L7AUTH', message: `authentication failed: ${e.message}`, role: null };
    }
    // A FATAL from the server (starting up, too many connections) is a layer-7 answer.
    const sqlstate = typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : null;
    return { ok: false, status: sqlstate ? 'L7STS' : 'L4CON', message: e.message, role: null, ...(sqlstate === CANNOT_CONNECT_NOW ? { cannotConnectNow: true } : {}) };
  }

  /** Forget a connection; `hard` when it may be stuck (a timed-out query), else a clean Terminate. */
  private drop(client: pg.Client, hard = true): void {
    if (this.client === client) this.client = null;
    // A stuck socket would keep end() waiting: destroy the stream under it.
    if (hard) destroySocket(client);
    client.end().catch(() => undefined);
  }

  close(): void {
    this.closed = true;
    if (this.client) this.drop(this.client, false);
  }
}

/**
 * server_version as every server reports it at login (ParameterStatus: "15.18 (Debian ...)", "9.6.24",
 * "17beta1") as server_version_num would give it; null when it does not parse.
 */
export function versionNumOf(serverVersion: string | undefined): number | null {
  const m = /^(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(serverVersion ?? '');
  if (!m) return null;
  const [major, second, third] = [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)];
  return major >= 10 ? major * 10000 + second : major * 10000 + second * 100 + third;
}

/**
 * A check's login to a server (the check's user and database, the lab's password and TLS), and the
 * server's version number, from what the server reports at login (a query only if it did not: one
 * round trip less for a server coming back). `watch` sets the client's error and end handlers before it
 * connects; a failed login is ended here.
 *
 * Bounds, after HAProxy's (a check's connect gets min(timeout connect, inter), its answer timeout check
 * more): the TCP connect gets the check timeout (a host cut off is L4TOUT as soon as the probe would
 * say it), the login after it inter + the check timeout. A login is several round trips (TLS, SCRAM, the
 * new backend's start; the first one after a restart rebuilds the server's catalog caches) and on a
 * loaded machine can outlast the check timeout: a slow login is no dead server, and failing it cost a
 * downinter and a new login before the server could come back (issue 22). A server that accepts and
 * never answers is still the probe's to find within the check timeout.
 */
export async function openCheckConnection(
  target: Target,
  settings: Pick<CheckSettings, 'user' | 'database' | 'timeoutMs' | 'interMs'>,
  watch: (client: pg.Client) => void,
): Promise<{ client: pg.Client; versionNum: number }> {
  const loginMs = settings.interMs + settings.timeoutMs;
  const client = new pg.Client(labClientConfig({
    host: target.host,
    port: target.port,
    user: settings.user,
    database: settings.database,
    connectionTimeoutMillis: loginMs,
    application_name: 'lab-balancer-check',
  }, target.clientEnv));
  watch(client);
  const connection = (client as unknown as { connection: NodeJS.EventEmitter & { stream: net.Socket } }).connection;
  let reported: string | undefined;
  connection.on('parameterStatus', (message: { parameterName: string; parameterValue: string }) => {
    if (message.parameterName === 'server_version') reported = message.parameterValue;
  });
  // The TCP socket itself: after the server's 'S' the connection's stream becomes the TLS socket over it.
  const socket = connection.stream;
  let unconnected = false;
  const connectTimer = setTimeout(() => {
    if (!socket.connecting) return;
    unconnected = true;
    socket.destroy();
  }, settings.timeoutMs);
  try {
    await client.connect();
    const known = versionNumOf(reported);
    if (known !== null) return { client, versionNum: known };
    const version = await client.query<{ v: string }>('SELECT current_setting(\'server_version_num\') AS v');
    return { client, versionNum: Number(version.rows[0]!.v) };
  } catch (error) {
    client.end().catch(() => undefined);
    if (unconnected) throw Object.assign(new Error(`no connection after ${settings.timeoutMs} ms`), { code: 'ETIMEDOUT' });
    if (/timeout/i.test(error instanceof Error ? error.message : String(error))) {
      throw Object.assign(new Error(`connection accepted, no login within ${loginMs} ms`), { code: LOGIN_TIMEOUT });
    }
    throw error;
  } finally {
    clearTimeout(connectTimer);
  }
}

/**
 * pg_is_in_recovery(), a primary's timeline and, on a replica, replay lag in bytes and seconds (names by
 * version). The lag is measured from the primary's end of WAL as the replica last heard it
 * (pg_stat_wal_receiver.latest_end_lsn: every message of the walsender carries it), not only from what
 * the replica received: a replica resumed after a freeze has received little of what it missed, and
 * received minus replayed would call it caught up while it is megabytes behind (the stale-reads drill).
 * That WAL end is old too right after a freeze (the messages read first were sent before it), so the
 * replay LSN and the last replayed commit's age come back as well, for the balancer to measure against
 * the primary's pg_current_wal_lsn() when it samples one (primary-lsn.ts).
 */
function roleQuery(versionNum: number): string {
  const d = dialectFor(Math.floor(versionNum / 10000));
  const [replay, diff, walFile] = [d.lastReplayLsn, d.lsnDiff, d.currentWalFile];
  const ahead = `greatest(${d.lastReceiveLsn}, (SELECT latest_end_lsn FROM pg_stat_wal_receiver))`;
  return `SELECT pg_is_in_recovery() AS recovery,
    current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int AS client_slots,
    CASE WHEN NOT pg_is_in_recovery() THEN substr(${walFile}, 1, 8) END AS tli_hex,
    CASE WHEN pg_is_in_recovery() THEN ${diff}(${ahead}, ${replay})::bigint::text END AS lag_bytes,
    CASE WHEN pg_is_in_recovery() AND ${ahead} IS DISTINCT FROM ${replay}
      THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END AS lag_s,
    CASE WHEN pg_is_in_recovery() THEN ${replay}::text END AS replay_lsn,
    CASE WHEN pg_is_in_recovery() THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END AS replay_age_s`;
}
