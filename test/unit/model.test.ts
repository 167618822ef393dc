import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  canMove,
  DONE_STATES,
  etaSeconds,
  isDone,
  progressOf,
  TASK_STATES,
  TRANSITIONS,
} from '../../src/tasks/model.ts';

describe('task states', () => {
  it('uses exactly the ten state names of the AList seed', () => {
    assert.deepEqual([...TASK_STATES].sort(), [
      'before_retry',
      'canceled',
      'canceling',
      'errored',
      'failed',
      'failing',
      'pending',
      'running',
      'succeeded',
      'waiting_retry',
    ]);
  });

  it('splits done (succeeded, canceled, failed) from undone', () => {
    assert.deepEqual([...DONE_STATES].sort(), ['canceled', 'failed', 'succeeded']);
    for (const s of TASK_STATES) assert.equal(isDone(s), DONE_STATES.includes(s));
  });

  it('never leaves succeeded, and finished tasks only go back through before_retry', () => {
    assert.deepEqual(TRANSITIONS.succeeded, []);
    assert.deepEqual(TRANSITIONS.failed, ['before_retry']);
    assert.deepEqual(TRANSITIONS.canceled, ['before_retry']);
    assert.equal(canMove('pending', 'succeeded'), false);
    assert.equal(canMove('running', 'succeeded'), true);
  });

  it('names only known states in the transition table', () => {
    for (const [from, tos] of Object.entries(TRANSITIONS)) {
      assert.ok(TASK_STATES.includes(from as never));
      for (const to of tos) assert.ok(TASK_STATES.includes(to), `${from} → ${to}`);
    }
  });
});

describe('progress and ETA', () => {
  const base = {
    state: 'running' as const,
    totalBytes: 0,
    doneBytes: 0,
    totalFiles: 0,
    doneFiles: 0,
    speed: 0,
  };

  it('counts bytes when the total is known, else files, and 100 when succeeded', () => {
    assert.equal(progressOf({ ...base, totalBytes: 200, doneBytes: 50 }), 25);
    assert.equal(progressOf({ ...base, totalFiles: 4, doneFiles: 1 }), 25);
    assert.equal(progressOf({ ...base, state: 'succeeded' }), 100);
    assert.equal(progressOf({ ...base, totalBytes: 10, doneBytes: 20 }), 100);
  });

  it('gives an ETA only for running tasks with a speed', () => {
    assert.equal(etaSeconds({ ...base, totalBytes: 1000, doneBytes: 400, speed: 100 }), 6);
    assert.equal(etaSeconds({ ...base, totalBytes: 1000, doneBytes: 400 }), null);
    assert.equal(etaSeconds({ ...base, state: 'pending', totalBytes: 1000, speed: 100 }), null);
  });
});
