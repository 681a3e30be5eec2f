// `lab workload run`: the load generator pointed at the lab (the balancer `lb` for reads, the master
// for tpcb) unless URLs are given, with its samples written to a JSON file on request.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LabError } from '../common/errors.js';
import { openLab, type GlobalOptions } from '../lab/context.js';
import { balancerAddress, postgresUrl, requirePrimary } from '../bench/lab-targets.js';
import { runWorkload } from '../workload/run-workload.js';
import type { WorkloadError, WorkloadMode, WorkloadResult, WorkloadSample } from '../workload/types.js';
import { nodeAddress } from '../network/address.js';

export interface WorkloadRunOptions {
  urls?: string[];
  /** Balancer to go through when no URL is given (default lb). */
  balancer?: string;
  concurrency: number;
  durationMs: number;
  maxTransactions?: number;
  maxRate?: number;
  mode: WorkloadMode;
  connectPerTx?: boolean;
  tolerateErrors?: boolean;
  jsonOut?: string;
  signal?: AbortSignal;
  onSample?: (sample: WorkloadSample) => void;
  onError?: (error: WorkloadError) => void;
}

/** URLs from the lab: the balancer for select, the master for tpcb (a standby refuses writes). */
export async function labWorkloadUrls(global: GlobalOptions, mode: WorkloadMode, balancer?: string): Promise<string[]> {
  const { state } = await openLab(global);
  if (mode === 'tpcb' && !balancer) return [postgresUrl({ host: nodeAddress(requirePrimary(state)), port: requirePrimary(state).port }, state.dbUser)];
  return [postgresUrl(balancerAddress(state, balancer), state.dbUser)];
}

export async function writeWorkloadJson(file: string, result: WorkloadResult): Promise<void> {
  await mkdir(path.dirname(path.resolve(file)), { recursive: true });
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
}

export async function workloadRun(global: GlobalOptions, options: WorkloadRunOptions): Promise<WorkloadResult> {
  if (options.urls?.length && options.balancer) throw new LabError('USAGE', 'Give either --url or --balancer, not both');
  const urls = options.urls?.length ? options.urls : await labWorkloadUrls(global, options.mode, options.balancer);
  const result = await runWorkload(
    {
      urls,
      concurrency: options.concurrency,
      durationMs: options.durationMs,
      maxTransactions: options.maxTransactions,
      maxRate: options.maxRate,
      mode: options.mode,
      connectPerTx: options.connectPerTx,
      tolerateErrors: options.tolerateErrors,
    },
    { signal: options.signal, onSample: options.onSample, onError: options.onError },
  );
  if (options.jsonOut) await writeWorkloadJson(options.jsonOut, result);
  return result;
}
