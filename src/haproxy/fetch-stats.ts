// HAProxy's statistics as a BalancerStats, so `lab stat balancer`, the bench and the tests read HAProxy
// and the built-in balancer the same way. Source: the CSV export of the stats page (`<uri>;csv`),
// columns looked up by name from its header line (their order changes between HAProxy versions).
import type { BalancerServerStats, BalancerStats, ServerState } from '../balancer/stats-types.js';
import { LabError, messageOf } from '../common/errors.js';
import { httpGet, type HttpAnswer } from '../common/http-get.js';

export interface FetchHaproxyStatsOptions {
  /** The proxy to report (`listen NAME`); default the first proxy with servers other than the stats one. */
  proxy?: string;
  /** Shown as `listen` (HAProxy's CSV does not say where a proxy binds). */
  listen?: string;
  timeoutMs?: number;
}

type Row = Record<string, string>;

/** Rows of HAProxy's CSV, keyed by the header's column names. */
export function parseHaproxyCsv(text: string): Row[] {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  const header = lines[0];
  if (!header?.startsWith('# ')) throw new Error('not HAProxy CSV: the first line does not start with "# pxname"');
  const columns = header.slice(2).split(',');
  return lines.slice(1).map((line) => {
    const cells = line.split(',');
    const row: Row = {};
    columns.forEach((column, i) => {
      if (column) row[column] = cells[i] ?? '';
    });
    return row;
  });
}

/** "UP 1/3" (UP, going down), "DOWN 1/2" (DOWN, coming up), "MAINT (via x)", "no check" (always UP). */
export function haproxyServerState(status: string): ServerState {
  const word = status.trim().split(/\s+/)[0]?.toUpperCase() ?? '';
  if (word === 'UP' || word === 'NO') return 'UP';
  if (word === 'DOWN') return 'DOWN';
  if (word === 'MAINT') return 'MAINT';
  if (word === 'DRAIN') return 'DRAIN';
  if (word === 'NOLB') return 'NOLB';
  return 'DOWN';
}

function num(row: Row, column: string): number {
  const value = Number(row[column]);
  return Number.isFinite(value) && row[column] !== '' ? value : 0;
}

/** HAProxy's queue (BACKEND qcur/qmax) and the frontend's maxconn (slim). */
function queueOf(backend: Row | undefined, frontend: Row | undefined): Pick<BalancerStats, 'queueCurrent' | 'queueMax' | 'maxconn'> {
  return {
    ...(backend ? { queueCurrent: num(backend, 'qcur'), queueMax: num(backend, 'qmax') } : {}),
    ...(frontend && frontend.slim ? { maxconn: num(frontend, 'slim') } : {}),
  };
}

function toServerStats(row: Row): BalancerServerStats {
  // "* L4CON" means a check is running; the status is the last completed one's.
  const checkStatus = (row.check_status ?? '').replace(/^\*\s*/, '');
  return {
    name: row.svname ?? '',
    address: row.addr ?? '',
    status: haproxyServerState(row.status ?? ''),
    checkStatus,
    checkMessage: row.last_chk || row.check_desc || '',
    lastChangeS: num(row, 'lastchg'),
    downtimeS: num(row, 'downtime'),
    checksFailed: num(row, 'chkfail'),
    downTransitions: num(row, 'chkdown'),
    sessionsCurrent: num(row, 'scur'),
    sessionsMax: num(row, 'smax'),
    sessionsTotal: num(row, 'stot'),
    bytesIn: num(row, 'bin'),
    bytesOut: num(row, 'bout'),
    connectionErrors: num(row, 'econ'),
    retries: num(row, 'wretr'),
    redispatches: num(row, 'wredis'),
    weight: num(row, 'weight'),
    ...(row.slim ? { maxconn: num(row, 'slim') } : {}),
    role: null,
    lagBytes: null,
  };
}

/** Stats of one HAProxy proxy from CSV text; `uptimeS` is left to the caller (the CSV has none). */
export function haproxyStatsFromCsv(csv: string, options: { proxy?: string; listen?: string } = {}): BalancerStats {
  const rows = parseHaproxyCsv(csv);
  const isSummary = (row: Row): boolean => row.svname === 'FRONTEND' || row.svname === 'BACKEND';
  const proxy = options.proxy ?? rows.find((row) => !isSummary(row))?.pxname ?? rows.find((row) => row.svname === 'BACKEND')?.pxname;
  if (!proxy) throw new Error('HAProxy reports no proxy with servers');
  const mine = rows.filter((row) => row.pxname === proxy);
  if (mine.length === 0) throw new Error(`HAProxy reports no proxy named '${proxy}'`);
  const frontend = mine.find((row) => row.svname === 'FRONTEND') ?? mine.find((row) => row.svname === 'BACKEND');
  return {
    name: proxy,
    engine: 'haproxy',
    listen: options.listen ?? '',
    uptimeS: 0,
    sessionsCurrent: frontend ? num(frontend, 'scur') : 0,
    sessionsTotal: frontend ? num(frontend, 'stot') : 0,
    ...queueOf(mine.find((row) => row.svname === 'BACKEND'), mine.find((row) => row.svname === 'FRONTEND')),
    servers: mine.filter((row) => !isSummary(row)).map(toServerStats),
  };
}

/** "uptime = </b> 0d 0h01m23s" on the HTML page. */
function uptimeFromHtml(html: string): number {
  const match = /uptime = (?:<\/b>)?\s*(\d+)d (\d+)h(\d+)m(\d+)s/.exec(html);
  if (!match) return 0;
  const [, d, h, m, s] = match.map(Number) as [number, number, number, number, number];
  return ((d * 24 + h) * 60 + m) * 60 + s;
}

async function get(url: string, timeoutMs: number): Promise<string> {
  let response: HttpAnswer;
  try {
    response = await httpGet(url, timeoutMs);
  } catch (error) {
    throw new LabError('STATE', `Cannot read HAProxy stats at ${url}: ${messageOf(error)}: is that HAProxy running?`);
  }
  if (response.status < 200 || response.status > 299) throw new LabError('STATE', `HAProxy stats at ${url} answered HTTP ${response.status}: check the stats uri`);
  return response.text;
}

/** `statsUrl` is the stats page, e.g. http://127.0.0.1:6080/stats. */
export async function fetchHaproxyStats(statsUrl: string, options: FetchHaproxyStatsOptions = {}): Promise<BalancerStats> {
  const timeoutMs = options.timeoutMs ?? 2000;
  const csvUrl = `${statsUrl};csv;norefresh`;
  const [csv, html] = await Promise.all([get(csvUrl, timeoutMs), get(`${statsUrl};norefresh`, timeoutMs).catch(() => '')]);
  let stats: BalancerStats;
  try {
    stats = haproxyStatsFromCsv(csv, options);
  } catch (error) {
    throw new LabError('STATE', `Unexpected answer from ${csvUrl}: ${messageOf(error)}`);
  }
  return { ...stats, uptimeS: uptimeFromHtml(html) };
}
