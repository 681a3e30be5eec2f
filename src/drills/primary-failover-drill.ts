// `lab demo primary-failover [--sync]`: what a dead master costs. Writers insert numbered rows through
// the `rw` balancer (pool: the primary) and count a number once its COMMIT is acknowledged; readers
// go through `lb` (pool: the replicas). The master is killed with SIGKILL, the replica that received
// the most WAL is promoted, the others follow it, and the old master is pg_rewind-ed back as a replica
// (rebuilt from a new base backup where there is no pg_rewind for its version: the embedded 11, 16-18).
// The report says how long writes stopped and how many acknowledged commits the new primary lacks.
import { setTimeout as delay } from 'node:timers/promises';
import type { BalancerProcess } from '../api/balancer-process.js';
import { findFreePorts } from '../common/ports.js';
import { LabError } from '../common/errors.js';
import { pollUntil } from '../common/poll.js';
import type { Reporter } from '../common/reporter.js';
import { queryRows } from '../postgres/client.js';
import { lsnToNumber } from '../postgres/recovery.js';
import { nodeNamesByPort, reportFromWorkload } from '../report/from-workload.js';
import type { Report, ReportCrossCheck, ReportSeries } from '../report/types.js';
import { runWorkload } from '../workload/run-workload.js';
import { formatSampleLine, SAMPLE_HEADER } from '../workload/sample-line.js';
import type { WorkloadResult } from '../workload/types.js';
import type { SwitchoverResult } from '../api/lab.js';
import { ACKED_TABLE, CREATE_ACKED_TABLE, runAckedWriter, type WriterResult } from './acked-writer.js';
import type { PrimaryFailoverDrillOptions } from './defaults.js';
import { alongsideLoad, inDemoLab, publishReport, type DrillOutcome } from './drill-run.js';
import { buildDemoLab, DEMO_DATABASE, prepareBenchData, type DemoBase, type DemoLab, waitBalancerUp } from './lab-setup.js';
import { Narrator, type Print } from './narrator.js';

export { PRIMARY_FAILOVER_DEFAULTS, type PrimaryFailoverDrillOptions } from './defaults.js';

export function checkPrimaryFailoverOptions(o: PrimaryFailoverDrillOptions): void {
  if (!Number.isInteger(o.replicas) || o.replicas < 1) throw new LabError('USAGE', `--replicas must be 1 or more (one is promoted), got ${o.replicas}`);
  if (!Number.isInteger(o.writers) || o.writers < 1) throw new LabError('USAGE', `--writers must be 1 or more, got ${o.writers}`);
  if (!Number.isInteger(o.readers) || o.readers < 1) throw new LabError('USAGE', `--readers must be 1 or more, got ${o.readers}`);
  if (!(o.killAtMs > 0 && o.killAtMs < o.durationMs)) {
    throw new LabError('USAGE', `Expected 0 < --kill-at (${o.killAtMs / 1000}s) < --duration (${o.durationMs / 1000}s)`);
  }
  if (o.switchoverAtMs !== undefined && !(o.switchoverAtMs > 0 && o.switchoverAtMs + 5000 <= o.killAtMs)) {
    throw new LabError('USAGE', `Expected 0 < --switchover-at (${o.switchoverAtMs / 1000}s) and 5s or more before --kill-at (${o.killAtMs / 1000}s)`);
  }
  if (o.durationMs - o.killAtMs < 10_000) {
    throw new LabError('USAGE', `--duration must leave at least 10s after --kill-at for the promotion, the follows and the rewind, got ${(o.durationMs - o.killAtMs) / 1000}s`);
  }
}

/** When each step happened (Date.now()). */
interface Steps {
  /** `lab demo switchover`: the planned switchover before the crash. */
  switchover: { startEpoch: number; promotedEpoch: number; rwFollowsEpoch: number | null; target: string; previous: string; result: SwitchoverResult } | null;
  /** The primary the crash killed. */
  victim: string | null;
  killEpoch: number | null;
  promoted: string | null;
  promoteEpoch: number | null;
  rwFollowsEpoch: number | null;
  choice: string | null;
  rewind: string | null;
}

