// The delay relay's process (`lab fault delay`; the relay itself: src/network/delay-relay.ts), started by
// src/network/delay.ts in the delayed node's namespace, detached so it outlives the CLI.
// Run as: node dist/src/children/delay-relay.js '<config json>' <netns> (the last argument carries the
// namespace name, for destroy to find the relay in /proc). Prints `ready` once every listener listens.
import { runRelay, type RelayConfig } from '../network/delay-relay.js';

if (process.argv[2]) {
  const config = JSON.parse(process.argv[2]) as RelayConfig;
  process.stdout.on('error', () => undefined);
  runRelay(config).then(
    () => process.stdout.write('ready\n'),
    (error: unknown) => {
      process.stderr.write(`delay relay: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
}
