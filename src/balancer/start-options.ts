// What `lab balancer start` accepts, checked and turned into a BalancerConfig: the flags, or a HAProxy
// configuration file with explicit flags overriding it; and the same options as flags again for the
// detached child.
import path from 'node:path';
import { BALANCER_TLS_MODES, LAB_CHECK_DEFAULTS, LAB_LIMIT_DEFAULTS, type BalancerConfig, type BalancerTls, type CheckType, type PoolKind } from './config.js';
import { RELAY_MODES } from './kernel-relay.js';
import { formatAddress, isLoopback, parseAddress, parseCount, parseMaxLag, parseMs } from './settings.js';
import { LabError } from '../common/errors.js';
import type { GlobalOptions } from '../lab/context.js';
import { tlsPaths } from '../lab/access.js';

export interface BalancerStartOptions {
  name?: string;
  /** HOST:PORT, default 127.0.0.1:15432 */
  listen?: string;
  /** HOST:PORT, default 127.0.0.1:8081 */
  stats?: string;
  pool?: PoolKind;
  check?: CheckType;
  balance?: 'roundrobin' | 'leastconn';
  inter?: string | number;
  fastinter?: string | number;
  downinter?: string | number;
  rise?: string | number;
  fall?: string | number;
  checkTimeout?: string | number;
  /** "16MB", "5s", or both */
  maxLag?: string[];
  retries?: string | number;
  connectTimeout?: string | number;
  clientTimeout?: string | number;
  serverTimeout?: string | number;
  /** A server's first answer to a new connection; past it the client goes to the next server. */
  answerTimeout?: string | number;
  /** HAProxy's `timeout queue`. */
  queueTimeout?: string | number;
  /** Client connections at once (HAProxy's maxconn); server connections per server at once. */
  maxconn?: string | number;
  serverMaxconn?: string | number;
  /** A HAProxy configuration file (src/haproxy/). */
  config?: string;
  engine?: 'builtin' | 'haproxy';
  /** auto (default), kernel or node: who relays established sessions (src/balancer/kernel-relay.ts). */
  relay?: BalancerConfig['relay'];
  /** passthrough (default) or terminate: what the balancer does with a client's TLS (src/balancer/tls-terminate.ts). */
  tls?: BalancerTls['mode'];
  /** How long `start` waits for the background process to listen. */
  timeoutMs?: number;
  /** The user the pgsql / sql checks log in as (default the lab's superuser; a file's pgsql-check user). */
  checkUser?: string;
  /** Accept a non-loopback --listen in front of a lab without passwords or without TLS. */
  insecure?: boolean;
}

export const DEFAULT_BALANCER_NAME = 'lb';

/** A role name for --check-user: what PostgreSQL accepts unquoted, and nothing that could break a line. */
function checkUserOf(user: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_$.-]{0,62}$/.test(user)) throw new LabError('USAGE', `Invalid --check-user "${user}": expected a role name (letters, digits, _ $ . -)`);
  return user;
}
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;


/** The configuration to run: from the flags, or from `--config FILE` with explicit flags overriding it. */
export async function resolveBalancerConfig(global: GlobalOptions, options: BalancerStartOptions): Promise<BalancerConfig> {
  if (options.engine && !['builtin', 'haproxy'].includes(options.engine)) {
    throw new LabError('USAGE', `Invalid --engine "${options.engine}": expected builtin or haproxy`);
  }
  const flags = balancerConfig(global, options);
  if (!options.config) return flags;
  const { readHaproxyConfigFile } = await import('../haproxy/read-config-file.js');
  const file = await readHaproxyConfigFile(path.resolve(options.config), { name: flags.name });
  // --check and --pool apply to the file's servers: a fixed list can still be role-checked and fenced.
  const typed = options.check ? { ...file.check, type: flags.check.type } : file.check;
  const check = options.checkUser !== undefined ? { ...typed, user: flags.check.user } : typed;
  const pool = file.pool.source === 'static' && options.pool ? { ...file.pool, kind: options.pool } : file.pool;
  if (options.pool && options.pool !== 'all' && check.type !== 'sql') {
    throw new LabError('USAGE', `--pool ${options.pool} needs to know each server's role, which only the sql check sees (the file asks for ${check.type}): add --check sql`);
  }
  return {
    ...file,
    pool,
    check,
    name: flags.name,
    relay: flags.relay,
    tls: flags.tls,
    listen: options.listen ? flags.listen : file.listen,
    timeouts: {
      ...file.timeouts,
      ...(options.answerTimeout !== undefined ? { answerMs: flags.timeouts.answerMs } : {}),
      ...(options.queueTimeout !== undefined ? { queueMs: flags.timeouts.queueMs } : {}),
    },
    ...(options.maxconn !== undefined ? { maxconn: flags.maxconn } : {}),
    ...(options.serverMaxconn !== undefined ? { serverMaxconn: flags.serverMaxconn } : {}),
    stats: options.stats ? { ...flags.stats!, uri: file.stats?.uri ?? '/' } : file.stats,
  };
}

