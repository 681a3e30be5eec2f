// Reads a HAProxy configuration for the subset a PostgreSQL TCP balancer uses (the seed's haproxy.cfg
// and what Patroni-style setups add) into a BalancerConfig. Both the 1.5 syntax (`listen pgsql
// 0.0.0.0:15432`) and the current one (`listen pgsql` + `bind ...`) are read. Nothing is dropped
// silently: a directive we do not act on is named in `warnings` with its line number.
import { LabError } from '../common/errors.js';
import {
  HAPROXY_CHECK_DEFAULTS,
  type BalancerConfig,
  type CheckSettings,
  type ServerConfig,
} from '../balancer/config.js';
import { parseHaproxyTime } from './time-units.js';
import { tokenizeHaproxyConfig, type ConfigLine } from './tokenize.js';

export interface ParseHaproxyOptions {
  /** The balancer's name; default the name of the balanced proxy (`listen pgsql` -> "pgsql"). */
  name?: string;
  /** Accepted for callers that have one; a configuration file's pool is static (its server lines). */
  labDir?: string;
}

export interface ParsedHaproxyConfig extends BalancerConfig {
  /** `stats refresh` of the stats listener, in seconds; null when not set. */
  statsRefreshS: number | null;
  /** "0.0.0.0:15432 (listen pgsql)" for every listener that is reachable from other hosts. */
  nonLoopbackAddresses: string[];
}

/** Keywords that start a section. Only global, defaults, listen, frontend and backend mean anything here. */
const SECTION_KEYWORDS = new Set([
  'global', 'defaults', 'listen', 'frontend', 'backend',
  'userlist', 'peers', 'resolvers', 'mailers', 'program', 'http-errors', 'ring', 'cache', 'fcgi-app', 'crt-store', 'traces',
]);

/** Directives that do not change how a TCP balancer in the lab behaves, and why. */
const HARMLESS: Record<string, string> = {
  log: 'the balancer writes its own log in the lab dir',
  'log-format': 'the balancer writes its own log in the lab dir',
  'option tcplog': 'the balancer logs one line per connection anyway',
  'option httplog': 'the balancer logs one line per connection anyway',
  'option dontlognull': 'the balancer logs one line per connection anyway',
  daemon: 'the lab runs balancers in the background itself',
  user: 'the balancer runs as the user who starts it',
  group: 'the balancer runs as the user who starts it',
  uid: 'the balancer runs as the user who starts it',
  gid: 'the balancer runs as the user who starts it',
  chroot: 'the balancer does not chroot',
  pidfile: 'the lab keeps the pid in its own state file',
  nbproc: 'the balancer is one process',
  nbthread: 'the balancer is one process',
  quiet: 'the balancer logs in the lab dir',
  'stats socket': 'no admin socket; use the stats address',
  'stats timeout': 'no admin socket; use the stats address',
  'stats show-legends': 'the stats page always shows what it can',
  'stats hide-version': 'the stats page shows no version',
};

/** Server/default-server options that take a value; any other unknown option is taken as a flag. */
const VALUED_SERVER_OPTIONS = new Set([
  'maxconn', 'minconn', 'maxqueue', 'slowstart', 'port', 'addr', 'on-marked-down', 'on-marked-up', 'on-error',
  'error-limit', 'observe', 'agent-port', 'agent-inter', 'agent-addr', 'agent-send', 'resolvers', 'init-addr',
  'cookie', 'id', 'verify', 'track', 'source', 'namespace', 'proto', 'pool-max-conn', 'pool-purge-delay',
  'init-state', 'ca-file', 'crt', 'sni', 'alpn', 'check-sni', 'check-alpn', 'check-proto', 'resolve-prefer',
  'resolve-net', 'max-reuse', 'tcp-ut', 'ws', 'redir', 'hash-key', 'set-proxy-v2-tlv-fmt', 'log-proto',
]);

interface ServerOptions {
  interMs?: number;
  fastinterMs?: number;
  downinterMs?: number;
  rise?: number;
  fall?: number;
  weight?: number;
  check?: boolean;
  backup?: boolean;
  disabled?: boolean;
  maxconn?: number;
}

interface Timeouts {
  connect?: number;
  client?: number;
  server?: number;
  check?: number;
  queue?: number;
}

