// Runs one command line: the only place that writes errors for people and picks the exit code.
// Shared by the compiled entry (src/main.ts) and the one-file bundle bin/lab.js prefers (src/bundle-entry.ts).
import { CommanderError } from 'commander';
import { buildProgram } from './program.js';
import { exitCodes, isLabError } from '../common/errors.js';

export async function runCli(argv: string[]): Promise<number> {
  // `lab status | head`: a closed pipe is the reader's choice, not an error.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw error;
    });
  }
  const program = buildProgram();
  program.exitOverride();
  program.configureOutput({ writeErr: (text) => process.stderr.write(text) });
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // help and version exit 0; parse errors were already printed by commander
      return error.exitCode === 0 ? 0 : 2;
    }
    if (isLabError(error)) {
      process.stderr.write(`lab: ${error.message}\n`);
      if (error.detail) process.stderr.write(`${error.detail.replace(/^/gm, '    ')}\n`);
      return exitCodes[error.code];
    }
    process.stderr.write(`lab: internal error (please report it): ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    return 70;
  }
}