/** The balancer's configuration from the CLI's options; every value checked, explicit knobs kept as given. */
export function balancerConfig(global: GlobalOptions, options: BalancerStartOptions): BalancerConfig {
  const name = options.name ?? DEFAULT_BALANCER_NAME;
  if (!NAME_PATTERN.test(name)) throw new LabError('USAGE', `Invalid balancer name "${name}": use letters, digits, '.', '_' or '-'`);
  const pool = options.pool ?? 'replicas';
  if (!['replicas', 'primary', 'all'].includes(pool)) throw new LabError('USAGE', `Invalid --pool "${pool}": expected replicas, primary or all`);
  const checkType = options.check ?? 'sql';
  if (!['sql', 'pgsql', 'tcp', 'none'].includes(checkType)) throw new LabError('USAGE', `Invalid --check "${checkType}": expected sql, pgsql, tcp or none`);
  const algorithm = options.balance ?? 'roundrobin';
  if (!['roundrobin', 'leastconn'].includes(algorithm)) throw new LabError('USAGE', `Invalid --balance "${algorithm}": expected roundrobin or leastconn`);
  const relay = options.relay ?? 'auto';
  if (!RELAY_MODES.includes(relay)) throw new LabError('USAGE', `Invalid --relay "${relay}": expected ${RELAY_MODES.join(', ')}`);
  const tls = balancerTls(global, options);
  const listen = parseAddress(options.listen ?? '127.0.0.1:15432', '--listen');
  const stats = parseAddress(options.stats ?? '127.0.0.1:8081', '--stats');
  if (listen.port === stats.port && listen.port !== 0) throw new LabError('USAGE', `--listen and --stats both use port ${listen.port}: give them different ports`);
  const lag = parseMaxLag(options.maxLag ?? []);
  const d = LAB_CHECK_DEFAULTS;
  return {
    name,
    listen,
    stats: { ...stats, uri: '/' },
    algorithm,
    pool: { source: 'lab', labDir: global.labDir, kind: pool },
    check: {
      ...d,
      type: checkType,
      interMs: options.inter !== undefined ? parseMs(options.inter, '--inter') : d.interMs,
      fastinterMs: options.fastinter !== undefined ? parseMs(options.fastinter, '--fastinter') : d.fastinterMs,
      downinterMs: options.downinter !== undefined ? parseMs(options.downinter, '--downinter') : d.downinterMs,
      rise: options.rise !== undefined ? parseCount(options.rise, '--rise') : d.rise,
      fall: options.fall !== undefined ? parseCount(options.fall, '--fall') : d.fall,
      timeoutMs: options.checkTimeout !== undefined ? parseMs(options.checkTimeout, '--check-timeout') : d.timeoutMs,
      ...(options.checkUser !== undefined ? { user: checkUserOf(options.checkUser) } : {}),
      ...lag,
    },
    retries: options.retries !== undefined ? parseCount(options.retries, '--retries', 0) : 3,
    redispatch: true,
    timeouts: {
      connectMs: options.connectTimeout !== undefined ? parseMs(options.connectTimeout, '--connect-timeout') : LAB_LIMIT_DEFAULTS.connectMs,
      clientMs: options.clientTimeout !== undefined ? parseMs(options.clientTimeout, '--client-timeout') : 0,
      serverMs: options.serverTimeout !== undefined ? parseMs(options.serverTimeout, '--server-timeout') : 0,
      answerMs: options.answerTimeout !== undefined ? parseMs(options.answerTimeout, '--answer-timeout') : LAB_LIMIT_DEFAULTS.answerMs,
      queueMs: options.queueTimeout !== undefined ? parseMs(options.queueTimeout, '--queue-timeout') : LAB_LIMIT_DEFAULTS.queueMs,
    },
    maxconn: options.maxconn !== undefined ? parseCount(options.maxconn, '--maxconn') : LAB_LIMIT_DEFAULTS.maxconn,
    ...(options.serverMaxconn !== undefined ? { serverMaxconn: parseCount(options.serverMaxconn, '--server-maxconn', 0) } : {}),
    relay,
    tls,
    warnings: [],
  };
}

