// pg_rewind: finding a host binary that can rewind the lab's version, and what it said it did.
import { LabError } from '../common/errors.js';
import { clientTool, type Installation } from './installation.js';
import { runPg } from './run.js';

/**
 * pg_rewind only works on data dirs of its own major version; Debian ships one per installed server,
 * the embedded PostgreSQL 11 binaries have none. Either the tool, or why there is none.
 */
export async function locatePgRewind(installation: Installation): Promise<{ tool: string } | { missing: string }> {
  let tool: string;
  try {
    tool = await clientTool(installation, 'pg_rewind');
  } catch {
    return { missing: `no pg_rewind for PostgreSQL ${installation.major} here` };
  }
  const { stdout } = await runPg(tool, ['--version']);
  const major = Number(/(\d+)/.exec(stdout)?.[1]);
  if (major !== installation.major) {
    return { missing: `no pg_rewind for PostgreSQL ${installation.major} here (${tool} is version ${major}, and pg_rewind only rewinds its own version)` };
  }
  return { tool };
}

/** "no rewind required", the amount copied (the last "N/M kB" of --progress), or "done". */
export function rewindSummary(output: string): string {
  if (/no rewind required/.test(output)) return 'no rewind required';
  const lastProgress = output.split(/\r\n|\r|\n/).filter((line) => /kB/.test(line)).pop() ?? '';
  return /(\d+\/\d+ kB)/.exec(lastProgress)?.[1] ?? 'done';
}

/** pg_rewind's arguments: the target data dir and the source primary on the loopback. */
export function pgRewindArgs(datadir: string, sourcePort: number, dbUser: string, sourceHost = '127.0.0.1'): string[] {
  return ['-D', datadir, `--source-server=host=${sourceHost} port=${sourcePort} user=${dbUser} dbname=postgres`, '--progress'];
}

/** The refusal when there is no pg_rewind (`missing` from locatePgRewind): the node can still be rebuilt. */
export function noPgRewindError(missing: string): LabError {
  return new LabError('ENVIRONMENT', `${missing.charAt(0).toUpperCase()}${missing.slice(1)}: rebuild the node instead (\`lab replica add NAME DATADIR PORT\`)`);
}
