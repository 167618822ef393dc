import type { Compilable, Kysely } from 'kysely';
import type { TaskKind } from '../config.ts';
import { isDone, sourcesOf, type Task, type TaskState } from '../tasks/model.ts';
import type { OpenedDatabase } from './database.ts';
import type { Database } from './schema.ts';
import {
  LIST_COLUMNS,
  listRowOf,
  type ProgressPatch,
  progressColumns,
  toTask,
  transitionColumns,
} from './task-rows.ts';
import {
  cancelRequestedOf,
  claimCandidates,
  claimRows,
  countMatching,
  DIALECT_TRAITS,
  type DialectTraits,
  deleteTasks,
  heldBy,
  ID_SLICE,
  INSERT_SLICE,
  type Lease,
  type PageRequest,
  reclaimStatements,
  renewLeases,
  requestCancel,
  type StableKey,
  selectDeletedAndFinished,
  selectExpired,
  selectMany,
  selectOne,
  selectPage,
  selectStablePage,
  type TaskFilter,
  takeoverCandidates,
  updateTasks,
} from './task-sql.ts';
import type {
  CancelRequest,
  ClaimOptions,
  HeldLease,
  MoveOptions,
  NewTask,
  TaskStore,
} from './task-store.ts';
import { WriteBatcher, type WriteOptions } from './write-batcher.ts';

type Db = Kysely<Database>;

/**
 * Told of tasks that just reached a final state (succeeded, canceled, failed), with the handle of
 * the transaction that wrote it: what it writes commits with the state or not at all (the webhook
 * outbox). A listener that throws undoes the state change too, which is then retried as any write.
 */
export type FinalStateListener = (db: Db, tasks: readonly Task[]) => Promise<void>;

/**
 * `TaskStore` over Kysely, for SQLite and PostgreSQL alike: the statements come from
 * `task-sql.ts` (where the two databases' differences are named), and every write goes through
 * one path, `write`: a group commit (`WriteBatcher`). Reads go straight to the database.
 */
export class SqlTaskStore implements TaskStore {
  private readonly db: Db;
  private readonly traits: DialectTraits;
  private readonly batcher: WriteBatcher;
  private readonly selectArrays: OpenedDatabase['selectArrays'];
  /** Set once at wiring time (see `FinalStateListener`). */
  onFinal: FinalStateListener | null = null;

  constructor(database: Pick<OpenedDatabase, 'db' | 'dialect' | 'selectArrays'>) {
    this.db = database.db;
    this.traits = DIALECT_TRAITS[database.dialect];
    this.selectArrays = database.selectArrays;
    this.batcher = new WriteBatcher(this.db, { savepoints: this.traits.savepointPerWrite });
  }

  /** Tasks read as arrays of `LIST_COLUMNS` values: lists (see `OpenedDatabase.selectArrays`). */
  private async listed(query: Compilable): Promise<Task[]> {
    return (await this.selectArrays(query.compile())).map((values) => toTask(listRowOf(values)));
  }

  /** The one write path: `run` in the next group commit, settled after it commits. */
  private write<T>(run: (db: Db) => Promise<T>, options?: WriteOptions): Promise<T> {
    return this.batcher.write(run, options);
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
      state: 'pending' satisfies TaskState,
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
    const inserted = await this.write(
      async (db) => {
        const out = [];
        for (let i = 0; i < rows.length; i += INSERT_SLICE)
          out.push(
            ...(await db
              .insertInto('tasks')
              .values(rows.slice(i, i + INSERT_SLICE))
              .returningAll()
              .execute()),
          );
        return out;
      },
      { atomic: rows.length > INSERT_SLICE },
    );
    return inserted.map(toTask);
  }

  async get(id: string): Promise<Task | null> {
    const row = await selectOne(this.db, id).executeTakeFirst();
    return row ? toTask(row) : null;
  }

