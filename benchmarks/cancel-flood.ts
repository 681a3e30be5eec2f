// A flood of CancelRequests with random keys (keys that match no session), in plaintext, each on a
// connection of its own, sent at once and closed: COUNT spread evenly over SECONDS, at most 500 open at
// once (each at most 5 s). Sending stops at COUNT or after twice SECONDS; the script prints one JSON line
// ({"sent":N,"ms":M}) once every connection has closed. A process of its own, so that the flood and
// whoever watches it (a test's psql loop, the bench) do not share an event loop.
// Usage: node dist/benchmarks/cancel-flood.js PORT COUNT SECONDS
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { CANCEL_REQUEST } from '../src/balancer/protocol.js';

const MAX_OPEN = 500;
const [port, count, seconds] = process.argv.slice(2).map(Number);
if (!port || !count || !seconds) {
  console.error('usage: cancel-flood PORT COUNT SECONDS');
  process.exit(2);
}

function randomCancel(): Buffer {
  const packet = Buffer.alloc(16);
  packet.writeInt32BE(16, 0);
  packet.writeInt32BE(CANCEL_REQUEST, 4);
  randomBytes(8).copy(packet, 8);
  return packet;
}

const spanMs = seconds * 1000;
const started = Date.now();
let sent = 0;
let open = 0;
let ms = 0;
const report = () => {
  if (ms && open === 0) console.log(JSON.stringify({ sent, ms }));
};
const timer = setInterval(() => {
  const elapsed = Date.now() - started;
  const due = Math.min(count, Math.ceil((elapsed / spanMs) * count));
  while (sent < due && open < MAX_OPEN) {
    sent += 1;
    open += 1;
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('error', () => undefined);
    socket.setTimeout(5000, () => socket.destroy());
    socket.once('close', () => {
      open -= 1;
      report();
    });
    socket.end(randomCancel());
    socket.resume();
  }
  if (sent >= count || elapsed >= 2 * spanMs) {
    clearInterval(timer);
    ms = Date.now() - started;
    report();
  }
}, 5);
