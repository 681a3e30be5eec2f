// Tables that look like psql's aligned output (the seeds' ut-stat-* scripts printed psql tables):
// centred headers, a dashed rule under them, numbers right-aligned, " | " between columns.
import Table from 'cli-table3';

export type Cell = string | number | null | undefined;

export interface Column {
  header: string;
  align?: 'left' | 'right';
}

const PSQL_CHARS = {
  top: '', 'top-mid': '', 'top-left': '', 'top-right': '',
  bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
  left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '|',
};

export function psqlTable(columns: Column[], rows: Cell[][]): string {
  const table = new Table({
    // cli-table3 accepts cell objects in head; its typings only say string.
    head: columns.map((column) => ({ content: column.header, hAlign: 'center' })) as unknown as string[],
    chars: PSQL_CHARS,
    style: { head: [], border: [], 'padding-left': 1, 'padding-right': 1, compact: true },
    colAligns: columns.map((column) => column.align ?? 'left'),
  });
  for (const row of rows) table.push(row.map((cell) => (cell === null || cell === undefined ? '' : String(cell))));
  const lines = table.toString().split('\n');
  const header = lines[0] ?? '';
  const rule = header
    .split('|')
    .map((segment) => '-'.repeat(segment.length))
    .join('+');
  return [header.trimEnd(), rule.replace(/-+$/, (dashes) => dashes), ...lines.slice(1).map((line) => line.trimEnd())].join('\n');
}
