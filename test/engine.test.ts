import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import type { Principal } from '../src/auth/roles.ts';
import { type Config, loadConfig, type TaskKind } from '../src/config.ts';
import { FerryError } from '../src/errors.ts';
import { MountRegistry } from '../src/storage/mounts.ts';
import { type OpenedDatabase, openDatabase } from '../src/store/database.ts';
import { MountStore } from '../src/store/mount-store.ts';
import { SqlTaskStore } from '../src/store/sql-task-store.ts';
import { DIALECT_TRAITS } from '../src/store/task-sql.ts';
import type { TaskStore } from '../src/store/task-store.ts';
import { TaskEvents } from '../src/tasks/events.ts';
import type { TaskContext, TaskKindHandler } from '../src/tasks/kinds/kind.ts';
import type { Task, TaskState } from '../src/tasks/model.ts';
import { Runner } from '../src/tasks/runner.ts';
import { TaskService } from '../src/tasks/service.ts';
import { type TestDatabase, testDatabases } from './helpers/databases.ts';
import { waitFor } from './helpers/harness.ts';

/**
 * The engine on a real SQLite store, driving a scripted task kind (the kind does no I/O: what is
 * under test is the runner and the service — retries, backoff, cancel, leases, throttling,
 * retention).
 */
type Script = (task: Task, ctx: TaskContext) => Promise<void>;

const admin: Principal = { id: 1, username: 'admin', role: 2, basePath: '/', permission: 0xffff };

interface Engine {
  store: TaskStore;
  service: TaskService;
  runner: Runner;
  events: TaskEvents;
  config: Config;
  database: OpenedDatabase;
  /** What the `copy` kind does in this engine. */
  script: { run: Script };
  writes: { progress: number };
  close(): Promise<void>;
}

