// `lab logical add NAME DATADIR PORT --tables t1,t2`: a new cluster of the lab's major (initdb as the
// master is made, the lab's access), the tables' definitions copied from the primary's catalog, a
// publication on the primary, a subscription on the new cluster (its slot on the primary), and the
// initial sync waited for (pg_subscription_rel: every table 'r'). `lab logical remove NAME` undoes it.
// Everything is checked before anything is made; a failure after that undoes what was made (no
// subscription, slot, publication, data dir or record left), or says what it could not undo.
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { userInfo } from 'node:os';
import type pg from 'pg';
import { LabError, messageOf } from '../common/errors.js';
import { parsePort } from '../common/ports.js';
import { pollUntil } from '../common/poll.js';
import { silentReporter, type Reporter } from '../common/reporter.js';
import { writePrivateFile } from '../common/safe-files.js';
import { checkShellSafePath, checkShellSafeProgram } from '../common/shell-safe-path.js';
import { accessOf, labPassword, tlsPaths, useLabAccess } from '../lab/access.js';
import { nodeLogFile, openLab, type GlobalOptions, type LabContext } from '../lab/context.js';
import { checkDatadirPath, checkDatadirPlace, inspectDatadir, prepareDatadir, removeDatadir, undoDatadir, type PreparedDatadir } from '../lab/datadir.js';
import { checkName } from '../lab/names.js';
import { ANSWER_TIMEOUT_MS, boundedConn, onNode } from '../lab/node-answers.js';
import { findNode, primaryOf, refuseWhileBuilding, runtimeOf, thisBuilder, updateState, type LabState, type NodeRecord } from '../lab/state.js';
import { PG_NAME } from '../lab/state-check.js';
import { checkNodeFits } from '../lab/topology.js';
import { nodeAddress } from '../network/address.js';
import { assertServerPort } from '../network/server-port.js';
import { dropSlot } from '../postgres/base-backup.js';
import { withClient, type ConnectOptions } from '../postgres/client.js';
import { connectProblem } from '../postgres/connect-problem.js';
import { templateCacheRoot } from '../postgres/cache-root.js';
import { runtimeFor } from '../runtime/runtime-for.js';
import type { NodeRuntime, RuntimeNode } from '../runtime/node-runtime.js';

/** What a publication can publish (PUBLICATION ... WITH (publish = ...)); truncate from 11. */
export const PUBLISH_OPERATIONS = ['insert', 'update', 'delete', 'truncate'] as const;
export type PublishOperation = (typeof PUBLISH_OPERATIONS)[number];

export interface LogicalAddOptions {
  /** The primary's tables to publish: names as SQL reads them unquoted (t1, or schema.t1), a list or comma-separated. */
  tables: string | string[];
  /** The publication to make on the primary (default pglab_pub_NAME); one that exists is refused. */
  publication?: string;
  /** What is published (default all four); without update and delete a table needs no replica identity. */
  publish?: string | PublishOperation[];
  reporter?: Reporter;
  /** Bound on the initial sync (every table copied and caught up); default 120 s. */
  timeoutMs?: number;
}

export interface LogicalAddResult {
  name: string;
  port: number;
  datadir: string;
  pid: number;
  /** The primary it subscribes to. */
  primary: string;
  publication: string;
  /** The subscription on the new cluster; its slot on the primary has the same name. */
  subscription: string;
  tables: string[];
  publish: PublishOperation[];
  /** Rows in the subscribed tables once the initial sync ended (count(*) on the subscriber). */
  rows: number;
  /** From CREATE SUBSCRIPTION until every table was ready (pg_subscription_rel.srsubstate = 'r'). */
  syncMs: number;
  elapsedMs: number;
}

/** The subscription (and slot) of subscriber `name`: slot names are lower case, digits and _. */
export function subscriptionName(name: string): string {
  return `pglab_sub_${name.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`;
}

function publicationName(name: string): string {
  return `pglab_pub_${name.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`;
}