/** What defaults pass on to proxies, and what each proxy section may set. */
interface ProxySettings {
  mode: string;
  balance?: 'roundrobin' | 'leastconn';
  retries?: number;
  redispatch?: boolean;
  timeouts: Timeouts;
  checkType?: 'pgsql' | 'tcp';
  checkUser?: string;
  /** `maxconn` of a defaults / listen / frontend section: client connections at once. */
  maxconn?: number;
  defaultServer: ServerOptions;
}

interface Bind {
  host: string;
  port: number;
  line: number;
}

interface ParsedServer {
  name: string;
  host: string;
  port: number;
  options: ServerOptions;
  line: number;
}

interface Proxy {
  kind: 'listen' | 'frontend' | 'backend';
  name: string;
  line: number;
  settings: ProxySettings;
  binds: Bind[];
  servers: ParsedServer[];
  backendRef?: { name: string; line: number };
  stats: { enabled: boolean; uri?: string; refreshS?: number };
}

export function parseHaproxyConfig(text: string, options: ParseHaproxyOptions = {}): ParsedHaproxyConfig {
  const warnings: string[] = [];
  const proxies = readSections(tokenizeHaproxyConfig(text), warnings);
  return buildConfig(proxies, warnings, options);
}

/** Listeners bound to something other than loopback, so the CLI can warn before exposing them. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function fail(line: number, message: string): never {
  throw new LabError('USAGE', `line ${line}: ${message}`);
}

function unsupported(line: number, what: string): string {
  const reason = HARMLESS[what];
  return `line ${line}: '${what}' is not supported and was ignored${reason ? ` (harmless: ${reason})` : ''}`;
}

/** The name a warning uses for a directive: `option redispatch`, `timeout queue`, `http-request`. */
function directiveName(words: string[]): string {
  const [first, second] = words;
  if (second && ['option', 'no', 'stats', 'timeout', 'tcp-request', 'http-check', 'tcp-check'].includes(first!)) {
    if (first === 'no' && words[2]) return `${first} ${second} ${words[2]}`;
    return `${first} ${second}`;
  }
  return first!;
}

function emptySettings(): ProxySettings {
  return { mode: 'tcp', timeouts: {}, defaultServer: {} };
}

function cloneSettings(settings: ProxySettings): ProxySettings {
  return { ...settings, timeouts: { ...settings.timeouts }, defaultServer: { ...settings.defaultServer } };
}

function readSections(lines: ConfigLine[], warnings: string[]): Proxy[] & { globalMaxconn?: number } {
  const proxies: Proxy[] & { globalMaxconn?: number } = [];
  let defaults = emptySettings();
  // Where directives go: a proxy, the defaults being built, global, or an ignored section.
  let target: { kind: 'global' } | { kind: 'defaults'; settings: ProxySettings } | { kind: 'proxy'; proxy: Proxy } | { kind: 'ignored' } | null = null;

  for (const { line, words } of lines) {
    const keyword = words[0]!;
    if (SECTION_KEYWORDS.has(keyword)) {
      if (keyword === 'global') {
        target = { kind: 'global' };
      } else if (keyword === 'defaults') {
        // A new defaults section replaces the previous one for the proxies that follow it.
        defaults = emptySettings();
        target = { kind: 'defaults', settings: defaults };
        if (words.length > 2) warnings.push(unsupported(line, `defaults ${words.slice(2).join(' ')}`));
      } else if (keyword === 'listen' || keyword === 'frontend' || keyword === 'backend') {
        const name = words[1];
        if (!name) fail(line, `'${keyword}' needs a name (e.g. '${keyword} pgsql')`);
        const proxy: Proxy = {
          kind: keyword, name, line, settings: cloneSettings(defaults), binds: [], servers: [], stats: { enabled: false },
        };
        // HAProxy 1.5 syntax: the listen address follows the name.
        if (words[2] && keyword !== 'backend') {
          for (const address of words[2].split(',')) proxy.binds.push(parseBind(address, line));
          if (words.length > 3) warnings.push(unsupported(line, `${keyword} ${name} ${words.slice(3).join(' ')}`));
        }
        proxies.push(proxy);
        target = { kind: 'proxy', proxy };
      } else {
        warnings.push(`line ${line}: section '${keyword}' is not supported and was ignored with everything in it`);
        target = { kind: 'ignored' };
      }
      continue;
    }
    if (!target) {
      fail(line, `'${keyword}' is outside of any section: start with 'global', 'defaults', 'listen', 'frontend' or 'backend'`);
    }
    if (target.kind === 'ignored') continue;
    if (target.kind === 'global') {
      // The process-wide limit: the listener's maxconn when its own section sets none.
      if (keyword === 'maxconn') proxies.globalMaxconn = parseCount(words[1], line, 'maxconn', 1);
      else warnings.push(unsupported(line, directiveName(words)));
      continue;
    }
    if (target.kind === 'defaults') {
      if (!applySetting(target.settings, words, line, warnings)) warnings.push(unsupported(line, directiveName(words)));
      continue;
    }
    applyProxyDirective(target.proxy, words, line, warnings);
  }
  return proxies;
}

