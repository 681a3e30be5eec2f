// Everything that differs between PostgreSQL versions, in one place (REFERENCE.md section 2).

export interface Dialect {
  major: number;
  /** wal_level: logical from 10 (streaming replicas and `lab logical add` subscribers), hot_standby before. */
  walLevel: 'hot_standby' | 'logical';
  /** The postgresql.conf line that keeps WAL for standbys, for the seed's 8 segments (128 MB). */
  walKeepLine: string;
  /** Standby configuration: files to write in the replica's data dir. */
  standbyFiles(conninfo: string, slot?: string, applyDelayMs?: number): { recoveryConf?: string; signal?: boolean; autoConfLines?: string[] };
  /**
   * Archive recovery (a restore to a target): `settings` (restore_command, recovery_target_*) go into
   * recovery.conf (<= 11) or postgresql.auto.conf beside recovery.signal (>= 12).
   */
  recoveryFiles(settings: string[]): { recoveryConf?: string; signal?: 'recovery.signal'; autoConfLines?: string[] };
  /** SQL: whether WAL replay is paused (pg_get_wal_replay_pause_state from 14, which says 'paused' only once it is). */
  replayPausedSql: string;
  /** SQL for the current WAL insert / write positions on a primary. */
  currentInsertLsn: string;
  currentWriteLsn: string;
  /** pg_stat_replication column names */
  replicationColumns: { sent: string; write: string; flush: string; replay: string };
  /** SQL for the replay LSN and timestamp on a standby */
  lastReplayLsn: string;
  /** SQL for the last WAL position a standby received */
  lastReceiveLsn: string;
  /** SQL for the name of the WAL file a primary writes (its first 8 hex digits are the timeline) */
  currentWalFile: string;
  /** pg_stat_replication's replay lag in seconds (replay_lag exists from 10; NULL before) */
  replayLagSeconds: string;
  lsnDiff: string; // function name
  /** Low-level backup API (non-exclusive, one session): $1 = label; returns lsn. */
  backupStartSql: string;
  /** Ends the session's backup without waiting for archiving; returns lsn, labelfile, spcmapfile. */
  backupStopSql: string;
  /** The postgresql.conf line bounding the WAL a replication slot may keep (13+), or '' before 13. */
  slotKeepLine: string;
}

export function dialectFor(major: number): Dialect {
  const modern = major >= 10;
  return {
    major,
    // logical (a superset of replica) so a lab's primary can publish (`lab logical add`) without a restart.
    walLevel: major >= 10 ? 'logical' : 'hot_standby',
    walKeepLine: major >= 13 ? 'wal_keep_size = 128MB' : 'wal_keep_segments = 8',
    standbyFiles(conninfo, slot, applyDelayMs) {
      // A delayed standby's recovery_min_apply_delay: a recovery.conf setting before 12, a GUC from 12.
      const slotLines = [...(slot === undefined ? [] : [`primary_slot_name = '${slot}'`]), ...(applyDelayMs === undefined ? [] : [`recovery_min_apply_delay = '${applyDelayMs}ms'`])];
      if (major >= 12) {
        return {
          signal: true,
          autoConfLines: [`primary_conninfo = '${conninfo.replace(/'/g, "''")}'`, "recovery_target_timeline = 'latest'", ...slotLines],
        };
      }
      return {
        recoveryConf: [
          "standby_mode = 'on'",
          `primary_conninfo = '${conninfo.replace(/'/g, "''")}'`,
          "recovery_target_timeline = 'latest'",
          ...slotLines,
          '',
        ].join('\n'),
      };
    },
    recoveryFiles(settings) {
      return major >= 12 ? { signal: 'recovery.signal', autoConfLines: settings } : { recoveryConf: `${settings.join('\n')}\n` };
    },
    replayPausedSql: major >= 14 ? "SELECT pg_get_wal_replay_pause_state() = 'paused' AS paused" : `SELECT ${modern ? 'pg_is_wal_replay_paused()' : 'pg_is_xlog_replay_paused()'} AS paused`,
    currentInsertLsn: modern ? 'pg_current_wal_insert_lsn()' : 'pg_current_xlog_insert_location()',
    currentWriteLsn: modern ? 'pg_current_wal_lsn()' : 'pg_current_xlog_location()',
    replicationColumns: modern
      ? { sent: 'sent_lsn', write: 'write_lsn', flush: 'flush_lsn', replay: 'replay_lsn' }
      : { sent: 'sent_location', write: 'write_location', flush: 'flush_location', replay: 'replay_location' },
    lastReplayLsn: modern ? 'pg_last_wal_replay_lsn()' : 'pg_last_xlog_replay_location()',
    lastReceiveLsn: modern ? 'pg_last_wal_receive_lsn()' : 'pg_last_xlog_receive_location()',
    currentWalFile: modern ? 'pg_walfile_name(pg_current_wal_lsn())' : 'pg_xlogfile_name(pg_current_xlog_location())',
    replayLagSeconds: modern ? 'extract(epoch FROM replay_lag)::float8' : 'NULL::float8',
    lsnDiff: modern ? 'pg_wal_lsn_diff' : 'pg_xlog_location_diff',
    // pg_backup_start/stop from 15 (exclusive mode gone); pg_start_backup(label, fast, exclusive) before.
    backupStartSql: major >= 15 ? 'SELECT pg_backup_start($1, true) AS lsn' : 'SELECT pg_start_backup($1, true, false) AS lsn',
    backupStopSql:
      major >= 15
        ? 'SELECT lsn, labelfile, spcmapfile FROM pg_backup_stop(false)'
        : `SELECT lsn, labelfile, spcmapfile FROM pg_stop_backup(false${major >= 10 ? ', false' : ''})`,
    slotKeepLine: major >= 13 ? 'max_slot_wal_keep_size = 1GB          # a slot of a replica gone for long is invalidated past this' : '',
  };
}

/**
 * The standby's primary_conninfo: only host, port, user and application_name (REFERENCE.md 2), and
 * the lab's password when the lab has one (the data dir holding it is readable by its OS user only).
 * libpq's default sslmode (prefer) then encrypts replication whenever the server has TLS on.
 */
export function primaryConninfo(options: { host: string; port: number; user: string; applicationName: string; password?: string }): string {
  const base = `host=${options.host} port=${options.port} user=${options.user} application_name=${options.applicationName}`;
  return options.password === undefined ? base : `${base} password='${options.password.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}