/** A table name as the user types it unquoted: t1 or schema.t1 (folded to lower case by the server). */
const TABLE_ARG = /^([A-Za-z_][A-Za-z0-9_$]{0,62}\.)?[A-Za-z_][A-Za-z0-9_$]{0,62}$/;

export function parseTables(value: string | string[] | undefined): string[] {
  const list = (Array.isArray(value) ? value : String(value ?? '').split(',')).map((t) => String(t).trim()).filter(Boolean);
  if (list.length === 0) throw new LabError('USAGE', 'Name the tables to publish: --tables t1,t2 (tables of the master\'s postgres database)');
  for (const table of list) {
    if (!TABLE_ARG.test(table)) throw new LabError('USAGE', `Invalid table name "${table}": use table or schema.table (letters, digits, _ and $, as SQL reads them unquoted)`);
  }
  if (new Set(list.map((t) => t.toLowerCase())).size !== list.length) throw new LabError('USAGE', `A table is named twice in --tables ${list.join(',')}`);
  return list;
}

export function parsePublish(value: string | string[] | undefined): PublishOperation[] {
  if (value === undefined) return [...PUBLISH_OPERATIONS];
  const list = (Array.isArray(value) ? value : value.split(',')).map((v) => String(v).trim()).filter(Boolean);
  const wrong = list.filter((v) => !PUBLISH_OPERATIONS.includes(v as PublishOperation));
  if (list.length === 0 || wrong.length > 0) throw new LabError('USAGE', `Expected --publish with some of ${PUBLISH_OPERATIONS.join(',')}, got "${Array.isArray(value) ? value.join(',') : value}"`);
  return [...new Set(list)] as PublishOperation[];
}

/** One table as the primary's catalog describes it, and the DDL that makes it on the subscriber. */
interface TablePlan {
  wanted: string;
  /** schema.table, each part quote_ident-ed. */
  qualified: string;
  schema: string;
  ddl: string[];
}

interface TableRow extends Record<string, unknown> {
  wanted: string;
  oid: string | null;
  schema: string | null;
  rel: string | null;
  kind: string | null;
  persistence: string | null;
  ident: string | null;
  has_pk: boolean;
  has_ident_index: boolean;
}

interface ColumnRow extends Record<string, unknown> {
  oid: string;
  col: string;
  type: string;
  notnull: boolean;
  builtin: boolean;
  generated: string;
  expr: string | null;
}

/**
 * The tables on the primary, each refused in one line when it cannot be published here: missing, not a
 * plain permanent table, no replica identity while UPDATE/DELETE are published, a column of a type the
 * new cluster lacks. The subscriber's DDL is built from the catalog (columns, NOT NULL, stored generated
 * columns, the primary key, the replica identity), the same on every major (pg_dump 15 cannot dump 16+).
 */
