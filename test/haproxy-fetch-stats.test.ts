// HAProxy's CSV states and columns as BalancerStats (the live path is covered by haproxy-engine).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { haproxyServerState, haproxyStatsFromCsv } from '../src/haproxy/fetch-stats.js';

test('HAProxy server states: transitions count as the state they leave, "no check" is UP', () => {
  assert.equal(haproxyServerState('UP'), 'UP');
  assert.equal(haproxyServerState('UP 1/3'), 'UP');
  assert.equal(haproxyServerState('DOWN 1/2'), 'DOWN');
  assert.equal(haproxyServerState('DOWN'), 'DOWN');
  assert.equal(haproxyServerState('no check'), 'UP');
  assert.equal(haproxyServerState('MAINT (via pgsql/replica1)'), 'MAINT');
  assert.equal(haproxyServerState('DRAIN'), 'DRAIN');
  assert.equal(haproxyServerState('NOLB'), 'NOLB');
});

test('columns are found by name, whatever their order, and "* L4CON" (check running) reads L4CON', () => {
  const csv = [
    '# svname,pxname,status,check_status,last_chk,scur,stot,addr,weight,chkfail,chkdown,lastchg,downtime,bin,bout,econ,wretr,wredis,smax,',
    'FRONTEND,pgsql,OPEN,,,2,40,,,,,,,100,200,,,,5,',
    'replica1,pgsql,DOWN 1/2,* L4CON,Connection refused,0,20,127.0.0.1:5433,1,7,1,12,9,50,60,3,2,1,4,',
    'BACKEND,pgsql,UP,,,2,40,,1,,0,100,0,100,200,3,2,1,5,',
    'FRONTEND,stats,OPEN,,,1,1,,,,,,,,,,,,1,',
  ].join('\n');
  const stats = haproxyStatsFromCsv(csv, { listen: '127.0.0.1:15432' });
  assert.equal(stats.name, 'pgsql');
  assert.equal(stats.sessionsCurrent, 2);
  assert.equal(stats.sessionsTotal, 40);
  assert.deepEqual(stats.servers, [{
    name: 'replica1', address: '127.0.0.1:5433', status: 'DOWN', checkStatus: 'L4CON', checkMessage: 'Connection refused',
    lastChangeS: 12, downtimeS: 9, checksFailed: 7, downTransitions: 1, sessionsCurrent: 0, sessionsMax: 4, sessionsTotal: 20,
    bytesIn: 50, bytesOut: 60, connectionErrors: 3, retries: 2, redispatches: 1, weight: 1, role: null, lagBytes: null,
  }]);
});
