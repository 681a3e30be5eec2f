// The cancel limiter's bounds (cancel-limit.ts) on a clock the test moves: per client address, for the
// whole balancer, per server in flight; known keys on a budget of their own. The flood against real
// servers is in balancer-hostile.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BackendServer } from '../src/balancer/backend-server.js';
import { CANCEL_LIMITS, CancelLimiter, type CancelVerdict } from '../src/balancer/cancel-limit.js';

const server = (name: string) => new BackendServer({ name, host: '127.0.0.1', port: 1, weight: 1, backup: false, disabled: false, check: false, checkOverrides: {} });

function clock(): { now: () => number; advance(ms: number): void } {
  let at = 1_000_000;
  return { now: () => at, advance: (ms) => (at += ms) };
}

/** `count` unknown-key cancels from `clientAddress`; each granted one is done at once (answered). */
function unknownCancels(limiter: CancelLimiter, clientAddress: string, encrypted: BackendServer[], count: number): CancelVerdict[] {
  return Array.from({ length: count }, (_, i) => {
    const verdict = limiter.admit({ key: `flood-${clientAddress}-${i}`, clientAddress, owner: undefined, encrypted });
    if (verdict.ok) for (const target of verdict.targets) verdict.done(target, true);
    return verdict;
  });
}

const reasons = (verdicts: CancelVerdict[]) => verdicts.map((v) => (v.ok ? 'ok' : v.reason));

test('unknown keys: 40 at once and 20 a second per client address, 200 at once and 100 a second for the balancer', () => {
  const time = clock();
  const limiter = new CancelLimiter(CANCEL_LIMITS, time.now);
  const pool = [server('r1'), server('r2')];
  const first = reasons(unknownCancels(limiter, '10.0.0.1', pool, 50));
  assert.deepEqual(first, [...Array(40).fill('ok'), ...Array(10).fill('clientRate')], 'the burst, then the client rate');
  time.advance(1000);
  assert.deepEqual(reasons(unknownCancels(limiter, '10.0.0.1', pool, 25)), [...Array(20).fill('ok'), ...Array(5).fill('clientRate')], '20 more a second later');
  // Other addresses have buckets of their own, until the balancer's is spent: it had 200 at once, gave
  // 40, got 100 back in that second (full again at 200), gave 20: 180 left for six addresses' 240.
  const others = ['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6', '10.0.0.7'].flatMap((address) => reasons(unknownCancels(limiter, address, pool, 40)));
  assert.deepEqual(others, [...Array(180).fill('ok'), ...Array(60).fill('totalRate')]);
  assert.equal(limiter.forwarded, 40 + 20 + 180);
  assert.deepEqual(limiter.dropped, { clientRate: 15, totalRate: 60, serverInFlight: 0, duplicate: 0, noSession: 0 });
  assert.deepEqual(pool.map((s) => [s.cancelsSent, s.cancelsInFlight]), [[240, 0], [240, 0]], 'each one fanned out to both servers, all closed');
});

