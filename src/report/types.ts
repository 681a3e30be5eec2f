// What a drill's report holds: every figure is measured, every time is ms since the start of the load.
// snake_case because this is report.json.

/** kill, detection, re-add, readmission are the failover drill's; others are free-form (balancer-kill...). */
export type ReportEventKind = 'start' | 'kill' | 'detection' | 're-add' | 'readmission' | 'stop' | (string & {});

export interface ReportEvent {
  at_ms: number;
  kind: ReportEventKind;
  /** Shown on the timeline and in the events table: "kill -9 replica2". */
  label: string;
}

export interface ReportPoint {
  /** End of the sample, ms since the start. */
  at_ms: number;
  tps: number;
}

export interface ReportSeries {
  /** Node name ("replica1"), or a port when the node is unknown. */
  node: string;
  port: number | null;
  points: ReportPoint[];
}

export interface ReportError {
  at_ms: number;
  message: string;
  /** URL or node the client was going through. */
  target: string | null;
}

export interface ReportFigures {
  /** From the kill to the balancer marking the node down. */
  detection_ms: number | null;
  /** From the re-add finishing to the balancer sending it traffic again. */
  readmission_ms: number | null;
  /** Client errors after the detection (0 is the goal). */
  errors_after_detection: number | null;
  [name: string]: number | string | boolean | null;
}

/** Transactions a node served before the kill, until re-admission, and after it. */
export interface ReportNodeTransactions {
  node: string;
  before: number;
  during: number;
  after: number;
  total: number;
}

/** The workload's count for a node against the growth of pg_stat_database.xact_commit on it. */
export interface ReportCrossCheck {
  node: string;
  workload: number;
  pg_stat_database: number | null;
  agrees: boolean;
  note?: string;
}

/** A stretch of the drill (lb-ha: "lb down", "lb back"...), with what the clients got in it. */
export interface ReportPhase {
  name: string;
  from_ms: number;
  to_ms: number;
  transactions: number;
  errors: number;
  /** The fewest transactions in any whole second of the phase: 0 means reads stopped for a second. */
  min_tps: number | null;
}

/** A table of the drill's own (lab demo stale-reads: the runs side by side), shown in report.md. */
export interface ReportTable {
  title: string;
  headers: string[];
  rows: (string | number)[][];
  note?: string;
}

export interface Report {
  title: string;
  generated_at: string;
  /** Wall clock of at_ms = 0. */
  started_at: string | null;
  duration_ms: number;
  /** A few lines a person reads first. */
  summary: string[];
  events: ReportEvent[];
  series: ReportSeries[];
  errors: ReportError[];
  /** Errors counted, when more happened than `errors` lists. */
  errors_total?: number;
  figures: ReportFigures;
  transactions: ReportNodeTransactions[];
  crosscheck: ReportCrossCheck[];
  /** Optional: the timeline's y axis when its series are not transactions per second. */
  y_label?: string;
  /** Optional: a drill's own records for report.json (lab demo stale-reads: the reads beyond its rule). */
  details?: Record<string, unknown>;
  /** Optional: tables shown after the summary. */
  tables?: ReportTable[];
  /** Optional: the drill's phases (lab demo lb-ha). */
  phases?: ReportPhase[];
  notes: string[];
}
