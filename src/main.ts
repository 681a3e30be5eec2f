// Entry point of the compiled modules (`node dist/src/main.js ...`); bin/lab.js prefers the bundle.
import './node-compat.js';
import { runCli } from './cli/run.js';

process.exitCode = await runCli(process.argv);
