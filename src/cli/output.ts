// Where the CLI writes: results on stdout (a table, or JSON with --json), progress on stderr.
import type { Reporter } from '../common/reporter.js';

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printLine(text = ''): void {
  process.stdout.write(`${text}\n`);
}

/** GlobalOptions.notice: a line on stderr (also with --json, whose results alone go to stdout). */
export function printNotice(message: string): void {
  process.stderr.write(`==> ${message}\n`);
}

/** Progress on stderr: steps as lines, a redrawn bar on a terminal, plain percent lines otherwise. */
export function terminalReporter(options: { verbose?: boolean } = {}): Reporter {
  const tty = process.stderr.isTTY;
  let lastPercent = -1;
  let barShown = false;
  const endBar = () => {
    if (barShown) process.stderr.write('\n');
    barShown = false;
  };
  return {
    step(message) {
      endBar();
      lastPercent = -1;
      process.stderr.write(`==> ${message}\n`);
    },
    progress(fraction, text) {
      const percent = Math.floor(Math.max(0, Math.min(1, fraction)) * 100);
      if (tty) {
        const width = 30;
        const filled = Math.round((percent / 100) * width);
        process.stderr.write(`\r    [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(percent).padStart(3)}% ${text}`);
        barShown = true;
        lastPercent = percent;
      } else if (percent >= lastPercent + 25 || (percent === 100 && lastPercent !== 100)) {
        // Piped: a line per quarter of the way, counted from the last line printed.
        process.stderr.write(`    ${percent}% ${text}\n`);
        lastPercent = percent;
      }
    },
    detail(line) {
      if (options.verbose) {
        endBar();
        process.stderr.write(`    ${line}\n`);
      }
    },
  };
}
