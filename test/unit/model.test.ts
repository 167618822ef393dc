import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { FerryError } from '../../src/errors.ts';
import {
  canMove,
  DONE_STATES,
  etaSeconds,
  isDone,
  progressOf,
  RUNNABLE_STATES,
  sourcesOf,
  TASK_STATES,
  type TaskState,
} from '../../src/tasks/model.ts';
import { testDatabases } from '../helpers/databases.ts';
import { openStore, type StoreFixture } from '../store/store-fixture.ts';

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

  it('refuses to build a move the table forbids, naming it', () => {
    assert.throws(
      () => sourcesOf('running', ['pending', 'succeeded']),
      (err) =>
        err instanceof FerryError && err.code === 'E_INTERNAL' && /succeeded → running/.test(err.message),
    );
    assert.throws(() => sourcesOf('canceled', []), FerryError);
    assert.deepEqual(sourcesOf('canceled', ['running', 'pending']), ['pending', 'running']);
  });
});

/** Every (from, to) pair of states. */
const PAIRS = TASK_STATES.flatMap((from) => TASK_STATES.map((to) => [from, to] as const));

for (const db of await testDatabases()) {
  describe(`the state table, enforced by the store on ${db.dialect}`, () => {
    let f: StoreFixture;
    before(async () => {
      f = await openStore(db);
    });
    afterEach(() => f.clear());
    after(() => f.close());

    /** A task put in each of `states` (as the store would hold it), in order. */
    async function tasksIn(states: readonly TaskState[], held = false) {
      const tasks = await f.add(states.length);
      await Promise.all(
        tasks.map((t, i) =>
          f.force(t.id, {
            state: states[i] as TaskState,
            ...(held && { lease_owner: 'dead', lease_until: 1 }),
          }),
        ),
      );
      return tasks;
    }

    it('makes every move the table allows, and refuses every other, leaving the task as it was', async () => {
      const tasks = await tasksIn(PAIRS.map(([from]) => from));
      const moved = await Promise.all(PAIRS.map(([, to], i) => f.store.move(tasks[i]?.id as string, to)));
      const after = await f.store.getMany(tasks.map((t) => t.id));
      const stateOf = new Map(after.map((t) => [t.id, t.state]));
      const wrong: string[] = [];
      PAIRS.forEach(([from, to], i) => {
        const allowed = canMove(from, to);
        const now = stateOf.get(tasks[i]?.id as string);
        if ((moved[i] !== null) !== allowed || now !== (allowed ? to : from))
          wrong.push(`${from} → ${to}: ${moved[i] ? 'moved' : 'refused'}, now ${now}`);
      });
      assert.deepEqual(wrong, []);
      // Among them, what matters most: nothing leaves succeeded; a finished task only goes back
      // to the queue through before_retry.
      for (const to of TASK_STATES) assert.equal(canMove('succeeded', to), false);
      for (const from of ['failed', 'canceled'] as const)
        assert.deepEqual(
          TASK_STATES.filter((to) => canMove(from, to)),
          ['before_retry'],
        );
    });

    it('moves only from the states the caller expects, within the table', async () => {
      const [running] = await tasksIn(['running']);
      assert.ok(running);
      // A cancel of an idle task must not touch a running one, though running → canceled is allowed.
      assert.equal(await f.store.move(running.id, 'canceled', { from: ['pending', 'waiting_retry'] }), null);
      assert.equal((await f.store.get(running.id))?.state, 'running');
      await assert.rejects(
        f.store.move(running.id, 'pending', { from: ['succeeded'] }),
        (err) => err instanceof FerryError && err.code === 'E_INTERNAL',
      );
      assert.equal((await f.store.get(running.id))?.state, 'running');
    });

    it('claims only tasks in a state that may move to running', async () => {
      const tasks = await tasksIn(TASK_STATES);
      const claimed = await f.store.claim('copy', 'w', 100, 1000, Date.now() + 1);
      assert.deepEqual(
        claimed.map((t) => tasks.findIndex((x) => x.id === t.id)).map((i) => TASK_STATES[i]),
        [...RUNNABLE_STATES],
      );
      // running → running is a takeover of an expired lease, claimed apart from the queue.
      assert.deepEqual(
        TASK_STATES.filter((s) => s !== 'running' && canMove(s, 'running')),
        [...RUNNABLE_STATES],
      );
    });

    it('settles a dead worker’s tasks only by moves the table allows', async () => {
      // Each state held by a dead worker, with and without a requested cancel, and worn out by
      // interruptions: whatever reclaim does to each must be a move the table lists.
      const tasks = await tasksIn([...TASK_STATES, ...TASK_STATES, ...TASK_STATES], true);
      await Promise.all(
        tasks.map((t, i) =>
          i >= 2 * TASK_STATES.length
            ? f.force(t.id, { interruptions: 5 })
            : i >= TASK_STATES.length
              ? f.force(t.id, { cancel_requested: 1 })
              : Promise.resolve(),
        ),
      );
      await f.store.reclaimExpired(Date.now(), { maxInterruptions: 3 });
      const after = new Map((await f.store.getMany(tasks.map((t) => t.id))).map((t) => [t.id, t]));
      const changed: string[] = [];
      tasks.forEach((t, i) => {
        const from = TASK_STATES[i % TASK_STATES.length] as TaskState;
        const to = after.get(t.id)?.state as TaskState;
        if (to !== from) {
          changed.push(`${from} → ${to}`);
          assert.ok(canMove(from, to), `reclaim moved ${from} → ${to}, which the table forbids`);
          assert.equal(after.get(t.id)?.leaseOwner, null, 'and let go of the lease');
        }
      });
      // It did settle every unfinished held state.
      for (const from of ['running', 'canceling', 'errored', 'failing'])
        assert.ok(
          changed.some((c) => c.startsWith(`${from} →`)),
          `${from} was reclaimed`,
        );
    });
  });
}

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
