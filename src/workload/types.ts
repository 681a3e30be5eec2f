// The workload's options and what it measures. Field names are snake_case because they are the JSON
// a run writes (--json-out) and the report reads.

export type WorkloadMode = 'select' | 'tpcb';

export interface WorkloadOptions {
  /** postgresql:// URLs; each worker starts at its own and falls over to the next on a connection error. */
  urls: string[];
  concurrency: number;
  durationMs: number;
  mode: WorkloadMode;
  /** A new connection per transaction, like pgbench -C. */
  connectPerTx?: boolean;
  /** Transactions per second over all workers at most (cockroach workload's --max-rate); leaves CPU to the lab. */
  maxRate?: number;
  /** Stop after this many transactions (a bound besides the duration). */
  maxTransactions?: number;
  /** Count errors and go on (reconnecting); without it the first error stops the run. */
  tolerateErrors?: boolean;
  connectTimeoutMs?: number;
  /** A query that hangs longer than this is an error (a server that vanished without a reset). */
  queryTimeoutMs?: number;
  /** pgbench's scaling factor; read from pgbench_branches when not given. */
  scale?: number;
  /** Errors kept with their message (all are counted). */
  maxRecordedErrors?: number;
}

export interface WorkloadHooks {
  signal?: AbortSignal;
  /** Called once per second (and once for the last partial second). */
  onSample?: (sample: WorkloadSample) => void;
  onError?: (error: WorkloadError) => void;
}

export interface WorkloadSample {
  /** 1, 2, 3...: the second this sample closes (the last one may be partial). */
  second: number;
  /** Since the start of the run, at the end of this sample. */
  elapsed_ms: number;
  /** Length of this sample (1000 except for the last one). */
  interval_ms: number;
  ops: number;
  errors: number;
  errors_total: number;
  ops_per_sec: number;
  ops_per_sec_cum: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  max_ms: number;
  /** Transactions per server port (from inet_server_port() once per connection). */
  by_port: Record<string, number>;
  /** Transactions per URL the workers went through. */
  by_url: Record<string, number>;
}

export interface WorkloadError {
  /** Since the start of the run. */
  at_ms: number;
  /**
   * When the connection this error belongs to was opened (since the start of the run): a session
   * opened before a balancer knew of a failure can die with the server; one opened after cannot.
   */
  session_started_ms: number;
  worker: number;
  url: string;
  /** The server the connection was on, when it got that far. */
  port: number | null;
  phase: 'connect' | 'transaction';
  message: string;
  /** SQLSTATE or errno code, when there is one. */
  code: string | null;
}

export type StopReason = 'duration' | 'transactions' | 'signal' | 'error';

export interface WorkloadSummary {
  mode: WorkloadMode;
  urls: string[];
  concurrency: number;
  connect_per_tx: boolean;
  tolerate_errors: boolean;
  scale: number;
  /** Date.now() at the start: add at_ms / elapsed_ms to place a sample on a wall clock. */
  started_epoch_ms: number;
  started_at: string;
  duration_ms: number;
  ops: number;
  errors: number;
  /** Errors kept in `errors` (the first maxRecordedErrors). */
  errors_recorded: number;
  ops_per_sec: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  max_ms: number;
  connections: number;
  /** Connections per server port (each one ran `SELECT inet_server_port()` once: a cross-check allows for them). */
  connections_by_port: Record<string, number>;
  /** Times a worker moved on to the next URL after a connection error. */
  failovers: number;
  by_port: Record<string, number>;
  by_url: Record<string, number>;
  stopped_by: StopReason;
}

export interface WorkloadResult {
  samples: WorkloadSample[];
  errors: WorkloadError[];
  summary: WorkloadSummary;
}
