// A BalancerConfig and its resolved pool as haproxy.cfg for HAProxy 2.6, so `--engine haproxy` and the
// bench run the real HAProxy with the same servers, knobs and stats address as the built-in balancer.
import type { BalancerConfig, CheckSettings, ServerConfig } from '../balancer/config.js';
import { formatHaproxyTime } from './time-units.js';

export interface RenderHaproxyOptions {
  /** `stats socket` path in global (admin level), for `show stat` / `disable server` by hand. */
  statsSocket?: string;
  /** One log line per connection on HAProxy's stdout (`log stdout`), which the engine sends to a file. */
  logToStdout?: boolean;
  /** `stats refresh` of the HTML page, in seconds. */
  statsRefreshS?: number | null;
}

/** HAProxy names: letters, digits, '-', '_', '.', ':'. Anything else becomes '_'. */
export function haproxyName(name: string): string {
  return name.replace(/[^A-Za-z0-9_.:-]/g, '_');
}

function address(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function serverLine(server: ServerConfig, check: CheckSettings, withChecks: boolean): string {
  const knobs = { ...check, ...server.checkOverrides };
  const words = ['server', haproxyName(server.name), address(server.host, server.port)];
  if (withChecks && server.check) {
    words.push(
      'check',
      'inter', formatHaproxyTime(knobs.interMs),
      'fastinter', formatHaproxyTime(knobs.fastinterMs),
      'downinter', formatHaproxyTime(knobs.downinterMs),
      'rise', String(knobs.rise),
      'fall', String(knobs.fall),
    );
  }
  words.push('weight', String(server.weight));
  if (server.backup) words.push('backup');
  if (server.disabled) words.push('disabled');
  if (server.maxconn) words.push('maxconn', String(server.maxconn));
  return `    ${words.join(' ')}`;
}

/**
 * Our 0 means "no timeout". HAProxy also waits forever when a timeout is left out, but then warns
 * "missing timeouts for proxy" on every start, so 0 is written as HAProxy's longest whole-day time
 * (24 days; it takes at most 2^31-1 ms), which no lab session reaches. Never a short stand-in: the seed's
 * `timeout client 1m` cut every session idle for a minute (REFERENCE.md 3).
 */
export const HAPROXY_NO_TIMEOUT = '24d';

function haproxyTimeout(ms: number): string {
  return ms > 0 ? formatHaproxyTime(ms) : HAPROXY_NO_TIMEOUT;
}

/** The check section lines: pgsql-check for pgsql (and sql, which HAProxy cannot do), none for tcp. */
function checkLines(check: CheckSettings): string[] {
  switch (check.type) {
    case 'pgsql':
      return [`    option pgsql-check user ${check.user}`];
    case 'sql':
      return [
        '    # The built-in sql check (role and replay lag) has no HAProxy equivalent: pgsql-check is the closest.',
        `    option pgsql-check user ${check.user}`,
      ];
    case 'tcp':
      return ['    # plain TCP connect check'];
    case 'none':
      return ['    # no health checks: every server is always UP'];
  }
}

export function renderHaproxyConfig(config: BalancerConfig, servers: ServerConfig[], options: RenderHaproxyOptions = {}): string {
  const check = config.check;
  const withChecks = check.type !== 'none';
  const lines: string[] = [
    `# Rendered by pglab for balancer '${config.name}' (HAProxy 2.6). Regenerated on every start: edit the lab, not this file.`,
    'global',
  ];
  if (options.logToStdout) lines.push('    log stdout format raw local0');
  if (options.statsSocket) lines.push(`    stats socket ${options.statsSocket} mode 600 level admin`);
  lines.push(
    '',
    'defaults',
    '    mode tcp',
  );
  if (options.logToStdout) lines.push('    log global', '    option tcplog');
  lines.push(
    `    retries ${config.retries}`,
    config.redispatch ? '    option redispatch' : '    # no option redispatch: a failed connect is retried on the same server',
    `    timeout connect ${haproxyTimeout(config.timeouts.connectMs)}`,
    `    timeout client ${haproxyTimeout(config.timeouts.clientMs)}`,
    `    timeout server ${haproxyTimeout(config.timeouts.serverMs)}`,
    `    timeout check ${formatHaproxyTime(check.timeoutMs)}`,
    ...(config.timeouts.queueMs ? [`    timeout queue ${formatHaproxyTime(config.timeouts.queueMs)}`] : []),
    '',
    `listen ${haproxyName(config.name)}`,
    `    bind ${address(config.listen.host, config.listen.port)}`,
    `    balance ${config.algorithm}`,
    ...(config.maxconn ? [`    maxconn ${config.maxconn}`] : []),
    ...(withChecks ? checkLines(check) : checkLines({ ...check, type: 'none' })),
  );
  if (servers.length === 0) {
    // HAProxy accepts a listen without servers; connections are refused until the pool has some.
    lines.push('    # the pool is empty');
  }
  for (const server of servers) lines.push(serverLine(server, check, withChecks));
  if (config.stats) {
    lines.push(
      '',
      // Proxy names must be unique: a balancer named "stats" gets a differently named stats frontend.
      `frontend ${haproxyName(config.name) === 'stats' ? 'stats_page' : 'stats'}`,
      '    mode http',
      `    bind ${address(config.stats.host, config.stats.port)}`,
      '    timeout client 30s',
      '    stats enable',
      `    stats uri ${config.stats.uri}`,
      '    stats show-legends',
      ...(options.statsRefreshS ? [`    stats refresh ${options.statsRefreshS}s`] : []),
      '    http-request use-service prometheus-exporter if { path /metrics }',
    );
  }
  return `${lines.join('\n')}\n`;
}
