// Where a lab's nodes run, behind one small interface: host processes driven by pg_ctl (the default)
// or containers (issue 6). Commands build, start, stop, kill and inspect nodes only through it; both
// runtimes write the server's log to the same file (log/<node>.log in the lab dir). A lab's runtime: runtime-for.ts.
import type { Reporter } from '../common/reporter.js';
import type { BaseBackupMethod } from '../postgres/base-backup.js';
import type { Installation } from '../postgres/installation.js';
import type { OsUser } from '../postgres/os-user.js';
import type { ServerStatus, StopMode } from '../postgres/server.js';
import type { RuntimeName } from '../lab/global-options.js';
import type { NodeHost } from '../network/address.js';
import type { LabState } from '../lab/state.js';

/** What a runtime needs to know of a node. */
export interface RuntimeNode {
  name: string;
  port: number;
  datadir: string;
  /** Its host (a lab made with --hosts): where it runs and is reached (nodeAddress). */
  host?: NodeHost;
  /** A delayed standby's recovery_min_apply_delay, written with its standby files. */
  applyDelayMs?: number;
}

export type ResolvedBackupMethod = Exclude<BaseBackupMethod, 'auto'>;

/** The node a replica is cloned from, and how. */
export interface CloneUpstream {
  /** Its address (nodeAddress). */
  host: string;
  port: number;
  /** Its data dir on this host (pglab's own base backup copies it). */
  datadir: string;
  /** The physical replication slot on it that keeps the WAL for the new replica. */
  slot: string;
  method: ResolvedBackupMethod;
}

export interface RuntimeContext {
  labDir: string;
  state: LabState;
  /** The host's PostgreSQL (pg_ctl, initdb, pg_basebackup for processes); absent when it is gone (destroy). */
  installation?: Installation;
  /** The OS user host processes run as (process runtime). */
  runAs?: OsUser;
  /** The dir of cached initdb templates a new master is copied from (process runtime); none: initdb runs. */
  initdbTemplates?: string;
  /** A line for the person running the command (GlobalOptions.notice): the docker runtime's image build. */
  notice?: (message: string) => void;
}

export interface NodeRuntime {
  readonly name: RuntimeName;
  /**
   * initdb into the (empty) data dir, or a copy of the cached initdb template (initdbTemplates), then the
   * lab's postgresql.conf / pg_hba.conf and marker. `slots` are made in the copy's single-user run
   * (slotsMade); without a copy they are not (no server runs yet to make them).
   */
  initMaster(node: RuntimeNode, reporter: Reporter, options?: { slots?: string[] }): Promise<{ slotsMade: boolean }>;
  /**
   * A new lab's standbys, cold: the master's data dir, made by initMaster with their `slots` and not yet
   * started, is copied into each standby's empty data dir, which then gets its own configuration and
   * standby files. Started after the master, they stream with no base backup taken (a copy of a cleanly
   * shut down cluster is one). Absent where the runtime cannot (containers).
   */
  coldStandbys?(master: RuntimeNode, standbys: RuntimeNode[]): Promise<void>;
  /** What initMaster will do with the cached initdb template: copy it, make it then copy it, or nothing (none, or no templates here). */
  initdbTemplate?(): Promise<'cached' | 'new' | undefined>;
  /**
   * What cloneReplica needs (pg_basebackup, or the engine and image), checked before the lab records the
   * node; returns the method `wanted` resolves to here (auto: src/postgres/base-backup.ts).
   */
  checkCanClone(wanted?: BaseBackupMethod): Promise<ResolvedBackupMethod>;
  /**
   * A base backup of the upstream (pg_basebackup, or pglab's own copy: `method`), streaming its WAL
   * through `slot` (created on the upstream beforehand), then the lab's configuration and standby files.
   * `signal` (Ctrl-C) ends the copy or pg_basebackup on the host; a one-off container runs to its end.
   */
  cloneReplica(node: RuntimeNode, upstream: CloneUpstream, reporter: Reporter, signal?: AbortSignal): Promise<{ backupKb?: number; method: ResolvedBackupMethod }>;
  /** Start and wait until it accepts connections; returns the postmaster's pid (as the host sees it). `signal` ends the wait (processes). */
  start(node: RuntimeNode, timeoutMs?: number, signal?: AbortSignal): Promise<number>;
  /** Idempotent. */
  stop(node: RuntimeNode, mode?: StopMode, timeoutMs?: number): Promise<void>;
  /** SIGKILL the postmaster (kill -9, or docker kill). */
  kill(node: RuntimeNode): Promise<{ pid: number; killedAtMs: number }>;
  /**
   * `lab fault pause`: freeze the running node whose postmaster is `pid` (SIGSTOP of it, then of its
   * children; docker pause of its container). It accepts TCP connections but answers nothing.
   */
  pause(node: RuntimeNode, pid: number): Promise<{ processes: number; how: string }>;
  /** Undo a pause (or a pause half made); nothing when the node is not paused. What was done, or undefined when nothing runs. */
  resume(node: RuntimeNode): Promise<string | undefined>;
  /** `expected` tells a crash from a stop when nothing runs. */
  status(node: RuntimeNode, expected: 'running' | 'stopped'): Promise<{ status: ServerStatus; pid?: number }>;
  /** The postmaster's pid when it runs. */
  livePid(node: RuntimeNode): Promise<number | undefined>;
  /** The last lines of the server's log, labelled, for error details. */
  logTail(node: RuntimeNode, lines?: number): Promise<string | undefined>;
  /** Who must own files the lab writes into a data dir: the host's postgres user, or the image's. */
  dataOwner(): Promise<OsUser | undefined>;
  /** Why no pg_rewind can rewind the lab's nodes here, or undefined when one can. */
  rewindMissing(): Promise<string | undefined>;
  /**
   * pg_rewind the shut down node's data dir from the primary at sourceHost (default 127.0.0.1):sourcePort, after clearing
   * the lock files a killed server leaves; returns what pg_rewind said.
   */
  rewind(node: RuntimeNode, sourcePort: number, reporter: Reporter, sourceHost?: string): Promise<string>;
}
