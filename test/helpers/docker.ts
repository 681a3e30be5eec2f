// Test helpers for the container runtime: a running engine and the local image (built from the
// installed PostgreSQL, no registry), and a temporary lab whose containers are removed in finally.
import { silentReporter } from '../../src/common/reporter.js';
import { ensureSlot, slotName } from '../../src/postgres/base-backup.js';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { pollUntil } from '../../src/common/poll.js';
import { prepareDatadir } from '../../src/lab/datadir.js';
import { queryRows } from '../../src/postgres/client.js';
import type { OsUser } from '../../src/postgres/os-user.js';
import { buildMasterDatadir, buildReplicaDatadir, type DockerBuildSpec } from '../../src/runtime/docker/build.js';
import { listLabContainers, removeLabContainers } from '../../src/runtime/docker/lab.js';
import { imagePostgresUser, startNodeContainer } from '../../src/runtime/docker/node.js';
import { labJson, processesMentioning, repoRoot, tempDir, withTempLab } from './lab.js';

export type DockerReadiness = { image: string; skipReason?: undefined } | { image?: undefined; skipReason: string };

/**
 * scripts/ensure-docker.sh then scripts/build-image.sh (its last line is the tag). A machine where
 * the engine cannot run at all gets a skip reason, printed by the caller; anything else fails.
 */
export async function prepareDocker(): Promise<DockerReadiness> {
  const ensure = await execa(path.join(repoRoot, 'scripts', 'ensure-docker.sh'), { reject: false, timeout: 300_000, all: true });
  if (ensure.exitCode !== 0) return { skipReason: `no Docker engine can run here: ${String(ensure.all).trim().split('\n').pop()}` };
  const build = await execa(path.join(repoRoot, 'scripts', 'build-image.sh'), { reject: false, timeout: 300_000 });
  assert.equal(build.exitCode, 0, `scripts/build-image.sh failed:\n${String(build.stderr)}`);
  const image = String(build.stdout).trim().split('\n').pop()!;
  return { image };
}

export interface DockerLab {
  labId: string;
  root: string;
  image: string;
  user: OsUser;
  spec(name: string, port: number): DockerBuildSpec;
}

/** A throwaway lab id and dir; every container labelled with it is removed in finally, and checked gone. */
export async function withDockerLab(image: string, use: (lab: DockerLab) => Promise<void>): Promise<void> {
  const labId = randomUUID();
  const root = await tempDir('pglab-docker-');
  try {
    const user = await imagePostgresUser(image, labId);
    await use({
      labId, root, image, user,
      spec: (name, port) => {
        const datadir = path.join(root, name);
        // These tests drive the runtime below the CLI: trust and no TLS, as the seed's lab.
        const files = { labDir: root, labId, name, port, datadir, major: 15, dbUser: 'postgres', access: { auth: 'trust', tls: 'off' } as const, runAs: user, address: '127.0.0.1' };
        return { labId, name, port, datadir, image, user, dbUser: 'postgres', major: 15, files };
      },
    });
  } finally {
    await removeLabContainers(labId);
    const left = await listLabContainers(labId);
    const processes = await processesMentioning(root);
    await rm(root, { recursive: true, force: true });
    assert.deepEqual(left.map((c) => c.name), [], 'containers left behind by the test');
    assert.deepEqual(processes, [], `processes left behind by the test:\n${processes.join('\n')}`);
  }
}

export async function startDockerMaster(lab: DockerLab, spec: DockerBuildSpec): Promise<void> {
  await prepareDatadir(spec.datadir, lab.labId);
  await buildMasterDatadir(spec);
  await startNodeContainer(spec);
}

/** What `lab replica add` does, on containers: clone, configure, start, wait until the master shows it streaming. */
export async function addDockerReplica(lab: DockerLab, spec: DockerBuildSpec, masterPort: number): Promise<void> {
  await prepareDatadir(spec.datadir, lab.labId);
  // Every replica streams through its own slot on the master (src/postgres/base-backup.ts).
  const slot = slotName(spec.name);
  await ensureSlot({ port: masterPort, user: spec.dbUser }, slot, { fresh: true });
  await buildReplicaDatadir(spec, { host: '127.0.0.1', port: masterPort, datadir: '', slot, method: 'pg_basebackup' }, silentReporter);
  await startNodeContainer(spec);
  await waitStreaming(masterPort, spec.name);
}

export async function waitStreaming(masterPort: number, name: string): Promise<void> {
  await pollUntil(
    async () => {
      const rows = await queryRows<{ state: string }>({ port: masterPort }, 'SELECT state FROM pg_stat_replication WHERE application_name = $1', [name]);
      return rows.some((row) => row.state === 'streaming') ? true : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100, what: `${name} to be streaming from the master on port ${masterPort}` },
  );
}

/**
 * A lab on the docker runtime driven through the CLI (withTempLab): `lab --runtime docker master start`
 * with the image and `masterArgs`, then `use(labDir, labId)`; every container labelled with the lab is
 * removed in finally, and the test fails if destroy (its own, or withTempLab's) left one.
 */
export async function withDockerCliLab(image: string, masterArgs: string[], use: (labDir: string, labId: string) => Promise<void>): Promise<void> {
  let labId: string | undefined;
  try {
    await withTempLab(async (labDir) => {
      await labJson(labDir, '--runtime', 'docker', 'master', 'start', '--image', image, ...masterArgs);
      labId = (JSON.parse(await readFile(path.join(labDir, 'lab.json'), 'utf8')) as { labId: string }).labId;
      await use(labDir, labId);
    });
  } finally {
    if (labId) {
      const left = await listLabContainers(labId);
      await removeLabContainers(labId);
      assert.deepEqual(left.map((c) => c.name), [], 'containers left behind by the test');
    }
  }
}
