// lab.json is checked field by field on every read: a file edited by hand (or by someone who could)
// must never make the lab act on a path, a name or a pid the lab would not have written itself. The
// first bad field is named in one line, e.g. `lab.json: nodes[1].name "../../x/victim" is not a valid
// node name: fix or remove the file` (exit 6, STATE).
import path from 'node:path';
import { LabError, messageOf } from '../common/errors.js';
import { AUTH_METHODS, TLS_MODES } from './access.js';
import { checkDatadirPath } from './datadir.js';
import { checkName } from './names.js';
import { MAX_APPLY_DELAY_MS } from './apply-delay.js';
import type { LabState } from './state-types.js';

/** What `lab balancer start --name` accepts (src/balancer/start-options.ts). */
const BALANCER_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const LAB_ID = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;
const OS_USER = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$/;
const DB_USER = /^[A-Za-z_][A-Za-z0-9_$.-]{0,62}$/;
/** What `lab restore-point NAME` accepts (pg_create_restore_point takes up to 63 bytes). */
export const RESTORE_POINT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$/;

type Json = Record<string, unknown>;

function bad(field: string, value: unknown, why: string): LabError {
  const shown = typeof value === 'string' ? JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value) : JSON.stringify(value) ?? String(value);
  return new LabError('STATE', `lab.json: ${field} ${shown} ${why}: fix or remove the file`);
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks of one record's fields, each naming `prefix.field` when it fails. */
class Fields {
  constructor(private readonly record: Json, private readonly prefix: string) {}

  private name(field: string): string {
    return this.prefix ? `${this.prefix}.${field}` : field;
  }

  private value(field: string, optional: boolean): unknown {
    const value = this.record[field];
    if (value === undefined && !optional) throw new LabError('STATE', `lab.json: ${this.name(field)} is missing: fix or remove the file`);
    return value;
  }

  string(field: string, optional = false, pattern?: RegExp, what = 'a valid value'): void {
    const value = this.value(field, optional);
    if (value === undefined) return;
    if (typeof value !== 'string') throw bad(this.name(field), value, 'is not a string');
    if (pattern && !pattern.test(value)) throw bad(this.name(field), value, `is not ${what}`);
  }

  boolean(field: string, optional = false): void {
    const value = this.value(field, optional);
    if (value !== undefined && typeof value !== 'boolean') throw bad(this.name(field), value, 'is not true or false');
  }

  integer(field: string, min: number, max: number, optional = false, what = `an integer from ${min} to ${max}`): void {
    const value = this.value(field, optional);
    if (value === undefined) return;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw bad(this.name(field), value, `is not ${what}`);
  }

  oneOf(field: string, allowed: readonly string[], optional = false): void {
    const value = this.value(field, optional);
    if (value !== undefined && !allowed.includes(value as string)) throw bad(this.name(field), value, `is not one of ${allowed.join(', ')}`);
  }

  absolutePath(field: string, optional = false): void {
    this.string(field, optional);
    const value = this.record[field];
    if (typeof value === 'string' && (!path.isAbsolute(value) || path.normalize(value) !== value || value.includes('\0'))) {
      throw bad(this.name(field), value, 'is not an absolute, normalized path');
    }
  }

  /** A name checked by a function that throws (the lab's own rules). */
  named(field: string, check: (name: string) => unknown, what: string, optional = false): void {
    this.string(field, optional);
    const value = this.record[field];
    if (value === undefined) return;
    try {
      check(value as string);
    } catch {
      throw bad(this.name(field), value, `is not a valid ${what}`);
    }
  }

  object(field: string, optional = false): Fields | undefined {
    const value = this.value(field, optional);
    if (value === undefined) return undefined;
    if (!isObject(value)) throw bad(this.name(field), value, 'is not an object');
    return new Fields(value, this.name(field));
  }
}

const MAX_PID = 2 ** 31 - 1;
const isNodeName = (name: string) => checkName(name);
const validNodeName = (name: string): boolean => {
  try {
    checkName(name);
    return true;
  } catch {
    return false;
  }
};