/** `--tls`: passthrough, or terminate with the lab's own server certificate, key and CA. */
function balancerTls(global: GlobalOptions, options: BalancerStartOptions): BalancerTls {
  const mode = options.tls ?? 'passthrough';
  if (!BALANCER_TLS_MODES.includes(mode)) throw new LabError('USAGE', `Invalid --tls "${mode}": expected ${BALANCER_TLS_MODES.join(' or ')}`);
  if (mode === 'passthrough') return { mode };
  if (options.engine === 'haproxy') throw new LabError('USAGE', '--tls terminate is the built-in balancer\'s: HAProxy cannot answer PostgreSQL\'s SSLRequest; drop --engine haproxy or --tls terminate');
  const files = tlsPaths(global.labDir);
  return { mode, certFile: files.serverCert, keyFile: files.serverKey, caFile: files.caCert };
}

/** Warnings a person should see before the balancer runs (non-loopback addresses). */
export function balancerWarnings(config: BalancerConfig): string[] {
  const warnings = [...config.warnings];
  for (const [what, address] of [['--listen', config.listen], ['--stats', config.stats]] as const) {
    if (address && !isLoopback(address.host)) {
      warnings.push(`${what} ${formatAddress(address)} is reachable from other machines`);
    }
  }
  return warnings;
}

/**
 * A client address other machines can reach, in front of servers that trust every connection or speak
 * plaintext, hands out superuser sessions or passwords in the clear: refused unless --insecure.
 */
export function checkExposure(config: BalancerConfig, access: { auth: string; tls: string }, insecure: boolean | undefined): void {
  if (insecure || isLoopback(config.listen.host)) return;
  const weak = [access.auth === 'trust' ? '--auth trust' : '', access.tls === 'off' ? '--tls off' : ''].filter(Boolean).join(' and ');
  if (!weak) return;
  throw new LabError(
    'UNSAFE',
    `--listen ${formatAddress(config.listen)} would open a lab made with ${weak} to other machines: listen on loopback, rebuild the lab with passwords and TLS, or add --insecure if you mean it`,
  );
}

/** The same options as flags again, for the child's command line. */
export function optionsAsFlags(options: BalancerStartOptions): string[] {
  const flags: string[] = [];
  const add = (flag: string, value: string | number | undefined) => {
    if (value !== undefined) flags.push(flag, String(value));
  };
  add('--name', options.name);
  add('--listen', options.listen);
  add('--stats', options.stats);
  add('--pool', options.pool);
  add('--check', options.check);
  add('--balance', options.balance);
  add('--inter', options.inter);
  add('--fastinter', options.fastinter);
  add('--downinter', options.downinter);
  add('--rise', options.rise);
  add('--fall', options.fall);
  add('--check-timeout', options.checkTimeout);
  for (const lag of options.maxLag ?? []) add('--max-lag', lag);
  add('--retries', options.retries);
  add('--connect-timeout', options.connectTimeout);
  add('--client-timeout', options.clientTimeout);
  add('--server-timeout', options.serverTimeout);
  add('--answer-timeout', options.answerTimeout);
  add('--queue-timeout', options.queueTimeout);
  add('--maxconn', options.maxconn);
  add('--server-maxconn', options.serverMaxconn);
  add('--config', options.config && path.resolve(options.config));
  add('--engine', options.engine);
  add('--relay', options.relay);
  add('--tls', options.tls);
  add('--check-user', options.checkUser);
  if (options.insecure) flags.push('--insecure');
  return flags;
}