  async getMany(ids: readonly string[], options: { failures?: boolean } = {}): Promise<Task[]> {
    const out: Task[] = [];
    for (let i = 0; i < ids.length; i += ID_SLICE) {
      const slice = ids.slice(i, i + ID_SLICE);
      if (options.failures === false) out.push(...(await this.listed(selectMany(this.db, slice, false))));
      else for (const row of await selectMany(this.db, slice, true).execute()) out.push(toTask(row));
    }
    return out;
  }

  async list(filter: TaskFilter, page: PageRequest): Promise<Task[]> {
    return this.listed(selectPage(this.db, filter, page));
  }

  async listStable(
    filter: TaskFilter,
    page: { after?: StableKey; limit: number },
  ): Promise<{ tasks: Task[]; more: boolean }> {
    const query = selectStablePage(this.db, this.traits, filter, page.after, page.limit + 1);
    const rows = await this.selectArrays(query.compile());
    const tasks: Task[] = [];
    // Settled rows come first (their transactions are older than any unsettled row's).
    for (const values of rows) {
      if (tasks.length === page.limit || Number(values[LIST_COLUMNS.length]) !== 1) break;
      tasks.push(toTask(listRowOf(values)));
    }
    return { tasks, more: rows.length > tasks.length };
  }

  async count(filter: TaskFilter): Promise<number> {
    const row = await countMatching(this.db, filter).executeTakeFirst();
    return Number(row?.n ?? 0);
  }

  async claim(
    kind: TaskKind,
    owner: string,
    limit: number,
    leaseMs: number,
    now = Date.now(),
    options: ClaimOptions = {},
  ): Promise<Task[]> {
    if (limit <= 0) return [];
    const until = now + leaseMs;
    const maxInterruptions = options.maxInterruptions ?? 0;
    // A claim shares its commit with the outcomes recorded in the same turn.
    const rows = await this.write(
      async (db) => {
        // Expired leases first: those tasks have waited longest, and their partial work is kept.
        const seqs = this.traits.takeOverInClaim
          ? (await takeoverCandidates(db, kind, owner, limit, now, maxInterruptions).execute()).map((r) =>
              Number(r.seq),
            )
          : [];
        if (seqs.length < limit)
          for (const r of await claimCandidates(db, this.traits, kind, limit - seqs.length, now).execute())
            seqs.push(Number(r.seq));
        return seqs.length === 0 ? [] : claimRows(db, seqs, owner, until, now).execute();
      },
      { atomic: true },
    );
    return rows.map(toTask).sort((a, b) => a.seq - b.seq);
  }

  renewLeases(owner: string, ids: readonly string[], until: number): Promise<HeldLease[]> {
    if (ids.length === 0) return Promise.resolve([]);
    const held = (rows: readonly { id: string; lease_token: number | string }[]) =>
      rows.map((r) => ({ id: r.id, token: Number(r.lease_token) }));
    return this.write(async (db) => {
      const renewed = held(await renewLeases(db, this.traits, owner, ids, until).execute());
      if (renewed.length === ids.length || !this.traits.skipLocked) return renewed;
      // Rows another transaction is writing (this process's other batch recording an outcome)
      // were skipped rather than waited for: waiting on them while holding the others' locks is
      // how a renewal and a batch deadlocked. A skipped row is still held if its owner says so.
      const skipped = ids.filter((id) => !renewed.some((r) => r.id === id));
      return [...renewed, ...held(await heldBy(db, owner, skipped).execute())];
    });
  }

  async holds(id: string, lease: Lease): Promise<boolean> {
    const row = await heldBy(this.db, lease.owner, [id]).executeTakeFirst();
    return row !== undefined && Number(row.lease_token) === lease.token;
  }

  async cancelRequested(owner: string): Promise<CancelRequest[]> {
    const rows = await cancelRequestedOf(this.db, owner).execute();
    return rows.map((r) => ({ id: r.id, deleteRequested: Number(r.delete_requested) === 1 }));
  }