/** Settings valid in defaults and in proxies. False when the directive is not one of them. */
function applySetting(settings: ProxySettings, words: string[], line: number, warnings: string[]): boolean {
  const [keyword, arg] = words;
  switch (keyword) {
    case 'mode':
      if (arg !== 'tcp' && arg !== 'http') fail(line, `'mode ${arg ?? ''}' is not a mode: expected tcp or http`);
      settings.mode = arg;
      return true;
    case 'balance':
      if (arg !== 'roundrobin' && arg !== 'leastconn') {
        warnings.push(`line ${line}: 'balance ${arg ?? ''}' is not supported and roundrobin is used instead (supported: roundrobin, leastconn)`);
        settings.balance = 'roundrobin';
      } else {
        settings.balance = arg;
      }
      return true;
    case 'retries':
      settings.retries = parseCount(arg, line, 'retries');
      return true;
    case 'maxconn':
      settings.maxconn = parseCount(arg, line, 'maxconn', 1);
      return true;
    case 'timeout':
      return applyTimeout(settings, words.slice(1), line);
    case 'contimeout':
      settings.timeouts.connect = parseTime(arg, line, 'contimeout');
      return true;
    case 'clitimeout':
      settings.timeouts.client = parseTime(arg, line, 'clitimeout');
      return true;
    case 'srvtimeout':
      settings.timeouts.server = parseTime(arg, line, 'srvtimeout');
      return true;
    case 'option':
    case 'no':
      return applyOption(settings, words, line, warnings);
    case 'default-server':
      Object.assign(settings.defaultServer, parseServerOptions(words.slice(1), line, warnings));
      return true;
    default:
      return false;
  }
}

function applyTimeout(settings: ProxySettings, words: string[], line: number): boolean {
  const [which, value] = words;
  if (which !== 'connect' && which !== 'client' && which !== 'server' && which !== 'check' && which !== 'queue') return false;
  settings.timeouts[which] = parseTime(value, line, `timeout ${which}`);
  return true;
}

function applyOption(settings: ProxySettings, words: string[], line: number, warnings: string[]): boolean {
  const negated = words[0] === 'no';
  const optionWords = negated ? words.slice(1) : words;
  if (optionWords[0] !== 'option') return false;
  const name = optionWords[1];
  if (name === 'redispatch') {
    settings.redispatch = !negated;
    if (optionWords[2]) warnings.push(unsupported(line, `option redispatch ${optionWords[2]} (redispatch interval)`));
    return true;
  }
  if (name === 'pgsql-check' && !negated) {
    if (optionWords[2] !== 'user' || !optionWords[3]) fail(line, `'option pgsql-check' needs 'user <name>' (e.g. 'option pgsql-check user postgres')`);
    settings.checkType = 'pgsql';
    settings.checkUser = optionWords[3];
    if (optionWords.length > 4) warnings.push(unsupported(line, `option pgsql-check ${optionWords.slice(4).join(' ')}`));
    return true;
  }
  if (name === 'tcp-check' && !negated) {
    settings.checkType = 'tcp';
    return true;
  }
  return false;
}

