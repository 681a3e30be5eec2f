// report.md: what a person reads: the summary, the figures, the events in order, the transactions
// per node per phase, the cross-check with pg_stat_database, the errors, and the picture.
import type { Report } from './types.js';

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

/** A markdown table; `|` in a cell is escaped (also used by benchmarks/faults.ts). */
export function table(headers: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.map((c) => String(c).replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

function figureValue(name: string, value: number | string | boolean | null): string {
  if (value === null) return 'not measured';
  if (typeof value === 'number' && name.endsWith('_ms')) return `${value} ms`;
  return String(value);
}

export function renderReportMarkdown(report: Report, svgFile = 'timeline.svg'): string {
  const out: string[] = [`# ${report.title}`, ''];
  const when = report.started_at ? `started ${report.started_at}, ` : '';
  out.push(`_${when}load for ${seconds(report.duration_ms)}; report written ${report.generated_at}_`, '');
  if (report.summary.length) out.push(...report.summary.map((line) => `- ${line}`), '');
  out.push(`![${report.y_label ?? 'transactions per second per node'}, with the events and the client errors](${svgFile})`, '');
  for (const t of report.tables ?? []) {
    out.push(`## ${t.title}`, '', table(t.headers, t.rows), '');
    if (t.note) out.push(t.note, '');
  }

  out.push('## Figures', '', table(['figure', 'value'], Object.entries(report.figures).map(([name, value]) => [name, figureValue(name, value)])), '');

  out.push('## Timeline', '');
  if (report.events.length === 0) out.push('No events were recorded.', '');
  else {
    const sorted = [...report.events].sort((a, b) => a.at_ms - b.at_ms);
    out.push(table(['at', 'event', 'what'], sorted.map((e) => [seconds(e.at_ms), e.kind, e.label])), '');
  }

  if (report.phases?.length) {
    out.push('## Phases', '');
    out.push(
      table(
        ['phase', 'from', 'to', 'transactions', 'errors', 'slowest second (tps)'],
        report.phases.map((p) => [p.name, seconds(p.from_ms), seconds(p.to_ms), p.transactions, p.errors, p.min_tps ?? 'no whole second']),
      ),
      '',
    );
    const stopped = report.phases.filter((p) => p.min_tps === 0);
    out.push(stopped.length ? `> **Reads stopped** for at least a second in: ${stopped.map((p) => p.name).join(', ')}.` : 'Reads never stopped: every whole second of every phase had transactions.', '');
  }

  out.push('## Transactions per node', '');
  if (report.transactions.length === 0) out.push('No transactions were counted.', '');
  else out.push(table(['node', 'before', 'during', 'after', 'total'], report.transactions.map((t) => [t.node, t.before, t.during, t.after, t.total])), '');

  if (report.crosscheck.length) {
    out.push('## Cross-check with pg_stat_database', '');
    out.push(
      table(
        ['node', 'workload', 'xact_commit growth', 'agrees'],
        report.crosscheck.map((c) => [c.node, c.workload, c.pg_stat_database ?? 'unavailable', c.agrees ? 'yes' : `**no**${c.note ? `: ${c.note}` : ''}`]),
      ),
      '',
    );
    const disagreeing = report.crosscheck.filter((c) => !c.agrees);
    if (disagreeing.length) {
      out.push(`> **Note:** the counts disagree for ${disagreeing.map((c) => c.node).join(', ')}: the workload's own count and the server's pg_stat_database counter differ (see the table).`, '');
    } else {
      out.push('The workload\'s counts agree with the servers\' own counters.', '');
    }
  }

  out.push('## Client errors', '');
  const total = report.errors_total ?? report.errors.length;
  if (total === 0) out.push('None.', '');
  else {
    out.push(`${total} error(s)${total > report.errors.length ? ` (the first ${report.errors.length} listed)` : ''}.`, '');
    const shown = report.errors.slice(0, 20);
    out.push(table(['at', 'through', 'message'], shown.map((e) => [seconds(e.at_ms), e.target ?? '', e.message])), '');
    if (report.errors.length > shown.length) out.push(`…and ${report.errors.length - shown.length} more in report.json.`, '');
  }

  if (report.notes.length) out.push('## Notes', '', ...report.notes.map((note) => `- ${note}`), '');
  return out.join('\n');
}
