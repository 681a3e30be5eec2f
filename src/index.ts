// pglab's public surface: what `import { ... } from 'pglab'` gives. Everything else is internal.
export { Lab, Promotion, type CatchupOptions, type PromoteOptions } from './api/lab.js';
export { LabNode, Fault } from './api/node.js';
export { Balancer } from './api/balancer.js';
export { BalancerProcess } from './api/balancer-process.js';
export { Connectable, type ConnectionConfig, type ConnectOptions } from './api/connection.js';
export type { LabEvent, LabStartOptions, LabOpenOptions, ReplicaOptions, RestoreNodeOptions, BalancerOptions, BalancerProcessOptions, WorkloadRunOptions } from './api/options.js';
export type { WorkloadResult, WorkloadSample, WorkloadSummary, WorkloadError } from './workload/types.js';
export { LabError, exitCodes, type LabErrorCode } from './common/errors.js';
export type { BalancerStats, BalancerServerStats, ServerState } from './balancer/stats-types.js';
export type { ReplicationSample, ReplicationRow } from './stats/replication-sample.js';
export type { XactSample, XactRow } from './stats/xact-sample.js';
export type { LabStatus, NodeStatus } from './commands/status.js';
export type { NodeActionResult, CrashResult } from './commands/node.js';
export type { FollowResult } from './commands/follow.js';
export type { RewindResult } from './commands/rewind.js';
export type { BenchInitResult } from './commands/bench.js';
export type { FaultResult, HealResult, ListedFault } from './commands/fault.js';
export type { BalancersSample } from './commands/stat.js';
