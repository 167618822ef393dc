import type SQLite from 'better-sqlite3';
import { type Kysely, sql } from 'kysely';
import type { TaskKind } from '../config.ts';
import { RUNNABLE_STATES, type Task, type TaskState } from '../tasks/model.ts';
import type { Dialect } from './migrations.ts';
import type { Database } from './schema.ts';
import { SqliteWrites } from './sqlite-writes.ts';
import {
  countMatching,
  type PageRequest,
  selectDeletedAndFinished,
  selectExpired,
  selectMany,
  selectPage,
  type TaskFilter,
} from './task-lists.ts';
import {
  type ProgressPatch,
  progressColumns,
  type Row,
  type TransitionPatch,
  toTask,
  transitionColumns,
} from './task-rows.ts';
import { WriteBatcher } from './write-batcher.ts';

export type { PageRequest, TaskFilter } from './task-lists.ts';
export type { ProgressPatch, TransitionPatch } from './task-rows.ts';

export interface NewTask {
  id: string;
  kind: TaskKind;
  name: string;
  creatorId: number;
  creator: string;
  creatorRole: number;
  payload: Record<string, unknown>;
  maxRetry: number;
  totalBytes?: number;
  totalFiles?: number;
}

/**
 * Runnable tasks, spelled exactly as the partial index `tasks_runnable` (migration 1) is, with
 * literals rather than parameters: only then can SQLite prove the index applies.
 */
const RUNNABLE_SQL = `state IN (${RUNNABLE_STATES.map((s) => `'${s}'`).join(', ')}) AND cancel_requested = 0`;
const RUNNABLE = sql.raw(RUNNABLE_SQL);

/**
 * The task store, in task terms. The record here is the truth: nothing else keeps tasks in
 * memory. Every state change is a guarded update (`WHERE state IN (…)`), so two actors racing
 * (a cancel and a finishing worker, two nodes claiming) cannot both win.
 */
export class TaskStore {
  private readonly batcher: WriteBatcher;
  /** The hot writes as prepared statements, when the store is SQLite and its connection is given. */
  private readonly fast: SqliteWrites | null;

