// `lab stat replication|xact|balancer` and `lab top`: one sample each, read from the lab's state every
// time (a node added, killed or re-added during a watch shows up in the next sample).
import { LabError } from '../common/errors.js';
import type { GlobalOptions } from '../lab/context.js';
import { requireLabState, type LabState } from '../lab/state.js';
import { sampleBalancer, type BalancerSample } from '../stats/balancer-sample.js';
import { sampleReplication, type ReplicationSample } from '../stats/replication-sample.js';
import { sampleXact, withTps, type XactSample } from '../stats/xact-sample.js';

/** How long one node may take to accept a connection before its row says so. */
export const DEFAULT_SAMPLE_TIMEOUT_MS = 1000;

export interface SampleOptions {
  timeoutMs?: number;
}

// Only the state file: no `postgres -V` of the installation, so a sample costs a few milliseconds.
async function labState(global: GlobalOptions): Promise<LabState> {
  return requireLabState(global);
}

export async function statReplication(global: GlobalOptions, options: SampleOptions = {}): Promise<ReplicationSample> {
  return sampleReplication(await labState(global), { timeoutMs: options.timeoutMs ?? DEFAULT_SAMPLE_TIMEOUT_MS });
}

export async function statXact(global: GlobalOptions, options: SampleOptions & { dbname?: string; previous?: XactSample } = {}): Promise<XactSample> {
  const sample = await sampleXact(await labState(global), {
    dbname: options.dbname ?? 'postgres',
    timeoutMs: options.timeoutMs ?? DEFAULT_SAMPLE_TIMEOUT_MS,
  });
  return withTps(sample, options.previous);
}

export interface BalancersSample {
  at: string;
  balancers: BalancerSample[];
}

/** Every balancer of the lab, or the one named; `required` makes an empty lab an error (not for `top`). */
export async function statBalancer(global: GlobalOptions, options: SampleOptions & { name?: string; required?: boolean } = {}): Promise<BalancersSample> {
  const state = await labState(global);
  const at = new Date().toISOString();
  const records = state.balancers.filter((b) => options.name === undefined || b.name === options.name);
  if (records.length === 0 && options.required !== false) {
    const known = state.balancers.map((b) => b.name).join(', ');
    throw new LabError(
      'NOT_FOUND',
      options.name && known
        ? `No balancer named "${options.name}" in this lab (balancers: ${known}): pass one of those to --name`
        : `No balancer in this lab: start one with \`lab balancer start\``,
    );
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_SAMPLE_TIMEOUT_MS;
  return { at, balancers: await Promise.all(records.map((record) => sampleBalancer(record, { timeoutMs }))) };
}

export interface TopSample {
  at: string;
  replication: ReplicationSample;
  xact: XactSample;
  balancers: BalancerSample[];
}

export async function statTop(global: GlobalOptions, options: SampleOptions & { dbname?: string; previous?: TopSample } = {}): Promise<TopSample> {
  const at = new Date().toISOString();
  const [replication, xact, balancers] = await Promise.all([
    statReplication(global, options),
    statXact(global, { ...options, previous: options.previous?.xact }),
    statBalancer(global, { ...options, required: false }),
  ]);
  return { at, replication, xact, balancers: balancers.balancers };
}