test('unknown keys: at most 4 cancel connections open to one server; the others still get theirs', () => {
  const limiter = new CancelLimiter(CANCEL_LIMITS, clock().now);
  const [slow, fast] = [server('slow'), server('fast')];
  const open: CancelVerdict[] = [];
  for (let i = 0; i < 4; i += 1) open.push(limiter.admit({ key: `k${i}`, clientAddress: '10.0.0.1', owner: undefined, encrypted: [slow] }));
  assert.ok(open.every((v) => v.ok) && slow.cancelsInFlight === 4);
  const fifth = limiter.admit({ key: 'k4', clientAddress: '10.0.0.1', owner: undefined, encrypted: [slow, fast] });
  assert.ok(fifth.ok);
  assert.deepEqual(fifth.targets, [fast], 'the busy server is skipped, the other one gets it');
  assert.equal(slow.cancelsDropped, 1);
  const sixth = limiter.admit({ key: 'k5', clientAddress: '10.0.0.1', owner: undefined, encrypted: [slow] });
  assert.deepEqual([sixth.ok, !sixth.ok && sixth.reason], [false, 'serverInFlight']);
  assert.match(!sixth.ok ? sixth.message : '', /has 4 cancel connections of ours open/);
  // A connection that timed out frees its slot too, but is no sign of life.
  const first = open[0]!;
  if (first.ok) first.done(slow, false);
  assert.equal(slow.cancelsInFlight, 3);
  assert.equal(slow.answeredAt, 0);
  assert.equal(slow.answeringSince(0), null);
  if (open[1]!.ok) open[1]!.done(slow, true);
  assert.match(slow.answeringSince(0) ?? '', /answered a cancel connection of ours .* busy, not hung/);
  assert.ok(limiter.admit({ key: 'k6', clientAddress: '10.0.0.1', owner: undefined, encrypted: [slow] }).ok);
  assert.ok(limiter.admit({ key: 'k7', clientAddress: '10.0.0.1', owner: undefined, encrypted: [slow] }).ok);
  // What the client sent counts against its own bound even when the server stopped it: 8 so far, 32
  // more dropped for the server, then the client's bound (40 at once) names the flood for what it is.
  const more = Array.from({ length: 33 }, (_, i) => limiter.admit({ key: `m${i}`, clientAddress: '10.0.0.1', owner: undefined, encrypted: [slow] }));
  assert.deepEqual(reasons(more), [...Array(32).fill('serverInFlight'), 'clientRate']);
});

test('known keys: never dropped for a flood of unknown ones; one at a time per key', () => {
  const limiter = new CancelLimiter(CANCEL_LIMITS, clock().now);
  const owner = server('r1');
  // The flood spends this address's bucket and the balancer's, and fills r1's in-flight slots.
  const flood = unknownCancels(limiter, '127.0.0.1', [owner], 500);
  assert.ok(flood.some((v) => !v.ok));
  for (let i = 0; i < 4; i += 1) limiter.admit({ key: `open${i}`, clientAddress: '10.0.0.9', owner: undefined, encrypted: [owner] });
  const real = limiter.admit({ key: 'real', clientAddress: '127.0.0.1', owner, encrypted: [] });
  assert.ok(real.ok, 'the real cancel goes through');
  assert.deepEqual(real.targets, [owner]);
  const again = limiter.admit({ key: 'real', clientAddress: '127.0.0.1', owner, encrypted: [] });
  assert.deepEqual([again.ok, !again.ok && again.reason], [false, 'duplicate'], 'the same key again while the first is open');
  real.done(owner, true);
  assert.ok(limiter.admit({ key: 'real', clientAddress: '127.0.0.1', owner, encrypted: [] }).ok, 'once it closed, the key may be cancelled again');
});

test('no session could own the key: dropped; client addresses are forgotten once their bucket is full again, and bounded', () => {
  const time = clock();
  const limiter = new CancelLimiter({ ...CANCEL_LIMITS, trackedClients: 3 }, time.now);
  const none = limiter.admit({ key: 'x', clientAddress: '10.0.0.1', owner: undefined, encrypted: [] });
  assert.deepEqual([none.ok, !none.ok && none.reason], [false, 'noSession']);
  const pool = [server('r1')];
  for (const address of ['a', 'b', 'c', 'd', 'e']) unknownCancels(limiter, address, pool, 1);
  assert.equal(limiter.trackedClients, 3, 'no more addresses than the bound');
  // Past the bound an address has the balancer-wide bucket only: 45 go through where 40 would.
  assert.equal(reasons(unknownCancels(limiter, 'f', pool, 45)).filter((r) => r === 'ok').length, 45);
  time.advance(3000);
  unknownCancels(limiter, 'g', pool, 1);
  assert.equal(limiter.trackedClients, 1, 'buckets full again are forgotten (the new address is tracked)');
});