function applyProxyDirective(proxy: Proxy, words: string[], line: number, warnings: string[]): void {
  const [keyword, arg] = words;
  if (applySetting(proxy.settings, words, line, warnings)) return;
  switch (keyword) {
    case 'bind': {
      if (proxy.kind === 'backend') fail(line, `'bind' is not allowed in backend '${proxy.name}': put it in a frontend or listen section`);
      if (!arg) fail(line, `'bind' needs an address (e.g. 'bind 127.0.0.1:15432')`);
      for (const address of arg.split(',')) proxy.binds.push(parseBind(address, line));
      if (words.length > 2) warnings.push(unsupported(line, `bind options '${words.slice(2).join(' ')}'`));
      return;
    }
    case 'server': {
      if (proxy.kind === 'frontend') fail(line, `'server' is not allowed in frontend '${proxy.name}': put it in a backend or listen section`);
      proxy.servers.push(parseServer(words, line, warnings));
      return;
    }
    case 'default_backend':
    case 'use_backend': {
      if (proxy.kind !== 'frontend') {
        warnings.push(unsupported(line, keyword));
        return;
      }
      if (!arg) fail(line, `'${keyword}' needs a backend name`);
      if (keyword === 'use_backend' && words.length > 2) {
        // Conditional routing needs ACLs; the balancer routes every connection to one backend.
        warnings.push(`line ${line}: 'use_backend ${arg} ${words.slice(2).join(' ')}' is not supported (conditions are not evaluated) and was ignored`);
        return;
      }
      if (keyword === 'use_backend' || !proxy.backendRef) proxy.backendRef = { name: arg, line };
      return;
    }
    case 'stats':
      applyStats(proxy, words, line, warnings);
      return;
    default:
      warnings.push(unsupported(line, directiveName(words)));
  }
}

function applyStats(proxy: Proxy, words: string[], line: number, warnings: string[]): void {
  const [, what, value] = words;
  switch (what) {
    case 'enable':
      proxy.stats.enabled = true;
      return;
    case 'uri':
      if (!value || !value.startsWith('/')) fail(line, `'stats uri' needs a path starting with / (e.g. 'stats uri /stats')`);
      proxy.stats.uri = value;
      proxy.stats.enabled = true;
      return;
    case 'refresh': {
      const ms = parseTime(value, line, 'stats refresh');
      proxy.stats.refreshS = Math.max(1, Math.round(ms / 1000));
      return;
    }
    default:
      warnings.push(unsupported(line, directiveName(words)));
  }
}

function parseServer(words: string[], line: number, warnings: string[]): ParsedServer {
  const [, name, address] = words;
  if (!name || !address) fail(line, `'server' needs a name and an address (e.g. 'server replica1 127.0.0.1:5433 check')`);
  const { host, port } = splitAddress(address, line, `server ${name}`);
  if (port === undefined) fail(line, `server ${name} has no port in '${address}': write HOST:PORT`);
  return { name, host, port, options: parseServerOptions(words.slice(3), line, warnings), line };
}

function parseServerOptions(words: string[], line: number, warnings: string[]): ServerOptions {
  const options: ServerOptions = {};
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    const next = (): string => {
      const value = words[++i];
      if (value === undefined) fail(line, `'${word}' needs a value`);
      return value;
    };
    switch (word) {
      case 'check': options.check = true; break;
      case 'no-check': options.check = false; break;
      case 'backup': options.backup = true; break;
      case 'no-backup': options.backup = false; break;
      case 'disabled': options.disabled = true; break;
      case 'enabled': options.disabled = false; break;
      case 'inter': options.interMs = parseTime(next(), line, 'inter'); break;
      case 'fastinter': options.fastinterMs = parseTime(next(), line, 'fastinter'); break;
      case 'downinter': options.downinterMs = parseTime(next(), line, 'downinter'); break;
      case 'rise': options.rise = parseCount(next(), line, 'rise', 1); break;
      case 'fall': options.fall = parseCount(next(), line, 'fall', 1); break;
      case 'maxconn': options.maxconn = parseCount(next(), line, 'maxconn', 0); break;
      case 'weight': {
        const weight = parseCount(next(), line, 'weight');
        if (weight > 256) fail(line, `weight ${weight} is out of range: expected 0 to 256`);
        options.weight = weight;
        break;
      }
      default:
        if (VALUED_SERVER_OPTIONS.has(word) && i + 1 < words.length) {
          warnings.push(unsupported(line, `${word} ${words[++i]}`));
        } else {
          warnings.push(unsupported(line, word));
        }
    }
  }
  return options;
}

function parseBind(address: string, line: number): Bind {
  const { host, port } = splitAddress(address, line, 'bind');
  if (port === undefined) fail(line, `no port in listen address '${address}': write HOST:PORT (e.g. 127.0.0.1:15432)`);
  return { host, port, line };
}

