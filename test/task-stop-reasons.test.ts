import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import type { Principal } from '../src/auth/roles.ts';
import { loadConfig, type TaskKind } from '../src/config.ts';
import { FerryError } from '../src/errors.ts';
import { MountRegistry } from '../src/storage/mounts.ts';
import { type OpenedDatabase, openDatabase } from '../src/store/database.ts';
import { MountStore } from '../src/store/mount-store.ts';
import { SqlTaskStore } from '../src/store/sql-task-store.ts';
import { type StopKind, stopKindOf, TaskStopped } from '../src/tasks/abort-reason.ts';
import { TaskEvents } from '../src/tasks/events.ts';
import { canceledByUser, type TaskKindHandler } from '../src/tasks/kinds/kind.ts';
import type { Task, TaskState } from '../src/tasks/model.ts';
import { Runner } from '../src/tasks/runner.ts';
import { TaskService } from '../src/tasks/service.ts';
import { waitFor } from './helpers/harness.ts';

/**
 * Why a running task stopped reaches its kind as a typed reason (`TaskStopped.kind`), and the
 * runner records each stop as the state table says: a cancel ends canceled, a delete removes
 * the task, a shutdown queues it again, a lost lease writes nothing.
 */

const admin: Principal = { id: 1, username: 'admin', role: 2, basePath: '/', permission: 0xffff };

describe('why a task stopped, as its kind and the store see it', () => {
  let dir: string;
  let database: OpenedDatabase;
  let store: SqlTaskStore;
  let runner: Runner;
  let service: TaskService;
  /** What the kind saw when its signal aborted, by task id. */
  const seen = new Map<string, { kind: StopKind | null; byUser: boolean }>();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-stops-'));
    const config = await loadConfig(
      { FERRY_DATA_DIR: dir },
      { sqliteSynchronous: 'NORMAL', tasks: { pollIntervalMs: 20, leaseMs: 300, progressIntervalMs: 100 } },
    );
    const log = pino({ level: 'silent' });
    database = await openDatabase(config.databaseUrl, { synchronous: 'NORMAL' });
    store = new SqlTaskStore(database);
    const events = new TaskEvents();
    const mounts = new MountRegistry(new MountStore(database.db), new Map(), dir, log);
    // A kind that runs until its signal aborts, then says what it saw and stops as kinds do.
    const kind: TaskKindHandler = {
      kind: 'copy',
      run: (task, ctx) =>
        new Promise((_resolve, reject) => {
          ctx.signal.addEventListener('abort', () => {
            seen.set(task.id, { kind: stopKindOf(ctx.signal), byUser: canceledByUser(ctx.signal) });
            reject(ctx.signal.reason);
          });
        }),
    };
    const kinds = new Map<TaskKind, TaskKindHandler>([['copy', kind]]);
    runner = new Runner({ store, events, mounts, kinds, config, log });
    service = new TaskService(store, events, runner, kinds, config, log);
    runner.start();
  });
  after(async () => {
    await runner.stop();
    await database.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function running(): Promise<Task> {
    const [task] = await service.create(admin, [{ kind: 'copy', name: 'copy', payload: {} }]);
    assert.ok(task);
    return waitFor(async () => {
      const t = await store.get(task.id);
      return t?.state === 'running' ? t : undefined;
    }, 5000);
  }

  const settled = (id: string, states: TaskState[]) =>
    waitFor(async () => {
      const t = await store.get(id);
      return t && states.includes(t.state) ? t : undefined;
    }, 5000);

  it('a cancel: reason canceled, by the user; the task ends canceled', async () => {
    const task = await running();
    await service.cancel(admin, task.id);
    const done = await settled(task.id, ['canceled']);
    assert.deepEqual(seen.get(task.id), { kind: 'canceled', byUser: true });
    assert.equal(done.errorCode, 'E_CANCELED');
  });

  it('a delete while running: reason deleted, by the user; the task is removed', async () => {
    const task = await running();
    await service.delete(admin, task.id);
    await waitFor(async () => ((await store.get(task.id)) === null ? true : undefined), 5000);
    assert.deepEqual(seen.get(task.id), { kind: 'deleted', byUser: true });
  });

  it('a lost lease: reason lease-lost, not the user; this worker writes nothing more', async () => {
    const task = await running();
    // Another node took the task over (this one stalled past its lease).
    await database.db
      .updateTable('tasks')
      .set({ lease_owner: 'other-node' })
      .where('id', '=', task.id)
      .execute();
    await waitFor(async () => (seen.has(task.id) ? true : undefined), 5000);
    assert.deepEqual(seen.get(task.id), { kind: 'lease-lost', byUser: false });
    await new Promise((r) => setTimeout(r, 200));
    const now = await store.get(task.id);
    assert.equal(now?.state, 'running');
    assert.equal(now?.leaseOwner, 'other-node');
  });

  it('a shutdown: reason shutdown, not the user; the task goes back to the queue', async () => {
    const task = await running();
    await runner.stop();
    assert.deepEqual(seen.get(task.id), { kind: 'shutdown', byUser: false });
    const now = await store.get(task.id);
    assert.equal(now?.state, 'pending');
    assert.equal(now?.leaseOwner, null);
    runner.start();
  });

  it('reads the reason’s type, never its text', () => {
    const lookalike = new AbortController();
    lookalike.abort(new FerryError('E_CANCELED', 'canceled'));
    assert.equal(canceledByUser(lookalike.signal), false);
    assert.equal(stopKindOf(lookalike.signal), null);
    const real = new AbortController();
    real.abort(new TaskStopped('deleted'));
    assert.equal(canceledByUser(real.signal), true);
    assert.ok(real.signal.reason instanceof FerryError && real.signal.reason.code === 'E_CANCELED');
    assert.equal(canceledByUser(new AbortController().signal), false);
  });
});