  /** `sqlite`: the connection under `db` when it is SQLite (see `SqliteWrites`). */
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: Dialect = 'sqlite',
    sqlite: SQLite.Database | null = null,
  ) {
    this.batcher = new WriteBatcher(db, { savepoints: dialect === 'postgres' });
    this.fast = sqlite && dialect === 'sqlite' ? new SqliteWrites(sqlite, RUNNABLE_SQL) : null;
  }

  async insert(tasks: readonly NewTask[], now = Date.now()): Promise<Task[]> {
    if (tasks.length === 0) return [];
    const rows = tasks.map((t) => ({
      id: t.id,
      kind: t.kind,
      name: t.name,
      creator_id: t.creatorId,
      creator: t.creator,
      creator_role: t.creatorRole,
      state: 'pending',
      done: 0,
      status: '',
      error: '',
      error_code: '',
      total_bytes: t.totalBytes ?? 0,
      done_bytes: 0,
      total_files: t.totalFiles ?? 0,
      done_files: 0,
      failed_files: 0,
      speed: 0,
      payload: JSON.stringify(t.payload),
      failures: '[]',
      attempts: 0,
      interruptions: 0,
      max_retry: t.maxRetry,
      run_at: now,
      cancel_requested: 0,
      delete_requested: 0,
      created_at: now,
      updated_at: now,
    }));
    const out: Row[] = [];
    // SQLite caps bound parameters per statement; insert in slices.
    for (let i = 0; i < rows.length; i += 200) {
      out.push(
        ...(await this.db
          .insertInto('tasks')
          .values(rows.slice(i, i + 200))
          .returningAll()
          .execute()),
      );
    }
    return out.map(toTask);
  }

  async get(id: string): Promise<Task | null> {
    const row = await this.db.selectFrom('tasks').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toTask(row) : null;
  }

  /** The tasks of `ids` that exist; with `failures: false` without their per-item failures (as `list`). */
  getMany(ids: readonly string[], options: { failures?: boolean } = {}): Promise<Task[]> {
    return selectMany(this.db, ids, options);
  }

  /** One page of tasks matching `filter`, ordered by `seq`, without their `failures` (see `selectPage`). */
  list(filter: TaskFilter, page: PageRequest): Promise<Task[]> {
    return selectPage(this.db, this.fast, filter, page);
  }

  /** How many tasks match `filter`, over all the pages `list` would return. */
  count(filter: TaskFilter): Promise<number> {
    return countMatching(this.db, filter);
  }

  /**
   * Claim up to `limit` runnable tasks of `kind` for `owner`: they become `running` with a lease
   * until `now + leaseMs`. One statement, so a task is never claimed twice.
   */
  async claim(
    kind: TaskKind,
    owner: string,
    limit: number,
    leaseMs: number,
    now = Date.now(),
  ): Promise<Task[]> {
    if (limit <= 0) return [];
    const fast = this.fast;
    if (fast) {
      const rows = await fast.batch(() => fast.claim(kind, owner, limit, now + leaseMs, now));
      return rows.map(toTask);
    }
    // Through the batcher: a claim shares its commit with the outcomes recorded in the same turn.
    const result = await this.batcher.write((db) =>
      sql<Row>`
      UPDATE tasks SET state = 'running', done = 0, lease_owner = ${owner}, lease_until = ${now + leaseMs},
        start_time = COALESCE(start_time, ${now}), end_time = NULL, updated_at = ${now}
      WHERE seq IN (
        SELECT seq FROM tasks
        WHERE kind = ${kind} AND ${RUNNABLE} AND run_at <= ${now}
        ORDER BY run_at, seq LIMIT ${limit}${this.dialect === 'postgres' ? sql` FOR UPDATE SKIP LOCKED` : sql``}
      )
      RETURNING *`.execute(db),
    );
    return result.rows.map(toTask).sort((a, b) => a.seq - b.seq);
  }

  /** Extend the leases `owner` holds on `ids`. Returns the ids it still holds. */
  async renewLeases(owner: string, ids: readonly string[], until: number): Promise<string[]> {
    if (ids.length === 0) return [];
    if (this.dialect === 'postgres') {
      // Rows another transaction is writing (this process's batch recording an outcome) are
      // skipped rather than waited for: waiting on them while holding the others' locks is how
      // a renewal and a batch deadlocked. A skipped row is still held if its owner says so.
      const renewed = await sql<{ id: string }>`
        UPDATE tasks SET lease_until = ${until}
        WHERE id IN (
          SELECT id FROM tasks WHERE lease_owner = ${owner} AND id = ANY(${[...ids]})
          FOR UPDATE SKIP LOCKED
        )
        RETURNING id`.execute(this.db);
      const held = renewed.rows.map((r) => r.id);
      if (held.length === ids.length) return held;
      const skipped = ids.filter((id) => !held.includes(id));
      const still = await this.db
        .selectFrom('tasks')
        .select('id')
        .where('lease_owner', '=', owner)
        .where('id', 'in', skipped)
        .execute();
      return [...held, ...still.map((r) => r.id)];
    }
    const rows = await this.db
      .updateTable('tasks')
      .set({ lease_until: until })
      .where('lease_owner', '=', owner)
      .where('id', 'in', [...ids])
      .returning('id')
      .execute();
    return rows.map((r) => r.id);
  }

  /** Ids among the tasks `owner` holds whose cancel (or delete) was requested. */
  async cancelRequested(owner: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom('tasks')
      .select('id')
      .where('lease_owner', '=', owner)
      .where('cancel_requested', '=', 1)
      .execute();
    return rows.map((r) => r.id);
  }

  /**
   * Tasks whose worker died (lease expired; or every held task with `all`, used at start-up when
   * the store is known to be this process's alone) are settled: a requested cancel ends
   * `canceled`, a task that was failing ends `failed`, a task interrupted `maxInterruptions`
   * times now (0: no limit) ends `failed` with `E_INTERRUPTED` — it may be what kills the server,
   * and must not crash it at every start — and the rest go back to the queue as `pending` to run
   * again, one interruption more. Returns how many tasks went back to the queue.
   */
  async reclaimExpired(
    now = Date.now(),
    options: { all?: boolean; maxInterruptions?: number } = {},
  ): Promise<number> {
    const held = (states: TaskState[]) => {
      // `lease_owner IS NOT NULL` lets the partial index tasks_lease serve this: only held tasks
      // are read, however many finished ones the table keeps.
      let q = this.db.updateTable('tasks').where('lease_owner', 'is not', null).where('state', 'in', states);
      if (!options.all) q = q.where('lease_until', '<', now);
      return q;
    };
    const release = { lease_owner: null, lease_until: null, updated_at: now, speed: 0 };
    await held(['running', 'canceling', 'failing'])
      .set({ ...release, state: 'canceled', done: 1, end_time: now })
      .where('cancel_requested', '=', 1)
      .execute();
    await held(['failing'])
      .set({ ...release, state: 'failed', done: 1, end_time: now })
      .execute();
    const limit = options.maxInterruptions ?? 0;
    if (limit > 0)
      await held(['running', 'canceling'])
        .set({
          ...release,
          state: 'failed',
          done: 1,
          end_time: now,
          interruptions: sql`interruptions + 1`,
          error: `the server stopped while running this task ${limit} times; it is not started again on its own (retry it to run it once more)`,
          error_code: 'E_INTERRUPTED',
        })
        .where('interruptions', '>=', limit - 1)
        .execute();
    const result = await held(['running', 'canceling'])
      .set({ ...release, state: 'pending', done: 0, run_at: now, interruptions: sql`interruptions + 1` })
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  /**
   * Move a task from one of `from` to `to`, checking the lease holder when `owner` is given.
   * Returns the updated task, or null when the task was not in an expected state (someone else
   * moved it first) — the caller decides whether that is an error.
   */
  async transition(
    id: string,
    from: readonly TaskState[],
    to: TaskState,
    patch: TransitionPatch = {},
    owner?: string,
    now = Date.now(),
  ): Promise<Task | null> {
    const set = transitionColumns(to, patch, now);
    const fast = this.fast;
    if (fast) {
      const row = await fast.batch(() =>
        fast.update(set, { id, states: from, ...(owner !== undefined && { owner }) }, true),
      );
      return row ? toTask(row) : null;
    }
    return this.batcher.write(async (db) => {
      let q = db
        .updateTable('tasks')
        .set(set)
        .where('id', '=', id)
        .where('state', 'in', [...from]);
      if (owner !== undefined) q = q.where('lease_owner', '=', owner);
      const row = await q.returningAll().executeTakeFirst();
      return row ? toTask(row) : null;
    });
  }

  /** Reset a finished task's counters and queue it again (manual retry). */
  async requeue(id: string, from: readonly TaskState[], now = Date.now()): Promise<Task | null> {
    const row = await this.db
      .updateTable('tasks')
      .set({
        state: 'before_retry',
        done: 0,
        error: '',
        error_code: '',
        status: '',
        failures: '[]',
        failed_files: 0,
        attempts: 0,
        interruptions: 0,
        run_at: now,
        cancel_requested: 0,
        end_time: null,
        speed: 0,
        updated_at: now,
      })
      .where('id', '=', id)
      .where('state', 'in', [...from])
      .returningAll()
      .executeTakeFirst();
    return row ? toTask(row) : null;
  }

  /** Write a running task's counters (throttled by the runner). Only the lease holder may. */
  async saveProgress(id: string, owner: string, p: ProgressPatch, now = Date.now()): Promise<void> {
    const fast = this.fast;
    if (fast) {
      await fast.batch(() => fast.update({ ...progressColumns(p), updated_at: now }, { id, owner }, false));
      return;
    }
    await this.batcher.write((db) =>
      db
        .updateTable('tasks')
        .set({ ...progressColumns(p), updated_at: now })
        .where('id', '=', id)
        .where('lease_owner', '=', owner)
        .execute(),
    );
  }

  /** Merge keys into a task's payload (kinds keep resume state there, e.g. a spool path). */
  async updatePayload(id: string, payload: Record<string, unknown>): Promise<void> {
    await this.db
      .updateTable('tasks')
      .set({ payload: JSON.stringify(payload) })
      .where('id', '=', id)
      .execute();
  }

  /** Ask for cancellation of unfinished tasks; returns the ids whose flag was set. */
  async requestCancel(ids: readonly string[], options: { alsoDelete?: boolean } = {}): Promise<string[]> {
    if (ids.length === 0) return [];
    const rows = await this.db
      .updateTable('tasks')
      .set({
        cancel_requested: 1,
        ...(options.alsoDelete && { delete_requested: 1 }),
        updated_at: Date.now(),
      })
      .where('id', 'in', [...ids])
      .where('done', '=', 0)
      .returning('id')
      .execute();
    return rows.map((r) => r.id);
  }

  async delete(ids: readonly string[]): Promise<number> {
    let n = 0;
    for (let i = 0; i < ids.length; i += 500) {
      const r = await this.db
        .deleteFrom('tasks')
        .where('id', 'in', ids.slice(i, i + 500))
        .executeTakeFirst();
      n += Number(r.numDeletedRows);
    }
    return n;
  }

  /** Finished tasks whose delete was asked for while they ran (their worker died before removing them). */
  deletedAndFinished(limit: number): Promise<Task[]> {
    return selectDeletedAndFinished(this.db, limit);
  }

  /** Finished tasks that ended before `endedBefore`, oldest first: the retention sweep's input. */
  expired(endedBefore: number, limit: number): Promise<Task[]> {
    return selectExpired(this.db, endedBefore, limit);
  }
}
