// What every drill does around its own steps: run the load and the drill's actions together, write and
// show the report, and leave nothing behind (unless --keep).
import { messageOf } from '../common/errors.js';
import type { Report } from '../report/types.js';
import { writeReport, type WrittenReport } from '../report/write-report.js';
import type { DemoLab } from './lab-setup.js';
import type { Narrator } from './narrator.js';

/** What a drill returns: its report, where it was written, and the lab it used (kept or removed). */
export interface DrillOutcome {
  report: Report;
  written: WrittenReport;
  labDir: string;
  kept: boolean;
}

export interface LoadAndDrill<T> {
  workload: Promise<T>;
  /** The drill's actions on the lab while the load runs; its failure stops the load. */
  drill: Promise<void>;
  /** Work that runs until the load stops (samplers); awaited before returning. */
  background?: Promise<void>;
}

/** Start the load and the drill with a signal of their own, aborted by `signal` (Ctrl-C) or a drill failure. */
export async function alongsideLoad<T>(signal: AbortSignal, start: (load: AbortSignal) => LoadAndDrill<T>): Promise<T> {
  const load = new AbortController();
  const onAbort = () => load.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  let background: Promise<void> | undefined;
  try {
    const run = start(load.signal);
    background = run.background;
    const stopLoadOnFailure = run.drill.catch((error: unknown) => {
      load.abort();
      throw error;
    });
    const [result] = await Promise.all([run.workload, stopLoadOnFailure]);
    return result;
  } finally {
    load.abort();
    signal.removeEventListener('abort', onAbort);
    await background;
  }
}

/** Write the report directory and show its summary. */
export async function publishReport(narrator: Narrator, dir: string, report: Report): Promise<WrittenReport> {
  const written = await writeReport(dir, report);
  for (const line of report.summary) narrator.show(line);
  narrator.say(`report: ${written.dir}/report.md, report.json, timeline.svg`);
  return written;
}

/**
 * Run `body` in the demo's lab, its clients with the lab's access; afterwards the lab is removed unless
 * `keep`, even on failure or Ctrl-C.
 */
export async function inDemoLab<T>(lab: DemoLab, narrator: Narrator, options: { keep: boolean; what: string }, body: () => Promise<T>): Promise<T> {
  let kept = false;
  try {
    const result = await lab.lab.within(body);
    kept = options.keep;
    return result;
  } finally {
    const labDir = lab.labDir;
    if (kept) {
      narrator.say(`kept the lab: lab --lab-dir ${labDir} status; remove it with lab --lab-dir ${labDir} destroy --yes`);
    } else {
      narrator.say(`cleaning up: stopping ${options.what} and every node, removing the demo's lab`);
      await lab.dispose().catch((error) => narrator.say(`cleanup problem: ${messageOf(error)}`));
    }
  }
}