  async move(id: string, to: TaskState, options: MoveOptions = {}): Promise<Task | null> {
    const now = options.now ?? Date.now();
    const guard = {
      id,
      move: { to, ...(options.from && { from: options.from }) },
      ...(options.lease !== undefined && { lease: options.lease }),
    };
    const set = transitionColumns(to, options.patch ?? {}, now);
    sourcesOf(to, options.from); // a forbidden `from` throws here, to its caller, not inside a batch
    const onFinal = isDone(to) ? this.onFinal : null;
    const row = await this.write(
      async (db) => {
        const updated = await updateTasks(db, guard, set).returningAll().executeTakeFirst();
        if (updated && onFinal) await onFinal(db, [toTask(updated)]);
        return updated;
      },
      { atomic: onFinal !== null },
    );
    return row ? toTask(row) : null;
  }

  async requeue(id: string, from?: readonly TaskState[], now = Date.now()): Promise<Task | null> {
    const move = { to: 'before_retry' as const, ...(from && { from }) };
    sourcesOf(move.to, from); // a forbidden `from` throws here, to its caller, not inside a batch
    const reset = {
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
    };
    const row = await this.write((db) =>
      updateTasks(db, { id, move }, reset).returningAll().executeTakeFirst(),
    );
    return row ? toTask(row) : null;
  }

  async saveProgress(id: string, lease: Lease, progress: ProgressPatch, now = Date.now()): Promise<boolean> {
    const set = { ...progressColumns(progress), updated_at: now };
    const result = await this.write((db) => updateTasks(db, { id, lease }, set).executeTakeFirst());
    return Number(result.numUpdatedRows) > 0;
  }

  async updatePayload(id: string, lease: Lease, payload: Record<string, unknown>): Promise<boolean> {
    const set = { payload: JSON.stringify(payload) };
    const result = await this.write((db) => updateTasks(db, { id, lease }, set).executeTakeFirst());
    return Number(result.numUpdatedRows) > 0;
  }

  async requestCancel(ids: readonly string[], options: { alsoDelete?: boolean } = {}): Promise<string[]> {
    if (ids.length === 0) return [];
    const rows = await this.write((db) =>
      requestCancel(db, ids, options.alsoDelete === true, Date.now()).execute(),
    );
    return rows.map((r) => r.id);
  }

  async reclaimExpired(
    now = Date.now(),
    options: { all?: boolean; maxInterruptions?: number } = {},
  ): Promise<number> {
    // On a shared store the claims take over expired running tasks (see `claim`): the sweep
    // settles only the others. At start-up with `all` (one process's store) it requeues them all.
    const requeue = options.all === true || !this.traits.takeOverInClaim;
    const onFinal = this.onFinal;
    return this.write(
      async (db) => {
        let requeued = 0;
        // In order: the last statement is the one that sends tasks back to the queue.
        for (const statement of reclaimStatements(db, now, { ...options, requeue })) {
          if (!onFinal) {
            requeued = Number((await statement.executeTakeFirst()).numUpdatedRows);
            continue;
          }
          const tasks = (await statement.returningAll().execute()).map(toTask);
          const ended = tasks.filter((t) => isDone(t.state));
          if (ended.length > 0) await onFinal(db, ended);
          requeued = tasks.length;
        }
        return requeue ? requeued : 0;
      },
      { atomic: onFinal !== null },
    );
  }

  async delete(ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return 0;
    return this.write(async (db) => {
      let n = 0;
      for (let i = 0; i < ids.length; i += ID_SLICE)
        n += Number((await deleteTasks(db, ids.slice(i, i + ID_SLICE)).executeTakeFirst()).numDeletedRows);
      return n;
    });
  }

  async deletedAndFinished(limit: number): Promise<Task[]> {
    return (await selectDeletedAndFinished(this.db, limit).execute()).map(toTask);
  }

  async expired(endedBefore: number, limit: number): Promise<Task[]> {
    return (await selectExpired(this.db, endedBefore, limit).execute()).map(toTask);
  }
}
