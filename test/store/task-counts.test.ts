import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { countTasksByKindAndState } from '../../src/store/task-counts.ts';
import { testDatabases } from '../helpers/databases.ts';
import { openStore, type StoreFixture } from './store-fixture.ts';

/** The `ferry_tasks` gauge's query, once per database: counts by kind and state, as numbers. */
for (const db of await testDatabases()) {
  describe(`task counts on ${db.dialect}`, () => {
    let f: StoreFixture;
    before(async () => {
      f = await openStore(db);
    });
    after(async () => {
      await f.close();
    });

    it('counts every task by kind and state', async () => {
      const copies = await f.add(3);
      await f.add(2, { kind: 'move' });
      const [first] = copies;
      assert.ok(first);
      await f.force(first.id, { state: 'failed' });
      const counts = await countTasksByKindAndState(f.opened.db);
      const sorted = counts.map((c) => `${c.kind}/${c.state}=${c.count}`).sort();
      assert.deepEqual(sorted, ['copy/failed=1', 'copy/pending=2', 'move/pending=2']);
      assert.ok(counts.every((c) => typeof c.count === 'number'));
    });
  });
}
