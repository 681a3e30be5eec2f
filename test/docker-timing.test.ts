// Time to a master and two streaming replicas: containers (the runtime's functions) vs processes
// (`node bin/lab.js master start` + `replica add` x2, as a user types them). Reported, not asserted:
// both share two cores with everything else on the machine.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { addDockerReplica, prepareDocker, startDockerMaster, withDockerLab, type DockerReadiness } from './helpers/docker.js';
import { freePorts, lab, withTempLab } from './helpers/lab.js';

let docker: DockerReadiness;

before(async () => {
  docker = await prepareDocker();
  if (docker.skipReason) console.log(`docker tests skipped: ${docker.skipReason}`);
});

async function timed(fn: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await fn();
  return Math.round(performance.now() - started);
}

test('master + two replicas: containers vs processes', async (t) => {
  if (!docker.image) return t.skip(docker.skipReason);
  const figures: Record<string, number> = {};

  await withDockerLab(docker.image, async (dockerLab) => {
    const [m, r1, r2] = await freePorts(3);
    figures['containers: master'] = await timed(() => startDockerMaster(dockerLab, dockerLab.spec('master1', m!)));
    figures['containers: replica1'] = await timed(() => addDockerReplica(dockerLab, dockerLab.spec('replica1', r1!), m!));
    figures['containers: replica2'] = await timed(() => addDockerReplica(dockerLab, dockerLab.spec('replica2', r2!), m!));
  });

  await withTempLab(async (labDir) => {
    const [m, r1, r2] = await freePorts(3);
    figures['processes: master'] = await timed(async () => void (await lab(labDir, 'master', 'start', '--port', String(m))));
    figures['processes: replica1'] = await timed(async () => void (await lab(labDir, 'replica', 'add', 'replica1', `${labDir}/replica1`, String(r1))));
    figures['processes: replica2'] = await timed(async () => void (await lab(labDir, 'replica', 'add', 'replica2', `${labDir}/replica2`, String(r2))));
  });

  const total = (prefix: string) => Object.entries(figures).filter(([key]) => key.startsWith(prefix)).reduce((sum, [, ms]) => sum + ms, 0);
  figures['containers: total'] = total('containers:');
  figures['processes: total'] = total('processes:');
  for (const [what, ms] of Object.entries(figures)) t.diagnostic(`${what} ${ms} ms`);
  console.log(`master + 2 replicas: containers ${figures['containers: total']} ms, processes ${figures['processes: total']} ms`);
  assert.ok(figures['containers: total']! > 0 && figures['processes: total']! > 0);
});