async function planTables(client: pg.Client, major: number, tables: string[], publish: PublishOperation[], master: string): Promise<TablePlan[]> {
  const rows = (await client.query<TableRow>(
    `SELECT t.wanted, c.oid::text AS oid, quote_ident(n.nspname) AS schema, quote_ident(c.relname) AS rel, c.relkind::text AS kind,
       c.relpersistence::text AS persistence, c.relreplident::text AS ident,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident) AS has_ident_index
     FROM unnest($1::text[]) WITH ORDINALITY AS t(wanted, i)
     LEFT JOIN pg_class c ON c.oid = to_regclass(t.wanted)
     LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
     ORDER BY t.i`,
    [tables],
  )).rows;
  const changes = publish.filter((p) => p === 'update' || p === 'delete');
  for (const row of rows) {
    if (row.oid === null) throw new LabError('NOT_FOUND', `Table "${row.wanted}" does not exist in the master ${master}'s postgres database: create it first, or name another with --tables`);
    if (row.kind !== 'r') {
      const what = row.kind === 'p' ? 'a partitioned table' : row.kind === 'v' ? 'a view' : row.kind === 'm' ? 'a materialized view' : row.kind === 'f' ? 'a foreign table' : `not a table (relkind ${row.kind})`;
      throw new LabError('USAGE', `"${row.wanted}" is ${what}: \`lab logical add\` publishes plain tables only (publish its partitions by name)`);
    }
    if (row.persistence !== 'p') throw new LabError('USAGE', `Table "${row.wanted}" is ${row.persistence === 'u' ? 'unlogged' : 'temporary'}: only permanent tables are written to the WAL logical replication decodes`);
    const identity = row.ident === 'f' || (row.ident === 'd' && row.has_pk) || (row.ident === 'i' && row.has_ident_index);
    if (!identity && changes.length > 0) {
      throw new LabError(
        'USAGE',
        `Table "${row.wanted}" has no replica identity (${row.ident === 'n' ? 'REPLICA IDENTITY NOTHING' : 'no primary key'}): published, its ${changes.map((c) => c.toUpperCase()).join(' and ')} would fail on the master; add a primary key (ALTER TABLE ${row.schema}.${row.rel} ADD PRIMARY KEY (...)) or set ALTER TABLE ${row.schema}.${row.rel} REPLICA IDENTITY FULL, or publish inserts only (--publish insert,truncate)`,
      );
    }
  }
  const oids = rows.map((r) => r.oid!);
  const generated = major >= 12 ? 'a.attgenerated::text' : "''::text";
  const columns = (await client.query<ColumnRow>(
    `SELECT a.attrelid::text AS oid, quote_ident(a.attname) AS col, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull,
       ty.typnamespace = 'pg_catalog'::regnamespace AS builtin, ${generated} AS generated,
       CASE WHEN ${generated} <> '' THEN pg_get_expr(d.adbin, d.adrelid) END AS expr
     FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY a.attrelid, a.attnum`,
    [oids],
  )).rows;
  const keys = (await client.query<{ oid: string; name: string; def: string }>(
    "SELECT conrelid::text AS oid, quote_ident(conname) AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = ANY($1::oid[]) AND contype = 'p'",
    [oids],
  )).rows;
  const identityIndexes = (await client.query<{ oid: string; name: string; def: string }>(
    'SELECT i.indrelid::text AS oid, quote_ident(ic.relname) AS name, pg_get_indexdef(i.indexrelid) AS def FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = ANY($1::oid[]) AND i.indisreplident AND NOT i.indisprimary',
    [oids],
  )).rows;
  return rows.map((row) => {
    const qualified = `${row.schema}.${row.rel}`;
    const own = columns.filter((c) => c.oid === row.oid);
    const foreign = own.find((c) => !c.builtin);
    if (foreign) {
      throw new LabError('USAGE', `Column ${foreign.col} of "${row.wanted}" has type ${foreign.type}, not a built-in type: \`lab logical add\` copies plain tables of built-in types (make the type on a subscriber yourself, or publish another table)`);
    }
    const defs = own.map((c) => `${c.col} ${c.type}${c.generated === 's' ? ` GENERATED ALWAYS AS (${c.expr}) STORED` : ''}${c.notnull ? ' NOT NULL' : ''}`);
    const key = keys.find((k) => k.oid === row.oid);
    if (key) defs.push(`CONSTRAINT ${key.name} ${key.def}`);
    const ddl = [`CREATE TABLE ${qualified} (${defs.join(', ')})`];
    const index = identityIndexes.find((i) => i.oid === row.oid);
    if (row.ident === 'i' && index) ddl.push(index.def, `ALTER TABLE ${qualified} REPLICA IDENTITY USING INDEX ${index.name}`);
    if (row.ident === 'f') ddl.push(`ALTER TABLE ${qualified} REPLICA IDENTITY FULL`);
    return { wanted: row.wanted, qualified, schema: row.schema!, ddl };
  });
}