async function startEngine(db: TestDatabase, tasks: Partial<Config['tasks']> = {}): Promise<Engine> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-engine-'));
  const { url, drop } = await db.create();
  const config = await loadConfig(
    { FERRY_DATA_DIR: dir, ...(url && { FERRY_DATABASE_URL: url }) },
    {
      sqliteSynchronous: 'NORMAL',
      tasks: {
        pollIntervalMs: 20,
        progressIntervalMs: 100,
        retryBaseDelayMs: 50,
        retryMaxDelayMs: 400,
        leaseMs: 300,
        ...tasks,
      },
    },
  );
  const log = pino({ level: process.env.FERRY_TEST_LOG ?? 'silent' });
  const database = await openDatabase(config.databaseUrl, { synchronous: 'NORMAL' });
  const store: TaskStore = new SqlTaskStore(database);
  const writes = { progress: 0 };
  const saveProgress = store.saveProgress.bind(store);
  store.saveProgress = (...args) => {
    writes.progress++;
    return saveProgress(...args);
  };
  const events = new TaskEvents();
  const mounts = new MountRegistry(new MountStore(database.db), new Map(), dir, log);
  const script: { run: Script } = { run: async () => undefined };
  const kind: TaskKindHandler = { kind: 'copy', run: (task, ctx) => script.run(task, ctx) };
  const kinds = new Map<TaskKind, TaskKindHandler>([['copy', kind]]);
  const runner = new Runner({ store, events, mounts, kinds, config, log });
  const service = new TaskService(store, events, runner, kinds, config, log);
  runner.start();
  return {
    store,
    service,
    runner,
    events,
    config,
    database,
    script,
    writes,
    async close() {
      await runner.stop();
      await database.close();
      await drop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function create(e: Engine): Promise<Task> {
  const [task] = await e.service.create(admin, [
    { kind: 'copy', name: 'copy [/a](/x) to [/b](/)', payload: {} },
  ]);
  assert.ok(task);
  return task;
}

function until(e: Engine, id: string, states: TaskState[], timeoutMs = 5000): Promise<Task> {
  return waitFor(
    async () => {
      const t = await e.store.get(id);
      return t && states.includes(t.state) ? t : undefined;
    },
    timeoutMs,
    `task ${id} to reach ${states.join('|')}`,
  );
}

for (const db of await testDatabases()) {
  describe(`engine on ${db.dialect}: retries and failures`, () => {
    let e: Engine;
    before(async () => {
      e = await startEngine(db);
    });
    after(() => e.close());

    it('retries a retryable error with growing backoff, through errored and waiting_retry, then succeeds', async () => {
      const attemptsAt: number[] = [];
      const seen = new Set<string>();
      e.events.on((t) => seen.add(t.state));
      e.script.run = async () => {
        attemptsAt.push(Date.now());
        if (attemptsAt.length <= 2) throw new FerryError('E_BACKEND', 'connection reset');
      };
      const task = await create(e);
      const done = await until(e, task.id, ['succeeded', 'failed']);
      assert.equal(done.state, 'succeeded');
      assert.equal(done.attempts, 2);
      assert.equal(attemptsAt.length, 3);
      const [a = 0, b = 0, c = 0] = attemptsAt;
      assert.ok(b - a >= 45, `first backoff ${b - a} ms`);
      assert.ok(c - b >= 95, `second backoff ${c - b} ms doubles`);
      for (const s of ['errored', 'waiting_retry', 'running', 'succeeded']) assert.ok(seen.has(s), s);
    });

    it('fails at once on an unrecoverable error, keeping its message', async () => {
      let calls = 0;
      e.script.run = async () => {
        calls++;
        throw new FerryError('E_EXISTS', 'already exists: /b/x');
      };
      const task = await create(e);
      const done = await until(e, task.id, ['failed']);
      assert.equal(calls, 1);
      assert.equal(done.error, 'already exists: /b/x');
      assert.ok(done.endTime !== null);
    });

    it('gives up after max_retry attempts', async () => {
      let calls = 0;
      e.script.run = async () => {
        calls++;
        throw new Error('flaky');
      };
      const task = await create(e);
      const done = await until(e, task.id, ['failed'], 10_000);
      assert.equal(calls, e.config.tasks.maxRetry.copy + 1);
      assert.equal(done.error, 'flaky');
    });

    it('a manual retry of a failed task runs it again from before_retry', async () => {
      e.script.run = async () => {
        throw new FerryError('E_NOT_FOUND', 'gone');
      };
      const task = await create(e);
      await until(e, task.id, ['failed']);
      e.script.run = async () => undefined;
      await e.service.retry(admin, task.id);
      const done = await until(e, task.id, ['succeeded']);
      assert.equal(done.error, '');
    });
  });

  describe(`engine on ${db.dialect}: cancel, leases, progress, retention`, () => {
    let e: Engine;
    before(async () => {
      e = await startEngine(db);
    });
    after(() => e.close());

    it('cancels a running task within a second: its signal aborts and it ends canceled', async () => {
      let aborted = 0;
      e.script.run = (_task, ctx) =>
        new Promise((_resolve, reject) => {
          ctx.signal.addEventListener('abort', () => {
            aborted = Date.now();
            reject(ctx.signal.reason);
          });
        });
      const task = await create(e);
      await until(e, task.id, ['running']);
      const asked = Date.now();
      await e.service.cancel(admin, task.id);
      const done = await until(e, task.id, ['canceled'], 1000);
      assert.ok(aborted - asked < 1000);
      assert.ok(done.endTime !== null);
    });

    it('obeys the per-kind worker limit, changed while running', async () => {
      e.runner.setLimit('copy', 0);
      let running = 0;
      let peak = 0;
      e.script.run = async () => {
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 30));
        running--;
      };
      const tasks = await Promise.all(Array.from({ length: 6 }, () => create(e)));
      await new Promise((r) => setTimeout(r, 150));
      assert.deepEqual(
        (await e.store.getMany(tasks.map((t) => t.id))).map((t) => t.state),
        Array(6).fill('pending'),
        'no worker, no start',
      );
      e.runner.setLimit('copy', 2);
      for (const t of tasks) await until(e, t.id, ['succeeded']);
      assert.equal(peak, 2);
      e.runner.setLimit('copy', e.config.tasks.workers.copy);
    });

    it('cancels a task that has not started without running it', async () => {
      await e.runner.stop();
      e.script.run = async () => assert.fail('must not run');
      const task = await create(e);
      await e.service.cancel(admin, task.id);
      assert.equal((await e.store.get(task.id))?.state, 'canceled');
      e.runner.start();
    });

    it('writes progress a few times a second at most, however often the kind reports', async () => {
      const before = e.writes.progress;
      e.script.run = async (_task, ctx) => {
        ctx.progress.setTotals({ bytes: 1_000_000 });
        const end = Date.now() + 600;
        while (Date.now() < end) {
          for (let i = 0; i < 100; i++) ctx.progress.addBytes(1);
          await new Promise((r) => setImmediate(r));
        }
      };
      const task = await create(e);
      const done = await until(e, task.id, ['succeeded']);
      const writes = e.writes.progress - before;
      assert.ok(writes <= 600 / e.config.tasks.progressIntervalMs + 2, `${writes} progress writes`);
      assert.ok(done.doneBytes > 1000);
    });

    it('takes back the task of a worker whose lease expired and runs it again', async () => {
      e.script.run = async () => undefined;
      await e.runner.stop();
      const task = await create(e);
      // Another worker claims it and dies without a word.
      const [claimed] = await e.store.claim('copy', 'dead-worker', 1, 100);
      assert.equal(claimed?.id, task.id);
      e.runner.start();
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(await e.service.maintain(), 0);
      const done = await until(e, task.id, ['succeeded']);
      assert.equal(done.leaseOwner, null);
    });

    it('fails a task whose worker died under it maxInterruptions times, instead of queuing it again', async () => {
      e.script.run = async () => undefined;
      await e.runner.stop();
      const task = await create(e);
      const limit = e.config.tasks.maxInterruptions;
      assert.equal(limit, 3, 'the default');
      for (let death = 1; death <= limit; death++) {
        // A worker claims it (a lease of 1 ms) and dies without a word.
        const [claimed] = await e.store.claim('copy', `dead-worker-${death}`, 1, 1);
        assert.equal(claimed?.id, task.id, `claim ${death}`);
        await new Promise((r) => setTimeout(r, 5));
        await e.store.reclaimExpired(Date.now(), { maxInterruptions: limit });
        const after = await e.store.get(task.id);
        if (death < limit && DIALECT_TRAITS[db.dialect].takeOverInClaim) {
          // A shared store: left running for the next claim to take over, which counts it.
          assert.equal(after?.state, 'running', `left for a takeover after death ${death}`);
          assert.equal(after?.interruptions, death - 1);
        } else if (death < limit) {
          assert.equal(after?.state, 'pending', `queued again after death ${death}`);
          assert.equal(after?.interruptions, death);
        } else {
          assert.equal(after?.state, 'failed');
          assert.equal(after?.errorCode, 'E_INTERRUPTED');
          assert.match(after?.error ?? '', /stopped while running this task 3 times/);
        }
      }
      // A retry by hand runs it again, with a fresh count.
      await e.service.retry(admin, task.id);
      e.runner.start();
      const done = await until(e, task.id, ['succeeded']);
      assert.equal(done.interruptions, 0);
    });

    it('sweeps finished tasks older than the retention, and only those', async () => {
      e.script.run = async () => undefined;
      // More than one sweep batch (100).
      const finished = await e.service.create(
        admin,
        Array.from({ length: 250 }, (_, i) => ({ kind: 'copy' as const, name: `copy ${i}`, payload: {} })),
      );
      for (const task of finished) await until(e, task.id, ['succeeded']);
      await e.runner.stop();
      const waiting = await create(e);
      const later = Date.now() + (e.config.tasks.retentionHours + 1) * 3_600_000;
      assert.ok((await e.service.maintain(later)) >= finished.length);
      for (const task of finished) assert.equal(await e.store.get(task.id), null);
      assert.equal((await e.store.get(waiting.id))?.state, 'pending');
      e.runner.start();
    });
  });
}