export async function runPrimaryFailoverDrill(
  base: DemoBase,
  options: PrimaryFailoverDrillOptions,
  hooks: { print: Print; reporter: Reporter; signal: AbortSignal },
): Promise<DrillOutcome> {
  checkPrimaryFailoverOptions(options);
  const { signal } = hooks;
  const narrator = new Narrator(hooks.print);
  const mode = options.sync ? 'synchronous' : 'asynchronous';
  narrator.say(options.switchoverAtMs === undefined
    ? `lab demo primary-failover: ${options.replicas} ${mode} replicas, writes and reads for ${options.durationMs / 1000}s, kill -9 master1 at ${options.killAtMs / 1000}s after a ${options.partitionMs} ms partition from its standbys`
    : `lab demo switchover: ${options.replicas} ${mode} replicas, writes and reads for ${options.durationMs / 1000}s, lab switchover replica1 at ${options.switchoverAtMs / 1000}s, then kill -9 of the new primary at ${options.killAtMs / 1000}s for contrast`);
  const lab = await buildDemoLab(base, { replicas: options.replicas, access: options.access, sync: options.sync, labDir: options.labDir, reporter: hooks.reporter, say: (t) => narrator.say(t) });
  return inDemoLab(lab, narrator, { keep: options.keep, what: 'the balancers' }, async () => {
    signal.throwIfAborted();
    const [rwPort, rwStats, lbPort, lbStats] = await findFreePorts(4);
    narrator.say(`step 3: balancer rw on 127.0.0.1:${rwPort} (pool: the primary) and lb on 127.0.0.1:${lbPort} (pool: the replicas), sql health checks`);
    const rw = await lab.lab.balancerProcess({ name: 'rw', pool: 'primary', port: rwPort, statsPort: rwStats });
    const lb = await lab.lab.balancerProcess({ name: 'lb', pool: 'replicas', port: lbPort, statsPort: lbStats });
    await waitBalancerUp(rw, 1, signal, 20_000);
    await waitBalancerUp(lb, options.replicas, signal, 20_000);

    narrator.say(`step 4: pgbench -i -s 1 for the readers and table ${ACKED_TABLE} for the writers (database ${DEMO_DATABASE})`);
    await prepareBenchData(lab, 1, signal);
    await queryRows({ port: lab.masterPort, database: DEMO_DATABASE }, CREATE_ACKED_TABLE);

    narrator.say(`step 5: ${options.writers} writers through rw (one INSERT per transaction, counted once COMMIT is acknowledged), ${options.readers} readers through lb (SELECT, a connection per transaction)`);
    const steps: Steps = { switchover: null, victim: null, killEpoch: null, promoted: null, promoteEpoch: null, rwFollowsEpoch: null, choice: null, rewind: null };
    narrator.loadEpochMs = Date.now();
    if (options.verbose) narrator.show(SAMPLE_HEADER);
    let writes: WriterResult | undefined;
    const reads = await alongsideLoad(signal, (loadSignal) => ({
      workload: runWorkload(
        {
          urls: [`postgresql://postgres@127.0.0.1:${lbPort}/${DEMO_DATABASE}`], concurrency: options.readers, durationMs: options.durationMs,
          mode: 'select', connectPerTx: true, tolerateErrors: true, scale: 1, maxRecordedErrors: 10_000, maxRate: 400,
        },
        { signal: loadSignal, onSample: (sample) => (options.verbose ? narrator.show(formatSampleLine(sample)) : undefined) },
      ),
      drill: (async () => {
        // The writers outlast the duration until 2 s after rw follows the new primary: the write downtime
        // is measured even when the failover ends late.
        let resumeWindow: () => void = () => undefined;
        const writesMeasured = new Promise<void>((resolve) => (resumeWindow = resolve));
        const writer = runAckedWriter(
          { url: `postgresql://postgres@127.0.0.1:${rwPort}/${DEMO_DATABASE}`, clients: options.writers, durationMs: options.durationMs, maxWrites: 5_000_000, queryTimeoutMs: 5000, retryMs: 20, until: writesMeasured },
          loadSignal,
        );
        writer.catch(() => undefined);
        if (options.switchoverAtMs !== undefined) await plannedSwitchover(lab, narrator, rw, options.switchoverAtMs, steps, loadSignal);
        await failover({ lab, narrator, rw, options, steps, loadSignal, onRwFollows: () => setTimeout(resumeWindow, 2000).unref() });
        writes = await writer;
      })(),
    }));
    signal.throwIfAborted();
    if (!writes) throw new LabError('STATE', 'the writers did not finish');
    narrator.event('stop', `end of load: ${writes.acked.length} acknowledged writes, ${reads.summary.ops} reads (${reads.summary.errors} read errors)`);

    const newPrimary = steps.promoted!;
    const nodes = [{ name: 'master1', port: lab.masterPort }, ...lab.replicas];
    const primaryPort = nodes.find((n) => n.name === newPrimary)!.port;
    const present = new Set((await queryRows<{ seq: string }>({ port: primaryPort, database: DEMO_DATABASE }, `SELECT seq FROM ${ACKED_TABLE}`)).map((r) => Number(r.seq)));
    const lost = writes.acked.filter((a) => !present.has(a.seq)).map((a) => a.seq).sort((a, b) => a - b);
    const crosscheck = await countOnEveryNode(nodes, writes, present.size, lost.length);
    const report = buildReport({ options, reads, writes, steps, narrator, nodes, presentCount: present.size, lost, inDoubtCommitted: writes.inDoubt.filter((s) => present.has(s)).length, crosscheck });
    const written = await publishReport(narrator, options.reportDir, report);
    return { report, written, labDir: lab.labDir, kept: options.keep };
  });
}