/** A conninfo value, quoted for libpq. */
function conninfoValue(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** An SQL string literal. */
function literal(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** The CA the subscriber checks the primary's certificate with: a copy in its own data dir, readable by its OS user. */
const SUBSCRIBER_CA_FILE = 'lab-root.crt';

/** What the add made so far, in order. */
interface Made {
  datadir?: PreparedDatadir;
  server?: boolean;
  publication?: boolean;
  subscription?: boolean;
  /** pg_subscription.oid on the subscriber: names its table sync slots on the primary (14+: pg_OID_sync_...). */
  subscriptionOid?: string;
}

export async function logicalAdd(global: GlobalOptions, nameArg: string, datadirArg: string, portArg: string | number, options: LogicalAddOptions): Promise<LogicalAddResult> {
  const started = Date.now();
  const reporter = options.reporter ?? silentReporter;
  const name = checkName(nameArg);
  const datadir = checkShellSafePath(checkDatadirPath(datadirArg), 'data dir');
  checkShellSafePath(global.labDir, 'lab dir');
  const port = parsePort(portArg);
  const tables = parseTables(options.tables);
  const publish = parsePublish(options.publish);
  const publication = options.publication ?? publicationName(name);
  if (!PG_NAME.test(publication)) throw new LabError('USAGE', `Invalid publication name "${publication}": use lower-case letters, digits and _ (at most 63), starting with a letter or _`);
  const subscription = subscriptionName(name);
  const timeoutMs = options.timeoutMs ?? 120_000;

  const context = await openLab(global);
  const { state } = context;
  const runtime = runtimeOf(state);
  if (runtime !== 'process' || state.hosts) {
    throw new LabError('USAGE', `\`lab logical add\` makes subscribers on the process runtime without --hosts only (this lab: ${runtime}${state.hosts ? ' with --hosts' : ''}): use a lab made with \`lab master start\``);
  }
  if (state.pg.major < 10) throw new LabError('USAGE', `PostgreSQL ${state.pg.version} has no logical replication (publications and subscriptions exist from 10): use a lab of 10 or later (\`lab --pg 15 master start\`)`);
  await checkShellSafeProgram(context.installation.tools.pg_ctl);
  if (!context.installation.tools.initdb) throw new LabError('ENVIRONMENT', `PostgreSQL ${state.pg.version} in ${state.pg.bindir} lacks initdb: a subscriber is a new cluster`);
  // A new cluster: from the cached initdb template as a new master is, when there is one.
  const initdbTemplates = global.initdbTemplate !== false ? (global.initdbTemplate ?? templateCacheRoot()) : undefined;
  const nodes = runtimeFor({ ...context, initdbTemplates });
  const primary = primaryOf(state);
  if (!primary) throw new LabError('STATE', 'This lab has no master: run `lab master start` first');
  const existing = findNode(state, name);
  if (existing) {
    throw new LabError('CONFLICT', `Node "${name}" already exists in this lab (${existing.role === 'primary' ? 'the master' : `a ${existing.role}`}): choose another name${existing.role === 'subscriber' ? `, or remove it first (\`lab logical remove ${name}\`)` : ''}`);
  }
  checkNodeFits(state, context.labDir, { name, port, datadir, role: 'subscriber' });
  if (!(await nodes.livePid(primary))) throw new LabError('STATE', `Master "${primary.name}" is not running: start it first (\`lab node start ${primary.name}\`)`);

  // Before anything is made (and said: a refusal is one line): the primary can publish these tables, the
  // names are free, the data dir and port are usable.
  const plans = await onNode(state, primary, () => withClient(boundedConn(state, primary), async (client) => {
    const [settings] = (await client.query<{ wal_level: string; free_slots: number; free_senders: number }>(
      `SELECT current_setting('wal_level') AS wal_level,
         current_setting('max_replication_slots')::int - (SELECT count(*)::int FROM pg_replication_slots) AS free_slots,
         current_setting('max_wal_senders')::int - (SELECT count(*)::int FROM pg_stat_replication) AS free_senders`,
    )).rows;
    if (settings!.wal_level !== 'logical') {
      throw new LabError('STATE', `The master ${primary.name} runs with wal_level = ${settings!.wal_level} (a lab made before pglab set logical): run ALTER SYSTEM SET wal_level = logical on it and restart it (\`lab node restart ${primary.name}\`), then add the subscriber`);
    }
    if (settings!.free_slots < 2 || settings!.free_senders < 2) {
      throw new LabError('STATE', `The master ${primary.name} has ${settings!.free_slots} free replication slot(s) and ${settings!.free_senders} free WAL sender(s); a subscriber needs 2 of each during its initial sync: remove a replica or subscriber first`);
    }
    if ((await client.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [publication])).rowCount) {
      throw new LabError('CONFLICT', `Publication ${publication} already exists on the master ${primary.name}: choose another --publication name, or drop it (DROP PUBLICATION ${publication})`);
    }
    if ((await client.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [subscription])).rowCount) {
      throw new LabError('CONFLICT', `Replication slot ${subscription} already exists on the master ${primary.name} (left by a subscriber ${name} of before?): drop it (SELECT pg_drop_replication_slot('${subscription}')), or choose another name`);
    }
    return planTables(client, state.pg.major, tables, publish, primary.name);
  }));
  const owner = await nodes.dataOwner();
  const condition = await inspectDatadir(datadir, state.labId);
  if (condition === 'ours') throw new LabError('UNSAFE', `Data dir ${datadir} holds another node of this lab; nothing was deleted: choose another path`);
  if (condition === 'foreign' || condition === 'not-a-directory') await prepareDatadir(datadir, state.labId); // throws the clear error
  await checkDatadirPlace(datadir, owner);
  await assertServerPort(port, `subscriber "${name}"`, { runtime, user: owner ? `the OS user ${owner.name}` : `user ${userInfo().username}` }, { free: true });

  const qualified = plans.map((p) => p.qualified);
  const recorded = await updateState(context.labDir, (s) => {
    if (findNode(s, name)) throw new LabError('CONFLICT', `Node "${name}" was added by another command meanwhile: choose another name`);
    checkNodeFits(s, context.labDir, { name, port, datadir, role: 'subscriber' });
    s.nodes.push({
      name, role: 'subscriber', port, datadir, datadirCreated: condition === 'missing', phase: 'building', expected: 'stopped',
      createdAt: new Date().toISOString(), builder: thisBuilder(), logical: { publication, subscription, tables: qualified },
    });
  });
  const node: RuntimeNode = { name, port, datadir };
  const made: Made = {};
  let pid: number;
  let syncMs: number;
  let rows: number;
  try {
    made.datadir = await prepareDatadir(datadir, state.labId);
    reporter.step(`initdb ${datadir} (PostgreSQL ${state.pg.version}): a cluster of its own`);
    // Its files from the state that records it as a subscriber: no archive_mode (its WAL is its own cluster's).
    await runtimeFor({ ...context, state: recorded, initdbTemplates }).initMaster(node, reporter);
    const tls = accessOf(state).tls !== 'off';
    if (tls) await writePrivateFile(path.join(datadir, SUBSCRIBER_CA_FILE), await readFile(tlsPaths(context.labDir).caCert), 0o600, owner);
    reporter.step(`starting ${name} on port ${port}`);
    made.server = true;
    pid = await nodes.start(node, 60_000);
    const sub: ConnectOptions = { host: nodeAddress(node), port, user: state.dbUser, connectTimeoutMs: ANSWER_TIMEOUT_MS, queryTimeoutMs: 30_000 };
    reporter.step(`${plans.length} table definition(s) from ${primary.name}'s catalog on ${name}`);
    await withClient(sub, async (client) => {
      const schemas = [...new Set(plans.map((p) => p.schema))].filter((s) => s !== 'public');
      await client.query(['BEGIN', ...schemas.map((s) => `CREATE SCHEMA IF NOT EXISTS ${s}`), ...plans.flatMap((p) => p.ddl), 'COMMIT'].join(';\n'));
    });
    reporter.step(`CREATE PUBLICATION ${publication} on ${primary.name} (${publish.join(', ')})`);
    made.publication = true;
    const all = publish.length === PUBLISH_OPERATIONS.length;
    await onNode(state, primary, () => withClient(boundedConn(state, primary), async (client) => {
      // Ended by the server itself before our bound: a statement we gave up on must not commit later (a
      // table locked on the master would otherwise get its publication once the lock goes).
      await client.query(`SET lock_timeout = ${ANSWER_TIMEOUT_MS - 1000}; SET statement_timeout = ${ANSWER_TIMEOUT_MS - 500}`);
      await client.query(`CREATE PUBLICATION ${publication} FOR TABLE ${qualified.join(', ')}${all ? '' : ` WITH (publish = ${literal(publish.join(', '))})`}`);
    }));
    const password = await labPassword(context.labDir, state);
    const conninfo = [
      `host=${nodeAddress(primary)}`, `port=${primary.port}`, `user=${state.dbUser}`, 'dbname=postgres', 'connect_timeout=10',
      ...(password === undefined ? [] : [`password=${conninfoValue(password)}`]),
      ...(tls ? ['sslmode=verify-full', `sslrootcert=${conninfoValue(path.join(datadir, SUBSCRIBER_CA_FILE))}`] : []),
    ].join(' ');
    reporter.step(`CREATE SUBSCRIPTION ${subscription} on ${name} (slot ${subscription} on ${primary.name})`);
    made.subscription = true;
    const syncStart = Date.now();
    await withClient(sub, async (client) => {
      await client.query(`CREATE SUBSCRIPTION ${subscription} CONNECTION ${literal(conninfo)} PUBLICATION ${publication}`);
      made.subscriptionOid = (await client.query<{ oid: string }>('SELECT oid::text AS oid FROM pg_subscription WHERE subname = $1', [subscription])).rows[0]?.oid;
    });
    reporter.step(`initial sync of ${plans.length} table(s) (pg_subscription_rel until every table is ready)`);
    await withClient({ ...sub, queryTimeoutMs: ANSWER_TIMEOUT_MS }, (client) => pollUntil(async () => {
      const [row] = (await client.query<{ ready: number; total: number; states: string }>(
        `SELECT count(*) FILTER (WHERE sr.srsubstate = 'r')::int AS ready, count(*)::int AS total, string_agg(DISTINCT sr.srsubstate::text, '') AS states
         FROM pg_subscription_rel sr JOIN pg_subscription s ON s.oid = sr.srsubid WHERE s.subname = $1`,
        [subscription],
      )).rows;
      reporter.progress(row!.total ? row!.ready / row!.total : 0, `${row!.ready}/${row!.total} tables ready`);
      return row!.total === plans.length && row!.ready === row!.total ? true : undefined;
    }, {
      timeoutMs,
      intervalMs: 100,
      what: `the initial sync of ${name} (every table ready in pg_subscription_rel)`,
      detail: () => nodes.logTail(node),
    }));
    syncMs = Date.now() - syncStart;
    rows = await withClient(sub, async (client) => Number((await client.query<{ n: string }>(`SELECT (${qualified.map((q) => `(SELECT count(*) FROM ${q})`).join(' + ')})::text AS n`)).rows[0]!.n));
    await updateState(context.labDir, (s) => {
      const record = s.nodes.find((n) => n.name === name)!;
      record.phase = 'ready';
      record.expected = 'running';
      delete record.builder;
    });
  } catch (error) {
    throw await undoLogicalAdd(context, nodes, primary, node, { publication, subscription }, made, reporter, error);
  }
  return { name, port, datadir, pid, primary: primary.name, publication, subscription, tables: qualified, publish, rows, syncMs, elapsedMs: Date.now() - started };
}

/**
 * Drops what ties subscriber `node` to the primary: its subscription (which drops its slot on the
 * primary) while the subscriber runs, then any slot left on the primary (its own, its table sync ones;
 * a walsender still on one is ended first), then the publication. The subscriber is left running. Returns what was not done, each as a phrase; an empty list means nothing is left.
 */
async function dropLinks(state: LabState, nodes: NodeRuntime, primary: NodeRecord | undefined, node: RuntimeNode, names: { publication: string; subscription: string }, subscriptionOid?: string): Promise<{ dropped: string[]; left: string[] }> {
  const left: string[] = [];
  const dropped: string[] = [];
  const subConn: ConnectOptions = { host: nodeAddress(node), port: node.port, user: state.dbUser, connectTimeoutMs: ANSWER_TIMEOUT_MS, queryTimeoutMs: 20_000 };
  if (await nodes.livePid(node).catch(() => undefined)) {
    await withClient(subConn, async (client) => {
      const found = (await client.query<{ oid: string }>('SELECT oid::text AS oid FROM pg_subscription WHERE subname = $1', [names.subscription])).rows[0];
      if (!found) return;
      subscriptionOid ??= found.oid;
      try {
        await client.query(`DROP SUBSCRIPTION ${names.subscription}`);
        dropped.push(`subscription ${names.subscription} on ${node.name} (and its slot on the master)`);
      } catch {
        // The primary did not answer the subscription's own connection: forget the slot here, drop it below.
        await client.query(`ALTER SUBSCRIPTION ${names.subscription} DISABLE`);
        await client.query(`ALTER SUBSCRIPTION ${names.subscription} SET (slot_name = NONE)`);
        await client.query(`DROP SUBSCRIPTION ${names.subscription}`);
        dropped.push(`subscription ${names.subscription} on ${node.name}`);
      }
    }).catch(() => undefined); // the subscriber goes with its data dir: what matters is the primary's side
  }
  if (!primary || !(await nodes.livePid(primary).catch(() => undefined))) {
    left.push(`slot ${names.subscription} and publication ${names.publication} may still be on the master (it is not running)`);
    return { dropped, left };
  }
  try {
    await withClient(boundedConn(state, primary), async (client) => {
      const syncSlots = subscriptionOid ? `OR slot_name LIKE 'pg\\_${subscriptionOid}\\_sync\\_%'` : '';
      const slots = (await client.query<{ slot_name: string }>(`SELECT slot_name FROM pg_replication_slots WHERE slot_name = $1 ${syncSlots}`, [names.subscription])).rows;
      for (const { slot_name: slot } of slots) if (await dropSlot(boundedConn(state, primary), slot)) dropped.push(`slot ${slot} on ${primary.name}`);
      if ((await client.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [names.publication])).rowCount) {
        await client.query(`DROP PUBLICATION ${names.publication}`);
        dropped.push(`publication ${names.publication} on ${primary.name}`);
      }
    });
  } catch (error) {
    left.push(`slot ${names.subscription} or publication ${names.publication} may still be on ${primary.name} (${connectProblem(error, ANSWER_TIMEOUT_MS)})`);
  }
  return { dropped, left };
}

async function undoLogicalAdd(context: LabContext, nodes: NodeRuntime, primary: NodeRecord, node: RuntimeNode, names: { publication: string; subscription: string }, made: Made, reporter: Reporter, error: unknown): Promise<unknown> {
  const { state, labDir } = context;
  reporter.step(`undoing what the add of ${node.name} made`);
  const undone: string[] = [];
  const left: string[] = [];
  if (made.server || made.publication) {
    const links = await dropLinks(state, nodes, made.publication ? primary : undefined, node, names, made.subscriptionOid).catch((e: unknown) => ({ dropped: [], left: [messageOf(e)] }));
    // Without a publication made, nothing of ours is on the primary: only the server was to be stopped.
    if (made.publication) left.push(...links.left);
    undone.push(...links.dropped);
  }
  if (made.server) {
    // A server that would not stop is named below (its data dir then stays).
    await nodes.stop(node, 'immediate', 15_000).then(() => undone.push('server stopped'), () => undefined);
  }
  const serverRuns = Boolean(await nodes.livePid(node).catch(() => undefined));
  if (serverRuns) left.push(`${node.name}'s server still runs`);
  if (made.datadir && !serverRuns) {
    try {
      undone.push(`data dir ${await undoDatadir(node.datadir, made.datadir)}`);
    } catch (dirError) {
      left.push(`data dir ${node.datadir} not cleared (${messageOf(dirError)})`);
    }
  }
  const forget = left.length === 0;
  if (forget) await rm(nodeLogFile(labDir, node.name), { force: true }).catch(() => undefined);
  await updateState(labDir, (s) => {
    const claimed = s.nodes.find((n) => n.name === node.name);
    if (claimed?.builder?.pid !== process.pid) return;
    if (forget) {
      s.nodes = s.nodes.filter((n) => n !== claimed);
      return;
    }
    claimed.expected = 'stopped';
    delete claimed.builder;
  }).then(
    () => undone.push(forget ? `${node.name} removed from lab.json` : `${node.name} stays in lab.json, not built`),
    (stateError: unknown) => left.push(`lab.json still lists ${node.name} (${messageOf(stateError)})`),
  );
  const failure = error instanceof LabError ? error : new LabError('COMMAND_FAILED', `Adding subscriber ${node.name} failed: ${messageOf(error)}`, { cause: error });
  const remedy = left.length > 0 ? `; \`lab logical remove ${node.name}\` finishes it` : '';
  return new LabError(failure.code, `${failure.message}; undone: ${undone.join(', ') || 'nothing was made'}${left.length > 0 ? `; not undone: ${left.join('; ')}` : ''}${remedy}`, { detail: failure.detail, cause: error });
}

export interface LogicalRemoveResult {
  name: string;
  datadir: string;
  datadirOutcome: 'removed' | 'emptied' | 'kept';
  publication: string;
  subscription: string;
}

/**
 * `lab logical remove NAME`: DROP SUBSCRIPTION on the subscriber (which drops its slot on the primary),
 * any slot left dropped on the primary, DROP PUBLICATION there, then the node: stopped, its data dir
 * (only with this lab's marker) and log removed, forgotten. The master must run (else its slot would stay).
 */
export async function logicalRemove(global: GlobalOptions, nameArg: string): Promise<LogicalRemoveResult> {
  const context = await openLab(global);
  const { state } = context;
  const nodes = runtimeFor(context);
  const name = checkName(nameArg);
  const node = findNode(state, name);
  if (!node) throw new LabError('NOT_FOUND', `No node "${name}" in this lab`);
  if (node.role !== 'subscriber' || !node.logical) {
    throw new LabError('STATE', `Node "${name}" is ${node.role === 'primary' ? 'the master' : `a ${node.role}`}, not a logical subscriber: ${node.role === 'replica' ? `\`lab replica remove ${name}\`` : '`lab destroy --yes` removes the whole lab'}`);
  }
  refuseWhileBuilding(node);
  const primary = primaryOf(state);
  if (primary && !(await nodes.livePid(primary))) {
    throw new LabError('STATE', `Master "${primary.name}" is not running: start it first (\`lab node start ${primary.name}\`) so the subscription's slot and publication on it are dropped`);
  }
  const { left } = await dropLinks(state, nodes, primary, node, node.logical);
  if (left.length > 0) throw new LabError('STATE', `Subscriber ${name} not removed: ${left.join('; ')}: check the master with \`lab status\`, then run this command again`);
  if (await nodes.livePid(node)) await nodes.stop(node, 'fast');
  const datadirOutcome = await removeDatadir(node.datadir, state.labId, node.datadirCreated);
  await rm(nodeLogFile(context.labDir, name), { force: true });
  await updateState(context.labDir, (s) => {
    s.nodes = s.nodes.filter((n) => n.name !== name);
  });
  return { name, datadir: node.datadir, datadirOutcome, publication: node.logical.publication, subscription: node.logical.subscription };
}

/**
 * `lab destroy`: each subscriber's subscription, slot and publication dropped while the servers still
 * run (best effort: the data dirs go next); returns what was dropped.
 */
export async function dropSubscriberLinks(context: { labDir: string; state: LabState }, nodes: NodeRuntime): Promise<string[]> {
  // destroy reads lab.json itself: the lab's password and CA for these sessions.
  useLabAccess(context.labDir, context.state);
  const primary = primaryOf(context.state);
  const dropped: string[] = [];
  for (const node of context.state.nodes) {
    if (node.role !== 'subscriber' || !node.logical) continue;
    const links = await dropLinks(context.state, nodes, primary, node, node.logical).catch(() => undefined);
    dropped.push(...(links?.dropped ?? []));
  }
  return dropped;
}
