// A delayed standby's recovery_min_apply_delay (`lab replica add --apply-delay 30s`, addReplica({ applyDelayMs })):
// its bounds and its words on the command line and in the watchers (its line in the standby's configuration:
// src/postgres/dialect.ts standbyFiles, units accepted on every major).
import { LabError } from '../common/errors.js';

/** PostgreSQL takes up to INT_MAX ms; a lab's standby held back more than a day is a mistake, not a drill. */
export const MAX_APPLY_DELAY_MS = 24 * 3_600_000;

const UNITS: Record<string, number> = { ms: 1, s: 1000, min: 60_000, m: 60_000, h: 3_600_000 };

/** "30s", "500ms", "2min" (or "2m"), "1h" -> ms; a bare number is refused (PostgreSQL reads ms, the lab's other options seconds). */
export function parseApplyDelay(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|min|m|h)$/.exec(text.trim());
  if (!match) throw new LabError('USAGE', `--apply-delay: expected a delay with its unit such as 500ms, 30s, 2min or 1h, got "${text}"`);
  return checkApplyDelayMs(Number(match[1]) * UNITS[match[2]!]!, '--apply-delay', text);
}

/** A whole number of ms, more than 0 and at most 24 h; `shown` is what the caller gave (the CLI's text). */
export function checkApplyDelayMs(value: unknown, where: string, shown: string = JSON.stringify(value)): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new LabError('USAGE', `${where}: expected a delay in ms, got ${shown}`);
  if (value <= 0) throw new LabError('USAGE', `${where}: the delay must be more than 0, got ${shown} (a standby without a delay: leave the option out)`);
  if (!Number.isInteger(value)) throw new LabError('USAGE', `${where}: the delay must be a whole number of ms, got ${shown}`);
  if (value > MAX_APPLY_DELAY_MS) throw new LabError('USAGE', `${where}: the delay must be at most 24h, got ${shown}`);
  return value;
}

/** 500ms, 30s, 2min, 1h30min: as PostgreSQL prints durations, for people. */
export function formatApplyDelay(ms: number): string {
  if (ms % 1000 !== 0) return `${ms}ms`;
  const s = ms / 1000;
  if (s < 60 || s % 60 !== 0) return s < 60 ? `${s}s` : `${Math.floor(s / 60)}min${s % 60}s`;
  const min = s / 60;
  if (min < 60 || min % 60 !== 0) return min < 60 ? `${min}min` : `${Math.floor(min / 60)}h${min % 60}min`;
  return `${min / 60}h`;
}
