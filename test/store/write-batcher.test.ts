import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { type OpenedDatabase, openDatabase } from '../../src/store/database.ts';
import { WriteBatcher } from '../../src/store/write-batcher.ts';
import { testDatabases } from '../helpers/databases.ts';

for (const db of await testDatabases()) {
  describe(`write batches on ${db.dialect}`, () => {
    let opened: OpenedDatabase;
    let dir: string;
    let drop: () => Promise<void>;

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'ferry-batch-'));
      const created = await db.create();
      drop = created.drop;
      opened = await openDatabase(created.url ?? `sqlite:${join(dir, 'ferry.db')}`, {
        synchronous: 'NORMAL',
      });
      await sql`CREATE TABLE batch_probe (id TEXT PRIMARY KEY)`.execute(opened.db);
    });
    after(async () => {
      await opened?.close();
      await drop?.();
      await rm(dir, { recursive: true, force: true });
    });

    it('fails a write alone: the others of its batch still commit, and say so truly', async () => {
      // On PostgreSQL a failed statement aborts its transaction; the writes around it must not
      // be reported done and then rolled back with it.
      const batcher = new WriteBatcher(opened.db, { savepoints: opened.dialect === 'postgres' });
      const insert = (id: string) =>
        batcher.write((trx) => sql`INSERT INTO batch_probe (id) VALUES (${id})`.execute(trx));
      const results = await Promise.allSettled([
        insert('a'),
        batcher.write((trx) => sql`SELECT * FROM no_such_table`.execute(trx)),
        insert('a'), // a duplicate key
        insert('b'),
      ]);
      assert.deepEqual(
        results.map((r) => r.status),
        ['fulfilled', 'rejected', 'rejected', 'fulfilled'],
      );
      const rows = await sql<{ id: string }>`SELECT id FROM batch_probe ORDER BY id`.execute(opened.db);
      assert.deepEqual(
        rows.rows.map((r) => r.id),
        ['a', 'b'],
      );
    });
  });
}
