// Runs `lab demo primary-failover` (short, --keep) in a temp lab and checks its report against a
// count taken from the servers themselves.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { queryRows } from '../../src/postgres/client.js';
import { labJson, runLab } from './lab.js';

export interface PrimaryDrillFigures {
  lost_commits: number;
  acknowledged_commits: number;
  rows_on_new_primary: number;
  in_doubt: number;
  in_doubt_committed: number;
  write_downtime_ms: number | null;
  new_primary: string;
  read_errors: number;
}

/** `global` goes before the command (`--pg 11`); `step9` is how the old master comes back. */
export async function runPrimaryDrill(
  labDir: string,
  extra: string[],
  options: { global?: string[]; step9?: string } = {},
): Promise<{ figures: PrimaryDrillFigures; stdout: string }> {
  const reportDir = path.join(path.dirname(labDir), 'report');
  const result = await runLab(labDir, [...(options.global ?? []), 'demo', 'primary-failover', '--duration', '14s', '--kill-at', '4s', '--keep', '--report', reportDir, ...extra]);
  assert.equal(result.exitCode, 0, `${result.stderr}\n${result.stdout}`);
  for (const step of ['step 6: kill -9 master1', 'step 7: lab promote', 'step 8: lab replica follow', options.step9 ?? 'step 9: lab node rewind master1']) {
    assert.ok(result.stdout.includes(step), `narration has "${step}"`);
  }
  const report = JSON.parse(await readFile(path.join(reportDir, 'report.json'), 'utf8'));
  const figures = report.figures as PrimaryDrillFigures;
  assert.ok(report.crosscheck.every((c: { agrees: boolean }) => c.agrees), JSON.stringify(report.crosscheck));
  const svg = await readFile(path.join(reportDir, 'timeline.svg'), 'utf8');
  assert.ok(svg.includes('writes (rw)'), 'the timeline charts the acknowledged writes');

  await assertRowsOnEveryNode(labDir, figures);
  return { figures, stdout: result.stdout };
}

/**
 * The servers' own count after a primary drill: every node (the old primary rewound or rebuilt) holds
 * exactly the new primary's rows, which are the acknowledged commits that survived plus the in-doubt ones
 * that happened anyway.
 */
export async function assertRowsOnEveryNode(labDir: string, figures: PrimaryDrillFigures): Promise<void> {
  const status = await labJson<{ nodes: { name: string; port: number; role: string; replication: string }[] }>(labDir, 'status');
  assert.equal(status.nodes.find((n) => n.role === 'primary')!.name, figures.new_primary);
  assert.deepEqual(status.nodes.filter((n) => n.role === 'replica').map((n) => n.replication), ['streaming', 'streaming']);
  for (const node of status.nodes) {
    const rows = Number((await queryRows<{ n: string }>({ port: node.port, database: 'pglab_demo' }, 'SELECT count(*) AS n FROM acked'))[0]!.n);
    assert.equal(rows, figures.rows_on_new_primary, `rows in acked on ${node.name}`);
  }
  assert.equal(figures.rows_on_new_primary, figures.acknowledged_commits - figures.lost_commits + figures.in_doubt_committed);
}