function checkNode(node: unknown, index: number): void {
  const prefix = `nodes[${index}]`;
  if (!isObject(node)) throw bad(prefix, node, 'is not an object');
  const f = new Fields(node, prefix);
  f.named('name', isNodeName, 'node name');
  f.oneOf('role', ['primary', 'replica', 'restored', 'subscriber']);
  f.integer('port', 1, 65535, false, 'a port from 1 to 65535');
  f.absolutePath('datadir');
  try {
    if (checkDatadirPath(node.datadir as string) !== node.datadir) throw new Error('not resolved');
  } catch (error) {
    throw bad(`${prefix}.datadir`, node.datadir, `is not a data dir the lab would use (${messageOf(error).replace(/:.*$/, '')})`);
  }
  f.named('upstream', isNodeName, 'node name', true);
  f.boolean('datadirCreated');
  f.oneOf('phase', ['building', 'ready']);
  f.oneOf('expected', ['running', 'stopped']);
  f.string('createdAt');
  f.boolean('rewindNeeded', true);
  f.boolean('sync', true);
  f.integer('applyDelayMs', 1, MAX_APPLY_DELAY_MS, true, 'a delay in ms from 1 to 86400000');
  f.integer('timeline', 1, 2 ** 32 - 1, true);
  const host = f.object('host', true);
  if (host) {
    host.string('netns', false, /^pglab-\d{1,3}-[A-Za-z0-9_-]{1,63}$/, 'a namespace name pglab-N-NODE');
    host.string('veth', false, /^pgl\d{1,3}-\d{1,3}$/, 'an interface name pglN-I');
    host.string('address', false, /^10\.213\.\d{1,3}\.\d{1,3}$/, 'an address in 10.213.0.0/16');
  }
  checkClaim(f.object('builder', true));
  const logical = f.object('logical', true);
  if (logical) {
    logical.string('publication', false, PG_NAME, 'a publication name');
    logical.string('subscription', false, PG_NAME, 'a subscription name');
    const tables = (node.logical as Json).tables;
    if (!Array.isArray(tables) || tables.length === 0 || !tables.every((t) => typeof t === 'string' && QUALIFIED_TABLE.test(t))) {
      throw bad(`${prefix}.logical.tables`, tables, 'is not a list of schema.table names');
    }
  }
  if ((node.role === 'subscriber') !== Boolean(logical)) throw bad(`${prefix}.logical`, node.logical, node.role === 'subscriber' ? 'is missing on a subscriber' : 'is only for subscribers');
}

