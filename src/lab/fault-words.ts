// A fault in force as a person reads it, the same in `lab status`, `lab fault list` and the watchers
// (`lab stat replication|xact`, `lab top`): "paused", "lag", "partition", "partition from replica2",
// "loss 20%", "delay 100ms", "delay 100ms ±10ms". Only the state file's records: no process is looked at.
import type { FaultRecord, LabState } from './state.js';

export function faultWord(fault: FaultRecord): string {
  switch (fault.kind) {
    case 'pause':
      return 'paused';
    case 'partition':
      return fault.from?.length ? `partition from ${fault.from.join(',')}` : 'partition';
    case 'loss':
      return fault.percent === undefined ? 'loss' : `loss ${fault.percent}%`;
    case 'delay':
      if (fault.delayMs === undefined) return 'delay';
      return `delay ${fault.delayMs}ms${fault.jitterMs ? ` ±${fault.jitterMs}ms` : ''}`;
    default:
      return fault.kind;
  }
}

/** The words of the faults in force on `node`, in the order they were made. */
export function faultWordsOf(state: Pick<LabState, 'faults'>, node: string): string[] {
  return (state.faults ?? []).filter((fault) => fault.node === node).map(faultWord);
}

/** `running (paused)`, `up (delay 100ms)`: a status with the node's faults as a marker. */
export function withFaultWords(status: string, words: string[]): string {
  return words.length ? `${status} (${words.join(', ')})` : status;
}
