import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Selectable } from 'kysely';
import type { TaskKind } from '../../src/config.ts';
import { type OpenedDatabase, openDatabase } from '../../src/store/database.ts';
import type { TasksTable } from '../../src/store/schema.ts';
import { SqlTaskStore } from '../../src/store/sql-task-store.ts';
import type { NewTask, TaskStore } from '../../src/store/task-store.ts';
import { isDone, type Task, type TaskState } from '../../src/tasks/model.ts';
import type { TestDatabase } from '../helpers/databases.ts';

/** A task store on a database of its own (a SQLite temp file, a fresh PostgreSQL schema). */
export interface StoreFixture {
  store: TaskStore;
  opened: OpenedDatabase;
  /** The database's URL. */
  url: string;
  /** Store `count` new tasks (kind copy by default). */
  add(count?: number, fields?: Partial<NewTask>): Promise<Task[]>;
  /**
   * Set a task's columns behind the store's back: how a test puts a task in a given state
   * (`done` follows `state`) without walking it there.
   */
  force(id: string, columns: Partial<Omit<Selectable<TasksTable>, 'seq' | 'done'>>): Promise<void>;
  /** Remove every task (between tests). */
  clear(): Promise<void>;
  close(): Promise<void>;
}

export async function openStore(db: TestDatabase): Promise<StoreFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-store-'));
  const { url, drop } = await db.create();
  const databaseUrl = url ?? `sqlite:${join(dir, 'ferry.db')}`;
  const opened = await openDatabase(databaseUrl, { synchronous: 'NORMAL' });
  const store = new SqlTaskStore(opened);
  return {
    store,
    opened,
    url: databaseUrl,
    add(count = 1, fields = {}) {
      return store.insert(
        Array.from({ length: count }, () => ({
          id: randomBytes(8).toString('hex'),
          kind: 'copy' as TaskKind,
          name: 'copy [/a](/x) to [/b](/)',
          creatorId: 1,
          creator: 'admin',
          creatorRole: 2,
          payload: { src: '/a/x' },
          maxRetry: 3,
          ...fields,
        })),
      );
    },
    async force(id, columns) {
      const state = columns.state as TaskState | undefined;
      await opened.db
        .updateTable('tasks')
        .set({ ...columns, ...(state && { done: isDone(state) ? 1 : 0 }) })
        .where('id', '=', id)
        .execute();
    },
    async clear() {
      await opened.db.deleteFrom('tasks').execute();
    },
    async close() {
      await opened.close();
      await drop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