interface FailoverInput {
  lab: DemoLab;
  narrator: Narrator;
  rw: BalancerProcess;
  options: PrimaryFailoverDrillOptions;
  steps: Steps;
  loadSignal: AbortSignal;
  onRwFollows: () => void;
}

/**
 * At `atMs` of the load, `lab switchover replica1`; rw's move to it is watched alongside (it is in rw's
 * pool only once lab.json names it the primary).
 */
async function plannedSwitchover(lab: DemoLab, narrator: Narrator, rw: BalancerProcess, atMs: number, steps: Steps, loadSignal: AbortSignal): Promise<void> {
  await delay(Math.max(0, narrator.loadEpochMs! + atMs - Date.now()), undefined, { signal: loadSignal });
  const previous = lab.lab.primary.name;
  const target = lab.lab.replicas[0]!.name;
  const rwFollows = rw.waitFor(target, 'UP', { timeoutMs: 60_000, intervalMs: 10, signal: loadSignal }).catch(() => null);
  const startEpoch = Date.now();
  narrator.event('switchover-start', `step 6: lab switchover ${target}: CHECKPOINT, a clean stop of ${previous}, ${target} promoted once it replayed the shutdown checkpoint`, startEpoch);
  const result = await lab.lab.switchover(target);
  // The steps' times place the promotion on the load's clock.
  const promotedEpoch = startEpoch + result.steps.slice(0, result.steps.findIndex((st) => st.step === 'promote') + 1).reduce((sum, st) => sum + st.ms, 0);
  narrator.event('promote', `${target} promoted: primary on timeline ${result.timeline}; no primary for ${result.noPrimaryMs} ms`, promotedEpoch);
  const rwFollowsEpoch = await rwFollows;
  if (rwFollowsEpoch !== null) narrator.event('detection', `balancer rw routes to ${target}`, rwFollowsEpoch);
  narrator.event('follow', `${previous} streams from ${target} with no rewind${result.followed.length ? `; ${result.followed.join(', ')} re-pointed` : ''} (switchover done in ${result.elapsedMs} ms: ${result.steps.map((st) => `${st.step} ${st.ms}`).join(', ')})`);
  steps.switchover = { startEpoch, promotedEpoch, rwFollowsEpoch, target, previous, result };
}

