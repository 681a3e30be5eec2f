// Ctrl-C for long commands: the first SIGINT (or SIGTERM) aborts a signal, so the command stops what it
// started and reports what it measured; a second one exits at once.
import { LabError } from '../common/errors.js';

export function interruptSignal(): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const onInterrupt = () => {
    if (controller.signal.aborted) process.exit(130);
    process.stderr.write('\ninterrupted: stopping what was started (Ctrl-C again to exit at once)\n');
    controller.abort(new LabError('INTERRUPTED', 'Interrupted'));
  };
  process.on('SIGINT', onInterrupt);
  process.on('SIGTERM', onInterrupt);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', onInterrupt);
      process.off('SIGTERM', onInterrupt);
    },
  };
}

/** Run `run` with an interrupt signal; an interrupted run ends with exit code 130 once it has cleaned up. */
export async function withInterrupt<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const interrupt = interruptSignal();
  try {
    return await run(interrupt.signal);
  } catch (error) {
    // A command that says itself what it undid keeps its line.
    const ownLine = error instanceof LabError && error.code === 'INTERRUPTED' && error !== interrupt.signal.reason;
    if (interrupt.signal.aborted && !ownLine) throw new LabError('INTERRUPTED', 'Interrupted: everything the command started was stopped');
    throw error;
  } finally {
    interrupt.dispose();
  }
}
