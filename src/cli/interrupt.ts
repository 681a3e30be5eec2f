// Ctrl-C for long commands: the first SIGINT aborts the signal (the command stops what it started and
// returns), a second one exits at once.
import { LabError } from '../common/errors.js';

export async function withInterrupt<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let interrupts = 0;
  const onSigint = () => {
    interrupts += 1;
    if (interrupts === 1) {
      process.stderr.write('\ninterrupted: stopping what was started (Ctrl-C again to exit at once)\n');
      controller.abort();
    } else {
      process.exit(130);
    }
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  try {
    return await run(controller.signal);
  } catch (error) {
    if (controller.signal.aborted) throw new LabError('INTERRUPTED', 'Interrupted: everything the command started was stopped');
    throw error;
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
  }
}
