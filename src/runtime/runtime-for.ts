// The runtime of a lab (src/runtime/node-runtime.ts is the interface): host processes unless lab.json
// says docker. The one place that knows both implementations.
import { runtimeOf } from '../lab/state.js';
import { dockerRuntime } from './docker/runtime.js';
import type { NodeRuntime, RuntimeContext } from './node-runtime.js';
import { processRuntime } from './process/runtime.js';

export function runtimeFor(context: RuntimeContext): NodeRuntime {
  return runtimeOf(context.state) === 'docker' ? dockerRuntime(context) : processRuntime(context);
}
