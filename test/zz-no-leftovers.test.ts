// Runs last (files run in name order, one at a time): the suite leaves no PostgreSQL or balancer
// process of a test lab behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { processesMentioning } from './helpers/lab.js';

test('the suite leaves no process of a test lab behind', async () => {
  assert.deepEqual(await processesMentioning('pglab-test-'), []);
});
