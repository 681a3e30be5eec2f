// How core code tells a person what is happening without printing: the CLI decides where it goes
// (stderr with a progress bar on a terminal, nowhere with --json).

export interface Reporter {
  /** A step of a longer job: "CHECKPOINT on master1". */
  step(message: string): void;
  /** Progress of a long step, 0..1, with a short text ("36644/36644 kB"). */
  progress(fraction: number, text: string): void;
  /** Raw output of a program worth showing (initdb, pg_basebackup --verbose). */
  detail(line: string): void;
}

export const silentReporter: Reporter = {
  step: () => undefined,
  progress: () => undefined,
  detail: () => undefined,
};
