// The options every command shares, with their environment fallbacks. Kept free of heavy imports:
// the CLI reads them before it knows which command runs.
import path from 'node:path';
import { LabError } from '../common/errors.js';

/** Where a lab's nodes run: host processes (pg_ctl) or containers (Docker, through testcontainers). */
export type RuntimeName = 'process' | 'docker';
export const RUNTIME_NAMES: readonly RuntimeName[] = ['process', 'docker'];

export interface GlobalOptions {
  /** Holds the state file and logs. Default /tmp/pgdata (env LAB_DIR). */
  labDir: string;
  /** --pg: a major version or a bin dir (env LAB_PG). */
  pg?: string;
  /** --os-user: who runs PostgreSQL when we are root. */
  osUser?: string;
  /**
   * --runtime (env LAB_RUNTIME), only when the user asked: a new lab then uses it (default process),
   * an existing lab must have been built with it. Unset means "whatever the lab records".
   */
  runtime?: RuntimeName;
  /**
   * Where a new master on the process runtime finds its cached initdb template (env LAB_INITDB_TEMPLATE,
   * read by the CLI): a dir, false for none (initdb runs), unset for the default (templateCacheRoot).
   */
  initdbTemplate?: string | false;
  /**
   * Told a line for the person running the command that is not a step of its reporter (an image built
   * before first use). The CLI prints it on stderr as `==> <line>`; the library leaves it unset: core code
   * never writes to stdout or stderr itself.
   */
  notice?: (message: string) => void;
}

export const DEFAULT_LAB_DIR = '/tmp/pgdata';

export function parseRuntime(value: string, from = '--runtime'): RuntimeName {
  if ((RUNTIME_NAMES as readonly string[]).includes(value)) return value as RuntimeName;
  throw new LabError('USAGE', `${from} must be ${RUNTIME_NAMES.join(' or ')}, got "${value}"`);
}

export type GlobalOptionsInput = Partial<Omit<GlobalOptions, 'runtime'>> & { runtime?: string };

export function resolveGlobalOptions(options: GlobalOptionsInput, env: NodeJS.ProcessEnv = process.env): GlobalOptions {
  return {
    labDir: path.resolve(options.labDir ?? env.LAB_DIR ?? DEFAULT_LAB_DIR),
    pg: options.pg ?? (env.LAB_PG || undefined),
    osUser: options.osUser ?? (env.LAB_OS_USER || undefined),
    runtime: options.runtime ? parseRuntime(options.runtime) : env.LAB_RUNTIME ? parseRuntime(env.LAB_RUNTIME, 'LAB_RUNTIME') : undefined,
  };
}
