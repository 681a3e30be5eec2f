// The demo narrates each step with a timestamp as it happens, and remembers the drill's events on the
// load's clock (ms since the workload started) for the report.
import type { ReportEvent, ReportEventKind } from '../report/types.js';

export type Print = (line: string) => void;

export class Narrator {
  readonly events: ReportEvent[] = [];
  private readonly startedAt = Date.now();
  /** Date.now() when the load started; events before it get negative times. */
  loadEpochMs: number | null = null;

  constructor(private readonly print: Print) {}

  /** A step, printed as `[14:05:01 +12.3s] text`. */
  say(text: string): void {
    const now = new Date();
    const clock = now.toISOString().slice(11, 19);
    const since = ((now.getTime() - this.startedAt) / 1000).toFixed(1);
    this.print(`[${clock} +${since}s] ${text}`);
  }

  /** Raw lines (tables) under the current step. */
  show(text: string): void {
    this.print(text);
  }

  /**
   * Record an event at `epochMs` (default now), on the load's clock, and say it. `label` is short (it
   * is drawn on the timeline); `narration`, when given, is what is said instead.
   */
  event(kind: ReportEventKind, label: string, epochMs = Date.now(), narration?: string): ReportEvent {
    const event = { at_ms: this.loadEpochMs === null ? 0 : Math.round(epochMs - this.loadEpochMs), kind, label };
    this.events.push(event);
    this.say(narration ?? label);
    return event;
  }
}
