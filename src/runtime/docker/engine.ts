// The Docker engine, reached through testcontainers (which honours DOCKER_HOST, ~/.testcontainers.properties
// and the local socket). Loaded lazily: testcontainers costs ~0.4 s to import, which the process
// runtime must not pay.
import type { ContainerRuntimeClient } from 'testcontainers';
import { LabError, messageOf } from '../../common/errors.js';
import { loadTestcontainers } from './testcontainers.js';

let engine: Promise<ContainerRuntimeClient> | undefined;

/**
 * testcontainers asks the engine for the `bridge` network's gateway when it runs inside a container
 * (/.dockerenv exists, as on CI VMs), and fails when dockerd runs with --bridge=none. Our nodes use
 * host networking, so the host it would compute is never used: pin it to loopback unless the user set
 * it, for the one moment testcontainers reads it (its client's set-up), and give the caller's
 * environment back as it was (a program that imports pglab keeps its own).
 */
async function withHostOverride<T>(fn: () => Promise<T>): Promise<T> {
  const name = 'TESTCONTAINERS_HOST_OVERRIDE';
  if (process.env[name] !== undefined) return fn();
  process.env[name] = '127.0.0.1';
  try {
    return await fn();
  } finally {
    delete process.env[name];
  }
}

function whereEngineShouldBe(): string {
  return process.env.DOCKER_HOST ? `DOCKER_HOST=${process.env.DOCKER_HOST}` : 'the local socket /var/run/docker.sock';
}

/** The engine client, or LabError('ENVIRONMENT') naming what to install or start. */
export function dockerEngine(): Promise<ContainerRuntimeClient> {
  engine ??= connect().catch((error: unknown) => {
    engine = undefined; // a later call may find the engine started meanwhile
    throw error;
  });
  return engine;
}

async function connect(): Promise<ContainerRuntimeClient> {
  const { getContainerRuntimeClient } = loadTestcontainers();
  let client: ContainerRuntimeClient;
  try {
    client = await withHostOverride(() => getContainerRuntimeClient());
  } catch (error) {
    throw new LabError(
      'ENVIRONMENT',
      `No Docker engine answers at ${whereEngineShouldBe()}: install Debian's docker.io and start dockerd as root (scripts/ensure-docker.sh does both), or point DOCKER_HOST at a running engine`,
      { detail: messageOf(error), cause: error },
    );
  }
  const dockerHost = process.env.DOCKER_HOST;
  if (dockerHost && !reaches(client.container.dockerode.modem as Modem, dockerHost)) {
    // testcontainers falls back to the local socket when DOCKER_HOST does not answer; nodes meant for
    // another engine must not silently land on this one.
    throw new LabError(
      'ENVIRONMENT',
      `No Docker engine answers at DOCKER_HOST=${dockerHost}: start that engine, or unset DOCKER_HOST to use the local one (scripts/ensure-docker.sh starts it)`,
    );
  }
  return client;
}

interface Modem {
  socketPath?: string;
  host?: string;
  port?: number | string;
}

/** Whether the engine client testcontainers picked talks to the engine DOCKER_HOST names. */
function reaches(modem: Modem, dockerHost: string): boolean {
  let url: URL;
  try {
    url = new URL(dockerHost);
  } catch {
    return true; // a form we do not parse: trust testcontainers
  }
  if (url.protocol === 'unix:') return modem.socketPath === url.pathname;
  if (url.protocol === 'tcp:' || url.protocol === 'http:' || url.protocol === 'https:') {
    return modem.host === url.hostname && (!url.port || String(modem.port) === url.port);
  }
  return true;
}
