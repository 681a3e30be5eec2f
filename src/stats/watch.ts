// The watchers' loop: sample, show, wait, until the count is reached or the signal is aborted (Ctrl-C).
// A failing sample is shown and the loop goes on: nodes going away and coming back is what people
// watch for, so nothing a node does may end the watch.
import { setTimeout as delay } from 'node:timers/promises';

export interface WatchOptions {
  intervalMs: number;
  /** Stop after this many samples; undefined = until aborted. */
  count?: number;
  signal: AbortSignal;
  /** Let the first sample's error out (no lab there is a mistake to report, not a state to watch). */
  firstMustSucceed?: boolean;
}

export async function watchLoop<T>(
  sample: (previous: T | undefined) => Promise<T>,
  show: (value: T, index: number) => void,
  showError: (error: unknown, index: number) => void,
  options: WatchOptions,
): Promise<number> {
  let previous: T | undefined;
  let index = 0;
  while (!options.signal.aborted && (options.count === undefined || index < options.count)) {
    const started = Date.now();
    try {
      previous = await sample(previous);
      if (options.signal.aborted) break;
      show(previous, index);
    } catch (error) {
      if (index === 0 && options.firstMustSucceed) throw error;
      if (options.signal.aborted) break;
      showError(error, index);
    }
    index += 1;
    if (options.count !== undefined && index >= options.count) break;
    // A steady period: the time a sample took is part of the interval.
    const wait = Math.max(0, options.intervalMs - (Date.now() - started));
    try {
      await delay(wait, undefined, { signal: options.signal });
    } catch {
      break; // aborted
    }
  }
  return index;
}
