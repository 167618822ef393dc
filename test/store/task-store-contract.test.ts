import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { CompiledQuery } from 'kysely';
import pg from 'pg';
import { FerryError } from '../../src/errors.ts';
import { claimCandidates, DIALECT_TRAITS } from '../../src/store/task-sql.ts';
import type { Task } from '../../src/tasks/model.ts';
import { testDatabases } from '../helpers/databases.ts';
import { openStore, type StoreFixture } from './store-fixture.ts';

/**
 * The task store's contract, the same cases on SQLite and PostgreSQL: what the runner and the
 * service rely on. Each case starts from an empty `tasks` table.
 */

const counters = {
  totalBytes: 10,
  doneBytes: 4,
  totalFiles: 2,
  doneFiles: 1,
  failedFiles: 0,
  speed: 3,
  status: 'x',
};
const release = { leaseOwner: null, leaseUntil: null };
const ids = (tasks: readonly Task[]) => tasks.map((t) => t.id);

for (const db of await testDatabases()) {
  describe(`task store contract on ${db.dialect}`, () => {
    let f: StoreFixture;
    before(async () => {
      f = await openStore(db);
    });
    afterEach(() => f.clear());
    after(() => f.close());

    it('stores new tasks pending and due, and reads them back the same whole, by id and in lists', async () => {
      const now = Date.now();
      const tasks = await f.store.insert(
        [
          {
            id: 'a',
            kind: 'copy',
            name: 'n',
            creatorId: 7,
            creator: 'bob',
            creatorRole: 0,
            payload: { k: [1] },
            maxRetry: 2,
            totalBytes: 5,
          },
          {
            id: 'b',
            kind: 'move',
            name: 'm',
            creatorId: 7,
            creator: 'bob',
            creatorRole: 0,
            payload: {},
            maxRetry: 0,
          },
        ],
        now,
      );
      assert.deepEqual(ids(tasks), ['a', 'b']);
      const [a] = tasks;
      assert.ok(a && tasks[1] && tasks[1].seq > a.seq);
      assert.equal(a.state, 'pending');
      assert.equal(a.runAt, now);
      assert.equal(a.totalBytes, 5);
      assert.deepEqual(a.payload, { k: [1] });
      assert.equal(a.leaseOwner, null);
      assert.deepEqual(await f.store.get('a'), a);
      assert.equal(await f.store.get('nope'), null);

      // A claimed task with per-item failures: lists read it as arrays of values, `get` as an
      // object; both must say the same, but lists leave the failures out.
      await f.store.claim('copy', 'w', 1, 60_000);
      const failures = [{ path: '/x', error: 'boom' }];
      await f.store.saveProgress('a', { owner: 'w', token: 1 }, { ...counters, failedFiles: 1, failures });
      const whole = await f.store.get('a');
      assert.deepEqual(whole?.failures, failures);
      const [listed] = await f.store.list({ ids: ['a'] }, { limit: 10, order: 'asc' });
      assert.deepEqual(listed, { ...whole, failures: [] });
      assert.deepEqual(await f.store.getMany(['a', 'zz'], { failures: false }), [listed]);
      assert.deepEqual(await f.store.getMany(['a']), [whole]);
    });

    it('stores a thousand tasks in one call, past one statement’s worth of parameters', async () => {
      const tasks = await f.add(1000);
      assert.equal(tasks.length, 1000);
      assert.equal(await f.store.count({}), 1000);
    });

    it('claims runnable due tasks of one kind, oldest run_at first, under a lease, never twice', async () => {
      const [old, young, later, flagged, retrying, requeued, running, failed] = await f.add(8);
      const now = Date.now();
      const [other] = await f.add(1, { kind: 'move' });
      assert.ok(old && young && later && flagged && retrying && requeued && running && failed && other);
      await f.force(old.id, { run_at: now - 500 });
      await f.force(later.id, { run_at: now + 60_000 });
      await f.force(flagged.id, { cancel_requested: 1 });
      await f.force(retrying.id, { state: 'waiting_retry', run_at: now - 100 });
      await f.force(requeued.id, { state: 'before_retry' });
      await f.force(running.id, { state: 'running', lease_owner: 'x', lease_until: now + 60_000 });
      await f.force(failed.id, { state: 'failed' });

      const claimed = await f.store.claim('copy', 'w1', 10, 1000, now);
      assert.deepEqual(ids(claimed).sort(), [old.id, young.id, retrying.id, requeued.id].sort());
      assert.deepEqual(
        claimed.map((t) => t.seq),
        claimed.map((t) => t.seq).sort((x, y) => x - y),
        'in seq order',
      );
      for (const t of claimed) {
        assert.equal(t.state, 'running');
        assert.equal(t.leaseOwner, 'w1');
        assert.equal(t.leaseUntil, now + 1000);
        assert.equal(t.startTime, now);
      }
      assert.deepEqual(await f.store.claim('copy', 'w2', 10, 1000, now), [], 'nothing left to claim');
      // By then w1's leases have expired too: its own are never taken over by itself.
      assert.deepEqual(ids(await f.store.claim('copy', 'w1', 10, 1000, now + 60_000)), [later.id]);
      assert.equal((await f.store.get(flagged.id))?.state, 'pending', 'a flagged task is never claimed');
    });

    it('claims the oldest first within the limit, and concurrent claims share out the queue', async () => {
      const now = Date.now();
      const tasks = await f.add(20, { kind: 'delete' });
      for (const [i, t] of tasks.entries()) await f.force(t.id, { run_at: now - 1000 + i });
      const first = await f.store.claim('delete', 'w0', 2, 1000, now);
      assert.deepEqual(ids(first), ids(tasks.slice(0, 2)));
      const claims = await Promise.all(
        ['w1', 'w2', 'w3', 'w4'].map((w) => f.store.claim('delete', w, 6, 1000, now)),
      );
      const all = claims.flatMap(ids);
      assert.equal(new Set(all).size, all.length, 'no task claimed twice');
      assert.deepEqual(all.sort(), ids(tasks.slice(2)).sort());
    });

    it('renews only the leases its owner holds', async () => {
      const [a, b, c] = await f.add(3);
      assert.ok(a && b && c);
      await f.store.claim('copy', 'w1', 2, 1000);
      await f.store.claim('copy', 'w2', 1, 1000);
      const until = Date.now() + 99_000;
      assert.deepEqual(
        (await f.store.renewLeases('w1', [a.id, b.id, c.id, 'gone'], until)).map((h) => h.id).sort(),
        [a.id, b.id].sort(),
      );
      assert.equal((await f.store.get(a.id))?.leaseUntil, until);
      assert.notEqual((await f.store.get(c.id))?.leaseUntil, until);
      assert.deepEqual(await f.store.renewLeases('w1', [], until), []);
    });

    it('writes progress and payload only under the lease', async () => {
      const [task] = await f.add(1);
      assert.ok(task);
      await f.store.claim('copy', 'w1', 1, 60_000);
      await f.store.saveProgress(task.id, { owner: 'w1', token: 1 }, counters, 1234);
      await f.store.updatePayload(task.id, { owner: 'w1', token: 1 }, { spool: '/s' });
      await f.store.saveProgress(task.id, { owner: 'intruder', token: 1 }, { ...counters, doneBytes: 9 });
      await f.store.updatePayload(task.id, { owner: 'intruder', token: 1 }, { spool: '/evil' });
      const now = await f.store.get(task.id);
      assert.equal(now?.doneBytes, 4);
      assert.equal(now?.status, 'x');
      assert.equal(now?.updatedAt, 1234);
      assert.deepEqual(now?.payload, { spool: '/s' });
    });

    it('finishes an attempt in every outcome, releasing the lease', async () => {
      const [ok, canceled, failed, retried, stopped, late] = await f.add(6);
      assert.ok(ok && canceled && failed && retried && stopped && late);
      await f.store.claim('copy', 'w', 6, 60_000);
      const held = { lease: { owner: 'w', token: 1 }, patch: { ...release, progress: counters } };

      const succeeded = await f.store.move(ok.id, 'succeeded', held);
      assert.equal(succeeded?.state, 'succeeded');
      assert.equal(succeeded?.leaseOwner, null);
      assert.ok(succeeded?.endTime);
      assert.equal(succeeded?.speed, 0, 'a finished task has no speed');
      assert.equal(succeeded?.doneBytes, 4, 'the last counters ride along');

      const c = await f.store.move(canceled.id, 'canceled', {
        lease: { owner: 'w', token: 1 },
        patch: { ...release, error: 'canceled', errorCode: 'E_CANCELED' },
      });
      assert.equal(c?.errorCode, 'E_CANCELED');

      const errored = await f.store.move(failed.id, 'errored', {
        lease: { owner: 'w', token: 1 },
        patch: { error: 'bad', errorCode: 'E_EXISTS', attempts: 1 },
      });
      assert.equal(errored?.state, 'errored');
      assert.equal(errored?.leaseOwner, 'w', 'still held while the worker decides');
      assert.equal(
        (await f.store.move(failed.id, 'failing', { lease: { owner: 'w', token: 1 } }))?.state,
        'failing',
      );
      const f2 = await f.store.move(failed.id, 'failed', { lease: { owner: 'w', token: 1 }, patch: release });
      assert.equal(f2?.state, 'failed');
      assert.equal(f2?.error, 'bad');

      await f.store.move(retried.id, 'errored', { lease: { owner: 'w', token: 1 }, patch: { attempts: 1 } });
      const runAt = Date.now() + 400;
      const waiting = await f.store.move(retried.id, 'waiting_retry', {
        lease: { owner: 'w', token: 1 },
        patch: { ...release, runAt },
      });
      assert.equal(waiting?.runAt, runAt);
      assert.equal(waiting?.endTime, null);

      const back = await f.store.move(stopped.id, 'pending', {
        lease: { owner: 'w', token: 1 },
        patch: { ...release, runAt: 1 },
      });
      assert.equal(back?.state, 'pending');

      // A cancel that arrives after the last byte: canceling, then succeeded.
      assert.equal((await f.store.move(late.id, 'canceling'))?.state, 'canceling');
      assert.equal((await f.store.move(late.id, 'succeeded', held))?.state, 'succeeded');

      const done = await f.store.list({ done: true }, { limit: 10, order: 'asc' });
      assert.deepEqual(ids(done).sort(), [ok.id, canceled.id, failed.id, late.id].sort());
      assert.equal(await f.store.count({ done: false }), 2);
    });

    it('changes nothing for a worker that lost its lease, or a move the state forbids', async () => {
      const [task] = await f.add(1);
      assert.ok(task);
      await f.store.claim('copy', 'w', 1, 60_000);
      assert.equal(
        await f.store.move(task.id, 'succeeded', { lease: { owner: 'someone-else', token: 1 } }),
        null,
      );
      assert.ok(
        await f.store.move(task.id, 'succeeded', { lease: { owner: 'w', token: 1 }, patch: release }),
      );
      // Finishing twice, claiming, retrying a succeeded task: refused, nothing changed.
      assert.equal(await f.store.move(task.id, 'succeeded', { lease: { owner: 'w', token: 1 } }), null);
      assert.equal(await f.store.move(task.id, 'canceled'), null);
      assert.equal(await f.store.requeue(task.id), null);
      await f.force(task.id, { run_at: 0 });
      assert.deepEqual(await f.store.claim('copy', 'w', 1, 1000), []);
      assert.equal((await f.store.get(task.id))?.state, 'succeeded');
      // Asking for a move the table never allows is a bug, said before anything is written.
      await assert.rejects(
        f.store.move(task.id, 'running', { from: ['succeeded'] }),
        (err) => err instanceof FerryError && err.code === 'E_INTERNAL',
      );
      await assert.rejects(f.store.requeue(task.id, ['succeeded']), FerryError);
    });

    it('a claim takes over a task whose holder let its lease expire (shared store); the old attempt writes nothing', async () => {
      const [task, asked, worn] = await f.add(3);
      assert.ok(task && asked && worn);
      const t0 = Date.now();
      const first = await f.store.claim('copy', 'a', 3, 1000, t0);
      assert.ok(first.every((t) => t.leaseToken === 1));
      const old = { owner: 'a', token: 1 };
      await f.force(asked.id, { cancel_requested: 1 });
      await f.force(worn.id, { interruptions: 2 });
      assert.deepEqual(await f.store.claim('copy', 'b', 3, 1000, t0 + 999), [], 'not before the lease ends');
      const taken = await f.store.claim('copy', 'b', 3, 1000, t0 + 1001, { maxInterruptions: 3 });
      if (!DIALECT_TRAITS[f.opened.dialect].takeOverInClaim) {
        // One process per SQLite store: it settles every held task at its start instead.
        assert.deepEqual(taken, []);
        return;
      }
      // A cancel asked of a dead holder's task, or one worn out by interruptions, is the sweep's.
      assert.deepEqual(ids(taken), [task.id]);
      const [now] = taken;
      assert.equal(now?.leaseOwner, 'b');
      assert.equal(now?.leaseToken, 2);
      assert.equal(now?.interruptions, 1);
      assert.equal(now?.startTime, t0, 'the first start stays');
      assert.equal(await f.store.claim('copy', 'a', 3, 1000, t0 + 1001).then((t) => t.length), 0);
      // The stalled holder wakes up: every write of its attempt is refused.
      assert.equal(await f.store.saveProgress(task.id, old, counters), false);
      assert.equal(await f.store.updatePayload(task.id, old, { stale: true }), false);
      assert.equal(await f.store.move(task.id, 'succeeded', { lease: old, patch: release }), null);
      assert.equal(await f.store.holds(task.id, old), false);
      assert.deepEqual(await f.store.renewLeases('a', [task.id], t0 + 5000), []);
      const lease = { owner: 'b', token: 2 };
      assert.equal(await f.store.holds(task.id, lease), true);
      assert.equal(await f.store.saveProgress(task.id, lease, counters), true);
      assert.equal((await f.store.move(task.id, 'succeeded', { lease, patch: release }))?.state, 'succeeded');
      assert.equal((await f.store.get(task.id))?.payload.stale, undefined);
    });

    it('an attempt token fences one holder’s own earlier attempt of a task', async () => {
      const [task] = await f.add(1);
      assert.ok(task);
      const t0 = Date.now();
      await f.store.claim('copy', 'w', 1, 60_000, t0);
      await f.store.move(task.id, 'errored', { lease: { owner: 'w', token: 1 }, patch: { attempts: 1 } });
      await f.store.move(task.id, 'waiting_retry', {
        lease: { owner: 'w', token: 1 },
        patch: { ...release, runAt: t0 },
      });
      const [again] = await f.store.claim('copy', 'w', 1, 60_000, t0);
      assert.equal(again?.leaseToken, 2);
      assert.equal(await f.store.saveProgress(task.id, { owner: 'w', token: 1 }, counters), false);
      assert.deepEqual(await f.store.renewLeases('w', [task.id], t0 + 1), [{ id: task.id, token: 2 }]);
    });

    it('retries after the backoff in run_at, and a manual retry starts afresh', async () => {
      const [task] = await f.add(1);
      assert.ok(task);
      const t0 = Date.now();
      await f.store.claim('copy', 'w', 1, 60_000, t0);
      await f.store.move(task.id, 'errored', {
        lease: { owner: 'w', token: 1 },
        patch: { attempts: 1, error: 'reset' },
      });
      await f.store.move(task.id, 'waiting_retry', {
        lease: { owner: 'w', token: 1 },
        patch: { ...release, runAt: t0 + 500 },
      });
      assert.deepEqual(await f.store.claim('copy', 'w', 1, 60_000, t0 + 499), [], 'not before its time');
      const [again] = await f.store.claim('copy', 'w', 1, 60_000, t0 + 500);
      assert.equal(again?.attempts, 1);
      assert.equal(again?.startTime, t0, 'the first start stays');

      await f.store.saveProgress(
        task.id,
        { owner: 'w', token: 2 },
        {
          ...counters,
          failedFiles: 1,
          failures: [{ path: '/a', error: 'e' }],
        },
      );
      await f.store.move(task.id, 'errored', { lease: { owner: 'w', token: 2 }, patch: { attempts: 2 } });
      await f.store.move(task.id, 'failing', { lease: { owner: 'w', token: 2 } });
      await f.store.move(task.id, 'failed', { lease: { owner: 'w', token: 2 }, patch: release });
      assert.equal(await f.store.requeue(task.id, ['canceled']), null, 'only from what the caller expects');
      const queued = await f.store.requeue(task.id, ['failed'], t0 + 900);
      assert.equal(queued?.state, 'before_retry');
      assert.equal(queued?.attempts, 0);
      assert.equal(queued?.error, '');
      assert.equal(queued?.failedFiles, 0);
      assert.deepEqual(queued?.failures, []);
      assert.equal(queued?.endTime, null);
      assert.equal(queued?.runAt, t0 + 900);
      assert.deepEqual(ids(await f.store.claim('copy', 'w', 1, 60_000, t0 + 900)), [task.id]);
    });

    it('flags cancels and deletes of unfinished tasks; the holder hears of them; flagged tasks are not claimed', async () => {
      const [idle, running, doomed, finished] = await f.add(4);
      assert.ok(idle && running && doomed && finished);
      await f.force(idle.id, { run_at: Date.now() + 60_000 });
      await f.store.claim('copy', 'w', 3, 60_000);
      await f.store.move(finished.id, 'succeeded', { lease: { owner: 'w', token: 1 }, patch: release });
      assert.deepEqual(
        (await f.store.requestCancel([idle.id, running.id, finished.id, 'nope'])).sort(),
        [idle.id, running.id].sort(),
      );
      assert.deepEqual(await f.store.requestCancel([doomed.id], { alsoDelete: true }), [doomed.id]);
      const asked = await f.store.cancelRequested('w');
      assert.deepEqual(
        asked.sort((x, y) => x.id.localeCompare(y.id)),
        [
          { id: running.id, deleteRequested: false },
          { id: doomed.id, deleteRequested: true },
        ].sort((x, y) => x.id.localeCompare(y.id)),
      );
      assert.deepEqual(await f.store.cancelRequested('other'), []);
      await f.force(idle.id, { run_at: 0 });
      assert.deepEqual(await f.store.claim('copy', 'w2', 5, 1000), []);
      // A task being deleted is hidden from lists and counts; `get` still has it for its worker.
      assert.ok(!ids(await f.store.list({}, { limit: 10, order: 'asc' })).includes(doomed.id));
      assert.equal(await f.store.count({}), 3);
      assert.equal((await f.store.get(doomed.id))?.deleteRequested, true);
    });

    it('settles the tasks of a dead worker as the state table allows', async () => {
      const tasks = await f.add(8);
      const [running, cancelAsked, canceling, failing, errored, worn, alive, idle] = tasks;
      assert.ok(running && cancelAsked && canceling && failing && errored && worn && alive && idle);
      await f.force(idle.id, { run_at: Date.now() + 60_000 });
      assert.equal((await f.store.claim('copy', 'dead', 7, 10)).length, 7);
      const now = Date.now() + 1000; // the dead worker's leases are a second past
      await f.force(cancelAsked.id, { cancel_requested: 1 });
      await f.force(canceling.id, { state: 'canceling', cancel_requested: 1 });
      await f.force(failing.id, { state: 'failing' });
      await f.force(errored.id, { state: 'errored', attempts: 1 });
      await f.force(worn.id, { interruptions: 2 });
      await f.force(alive.id, { lease_owner: 'alive', lease_until: now + 60_000 });

      const shared = DIALECT_TRAITS[f.opened.dialect].takeOverInClaim;
      const requeued = await f.store.reclaimExpired(now, { maxInterruptions: 3 });
      const state = async (t: Task) => (await f.store.get(t.id)) as Task;
      const r = await state(running);
      if (shared) {
        // A shared store's claims take it over from running (see the takeover case): no detour.
        assert.equal(requeued, 0);
        assert.equal(r.state, 'running');
        const [taken] = await f.store.claim('copy', 'next', 1, 1000, now, { maxInterruptions: 3 });
        assert.equal(taken?.id, running.id);
        assert.equal(taken?.interruptions, 1);
      } else {
        assert.equal(requeued, 1, 'one back to the queue');
        assert.equal(r.state, 'pending');
        assert.equal(r.interruptions, 1);
        assert.equal(r.leaseOwner, null);
        assert.equal(r.runAt, now);
      }
      assert.equal((await state(cancelAsked)).state, 'canceled');
      assert.equal((await state(canceling)).state, 'canceled');
      assert.equal((await state(failing)).state, 'failed');
      const e = await state(errored);
      assert.equal(e.state, 'waiting_retry');
      assert.equal(e.attempts, 1);
      const w = await state(worn);
      assert.equal(w.state, 'failed');
      assert.equal(w.errorCode, 'E_INTERRUPTED');
      assert.equal((await state(alive)).state, 'running', 'a live lease is left alone');
      assert.equal((await state(idle)).state, 'pending');
      for (const t of [cancelAsked, canceling, failing, worn]) assert.ok((await state(t)).endTime);

      // At start-up every held task is this process's own, however fresh its lease.
      assert.equal(await f.store.reclaimExpired(now, { all: true }), shared ? 2 : 1);
      assert.equal((await state(alive)).state, 'pending');
    });

    it('pages by keyset, stable while tasks are added, and filters', async () => {
      const first = await f.add(12);
      await f.add(3, { kind: 'move', creatorId: 9 });
      const pages: string[] = [];
      let afterSeq: number | undefined;
      for (let n = 0; ; n++) {
        const page = await f.store.list({ kinds: ['copy'] }, { afterSeq, limit: 5, order: 'asc' });
        pages.push(...ids(page));
        // Tasks added between pages come after the cursor: seen once, at the end.
        if (n === 0) await f.add(2);
        if (page.length < 5) break;
        afterSeq = page.at(-1)?.seq;
      }
      assert.equal(pages.length, 14);
      assert.equal(new Set(pages).size, 14);
      assert.deepEqual(pages.slice(0, 12), ids(first));

      const desc = await f.store.list({ kinds: ['copy'] }, { limit: 3, order: 'desc' });
      const next = await f.store.list(
        { kinds: ['copy'] },
        { afterSeq: desc.at(-1)?.seq, limit: 3, order: 'desc' },
      );
      assert.deepEqual([...ids(desc), ...ids(next)], pages.slice(-6).reverse());
      const offset = await f.store.list({ kinds: ['copy'] }, { limit: 3, offset: 3, order: 'asc' });
      assert.deepEqual(ids(offset), pages.slice(3, 6));

      assert.equal(await f.store.count({ creatorId: 9 }), 3);
      assert.equal(await f.store.count({ kinds: ['move', 'copy'] }), 17);
      assert.equal(await f.store.count({ kinds: [] }), 0);
      assert.equal(await f.store.count({ states: ['pending'], ids: pages.slice(0, 4) }), 4);
      assert.equal(await f.store.count({ states: [] }), 0);
      assert.equal(await f.store.count({ done: true }), 0);
    });

    it('deletes tasks, and finds the finished ones to sweep', async () => {
      const [a, b, c, d] = await f.add(4);
      assert.ok(a && b && c && d);
      await f.force(a.id, { state: 'succeeded', end_time: 100 });
      await f.force(b.id, { state: 'failed', end_time: 50 });
      await f.force(c.id, { state: 'canceled', end_time: 300, delete_requested: 1 });
      assert.deepEqual(
        ids(await f.store.expired(200, 10)),
        [b.id, a.id],
        'oldest first, ended before the cutoff',
      );
      assert.deepEqual(ids(await f.store.deletedAndFinished(10)), [c.id]);
      assert.equal(await f.store.delete([a.id, b.id, 'nope']), 2);
      assert.equal(await f.store.delete([]), 0);
      assert.equal(await f.store.get(a.id), null);
      assert.equal(await f.store.count({}), 1);
    });

    if (db.dialect === 'sqlite')
      it('finds claimable tasks through the partial index, however many finished tasks there are', async () => {
        // The runnable condition is spelled from the state table; the index from migration 1.
        // If they ever differ, every claim scans the table: this says so.
        const { sql, parameters } = claimCandidates(
          f.opened.db,
          DIALECT_TRAITS.sqlite,
          'copy',
          8,
          0,
        ).compile();
        const plan = await f.opened.db.executeQuery<{ detail: string }>(
          CompiledQuery.raw(`EXPLAIN QUERY PLAN ${sql}`, [...parameters]),
        );
        assert.match(plan.rows.map((row) => row.detail).join(' '), /USING INDEX tasks_runnable/);
      });

    it('stable pages: every task once, in order, however the pages fall', async () => {
      const tasks = await f.add(23);
      const seen: string[] = [];
      let after: { xid: number; seq: number } | undefined;
      for (let more = true; more; ) {
        const page = await f.store.listStable({}, { limit: 7, ...(after && { after }) });
        seen.push(...ids(page.tasks));
        const last = page.tasks.at(-1);
        if (last) after = { xid: last.insertXid, seq: last.seq };
        more = page.more;
      }
      assert.deepEqual(seen, ids(tasks));
    });

    if (db.dialect === 'postgres')
      it('stable pages never pass a task whose insert has not committed yet (a node inserting slowly)', async () => {
        const [first] = await f.add(1);
        assert.ok(first);
        // Another node's transaction inserts a task and has not committed: its seq is drawn.
        const other = new pg.Client({ connectionString: f.url });
        await other.connect();
        try {
          await other.query('BEGIN');
          await other.query(
            `INSERT INTO tasks (id, kind, name, creator_id, creator, creator_role, state, payload, max_retry, run_at, created_at, updated_at)
             VALUES ('slow', 'copy', 'n', 1, 'admin', 2, 'pending', '{}', 0, 0, 0, 0)`,
          );
          const later = await f.add(3); // committed, larger seq
          // Another transaction of the server (other tests share it) may hold the horizon a moment.
          let page = await f.store.listStable({}, { limit: 7 });
          for (let i = 0; i < 50 && page.tasks.length === 0; i++) {
            await new Promise((r) => setTimeout(r, 100));
            page = await f.store.listStable({}, { limit: 7 });
          }
          assert.deepEqual(ids(page.tasks), [first.id], 'nothing past the open insert');
          assert.equal(page.more, true, 'more is coming');
          const after = { xid: first.insertXid, seq: first.seq };
          await other.query('COMMIT');
          const rest = await f.store.listStable({}, { limit: 7, after });
          assert.deepEqual(ids(rest.tasks).sort(), ['slow', ...ids(later)].sort());
          assert.equal(rest.more, false);
        } finally {
          await other.end();
        }
      });

    if (db.dialect === 'postgres')
      it('skips tasks another node holds locked instead of waiting for them', async () => {
        const [a, b] = await f.add(2);
        assert.ok(a && b);
        await f.store.claim('copy', 'w', 1, 60_000); // a: running, held by w
        // Another node's transaction holds both rows locked (claiming b, recording a's outcome).
        const other = new pg.Client({ connectionString: f.url });
        await other.connect();
        /** `work`, or a failure once it has waited 3 s for the other node's locks (released then). */
        const promptly = async <T>(work: Promise<T>, what: string): Promise<T> => {
          const timer = new Promise<'waited'>((r) => setTimeout(() => r('waited'), 3000).unref());
          if ((await Promise.race([work, timer])) !== 'waited') return work;
          await other.query('ROLLBACK');
          await work;
          return assert.fail(`${what} waited for a row another transaction holds`);
        };
        try {
          await other.query('BEGIN');
          await other.query('SELECT seq FROM tasks WHERE id IN ($1, $2) FOR UPDATE', [a.id, b.id]);
          assert.deepEqual(await promptly(f.store.claim('copy', 'w2', 5, 1000), 'a claim'), [], 'b skipped');
          const renewed = await promptly(f.store.renewLeases('w', [a.id], Date.now() + 5000), 'a renewal');
          assert.deepEqual(
            renewed.map((h) => h.id),
            [a.id],
            'a locked row its owner holds is still held',
          );
          await other.query('ROLLBACK');
          assert.deepEqual(ids(await f.store.claim('copy', 'w2', 5, 1000)), [b.id]);
        } finally {
          await other.end();
        }
      });
  });
}
