// What pgbench prints, read back as data: the progress of `pgbench -i` and the summary of a run
// (PostgreSQL 9.4 to 18 print the same shapes; fields a version does not print stay null).

export interface InitProgress {
  done: number;
  total: number;
  fraction: number;
  elapsedS: number | null;
  remainingS: number | null;
}

const INIT_PROGRESS = /^(\d+) of (\d+) tuples \((\d+)%\) (?:of \S+ )?done(?: \(elapsed ([\d.]+) s, remaining ([\d.]+) s\))?/;

/** "900000 of 1000000 tuples (90%) done (elapsed 14.13 s, remaining 1.57 s)." -> progress. */
export function parseInitProgress(line: string): InitProgress | undefined {
  const match = INIT_PROGRESS.exec(line.trim());
  if (!match) return undefined;
  const done = Number(match[1]);
  const total = Number(match[2]);
  return {
    done,
    total,
    fraction: total > 0 ? done / total : 0,
    elapsedS: match[4] === undefined ? null : Number(match[4]),
    remainingS: match[5] === undefined ? null : Number(match[5]),
  };
}

/** The phases pgbench -i announces ("creating tables...", "vacuuming..."), as a step name. */
export function parseInitStep(line: string): string | undefined {
  const match = /^(dropping old tables|creating tables|generating data[^.]*|vacuuming|vacuum|creating primary keys|set primary keys|creating foreign keys|done)\b.*$/.exec(line.trim());
  return match ? line.trim().replace(/\.\.\.$/, '') : undefined;
}

export interface AbortedClient {
  client: number;
  message: string;
}

/** pgbench -P N: "progress: 5.0 s, 14123.4 tps, lat 1.131 ms stddev 0.2, 0 failed". */
export interface PgbenchProgress {
  elapsedS: number;
  tps: number;
  latencyMs: number | null;
  failed: number | null;
}

export function parseProgressLine(line: string): PgbenchProgress | undefined {
  const match = /^progress: ([\d.]+) s, ([\d.]+) tps(?:, lat ([\d.]+) ms)?.*?(?:, (\d+) failed)?$/.exec(line.trim());
  if (!match) return undefined;
  return {
    elapsedS: Number(match[1]),
    tps: Number(match[2]),
    latencyMs: match[3] === undefined ? null : Number(match[3]),
    failed: match[4] === undefined ? null : Number(match[4]),
  };
}

export interface PgbenchSummary {
  transactionType: string | null;
  scalingFactor: number | null;
  clients: number | null;
  threads: number | null;
  /** "number of transactions actually processed" */
  transactions: number | null;
  failedTransactions: number | null;
  latencyAverageMs: number | null;
  /** The tps line pgbench prints (with -C: "including reconnection times"). */
  tps: number | null;
  /** "client 3 aborted in command 1 (SQL) of script 0; ..." lines, one per client. */
  aborted: AbortedClient[];
  /** pgbench said "Run was aborted; the above results are incomplete." */
  runAborted: boolean;
  /** The lines of -P N, in order. */
  progress: PgbenchProgress[];
}

function numberAfter(text: string, label: RegExp): number | null {
  const match = new RegExp(`^${label.source}\\s*[:=]\\s*([\\d.]+)`, 'm').exec(text);
  return match ? Number(match[1]) : null;
}

export function parsePgbenchSummary(output: string): PgbenchSummary {
  const aborted: AbortedClient[] = [];
  for (const match of output.matchAll(/client (\d+) ((?:script \d+ )?aborted .*)$/gm)) {
    // pgbench may report one client twice (the query's error, then the abort): count clients once.
    if (aborted.some((a) => a.client === Number(match[1]))) continue;
    aborted.push({ client: Number(match[1]), message: `client ${match[1]} ${match[2]!.trim()}` });
  }
  // Older pgbench prints two tps lines (including / excluding connections establishing): keep the first.
  const tps = /^tps = ([\d.]+)/m.exec(output);
  return {
    transactionType: /^transaction type: (.*)$/m.exec(output)?.[1]?.trim() ?? null,
    scalingFactor: numberAfter(output, /scaling factor/),
    clients: numberAfter(output, /number of clients/),
    threads: numberAfter(output, /number of threads/),
    transactions: /^number of transactions actually processed: (\d+)/m.exec(output) ? Number(/^number of transactions actually processed: (\d+)/m.exec(output)![1]) : null,
    failedTransactions: numberAfter(output, /number of failed transactions/),
    latencyAverageMs: /^latency average = ([\d.]+) ms/m.exec(output) ? Number(/^latency average = ([\d.]+) ms/m.exec(output)![1]) : null,
    tps: tps ? Number(tps[1]) : null,
    aborted,
    runAborted: /Run was aborted/.test(output),
    progress: output.split('\n').map(parseProgressLine).filter((p): p is PgbenchProgress => p !== undefined),
  };
}