/** kill -9 the primary, promote the most advanced replica, re-point the others, rewind the old primary. */
async function failover(d: FailoverInput): Promise<void> {
  const { lab, narrator, rw, options, steps, loadSignal } = d;
  await delay(Math.max(0, narrator.loadEpochMs! + options.killAtMs - Date.now()), undefined, { signal: loadSignal });
  const victim = lab.lab.primary.name;
  steps.victim = victim;
  const standbys = lab.lab.replicas.map((r) => ({ name: r.name, port: r.port }));
  const step = options.switchoverAtMs === undefined ? 6 : 7;
  const killed = await lab.lab.node(victim).crash({ isolateMs: options.partitionMs });
  steps.killEpoch = killed.killedAtMs;
  if (options.partitionMs > 0) narrator.event('partition', `${victim}'s ${killed.walSenders} walsenders frozen: its standbys hear nothing more (partition)`, killed.isolatedAtMs);
  narrator.event('kill', `step ${step}: kill -9 ${victim}: the postmaster (pid ${killed.pid}) and its ${killed.processes - 1} processes${options.partitionMs > 0 ? `, ${killed.isolatedAtMs === killed.killedAtMs ? 0 : killed.killedAtMs - killed.isolatedAtMs} ms after the partition` : ''}`, steps.killEpoch);

  // The replica that received the most WAL: the others can follow it; promoting a less advanced one
  // would lose more and leave the others unable to follow without a rewind.
  const positions = await Promise.all(
    standbys.map(async (r) => {
      const row = (await queryRows<{ received: string | null; replayed: string | null }>(
        { port: r.port, connectTimeoutMs: 2000 },
        'SELECT pg_last_wal_receive_lsn()::text AS received, pg_last_wal_replay_lsn()::text AS replayed',
      ))[0]!;
      return { name: r.name, received: row.received ?? row.replayed ?? '0/0', replayed: row.replayed ?? '0/0' };
    }),
  );
  positions.sort((a, b) => lsnToNumber(b.received) - lsnToNumber(a.received) || lsnToNumber(b.replayed) - lsnToNumber(a.replayed));
  const chosen = positions[0]!;
  steps.choice = positions.map((p) => `${p.name} received ${p.received} replayed ${p.replayed}`).join('; ');
  narrator.say(`step ${step + 1}: WAL positions: ${steps.choice}`);
  // The primary is dead: promote alone; the others are re-pointed one by one below, each timed.
  const promoted = await lab.lab.promote(chosen.name, { others: 'leave' });
  steps.promoted = chosen.name;
  steps.promoteEpoch = Date.now();
  const syncNote = promoted.synchronousStandbyNames ? `, synchronous_standby_names = '${promoted.synchronousStandbyNames}'` : '';
  narrator.event('promote', `step ${step + 1}: lab promote ${chosen.name}: primary on timeline ${promoted.timeline} (${promoted.elapsedMs} ms${syncNote})`, steps.promoteEpoch);
  steps.rwFollowsEpoch = await rw.waitFor(chosen.name, 'UP', { timeoutMs: 10_000, intervalMs: 10, signal: loadSignal });
  narrator.event('detection', `balancer rw routes to ${chosen.name} (${steps.rwFollowsEpoch - steps.promoteEpoch} ms after the promotion)`, steps.rwFollowsEpoch);
  d.onRwFollows();

  for (const other of standbys.filter((r) => r.name !== chosen.name)) {
    const followed = await lab.lab.node(other.name).follow(chosen.name);
    narrator.event('follow', `step ${step + 2}: lab replica follow ${other.name}: streaming from ${chosen.name} (${followed.syncState}, ${followed.elapsedMs} ms)`);
  }
  const rewindStarted = Date.now();
  const missing = await lab.lab.pgRewindMissing();
  if (missing) {
    // PostgreSQL 11 here: what a DBA without pg_rewind does, a new base backup in place of the old master.
    narrator.event('re-add-start', `step ${step + 3}: ${missing}: lab replica add ${victim} (a new base backup from ${chosen.name})`, rewindStarted);
    const rebuilt = await lab.lab.node(victim).rewind();
    steps.rewind = `rebuilt from a new base backup, ${rebuilt.baseBackup === 'pglab' ? 'pglab\'s own' : 'pg_basebackup'} (${missing})`;
    narrator.event('re-add', `${victim} rebuilt and streaming from ${chosen.name} (${Date.now() - rewindStarted} ms)`);
    return;
  }
  narrator.event('re-add-start', `step ${step + 3}: lab node rewind ${victim} --primary ${chosen.name}`, rewindStarted);
  const rewound = await lab.lab.node(victim).rewind({ primary: chosen.name });
  steps.rewind = `pg_rewind (${rewound.rewind})`;
  narrator.event('re-add', `${victim} rewound (${rewound.rewind}) and streaming from ${chosen.name} (${rewound.elapsedMs} ms)`);
}

