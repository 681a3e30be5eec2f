// Global options shared by every subcommand, read from commander with their env fallbacks.
import type { Command } from 'commander';
import { resolveGlobalOptions, type GlobalOptions } from '../lab/global-options.js';

export function globalsOf(command: Command): GlobalOptions {
  const options = command.optsWithGlobals<{ labDir?: string; pg?: string; osUser?: string; runtime?: string }>();
  return resolveGlobalOptions(options);
}

export function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((line) => `  $ ${line}`).join('\n')}\n`;
}
