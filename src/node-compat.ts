// Imported first by the entry point. node-postgres probes for Cloudflare Workers by building a fetch
// Response when `navigator` is missing, as on Node 20; that loads undici and costs ~30 ms on every
// start of the CLI. Node 21+ defines `navigator`; give Node 20 the same, so the probe answers at once.
if (typeof (globalThis as { navigator?: unknown }).navigator === 'undefined') {
  Object.defineProperty(globalThis, 'navigator', { value: { userAgent: `Node.js/${process.versions.node}` }, configurable: true, writable: true });
}
export {};