/** Rows of acknowledged sequence numbers on every node once it has replayed the new primary's WAL. */
async function countOnEveryNode(nodes: { name: string; port: number }[], writes: WriterResult, primaryRows: number, lost: number): Promise<ReportCrossCheck[]> {
  const survived = writes.acked.length - lost;
  const ackedList = `SELECT count(*) AS n FROM ${ACKED_TABLE} WHERE seq = ANY($1::bigint[])`;
  const seqs = writes.acked.map((a) => a.seq);
  return Promise.all(
    nodes.map(async (node) => {
      const count = async () => Number((await queryRows<{ n: string }>({ port: node.port, database: DEMO_DATABASE, connectTimeoutMs: 2000 }, ackedList, [seqs]))[0]!.n);
      const seen = await pollUntil(async () => {
        const n = await count();
        return n === survived ? n : undefined;
      }, { timeoutMs: 10_000, intervalMs: 100, what: `${node.name} to replay every surviving row` }).catch(() => count().catch(() => null));
      const agrees = seen === survived;
      return {
        node: node.name, workload: survived, pg_stat_database: seen, agrees,
        ...(agrees ? {} : { note: `SELECT found ${seen ?? 'no answer'} of the ${survived} acknowledged rows the new primary has (${primaryRows} rows in all there)` }),
      };
    }),
  );
}

interface ReportInput {
  options: PrimaryFailoverDrillOptions;
  reads: WorkloadResult;
  writes: WriterResult;
  steps: Steps;
  narrator: Narrator;
  nodes: { name: string; port: number }[];
  presentCount: number;
  lost: number[];
  inDoubtCommitted: number;
  crosscheck: ReportCrossCheck[];
}

