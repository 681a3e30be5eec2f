// The one readiness primitive: call `probe` until it returns a value that is not undefined, at most
// every `intervalMs`, until `timeoutMs` has passed. Each failure is remembered so a timeout can say
// what the last attempt saw.
import { setTimeout as delay } from 'node:timers/promises';
import { LabError } from './errors.js';

export interface PollOptions {
  timeoutMs: number;
  intervalMs?: number;
  signal?: AbortSignal;
  /** What we are waiting for, as it should read in "Timed out after 30s waiting for <what>". */
  what: string;
  /** Extra text for the timeout error (e.g. a log tail), computed only when it is needed. */
  detail?: () => Promise<string | undefined> | string | undefined;
}

export async function pollUntil<T>(probe: () => Promise<T | undefined>, options: PollOptions): Promise<T> {
  const { timeoutMs, intervalMs = 100, signal, what } = options;
  const deadline = Date.now() + timeoutMs;
  let lastProblem: string | undefined;
  for (;;) {
    signal?.throwIfAborted();
    try {
      const value = await probe();
      if (value !== undefined) return value;
      lastProblem = undefined;
    } catch (error) {
      lastProblem = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() >= deadline) {
      const last = lastProblem ? ` (last attempt: ${lastProblem})` : '';
      const detail = options.detail ? await options.detail() : undefined;
      throw new LabError('TIMEOUT', `Timed out after ${formatMs(timeoutMs)} waiting for ${what}${last}`, { detail });
    }
    await delay(Math.min(intervalMs, Math.max(0, deadline - Date.now())), undefined, { signal });
  }
}

export function formatMs(ms: number): string {
  return ms >= 1000 && ms % 1000 === 0 ? `${ms / 1000}s` : ms >= 1000 ? `${(ms / 1000).toFixed(1)}s` : `${ms}ms`;
}
