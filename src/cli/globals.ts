// Global options shared by every subcommand, read from commander with their env fallbacks.
import path from 'node:path';
import type { Command } from 'commander';
import { LabError } from '../common/errors.js';
import { resolveGlobalOptions, type GlobalOptions } from '../lab/global-options.js';
import { printNotice } from './output.js';

export function globalsOf(command: Command): GlobalOptions {
  const options = command.optsWithGlobals<{ labDir?: string; pg?: string; osUser?: string; runtime?: string }>();
  return { ...resolveGlobalOptions(options), ...initdbTemplateOption(process.env.LAB_INITDB_TEMPLATE), notice: printNotice };
}

/** LAB_INITDB_TEMPLATE: off (initdb for every new master), on or unset (the default cache), or an absolute dir. */
export function initdbTemplateOption(value: string | undefined): Pick<GlobalOptions, 'initdbTemplate'> {
  if (value === undefined || value === '' || value === 'on') return {};
  if (value === 'off') return { initdbTemplate: false };
  if (path.isAbsolute(value)) return { initdbTemplate: path.resolve(value) };
  throw new LabError('USAGE', `LAB_INITDB_TEMPLATE must be off, on or an absolute directory, got "${value}"`);
}

export function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((line) => `  $ ${line}`).join('\n')}\n`;
}
