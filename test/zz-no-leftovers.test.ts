// Runs last (files run in name order, one at a time): the suite leaves no PostgreSQL or balancer
// process of a test lab behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { processesMentioning } from './helpers/lab.js';

test('the suite leaves no process of a test lab behind', async () => {
  assert.deepEqual(await processesMentioning('pglab-test-'), []);
});

test('the library\'s temp labs are gone: no process or dir of a /dev/shm/pglab-* or $TMPDIR/pglab-* lab', async () => {
  assert.deepEqual(await processesMentioning('/dev/shm/pglab-'), []);
  // Lab.start's temp dirs are pglab-XXXXXX (mkdtemp); the tests' own dirs have longer names.
  for (const root of ['/dev/shm', tmpdir()]) {
    const left = (await readdir(root).catch(() => [] as string[])).filter((name) => /^pglab-[A-Za-z0-9]{6}$/.test(name));
    assert.deepEqual(left, [], `lab dirs left in ${root}`);
  }
});
