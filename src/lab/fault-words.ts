// A fault in force as a person reads it, the same in `lab status`, `lab fault list` and the watchers
// (`lab stat replication|xact`, `lab top`): "paused", "lag", "partition", "partition from replica2",
// "loss 20%", "delay 100ms", "delay 100ms ±10ms". Only the state file's records: no process is looked at.
import type { FaultRecord, LabState } from './state.js';

/** What a fault's kind does not say: "20%", "100ms ±10ms", "from replica1,replica2"; undefined when nothing (`lab fault list`'s detail column). */
export function faultDetail(fault: FaultRecord): string | undefined {
  if (fault.kind === 'loss') return fault.percent === undefined ? undefined : `${fault.percent}%`;
  if (fault.kind === 'delay') return fault.delayMs === undefined ? undefined : `${fault.delayMs}ms${fault.jitterMs ? ` ±${fault.jitterMs}ms` : ''}`;
  return fault.from?.length ? `from ${fault.from.join(',')}` : undefined;
}

export function faultWord(fault: FaultRecord): string {
  if (fault.kind === 'pause') return 'paused';
  const detail = faultDetail(fault);
  return detail ? `${fault.kind} ${detail}` : fault.kind;
}

/** The words of the faults in force on `node`, in the order they were made. */
export function faultWordsOf(state: Pick<LabState, 'faults'>, node: string): string[] {
  return (state.faults ?? []).filter((fault) => fault.node === node).map(faultWord);
}

/** `running (paused)`, `up (delay 100ms)`: a status with the node's faults as a marker. */
export function withFaultWords(status: string, words: string[]): string {
  return words.length ? `${status} (${words.join(', ')})` : status;
}
