// What a lab's nodes, balancers and faults need from their Lab (src/api/lab.ts implements it): so they
// depend on this interface, not on the Lab class that makes them (no import cycle).
import type { GlobalOptions } from '../lab/global-options.js';
import type { Reporter } from '../common/reporter.js';
import type { NodeRecord } from '../lab/state.js';
import type { ConnectionAccess } from './connection.js';
import type { LabEvent, PromoteOptions } from './options.js';

export interface LabCore {
  /** Runs a command in the lab's client scope; `probe`: a failure is expected and retried, not the lab's. */
  run<T>(fn: () => Promise<T>, options?: { probe?: boolean }): Promise<T>;
  /** The node's record in lab.json as last read; an unknown name is a NOT_FOUND LabError. */
  record(name: string): NodeRecord;
  access(): ConnectionAccess;
  emit(event: LabEvent): void;
  /** The lab's events as a Reporter (steps and progress of long work). */
  reporter(): Reporter;
  markFailed(): void;
  promote(name: string, options?: PromoteOptions): Promise<unknown>;
  readonly globalOptions: GlobalOptions;
}
