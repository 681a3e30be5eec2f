// The options every command shares, with their environment fallbacks. Kept free of heavy imports:
// the CLI reads them before it knows which command runs.
import path from 'node:path';

export interface GlobalOptions {
  /** Holds the state file and logs. Default /tmp/pgdata (env LAB_DIR). */
  labDir: string;
  /** --pg: a major version or a bin dir (env LAB_PG). */
  pg?: string;
  /** --os-user: who runs PostgreSQL when we are root. */
  osUser?: string;
}

export const DEFAULT_LAB_DIR = '/tmp/pgdata';

export function resolveGlobalOptions(options: Partial<GlobalOptions>, env: NodeJS.ProcessEnv = process.env): GlobalOptions {
  return {
    labDir: path.resolve(options.labDir ?? env.LAB_DIR ?? DEFAULT_LAB_DIR),
    pg: options.pg ?? (env.LAB_PG || undefined),
    osUser: options.osUser ?? (env.LAB_OS_USER || undefined),
  };
}
