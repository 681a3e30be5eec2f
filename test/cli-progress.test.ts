// Progress of long work when stderr is not a terminal (CI logs, `lab ... 2>file`): a line per quarter
// of the way, counted from the last line printed, so a base backup reporting every ~20% still shows.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { terminalReporter } from '../src/cli/output.js';

test('piped progress prints a line each quarter of the way and at 100%', () => {
  assert.equal(process.stderr.isTTY, undefined, 'the test runner pipes stderr');
  const written: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string) => {
    written.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    const reporter = terminalReporter();
    reporter.step('pg_basebackup from master1');
    // pg_basebackup's once-a-second lines for a 1.2 GB backup.
    for (const kb of [217665, 472513, 715841, 924353, 1191853, 1248119]) reporter.progress(kb / 1248119, `${kb}/1248119 kB`);
  } finally {
    process.stderr.write = write;
  }
  assert.deepEqual(written, [
    '==> pg_basebackup from master1\n',
    '    37% 472513/1248119 kB\n',
    '    74% 924353/1248119 kB\n',
    '    100% 1248119/1248119 kB\n',
  ]);
});
