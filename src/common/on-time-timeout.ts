// A timeout that does not count this process's own stalls against a peer. A timer that fires late (the
// event loop was busy, or the process starved of CPU: 2,000 clients at once on two cores) says nothing
// about whether the peer answered in time, and the answer may be among the I/O events not run yet. So
// the timeout expires only from a timer that fired on time, once the I/O already received has been
// read (setImmediate runs after the poll phase); a late one is re-armed briefly, giving I/O its turn.
// A process starved for good still expires it, at three times the delay.

/** Late by more than this, a timer shows a stalled process rather than a silent peer. */
const SLACK_MS = 100;
/** The short re-arm after a late timer. */
const RETRY_MS = 20;

export interface OnTimeTimeout {
  clear(): void;
}

export function onTimeTimeout(expire: () => void, ms: number): OnTimeTimeout {
  const giveUpAt = Date.now() + ms * 3;
  let timer: NodeJS.Timeout | null = null;
  let immediate: NodeJS.Immediate | null = null;
  let cleared = false;
  const arm = (delayMs: number): void => {
    const due = Date.now() + delayMs;
    timer = setTimeout(() => {
      timer = null;
      const late = Date.now() - due;
      immediate = setImmediate(() => {
        immediate = null;
        if (cleared) return;
        if (late > SLACK_MS && Date.now() < giveUpAt) return arm(RETRY_MS);
        expire();
      });
    }, delayMs);
  };
  arm(ms);
  return {
    clear() {
      cleared = true;
      if (timer) clearTimeout(timer);
      if (immediate) clearImmediate(immediate);
    },
  };
}