/** "127.0.0.1:5433", "*:6080", ":15432", "ipv6@:::15432", "[::1]:15432". `*` and empty mean every IPv4 address. */
function splitAddress(raw: string, line: number, what: string): { host: string; port: number | undefined } {
  const address = raw.replace(/^(ipv4|ipv6|tcp|tcp4|tcp6)@/, '');
  if (/^(unix|abns|fd|sockpair|udp[46]?|quic[46]?)@/.test(address) || address.startsWith('/')) {
    fail(line, `${what}: '${raw}' is not a TCP address: only HOST:PORT is supported`);
  }
  let host: string;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(address);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2];
  } else {
    const colon = address.lastIndexOf(':');
    if (colon < 0) {
      host = address;
    } else {
      host = address.slice(0, colon);
      portText = address.slice(colon + 1);
    }
  }
  if (host === '' || host === '*') host = '0.0.0.0';
  if (portText === undefined || portText === '') return { host, port: undefined };
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) {
    fail(line, `${what}: invalid port '${portText}' in '${raw}': expected an integer from 1 to 65535 (port ranges are not supported)`);
  }
  return { host, port };
}

function parseTime(value: string | undefined, line: number, what: string): number {
  const ms = value === undefined ? undefined : parseHaproxyTime(value);
  if (ms === undefined) fail(line, `'${what}' needs a time like 10000, 10s, 500ms or 1m, got '${value ?? ''}'`);
  return ms;
}

function parseCount(value: string | undefined, line: number, what: string, min = 0): number {
  const n = Number(value);
  if (value === undefined || !/^\d+$/.test(value) || n < min) fail(line, `'${what}' needs an integer >= ${min}, got '${value ?? ''}'`);
  return n;
}

/** The proxy that balances PostgreSQL connections, with its backend, and the stats proxy. */
function buildConfig(proxies: Proxy[] & { globalMaxconn?: number }, warnings: string[], options: ParseHaproxyOptions): ParsedHaproxyConfig {
  const globalMaxconn = proxies.globalMaxconn;
  const isStats = (p: Proxy): boolean => p.stats.enabled;
  const statsProxy = proxies.find(isStats);
  for (const p of proxies.filter(isStats).slice(1)) {
    warnings.push(`line ${p.line}: second stats listener '${p.name}' was ignored: only one is served`);
  }

  const byName = new Map(proxies.filter((p) => p.kind !== 'frontend').map((p) => [p.name, p]));
  const candidates = proxies.filter((p) => !isStats(p) && p.kind !== 'backend');
  for (const p of candidates.filter((c) => c.settings.mode !== 'tcp')) {
    warnings.push(`line ${p.line}: ${p.kind} '${p.name}' is in mode ${p.settings.mode} and was ignored: only mode tcp proxies are balanced`);
  }
  const tcpCandidates = candidates.filter((c) => c.settings.mode === 'tcp');
  const front = tcpCandidates[0];
  if (!front) {
    const line = proxies[0]?.line ?? 1;
    fail(line, `no 'listen' or 'frontend' section in mode tcp: add e.g. 'listen pgsql' with 'bind 127.0.0.1:15432' and server lines`);
  }
  for (const p of tcpCandidates.slice(1)) {
    warnings.push(`line ${p.line}: ${p.kind} '${p.name}' was ignored: only the first tcp proxy ('${front.name}') is balanced`);
  }

  let back: Proxy = front;
  if (front.kind === 'frontend') {
    if (!front.backendRef) fail(front.line, `frontend '${front.name}' has no 'default_backend': name the backend with the servers`);
    const found = byName.get(front.backendRef.name);
    if (!found) fail(front.backendRef.line, `backend '${front.backendRef.name}' is not defined: add a 'backend ${front.backendRef.name}' section`);
    back = found;
  }
  for (const p of proxies.filter((x) => x.kind === 'backend' && x !== back)) {
    warnings.push(`line ${p.line}: backend '${p.name}' is not used by '${front.name}' and was ignored`);
  }

  const bind = front.binds[0];
  if (!bind) fail(front.line, `${front.kind} '${front.name}' has no listen address: add 'bind 127.0.0.1:15432' (or '${front.kind} ${front.name} 127.0.0.1:15432')`);
  for (const extra of front.binds.slice(1)) {
    warnings.push(`line ${extra.line}: extra listen address ${extra.host}:${extra.port} was ignored: only the first one (${bind.host}:${bind.port}) is served`);
  }
  if (back.servers.length === 0) fail(back.line, `${back.kind} '${back.name}' has no servers: add e.g. 'server replica1 127.0.0.1:5433 check'`);

  const settings = back.settings;
  const check = proxyCheckSettings(settings);
  const servers = back.servers.map((s) => toServerConfig(s, settings, check));

  let stats: ParsedHaproxyConfig['stats'] = null;
  if (statsProxy) {
    const statsBind = statsProxy.binds[0];
    if (!statsBind) fail(statsProxy.line, `stats listener '${statsProxy.name}' has no address: add 'bind 127.0.0.1:8081'`);
    stats = { host: statsBind.host, port: statsBind.port, uri: statsProxy.stats.uri ?? '/' };
  }

  const timeouts = {
    connectMs: settings.timeouts.connect ?? 0,
    // The client side belongs to the frontend in HAProxy.
    clientMs: front.settings.timeouts.client ?? 0,
    serverMs: settings.timeouts.server ?? 0,
    ...(settings.timeouts.queue !== undefined ? { queueMs: settings.timeouts.queue } : {}),
  };
  for (const [which, value] of Object.entries({ connect: timeouts.connectMs, client: timeouts.clientMs, server: timeouts.serverMs })) {
    if (value === 0) warnings.push(`line ${front.line}: no 'timeout ${which}' for '${front.name}': 0 (no timeout) is used, as in HAProxy`);
  }

  const nonLoopbackAddresses = [
    ...(isLoopbackHost(bind.host) ? [] : [`${bind.host}:${bind.port} (${front.kind} ${front.name})`]),
    ...(stats && statsProxy && !isLoopbackHost(stats.host) ? [`${stats.host}:${stats.port} (stats ${statsProxy.name})`] : []),
  ];

  return {
    name: options.name ?? front.name,
    listen: { host: bind.host, port: bind.port },
    stats,
    algorithm: settings.balance ?? 'roundrobin',
    pool: { source: 'static', servers },
    check,
    retries: settings.retries ?? 3,
    redispatch: settings.redispatch ?? false,
    timeouts,
    ...((front.settings.maxconn ?? globalMaxconn) !== undefined ? { maxconn: front.settings.maxconn ?? globalMaxconn } : {}),
    relay: 'auto',
    warnings,
    statsRefreshS: statsProxy?.stats.refreshS ?? null,
    nonLoopbackAddresses,
  };
}

