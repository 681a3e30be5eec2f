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
  | 'FILESYSTEM' // the file system refused: read-only, full, permission denied, a path part not a directory
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
  FILESYSTEM: 10,
  INTERRUPTED: 130,
};

export class LabError extends Error {
  readonly code: LabErrorCode;
  /** Extra lines shown under the message, e.g. the tail of a server log. */
  readonly detail?: string;
  /** What a program may read instead of parsing the message (the library's callers): rows, names, paths. */
  readonly facts?: Record<string, unknown>;

  constructor(code: LabErrorCode, message: string, options: { detail?: string; cause?: unknown; facts?: Record<string, unknown> } = {}) {
    super(message, { cause: options.cause });
    this.name = 'LabError';
    this.code = code;
    this.detail = options.detail;
    if (options.facts) this.facts = options.facts;
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

/** A file system error raised through a handle (write, fsync: no path of its own) gets the path it was for. */
export function withPath(error: unknown, file: string): unknown {
  const failed = error as NodeJS.ErrnoException;
  if (failed && typeof failed === 'object' && failed.code && !failed.path) failed.path = file;
  return error;
}

/** Why the file system refused, and what to do, by errno code. */
const FILE_SYSTEM_ERRORS: Record<string, [why: string, remedy: string]> = {
  ENOTDIR: ['a part of the path is not a directory', 'choose a path whose parents are all directories'],
  EROFS: ['the file system is read-only', 'use a lab dir (--lab-dir) and data dirs on a writable file system'],
  EACCES: ['permission denied', 'check the owner and mode of the path and of its parents, or run lab as a user who may write there'],
  EPERM: ['operation not permitted', 'check the owner and mode of the path and of its parents, or run lab as a user who may write there'],
  ENOSPC: ['no space left on the device', 'free some space and run the command again'],
  EDQUOT: ['the disk quota is exhausted', 'free some space and run the command again'],
  EEXIST: ['it already exists', 'remove it or choose another path, then run the command again'],
  EISDIR: ['it is a directory', 'remove it or choose another path'],
  ENOENT: ['no such file or directory', 'check the path (and that its parents exist)'],
  ELOOP: ['it is a symbolic link (not followed)', 'remove the link and run the command again'],
  ENAMETOOLONG: ['the path is too long', 'choose a shorter path'],
  EMFILE: ['too many open files', 'raise the open-files limit (ulimit -n) and run the command again'],
};

const SYSCALL_WORDS: Record<string, string> = {
  mkdir: 'create directory', mkdtemp: 'create a temporary directory', open: 'open', rename: 'rename', unlink: 'remove', rmdir: 'remove',
  rm: 'remove', scandir: 'list', opendir: 'list', write: 'write', read: 'read', lstat: 'inspect', stat: 'inspect', chmod: 'change the mode of',
  fchmod: 'change the mode of', chown: 'change the owner of', fchown: 'change the owner of', copyfile: 'copy', symlink: 'link', fsync: 'write',
};

/**
 * A file system error (ENOTDIR, EROFS, EACCES, ENOSPC, ...) from Node as one line naming the path and what
 * to do (exit 10), or undefined for any other error.
 */
export function fileSystemError(error: unknown): LabError | undefined {
  const { code, syscall, path, dest } = (error ?? {}) as NodeJS.ErrnoException & { dest?: string };
  const known = code ? FILE_SYSTEM_ERRORS[code] : undefined;
  if (!known || isLabError(error)) return undefined;
  const [why, remedy] = known;
  const verb = (syscall && SYSCALL_WORDS[syscall]) ?? syscall ?? 'use';
  const target = path ? ` ${path}${dest ? ` to ${dest}` : ''}` : '';
  return new LabError('FILESYSTEM', `cannot ${verb}${target}: ${why} (${code}): ${remedy}`, { cause: error });
}
