import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Job, JobStore } from '../../src/store/job-store.ts';
import { testDatabases } from '../helpers/databases.ts';
import { openStore, type StoreFixture } from './store-fixture.ts';

/**
 * The job store on each database: a due slot is taken by one caller of many (compare-and-set on
 * `next_run_at`), a slot records one run, and pruning keeps what the overlap check reads.
 */

function job(id: string, nextRunAt: number): Job {
  return {
    id,
    ownerId: 1,
    name: id,
    mode: 'sync',
    srcDir: '/local/a',
    dstDir: '/local/b',
    options: { include: [], exclude: [], compare: 'size_mtime', conflict: 'overwrite', maxDelete: null },
    schedule: { everySeconds: 1 },
    enabled: true,
    nextRunAt,
    createdAt: 1,
    updatedAt: 1,
  };
}

for (const database of await testDatabases()) {
  describe(`job store on ${database.dialect}`, () => {
    let fixture: StoreFixture;
    let jobs: JobStore;
    before(async () => {
      fixture = await openStore(database);
      jobs = new JobStore(fixture.opened.db);
    });
    after(() => fixture.close());

    it('lets one of many concurrent claims take a due slot', async () => {
      await jobs.insert(job('claimed', 1000));
      assert.deepEqual(
        (await jobs.due(999)).map((j) => j.id),
        [],
      );
      assert.deepEqual(
        (await jobs.due(1000)).map((j) => j.id),
        ['claimed'],
      );
      const claims = await Promise.all(
        Array.from({ length: 8 }, () => jobs.claimSlot('claimed', 1000, 2000)),
      );
      assert.equal(claims.filter(Boolean).length, 1);
      assert.equal((await jobs.get('claimed'))?.nextRunAt, 2000);
      // A paused job's slot is taken by nobody.
      await jobs.update({ ...job('claimed', 2000), enabled: false });
      assert.equal(await jobs.claimSlot('claimed', 2000, 3000), false);
    });

    it('records one run per slot, and keeps the newest started run when pruning', async () => {
      const run = (slot: number | null, taskId: string | null) => ({
        jobId: 'runs',
        slot,
        taskId,
        state: taskId ? ('started' as const) : ('skipped' as const),
        error: '',
        createdAt: 1,
      });
      assert.ok(await jobs.addRun(run(1000, 't1')));
      assert.equal(await jobs.addRun(run(1000, 't2')), null, 'the slot has its run');
      assert.ok(await jobs.addRun(run(null, 't3')));
      assert.ok(await jobs.addRun(run(null, 't4')), 'runs by hand have no slot to share');
      for (let slot = 2000; slot < 2010; slot++) assert.ok(await jobs.addRun(run(slot, null)));
      await jobs.prune('runs', 3);
      const left = await jobs.runs('runs', 100);
      assert.deepEqual(
        left.map((r) => r.slot),
        [2009, 2008, 2007, null],
      );
      assert.equal((await jobs.lastStarted('runs'))?.taskId, 't4');
    });
  });
}
