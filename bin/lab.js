#!/usr/bin/env node
// Thin shim: the compiled entry point does everything, including exit codes.
import '../dist/src/main.js';
