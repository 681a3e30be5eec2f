// A program run once in its own container (initdb, pg_basebackup, id): started through testcontainers,
// waited for until it exits, its output kept for the error message, then removed.
import { setTimeout as delay } from 'node:timers/promises';
import { LabError, messageOf } from '../../common/errors.js';
import { followLines } from '../../common/lines.js';
import { pollUntil } from '../../common/poll.js';
import { findContainers, removeContainers } from './lab.js';
import { dockerEngine } from './engine.js';
import { ensureImage } from './image.js';
import { containerLogs, logsTail } from './logs.js';
import { loadTestcontainers } from './testcontainers.js';

export interface OneOffSpec {
  image: string;
  name: string;
  labels: Record<string, string>;
  /** "uid:gid" or a user name known to the image. */
  user: string;
  /** Program and arguments; the image's entrypoint is replaced (official images wrap theirs in a script). */
  command: string[];
  /** Extra environment (PGPASSWORD for programs that log in to the lab's servers). */
  env?: Record<string, string>;
  /** Host paths mounted at the same path inside the container. */
  binds?: string[];
  timeoutMs: number;
  /** What runs, as it should read in "<what> failed". */
  what: string;
  /** Each line of output as it comes (pg_basebackup's progress), not only at the end. */
  onLine?: (line: string) => void;
  /** Told when the image must be built first (ensureImage). */
  notice?: (message: string) => void;
}

export interface OneOffResult {
  output: string;
  elapsedMs: number;
}

export async function runOneOff(spec: OneOffSpec): Promise<OneOffResult> {
  const started = Date.now();
  await ensureImage(spec.image, spec.notice); // the clear ENVIRONMENT errors (no engine, no image) before anything else
  // A run interrupted earlier leaves its container behind under the same name: it is ours (same labels).
  await removeContainers(await findContainers(spec.labels));
  const { GenericContainer } = loadTestcontainers();
  const [program, ...args] = spec.command;
  const container = await new GenericContainer(spec.image)
    .withName(spec.name)
    .withLabels(spec.labels)
    .withNetworkMode('host')
    .withUser(spec.user)
    .withEntrypoint([program!])
    .withCommand(args)
    .withEnvironment({ LC_ALL: 'C', LANG: 'C', ...spec.env })
    .withBindMounts((spec.binds ?? []).map((path) => ({ source: path, target: path, mode: 'rw' as const })))
    .withAutoCleanup(false) // no reaper: none can be pulled here, and we remove the container ourselves
    .start()
    .catch((error: unknown) => {
      if (!/executable file not found/.test(messageOf(error))) throw error;
      throw new LabError('ENVIRONMENT', `Image ${spec.image} has no ${program} on its PATH, so ${spec.what} cannot run: use an image that has it (an image built from a \`lab versions install\` major has only initdb, pg_ctl and postgres)`, { cause: error });
    });
  const engine = await dockerEngine();
  const id = container.getId();
  const { onLine } = spec;
  const followed = onLine ? await container.logs() : undefined;
  const followedEnd = followLines(followed, (line) => {
    if (line.trim()) onLine?.(line);
  });
  try {
    const state = await pollUntil(
      async () => {
        const info = await engine.container.dockerode.getContainer(id).inspect();
        return info.State.Running ? undefined : info.State;
      },
      { timeoutMs: spec.timeoutMs, intervalMs: 50, what: `${spec.what} to finish in container ${spec.name}`, detail: async () => logsTail(await containerLogs(engine, id, 20), 20, spec.name) },
    );
    // The followed output ends with the container; give it a moment to deliver its last lines.
    await Promise.race([followedEnd, delay(2000)]);
    const output = await containerLogs(engine, id);
    if (state.ExitCode !== 0) {
      const lastLine = output.trim().split('\n').pop() ?? '';
      throw new LabError('COMMAND_FAILED', `${spec.what} failed in container ${spec.name} (exit code ${state.ExitCode}): ${lastLine}`, {
        detail: logsTail(output, 20, spec.name),
      });
    }
    return { output, elapsedMs: Date.now() - started };
  } finally {
    followed?.destroy();
    await engine.container.dockerode.getContainer(id).remove({ force: true }).catch(() => undefined);
  }
}
