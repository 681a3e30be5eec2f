// Parsers for option values, shared by every command declaration: commander calls them and turns
// their InvalidArgumentError into a one-line usage error.
import { InvalidArgumentError } from 'commander';
import { parseApplyDelay } from '../lab/apply-delay.js';

/** "60", "60s", "500ms", "2m" -> milliseconds. */
export function parseSeconds(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!match) throw new InvalidArgumentError(`expected a duration such as 60, 60s, 500ms or 2m, got "${text}"`);
  const value = Number(match[1]);
  const unit = match[2] ?? 's';
  return unit === 'ms' ? value : unit === 'm' ? value * 60_000 : value * 1000;
}

/** A whole number of 1 or more. */
export function positiveInt(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new InvalidArgumentError(`expected a whole number of 1 or more, got "${text}"`);
  return value;
}

/** `--apply-delay`: "30s", "500ms", "2min", "1h" -> ms, more than 0 and at most 24 h (src/lab/apply-delay.ts). */
export function applyDelayOption(text: string): number {
  try {
    return parseApplyDelay(text);
  } catch (error) {
    throw new InvalidArgumentError(error instanceof Error ? error.message.replace(/^--apply-delay: /, '') : String(error));
  }
}
