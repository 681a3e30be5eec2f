// HAProxy's time values: a number with an optional unit (us, ms, s, m, h, d); no unit means
// milliseconds, so the seed's `inter 10000` and `inter 10s` are the same.

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds, or undefined when the text is not a HAProxy time value. */
export function parseHaproxyTime(text: string): number | undefined {
  const match = /^(\d+)(us|ms|s|m|h|d)?$/.exec(text.trim());
  if (!match) return undefined;
  return Math.round(Number(match[1]) * UNIT_MS[match[2] ?? 'ms']!);
}

/** The shortest exact way to write `ms` for HAProxy ("10s", "1m", "500ms"). */
export function formatHaproxyTime(ms: number): string {
  if (ms > 0 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms > 0 && ms % 1000 === 0) return `${ms / 1000}s`;
  return `${Math.round(ms)}ms`;
}