function buildReport(input: ReportInput): Report {
  const { options, reads, writes, steps, lost } = input;
  const lastBefore = steps.killEpoch === null ? null : writes.acked.filter((a) => a.at < steps.killEpoch!).reduce((m, a) => Math.max(m, a.at), 0) || null;
  const newPort = input.nodes.find((n) => n.name === steps.promoted)?.port;
  const firstAfter = steps.killEpoch === null ? null : writes.acked.filter((a) => a.at > steps.killEpoch! && a.port === newPort).reduce((m, a) => Math.min(m, a.at), Infinity);
  const resumeEpoch = firstAfter === null || firstAfter === Infinity ? null : firstAfter;
  const writeDowntimeMs = resumeEpoch !== null && steps.killEpoch !== null ? resumeEpoch - steps.killEpoch : null;
  if (resumeEpoch !== null) input.narrator.events.push({ at_ms: Math.round(resumeEpoch - input.narrator.loadEpochMs!), kind: 'writes-resume', label: `first acknowledged write on ${steps.promoted}` });
  const promoteMs = steps.promoteEpoch !== null && steps.killEpoch !== null ? steps.promoteEpoch - steps.killEpoch : null;
  const rwFollowMs = steps.rwFollowsEpoch !== null && steps.promoteEpoch !== null ? steps.rwFollowsEpoch - steps.promoteEpoch : null;
  const killAt = steps.killEpoch === null ? null : steps.killEpoch - reads.summary.started_epoch_ms;
  const readErrorsAfterKill = killAt === null ? null : reads.errors.filter((e) => e.at_ms >= killAt).length;
  const mode = options.sync ? 'sync' : 'async';
  const sw = switchoverFigures(input);
  const victim = steps.victim ?? 'master1';

  const report = reportFromWorkload({
    title: sw
      ? `pglab switchover demo (${mode}): a planned switchover under writes, then a crash of the new primary for contrast`
      : `pglab primary failover demo (${mode}): kill -9 the master under writes, promote, follow, rewind`,
    workload: reads,
    names: nodeNamesByPort(input.nodes),
    events: input.narrator.events,
    figures: {
      mode,
      ...(sw ? sw.figures : {}),
      lost_commits: lost.length,
      acknowledged_commits: writes.acked.length,
      rows_on_new_primary: input.presentCount,
      in_doubt: writes.inDoubt.length,
      in_doubt_committed: input.inDoubtCommitted,
      write_downtime_ms: writeDowntimeMs,
      last_ack_before_kill_ms: lastBefore !== null && steps.killEpoch !== null ? lastBefore - steps.killEpoch : null,
      kill_to_promoted_ms: promoteMs,
      rw_follows_ms: rwFollowMs,
      write_errors: writes.errors.length,
      read_errors: reads.summary.errors,
      read_errors_after_kill: readErrorsAfterKill,
      new_primary: steps.promoted,
      rewind: steps.rewind,
      partition_ms: options.partitionMs,
      replicas: options.replicas,
      writers: options.writers,
      readers: options.readers,
      detection_ms: null,
      readmission_ms: null,
    },
    crosscheck: input.crosscheck,
    notes: [
      ...(sw ? sw.notes : []),
      'Writers: each transaction is one INSERT of a client-side sequence number through the rw balancer (pool: the lab\'s primary), counted only once its COMMIT is acknowledged.',
      'lost_commits: acknowledged sequence numbers missing on the new primary after the drill (SELECT seq FROM acked). in_doubt: sequence numbers whose COMMIT got an error or no answer; in_doubt_committed of them are there anyway (nobody was told).',
      'write_downtime_ms: from the SIGKILL of master1 (postmaster and all its processes, like a dead host) to the first acknowledged commit on the new primary.',
      `The crash: master1's walsenders are frozen (SIGSTOP) ${options.partitionMs} ms before every other process of it (the master loses its standbys' network, then dies: --partition), then all are killed (SIGKILL) like a dead host. Commits the backends acknowledge meanwhile never reach a standby in asynchronous mode; in synchronous mode they are not acknowledged.`,
      `Promotion: the replica that received the most WAL (${steps.choice ?? 'n/a'}).`,
      options.sync
        ? 'Synchronous mode: synchronous_standby_names = ANY 1 (replicas) and synchronous_commit = on: a COMMIT is acknowledged once one standby has flushed it, and the most advanced standby is promoted, so no acknowledged commit can be lost.'
        : 'Asynchronous mode: a COMMIT is acknowledged once the master flushed it locally; WAL not yet sent to a standby when the master dies is lost with it.',
      'Cross-check: SELECT on every node (after it replayed the new primary\'s WAL) counts the acknowledged rows that survived; "workload" is acknowledged minus lost.',
    ],
  });
  report.series.push(writeSeries(writes, reads));
  report.summary = [
    ...(sw ? sw.summary : []),
    `mode: ${mode}${options.sync ? ' (ANY 1 of the replicas)' : ''}; new primary ${steps.promoted} (${steps.choice})`,
    `lost_commits: ${lost.length} of ${writes.acked.length} acknowledged${lost.length ? ` (sequence numbers ${lost.slice(0, 10).join(', ')}${lost.length > 10 ? ', ...' : ''})` : ''}; in doubt: ${writes.inDoubt.length} (${input.inDoubtCommitted} committed anyway)`,
    `${sw ? 'crash: ' : ''}write downtime: ${fmtMs(writeDowntimeMs)} from kill -9${sw ? ` of ${victim}` : ''} to the first acknowledged commit (promoted ${fmtMs(promoteMs)} after the kill; rw followed ${fmtMs(rwFollowMs)} after the promotion)`,
    `read errors: ${reads.summary.errors} in all, ${readErrorsAfterKill ?? '-'} after the kill; ${reads.summary.ops} reads`,
    `old ${sw ? `primary ${victim}` : 'master'}: ${steps.rewind ? `${steps.rewind}, streaming from ${steps.promoted}` : 'not rewound'}`,
    `cross-check: ${input.crosscheck.filter((c) => c.agrees).length} of ${input.crosscheck.length} nodes hold every surviving acknowledged row`,
  ];
  return report;
}

