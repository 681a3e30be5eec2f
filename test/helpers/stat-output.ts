// Reading the watchers' text output back: blocks of banner + psql table, as a person sees them.
import { execa, type ResultPromise } from 'execa';
import { labBin } from './lab.js';

export interface TableBlock {
  banner: string;
  header: string[];
  rows: Record<string, string>[];
}

/** Split on the `|` of a psql row and trim the cells. */
export function cells(line: string): string[] {
  return line.split('|').map((cell) => cell.trim());
}

/** One block: banner line, header, rule, rows (until a blank line). */
export function parseBlock(block: string): TableBlock {
  const lines = block.split('\n').filter((line) => line.length > 0);
  const [banner = '', headerLine = '', , ...rowLines] = lines;
  const header = cells(headerLine);
  return {
    banner,
    header,
    rows: rowLines.map((line) => Object.fromEntries(cells(line).map((cell, i) => [header[i] ?? `#${i}`, cell]))),
  };
}

/**
 * Every complete block of a piped watch (each ends with a blank line). `finished`: the output of an
 * exited command, whose trailing newlines execa strips, so its last block is complete too.
 */
export function parseBlocks(stdout: string, finished = false): TableBlock[] {
  const complete = finished ? stdout : stdout.slice(0, stdout.lastIndexOf('\n\n') + 1);
  return complete
    .split('\n\n')
    .filter((block) => block.trim().length > 0)
    .map(parseBlock);
}

export interface Watcher {
  child: ResultPromise;
  output(): string;
}

/** `lab ... args` running in the background; stdout collected as it comes. */
export function spawnLab(labDir: string, args: string[]): Watcher {
  const child = execa('node', [labBin, '--lab-dir', labDir, ...args], { reject: false, env: { NO_COLOR: '1' }, timeout: 120_000 });
  let text = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    text += chunk.toString('utf8');
  });
  return { child, output: () => text };
}

/** Stop a watcher we started (by its pid) if it is still running, and wait for it. */
export async function stopWatcher(watcher: Watcher): Promise<void> {
  if (watcher.child.exitCode === null && watcher.child.pid) watcher.child.kill('SIGKILL');
  await watcher.child;
}