/**
 * HAProxy's check timing: fastinter and downinter default to inter. The check timeout is `timeout
 * check` when set (HAProxy adds the connect time, bounded by min(timeout connect, inter)); without it
 * the whole check must finish within inter.
 */
function checkTiming(options: ServerOptions, timeouts: Timeouts): Pick<CheckSettings, 'interMs' | 'fastinterMs' | 'downinterMs' | 'rise' | 'fall' | 'timeoutMs'> {
  const interMs = options.interMs ?? HAPROXY_CHECK_DEFAULTS.interMs;
  const timeoutMs = timeouts.check ?? interMs;
  return {
    interMs,
    fastinterMs: options.fastinterMs ?? interMs,
    downinterMs: options.downinterMs ?? interMs,
    rise: options.rise ?? HAPROXY_CHECK_DEFAULTS.rise,
    fall: options.fall ?? HAPROXY_CHECK_DEFAULTS.fall,
    timeoutMs,
  };
}

function proxyCheckSettings(settings: ProxySettings): CheckSettings {
  return {
    type: settings.checkType ?? 'tcp',
    user: settings.checkUser ?? 'postgres',
    database: 'postgres',
    ...checkTiming(settings.defaultServer, settings.timeouts),
    maxLagBytes: null,
    maxLagSeconds: null,
  };
}

function toServerConfig(server: ParsedServer, settings: ProxySettings, check: CheckSettings): ServerConfig {
  const merged: ServerOptions = { ...settings.defaultServer, ...server.options };
  const timing = checkTiming(merged, settings.timeouts);
  const checkOverrides: Partial<CheckSettings> = {};
  for (const key of Object.keys(timing) as (keyof typeof timing)[]) {
    if (timing[key] !== check[key]) checkOverrides[key] = timing[key];
  }
  return {
    name: server.name,
    host: server.host,
    port: server.port,
    weight: merged.weight ?? 1,
    backup: merged.backup ?? false,
    disabled: merged.disabled ?? false,
    check: merged.check ?? false,
    checkOverrides,
    // maxconn 0 is HAProxy's "no limit".
    ...(merged.maxconn ? { maxconn: merged.maxconn } : {}),
  };
}