/**
 * The planned switchover's figures (`lab demo switchover`): write downtime from the last acknowledged
 * commit on the old primary to the first on the new one, acknowledged commits of the switchover's time
 * missing at the end, read errors from its start until 2 s after it ended.
 */
function switchoverFigures(input: ReportInput): { figures: Record<string, number | string | null>; summary: string[]; notes: string[] } | null {
  const sw = input.steps.switchover;
  if (!sw) return null;
  const { writes, reads, lost } = input;
  const port = (name: string) => input.nodes.find((n) => n.name === name)?.port;
  const endEpoch = sw.startEpoch + sw.result.elapsedMs;
  const beforeCrash = (at: number) => input.steps.killEpoch === null || at < input.steps.killEpoch;
  const lastOld = writes.acked.filter((a) => a.port === port(sw.previous) && a.at <= sw.promotedEpoch).reduce((m, a) => Math.max(m, a.at), 0) || null;
  const firstNew = writes.acked.filter((a) => a.port === port(sw.target) && a.at >= sw.startEpoch && beforeCrash(a.at)).reduce((m, a) => Math.min(m, a.at), Infinity);
  const downtime = lastOld !== null && firstNew !== Infinity ? firstNew - lastOld : null;
  const lostSeqs = new Set(lost);
  const lostBySwitchover = writes.acked.filter((a) => a.at <= endEpoch && lostSeqs.has(a.seq)).length;
  const from = sw.startEpoch - reads.summary.started_epoch_ms;
  const to = endEpoch + 2000 - reads.summary.started_epoch_ms;
  const readErrors = reads.errors.filter((e) => e.at_ms >= from && e.at_ms <= to).length;
  if (firstNew !== Infinity) input.narrator.events.push({ at_ms: Math.round(firstNew - input.narrator.loadEpochMs!), kind: 'writes-resume', label: `first acknowledged write on ${sw.target}` });
  const steps = sw.result.steps.map((st) => `${st.step} ${st.ms} ms`).join(', ');
  return {
    figures: {
      switchover_write_downtime_ms: downtime,
      switchover_no_primary_ms: sw.result.noPrimaryMs,
      switchover_rw_follows_ms: sw.rwFollowsEpoch === null ? null : sw.rwFollowsEpoch - sw.promotedEpoch,
      switchover_lost_commits: lostBySwitchover,
      switchover_read_errors: readErrors,
      switchover_ms: sw.result.elapsedMs,
      switchover_rewind: 'none',
    },
    summary: [
      `switchover ${sw.previous} -> ${sw.target}: write downtime ${fmtMs(downtime)} (last acknowledged commit on ${sw.previous} to the first on ${sw.target}), ${lostBySwitchover} acknowledged commits lost, ${readErrors} read errors; no primary for ${sw.result.noPrimaryMs} ms; ${sw.previous} streams from ${sw.target} with no rewind`,
    ],
    notes: [
      `Switchover (lab switchover ${sw.target}): ${steps}. switchover_write_downtime_ms runs from the last acknowledged commit on ${sw.previous} to the first on ${sw.target}, through rw; switchover_no_primary_ms from the stop request to lab.json naming ${sw.target}; switchover_read_errors from its start until 2 s after it ended.`,
      `The crash that follows (kill -9 of ${sw.target}, every process at once) is the contrast: the same writers and readers, the same balancers, the primary chosen and promoted at once by the drill (no detection time).`,
    ],
  };
}

/** Acknowledged writes per second on the reads' clock, as one more series of the timeline. */
function writeSeries(writes: WriterResult, reads: WorkloadResult): ReportSeries {
  const offset = writes.startedEpochMs - reads.summary.started_epoch_ms;
  return {
    node: 'writes (rw)',
    port: null,
    points: writes.perSecond.slice(0, Math.floor(writes.durationMs / 1000)).map((count, i) => ({ at_ms: offset + (i + 1) * 1000, tps: count })),
  };
}

function fmtMs(ms: number | null): string {
  return ms === null ? 'not measured' : `${ms} ms`;
}
