// One error type for everything a user can fix: a stable code, a one-line message that says what was
// wrong and what to do, and optional detail (a log tail) printed under it. The entry point maps it to
// an exit code; anything else is an internal error.

export type LabErrorCode =
  | 'USAGE' // bad argument or option value
  | 'CONFLICT' // name, port or data dir clashes with something that exists
  | 'UNSAFE' // refusing to touch something the lab did not create
  | 'NOT_FOUND' // unknown node, no lab, no PostgreSQL installation
  | 'STATE' // the lab is not in a state that allows the command (no master running...)
  | 'TIMEOUT' // a bounded wait ran out
  | 'COMMAND_FAILED' // a PostgreSQL program exited non-zero
  | 'ENVIRONMENT' // the machine lacks something (OS user, binaries)
  | 'INTERRUPTED'; // Ctrl-C: what was started has been stopped

export const exitCodes: Record<LabErrorCode, number> = {
  USAGE: 2,
  CONFLICT: 3,
  UNSAFE: 4,
  NOT_FOUND: 5,
  STATE: 6,
  TIMEOUT: 7,
  COMMAND_FAILED: 8,
  ENVIRONMENT: 9,
  INTERRUPTED: 130,
};

export class LabError extends Error {
  readonly code: LabErrorCode;
  /** Extra lines shown under the message, e.g. the tail of a server log. */
  readonly detail?: string;

  constructor(code: LabErrorCode, message: string, options: { detail?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'LabError';
    this.code = code;
    this.detail = options.detail;
  }
}

export function isLabError(error: unknown): error is LabError {
  return error instanceof LabError;
}

/** The message of any thrown value, for wrapping foreign errors into one line. */
export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
