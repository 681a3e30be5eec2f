// Entry point of dist/lab.cjs, the one-file bundle scripts/bundle.mjs makes for a fast start (bin/lab.js).
import './node-compat.js';

export { runCli } from './cli/run.js';
