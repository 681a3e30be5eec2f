// Runs one command line: the only place that writes errors for people and picks the exit code.
// Shared by the compiled entry (src/main.ts) and the one-file bundle bin/lab.js prefers (src/bundle-entry.ts).
import { CommanderError } from 'commander';
import { buildProgram } from './program.js';
import { exitCodes, fileSystemError, isLabError } from '../common/errors.js';

export async function runCli(argv: string[]): Promise<number> {
  // `lab status | head`: a closed pipe is the reader's choice, not an error.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw error;
    });
  }
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (caught) {
    if (caught instanceof CommanderError) {
      // help and version exit 0; help shown for a missing subcommand was already printed
      if (caught.exitCode === 0) return 0;
      if (caught.code !== 'commander.help' && caught.code !== 'commander.helpDisplayed') {
        process.stderr.write(`lab: ${caught.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ')} (run with --help for usage)\n`);
      }
      return exitCodes.USAGE;
    }
    const error = fileSystemError(caught) ?? caught;
    if (isLabError(error)) {
      process.stderr.write(`lab: ${error.message}\n`);
      if (error.detail) process.stderr.write(`${error.detail.replace(/^/gm, '    ')}\n`);
      return exitCodes[error.code];
    }
    process.stderr.write(`lab: internal error (please report it): ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    return 70;
  }
}