/** Publication and subscription names pglab makes or takes (lower case, as slot names must be). */
export const PG_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
/** A published table as recorded: schema.table, each an identifier as quote_ident() would leave it or a quoted one. */
const QUALIFIED_TABLE = /^("([^"]|""){1,63}"|[a-z_][a-z0-9_$]{0,62})\.("([^"]|""){1,63}"|[a-z_][a-z0-9_$]{0,62})$/;

/** Who builds a node or applies a fault (a Builder): pid, start time, since. */
function checkClaim(claim: Fields | undefined): void {
  if (!claim) return;
  claim.integer('pid', 1, MAX_PID, false, 'a process id');
  claim.integer('startTime', 0, Number.MAX_SAFE_INTEGER, false, 'a start time in clock ticks');
  claim.string('since');
}

function checkBalancer(balancer: unknown, index: number): void {
  const prefix = `balancers[${index}]`;
  if (!isObject(balancer)) throw bad(prefix, balancer, 'is not an object');
  const f = new Fields(balancer, prefix);
  f.string('name', false, BALANCER_NAME, 'a valid balancer name');
  f.oneOf('engine', ['builtin', 'haproxy']);
  f.string('listen');
  f.string('stats');
  f.integer('pid', 1, MAX_PID, false, 'a process id');
  f.integer('startTime', 0, Number.MAX_SAFE_INTEGER, true, 'a start time in clock ticks');
  f.string('pool');
  f.absolutePath('configFile', true);
  f.absolutePath('logFile');
  f.string('startedAt');
}

function checkFault(fault: unknown, index: number, nodes: string[]): void {
  const prefix = `faults[${index}]`;
  if (!isObject(fault)) throw bad(prefix, fault, 'is not an object');
  const f = new Fields(fault, prefix);
  f.named('node', isNodeName, 'node name');
  if (!nodes.includes(fault.node as string)) throw bad(`${prefix}.node`, fault.node, 'is not a node of this lab');
  f.oneOf('kind', ['pause', 'lag', 'partition', 'loss', 'delay']);
  f.integer('delayMs', 1, 60_000, true, 'a delay from 1 to 60000 ms');
  f.integer('jitterMs', 0, 60_000, true, 'a jitter from 0 to 60000 ms');
  f.oneOf('phase', ['applying', 'applied']);
  f.string('since');
  f.integer('pid', 1, MAX_PID, true, 'a process id');
  f.integer('percent', 1, 100, true, 'a percentage from 1 to 100');
  checkClaim(f.object('applier', true));
  if (fault.from !== undefined) {
    if (!Array.isArray(fault.from) || fault.from.some((name) => typeof name !== 'string' || !validNodeName(name))) throw bad(`${prefix}.from`, fault.from, 'is not a list of node names');
  }
}

function checkUnique(names: string[], what: string): void {
  const seen = new Set<string>();
  for (const [index, name] of names.entries()) {
    if (seen.has(name)) throw bad(`${what}[${index}].name`, name, 'is listed twice');
    seen.add(name);
  }
}

/** The parsed lab.json as a LabState, or a one-line STATE error naming the first bad field. */
export function checkStateFile(parsed: unknown): LabState {
  if (!isObject(parsed)) throw bad('the file', parsed, 'is not a JSON object');
  const f = new Fields(parsed, '');
  f.integer('format', 1, 1, false, 'format 1');
  f.string('labId', false, LAB_ID, 'a lab id');
  f.string('createdAt');
  f.boolean('labDirCreated');
  const pg = f.object('pg')!;
  pg.absolutePath('bindir');
  pg.string('version');
  pg.integer('major', 1, 1000);
  f.oneOf('runtime', ['process', 'docker'], true);
  f.string('image', true);
  f.string('osUser', true, OS_USER, 'a user name');
  f.string('dbUser', false, DB_USER, 'a role name');
  const access = f.object('access', true);
  access?.oneOf('auth', AUTH_METHODS);
  access?.oneOf('tls', TLS_MODES);
  const hosts = f.object('hosts', true);
  hosts?.integer('index', 1, 250, false, 'a bridge index from 1 to 250');
  hosts?.string('bridge', false, /^pgl\d{1,3}$/, 'a bridge name pglN');
  if (!Array.isArray(parsed.nodes)) throw bad('nodes', parsed.nodes, 'is not a list');
  parsed.nodes.forEach(checkNode);
  parsed.balancers ??= [];
  if (!Array.isArray(parsed.balancers)) throw bad('balancers', parsed.balancers, 'is not a list');
  parsed.balancers.forEach(checkBalancer);
  checkUnique((parsed.nodes as Json[]).map((n) => n.name as string), 'nodes');
  checkUnique((parsed.balancers as Json[]).map((b) => b.name as string), 'balancers');
  if (parsed.faults !== undefined) {
    if (!Array.isArray(parsed.faults)) throw bad('faults', parsed.faults, 'is not a list');
    const names = (parsed.nodes as Json[]).map((n) => n.name as string);
    parsed.faults.forEach((fault, index) => checkFault(fault, index, names));
    const seen = new Set<string>();
    for (const [index, fault] of (parsed.faults as Json[]).entries()) {
      const key = `${fault.node as string} ${fault.kind as string}`;
      if (seen.has(key)) throw bad(`faults[${index}]`, key, 'is listed twice');
      seen.add(key);
    }
  }
  const archive = f.object('archive', true);
  if (archive) checkArchive(archive, parsed.archive as Json);
  return parsed as unknown as LabState;
}

const LSN = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/;

/** The archive record: its backups (ids b1...) and restore points (names as `lab restore-point` takes them). */
function checkArchive(f: Fields, archive: Json): void {
  f.string('since');
  for (const list of ['backups', 'restorePoints'] as const) {
    if (!Array.isArray(archive[list])) throw bad(`archive.${list}`, archive[list], 'is not a list');
  }
  (archive.backups as unknown[]).forEach((backup, index) => {
    const prefix = `archive.backups[${index}]`;
    if (!isObject(backup)) throw bad(prefix, backup, 'is not an object');
    const b = new Fields(backup, prefix);
    b.string('id', false, /^b[1-9][0-9]{0,8}$/, 'a backup id b1, b2...');
    b.oneOf('phase', ['building', 'ready']);
    b.string('startedAt');
    b.string('startLsn', true, LSN, 'an LSN');
    b.string('stopLsn', true, LSN, 'an LSN');
    b.string('stoppedAt', true);
    b.integer('nextXid', 1, Number.MAX_SAFE_INTEGER, true, 'a transaction id');
    b.integer('segmentBytes', 1048576, 1073741824, true, 'a WAL segment size in bytes');
  });
  (archive.restorePoints as unknown[]).forEach((point, index) => {
    const prefix = `archive.restorePoints[${index}]`;
    if (!isObject(point)) throw bad(prefix, point, 'is not an object');
    const p = new Fields(point, prefix);
    p.string('name', false, RESTORE_POINT_NAME, 'a restore point name');
    p.string('lsn', false, LSN, 'an LSN');
    p.string('at');
  });
  checkUnique((archive.backups as Json[]).map((b) => b.id as string), 'archive.backups');
  checkUnique((archive.restorePoints as Json[]).map((p) => p.name as string), 'archive.restorePoints');
}
