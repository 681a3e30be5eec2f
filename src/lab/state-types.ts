// The records of lab.json, the lab's state file (read and written by state.ts, checked field by field by
// state-check.ts): its nodes, balancers, faults and network. Types only.
import type { LabHosts, NodeHost } from '../network/address.js';
import type { LabAccessSettings } from './access.js';
import type { RuntimeName } from './global-options.js';

/**
 * restored: a node made by `lab node restore` from a base backup and the archive, on a timeline of its own (no balancer pool, no upstream).
 * subscriber: a cluster of its own subscribed to a publication on the primary (`lab logical add`): no balancer pool, no upstream.
 */
export type NodeRole = 'primary' | 'replica' | 'restored' | 'subscriber';

export interface NodeRecord {
  name: string;
  role: NodeRole;
  port: number;
  datadir: string;
  /** The node this one streams from (replicas). */
  upstream?: string;
  /** True when the lab made the directory itself (destroy then removes the directory, not only its content). */
  datadirCreated: boolean;
  /** `building` while initdb / pg_basebackup runs; a crash then leaves a record destroy can clean up. */
  phase: 'building' | 'ready';
  /** What the lab last asked for: a node expected running but not running has crashed. */
  expected: 'running' | 'stopped';
  createdAt: string;
  /**
   * A former primary that another node was promoted over: its WAL may have diverged from the new
   * timeline, so it must be pg_rewind-ed (`lab node rewind`) or rebuilt before it can follow again.
   * Its role is 'replica' meanwhile, so no balancer pool and no command treats it as the primary.
   */
  rewindNeeded?: boolean;
  /** Listed in the primary's synchronous_standby_names (`lab replica add --sync`). */
  sync?: boolean;
  /** A delayed standby: its recovery_min_apply_delay in ms (`lab replica add --apply-delay`), kept by follow, rewind and re-add. */
  applyDelayMs?: number;
  /** Timeline the node started on when it was promoted. */
  timeline?: number;
  /** The command building the node (`lab replica add`) while it runs: see claimBuild. */
  builder?: Builder;
  /** Its host in a lab made with --hosts: recorded before the namespace is made (src/network/namespaces.ts). */
  host?: NodeHost;
  /** A subscriber's publication on the primary, its subscription (and slot on the primary), the tables. */
  logical?: LogicalRecord;
}

export interface LogicalRecord {
  publication: string;
  /** The subscription on the subscriber; its slot on the primary has the same name. */
  subscription: string;
  /** schema.table, as the primary's catalog names them. */
  tables: string[];
}

/**
 * Who builds a node, or applies a fault: taken over only once that process is provably gone (pid and
 * start time).
 */
export interface Builder {
  pid: number;
  /** /proc/PID/stat field 22, clock ticks after boot. */
  startTime: number;
  since: string;
}

export interface BalancerRecord {
  name: string;
  engine: 'builtin' | 'haproxy';
  listen: string;
  stats: string;
  pid: number;
  /** The process's start time (/proc/PID/stat field 22), recorded at launch: destroy and stop signal only that process. */
  startTime?: number;
  pool: string;
  configFile?: string;
  logFile: string;
  startedAt: string;
  /** Started by pglab's library inside a program (its pid): only that program stops it. */
  inProcess?: true;
}

/** Faults `lab fault` applies (issue 17): pause and lag on every lab; partition, loss and delay need --hosts. */
export type FaultKind = 'pause' | 'lag' | 'partition' | 'loss' | 'delay';

/**
 * A fault on a node. Recorded before it is applied (phase `applying`), so a CLI killed half way leaves a
 * record that `lab fault heal` and `lab destroy` treat as possibly applied.
 */
export interface FaultRecord {
  node: string;
  kind: FaultKind;
  phase: 'applying' | 'applied';
  since: string;
  /** pause: the postmaster that was stopped (heal resumes whatever postmaster of the data dir runs); delay: the relay. */
  pid?: number;
  /** delay: the added delay and its jitter, in ms. */
  delayMs?: number;
  jitterMs?: number;
  /** The command applying it, while the phase is `applying`: a record whose applier is gone was left half-applied. */
  applier?: Builder;
  /** partition: only the links to these nodes (absent: cut off from everyone). */
  from?: string[];
  /** loss: the share of packets dropped each way, in percent. */
  percent?: number;
}

export interface LabState {
  format: 1;
  labId: string;
  createdAt: string;
  /** True when the lab made its lab dir (destroy removes it if it ends up empty). */
  labDirCreated: boolean;
  /** The servers' PostgreSQL; bindir is the host's installation (its client tools serve every runtime). */
  pg: { bindir: string; version: string; major: number };
  /** Where the nodes run; absent in files written before runtimes existed, which means 'process'. */
  runtime?: RuntimeName;
  /** The image the nodes run (docker runtime). */
  image?: string;
  /** OS user PostgreSQL's programs run as, when the CLI runs as root. */
  osUser?: string;
  /** Database superuser (initdb -U). */
  dbUser: string;
  /** Authentication and TLS of the nodes; absent in labs made before them, which means trust, no TLS. */
  access?: LabAccessSettings;
  nodes: NodeRecord[];
  balancers: BalancerRecord[];
  /** Faults in force (`lab fault`); absent when there are none. */
  faults?: FaultRecord[];
  /** Nodes on hosts of their own (--hosts); recorded before the bridge is made. */
  hosts?: LabHosts;
  /** WAL archiving into <lab-dir>/archive (`lab master start --archive`), its base backups and restore points. */
  archive?: ArchiveRecord;
}

export interface ArchiveRecord {
  since: string;
  /** `lab backup`: base backups in <lab-dir>/backups/<id>, oldest first. */
  backups: BackupRecord[];
  /** `lab restore-point NAME`, oldest first. */
  restorePoints: RestorePointRecord[];
}

export interface BackupRecord {
  /** b1, b2, ...: its directory <lab-dir>/backups/<id>. */
  id: string;
  /** building while copied: destroy and prune remove it; restore never uses it. */
  phase: 'building' | 'ready';
  startedAt: string;
  startLsn?: string;
  /** Where the copy is consistent: a restore target before it cannot be reached from this backup. */
  stopLsn?: string;
  stoppedAt?: string;
  /** txid_current_snapshot()'s xmax after the backup: transactions from this one on commit after it. */
  nextXid?: number;
  /** Its WAL segment size (bytes), for the archive's positions. */
  segmentBytes?: number;
}

export interface RestorePointRecord {
  name: string;
  lsn: string;
  at: string;
}
