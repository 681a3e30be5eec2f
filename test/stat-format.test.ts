// The pieces of the watchers' look that need no server: date(1)'s date format, lag and duration
// wording, the tps arithmetic across a rebuilt node, the stats URL of a balancer record, and the replication table's upstream column.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dateLikeDate1 } from '../src/stats/banner.js';
import { formatDuration, formatLagSeconds, replicationTable } from '../src/stats/render.js';
import { withTps, type XactRow, type XactSample } from '../src/stats/xact-sample.js';
import { statsUrl } from '../src/stats/balancer-sample.js';

test('the banner date reads like date(1): the seed\'s "Sun Feb 15 15:10:58 JST 2015"', () => {
  assert.equal(dateLikeDate1(new Date(Date.UTC(2015, 1, 15, 6, 10, 58)), 'UTC'), 'Sun Feb 15 06:10:58 UTC 2015');
  assert.match(dateLikeDate1(new Date(Date.UTC(2015, 1, 15, 6, 10, 58)), 'Asia/Tokyo'), /^Sun Feb 15 15:10:58 (JST|GMT\+9) 2015$/);
  assert.equal(dateLikeDate1(new Date(Date.UTC(2015, 1, 5, 0, 0, 5)), 'UTC'), 'Thu Feb  5 00:00:05 UTC 2015', 'day padded with a space, midnight is 00');
  // The local zone's fast path agrees with Intl for this process's zone
  const now = new Date();
  const viaIntl = dateLikeDate1(now, Intl.DateTimeFormat().resolvedOptions().timeZone);
  assert.equal(dateLikeDate1(now).replace(/ (UTC|GMT[+-][\d:]+) /, ' Z '), viaIntl.replace(/ \S+ (\d{4})$/, ' Z $1'));
});

test('lag and durations as people read them', () => {
  assert.deepEqual([null, 0, 0.00042, 0.0144, 4.2, 185].map(formatLagSeconds), ['', '0s', '420us', '14.4ms', '4.20s', '3m05s']);
  assert.deepEqual([12, 65, 7620, 273_600].map(formatDuration), ['12s', '1m05s', '2h07m', '3d04h']);
});

test('tps comes from the previous sample, and not across a counter reset or a down sample', () => {
  const row = (node: string, commits: number | null): XactRow => ({
    node, role: 'replica', port: 1, up: commits !== null, datname: 'postgres', numbackends: 1,
    xactCommit: commits, xactRollback: commits === null ? null : 5, tps: null, reason: null, labState: null, faults: [],
  });
  const before: XactSample = { at: '2026-01-01T00:00:00.000Z', dbname: 'postgres', rows: [row('a', 100), row('b', 5000), row('c', null)] };
  const after: XactSample = { at: '2026-01-01T00:00:02.000Z', dbname: 'postgres', rows: [row('a', 130), row('b', 7), row('c', 10)] };
  assert.deepEqual(withTps(after, before).rows.map((r) => r.tps), [15, null, null]);
  assert.deepEqual(withTps(after, undefined).rows.map((r) => r.tps), [null, null, null]);
});

test('a balancer record\'s stats address, with or without a stats uri, gives the JSON URL', () => {
  assert.equal(statsUrl('127.0.0.1:8081'), 'http://127.0.0.1:8081/?format=json');
  assert.equal(statsUrl('127.0.0.1:6080/stats'), 'http://127.0.0.1:6080/stats?format=json');
});

test('the replication table gets an upstream column only when a cascade has rows', () => {
  const row = (name: string | null, state: string, upstream?: string) => ({
    pid: name ? 1 : null, name, addr: null, port: null, state, sent: '0/1', write: '0/1', flush: null, replay: null, pri: null,
    mode: name ? 'async' : 'master', lagBytes: name ? 0 : null, lagSeconds: name ? 0 : null, ...(upstream ? { upstream } : {}),
  });
  const sample = (rows: ReturnType<typeof row>[]) => ({ at: '', master: { name: 'master1', port: 5432 }, up: true, reason: null, rows, faults: [] });
  const flat = replicationTable(sample([row(null, 'local'), row('replica1', 'streaming')]));
  assert.doesNotMatch(flat, /upstream/);
  const cascade = replicationTable(sample([row(null, 'local'), row('replica1', 'streaming'), row('replica3', 'streaming', 'replica1')])).split('\n');
  assert.match(cascade[0]!, /\| upstream\s*$/);
  assert.match(cascade.find((l) => l.includes('replica3'))!, /\| replica1\s*$/);
  assert.match(cascade.find((l) => l.includes(' replica1 ') && !l.includes('replica3'))!, /\| master1\s*$/, 'the master\'s own standbys name it');
});
