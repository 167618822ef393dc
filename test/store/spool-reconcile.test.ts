import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { removeFinishedSpools } from '../../src/tasks/spool-reconcile.ts';
import { testDatabases } from '../helpers/databases.ts';
import { openStore, type StoreFixture } from './store-fixture.ts';

for (const db of await testDatabases())
  describe(`upload spools left by a process that died after recording success (${db.dialect})`, () => {
    let f: StoreFixture;
    let dataDir: string;
    before(async () => {
      f = await openStore(db);
      dataDir = await mkdtemp(join(tmpdir(), 'ferry-spools-'));
      await mkdir(join(dataDir, 'spool'));
    });
    after(async () => {
      await f.close();
      await rm(dataDir, { recursive: true, force: true });
    });

    it('removes the spools of succeeded and (alone on the data dir) vanished tasks, keeps the rest', async () => {
      const [succeeded, failed, running] = await f.add(3, { kind: 'upload' });
      await f.force(succeeded!.id, { state: 'succeeded' });
      await f.force(failed!.id, { state: 'failed' });
      await f.force(running!.id, { state: 'running' });
      for (const id of [succeeded!.id, failed!.id, running!.id, 'gone-task'])
        await writeFile(join(dataDir, 'spool', id), 'body');
      const log = pino({ level: 'silent' });

      assert.equal(await removeFinishedSpools(dataDir, f.store, { orphans: false, log }), 1);
      assert.deepEqual(
        (await readdir(join(dataDir, 'spool'))).sort(),
        [failed!.id, running!.id, 'gone-task'].sort(),
      );
      assert.equal(await removeFinishedSpools(dataDir, f.store, { orphans: true, log }), 1);
      assert.deepEqual((await readdir(join(dataDir, 'spool'))).sort(), [failed!.id, running!.id].sort());
    });
  });
