import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { nanoid } from 'nanoid';
import type { Logger } from 'pino';
import { isAdmin, isGuest, type Principal } from '../auth/roles.ts';
import type { Config, TaskKind } from '../config.ts';
import { FerryError } from '../errors.ts';
import type { PageRequest, StableKey, TaskFilter, TaskStore } from '../store/task-store.ts';
import type { TaskSpec } from './definitions/index.ts';
import type { TaskEvents } from './events.ts';
import type { TaskKindHandler } from './kinds/kind.ts';
import { type HolderView, holderOf, isDone, type Task, type TaskState } from './model.ts';
import type { Runner } from './runner.ts';

/**
 * Finished tasks deleted per statement by the retention sweep. Deleting a task touches every
 * index of the table: 500 at a time held the event loop 25-70 ms per batch over a store of a
 * million tasks, 100 at a time 5-7 ms, for the same rate overall.
 */
const SWEEP_BATCH = 100;

/** Most ids one bulk action (`*_some`) takes. */
export const MAX_BULK_IDS = 1000;

/**
 * What a task is created from. The engine stores any payload a kind reads back; producers build
 * theirs with `taskSpec` (`definitions/`), which types the payload by its kind and names the task.
 */
export interface CreateTask {
  kind: TaskKind;
  name: string;
  payload: Readonly<Record<string, unknown>>;
  totalBytes?: number;
  totalFiles?: number;
  /** Use this id (uploads spool their body under the id before the task exists). */
  id?: string;
}

export type { PageRequest, TaskFilter, TaskSpec };

/** Result of a bulk action: id → error message, for the ids that failed (AList's `*_some`). */
export type BulkResult = Record<string, string>;

const UNFINISHED_IDLE: readonly TaskState[] = ['pending', 'waiting_retry', 'before_retry', 'errored'];

/**
 * Everything any dialect can do with tasks. Every method takes the caller: guests are refused
 * (`E_GUEST`), general users see and touch only their own tasks, admins all. A task the caller
 * may not see is `E_TASK_NOT_FOUND`, exactly as a missing one.
 */
export class TaskService {
  private sweepTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly store: TaskStore,
    private readonly events: TaskEvents,
    private readonly runner: Runner,
    private readonly kinds: ReadonlyMap<TaskKind, TaskKindHandler>,
    private readonly config: Config,
    private readonly log: Logger,
  ) {}

  async create(principal: Principal, specs: readonly CreateTask[]): Promise<Task[]> {
    refuseGuest(principal);
    const tasks = await this.store.insert(
      specs.map((s) => ({
        id: s.id ?? nanoid(),
        kind: s.kind,
        name: s.name,
        creatorId: principal.id,
        creator: principal.username,
        creatorRole: principal.role,
        payload: s.payload,
        maxRetry: this.config.tasks.maxRetry[s.kind],
        ...(s.totalBytes !== undefined && { totalBytes: s.totalBytes }),
        ...(s.totalFiles !== undefined && { totalFiles: s.totalFiles }),
      })),
    );
    for (const task of tasks) this.events.emit(task);
    this.runner.wake([...new Set(tasks.map((t) => t.kind))]);
    return tasks;
  }

  /** The task, when the caller may see it (and it is of `kind`, when given); else E_TASK_NOT_FOUND. */
  async get(principal: Principal, id: unknown, kind?: TaskKind): Promise<Task> {
    refuseGuest(principal);
    if (typeof id !== 'string' || id === '' || id.length > 64) throw notFound();
    const task = await this.store.get(id);
    if (!task || task.deleteRequested || !visible(principal, task) || (kind && task.kind !== kind))
      throw notFound();
    return task;
  }

  /** Which node holds `task` and whether it still renews its lease (a task's detail). */
  holder(task: Task, now = Date.now()): HolderView {
    return holderOf(task, this.config.tasks.leaseMs, now);
  }

  /** Whether a task with this id is stored (internal: no caller check). */
  async exists(id: string): Promise<boolean> {
    return (await this.store.get(id)) !== null;
  }

  /** One page of the caller's tasks (all tasks for admins, optionally narrowed by `creatorId`). */
  async list(principal: Principal, filter: TaskFilter, page: PageRequest): Promise<Task[]> {
    refuseGuest(principal);
    return this.store.list(scoped(principal, filter), page);
  }

  /**
   * One page of the caller's tasks that stays stable under concurrent inserts on every store
   * (KooDrive's keyset pages): see `TaskStore.listStable`.
   */
  async listStable(
    principal: Principal,
    filter: TaskFilter,
    page: { after?: StableKey; limit: number },
  ): Promise<{ tasks: Task[]; more: boolean }> {
    refuseGuest(principal);
    return this.store.listStable(scoped(principal, filter), page);
  }

  /** Every matching task, page by page, without holding the whole list: for streamed replies. */
  async *iterate(
    principal: Principal,
    filter: TaskFilter,
    order: 'asc' | 'desc',
    pageSize = 500,
  ): AsyncGenerator<Task[]> {
    refuseGuest(principal);
    const f = scoped(principal, filter);
    let afterSeq: number | undefined;
    for (;;) {
      const page = await this.store.list(f, { afterSeq, limit: pageSize, order });
      if (page.length > 0) yield page;
      if (page.length < pageSize) return;
      afterSeq = page[page.length - 1]?.seq;
    }
  }

  /**
   * Cancel an unfinished task: one that is not running ends `canceled` at once; a running one
   * becomes `canceling` and its worker aborts (within a second, through the store when the
   * worker is another process). A finished task is `E_TASK_STATE`.
   */
  async cancel(principal: Principal, id: unknown, kind?: TaskKind): Promise<void> {
    const task = await this.get(principal, id, kind);
    await this.cancelVisible(task);
  }

  private async cancelVisible(task: Task, alsoDelete = false): Promise<void> {
    // A few tries: a task may start (or stop) running between the idle check and the flag.
    for (let attempt = 0; attempt < 3; attempt++) {
      const idle = await this.store.move(task.id, 'canceled', {
        from: UNFINISHED_IDLE,
        patch: { error: 'canceled', errorCode: 'E_CANCELED' },
      });
      if (idle) {
        this.events.emit(idle);
        if (alsoDelete) await this.remove([idle]);
        return;
      }
      const flagged = await this.store.requestCancel([task.id], { alsoDelete });
      if (flagged.length === 0) throw new FerryError('E_TASK_STATE', 'task is already finished');
      const canceling = await this.store.move(task.id, 'canceling', { from: ['running'] });
      if (canceling) {
        this.events.emit(canceling);
        this.runner.abortLocal(task.id, alsoDelete ? 'deleted' : 'canceled');
        return;
      }
      const now = await this.store.get(task.id);
      // The worker saw the flag first (it polls for it) and ended the task itself: canceled, and
      // removed too when that was asked. The cancel took effect.
      if (now === null && alsoDelete) return;
      if (now?.state === 'canceled') {
        if (alsoDelete) await this.remove([now]);
        return;
      }
      if (!now || isDone(now.state)) throw new FerryError('E_TASK_STATE', 'task is already finished');
      if (now.state === 'canceling') return;
    }
    throw new FerryError('E_TASK_STATE', 'task state kept changing; try again');
  }

  /** Delete a task. A finished one goes at once; an unfinished one is canceled and removed when its worker stops. */
  async delete(principal: Principal, id: unknown, kind?: TaskKind): Promise<void> {
    const task = await this.get(principal, id, kind);
    if (isDone(task.state)) await this.remove([task]);
    else await this.cancelVisible(task, true);
  }

  /** Queue a failed or canceled task again; a directory task skips what it already finished. */
  async retry(principal: Principal, id: unknown, kind?: TaskKind): Promise<void> {
    const task = await this.get(principal, id, kind);
    if (task.state !== 'failed' && task.state !== 'canceled') {
      throw new FerryError(
        'E_TASK_STATE',
        `only failed or canceled tasks can be retried (this one is ${task.state})`,
      );
    }
    const queued = await this.store.requeue(task.id, ['failed', 'canceled']);
    if (!queued) throw new FerryError('E_TASK_STATE', 'task changed state; try again');
    this.events.emit(queued);
    this.runner.wake([queued.kind]);
  }

  cancelSome(principal: Principal, ids: unknown, kind?: TaskKind): Promise<BulkResult> {
    return this.bulk(principal, ids, (id) => this.cancel(principal, id, kind));
  }

  deleteSome(principal: Principal, ids: unknown, kind?: TaskKind): Promise<BulkResult> {
    return this.bulk(principal, ids, (id) => this.delete(principal, id, kind));
  }

  retrySome(principal: Principal, ids: unknown, kind?: TaskKind): Promise<BulkResult> {
    return this.bulk(principal, ids, (id) => this.retry(principal, id, kind));
  }

  /** Retry every failed task of `kind` the caller can see. Returns how many were queued. */
  async retryFailed(principal: Principal, kind: TaskKind): Promise<number> {
    let n = 0;
    for await (const page of this.iterate(principal, { kinds: [kind], states: ['failed'] }, 'asc')) {
      for (const task of page) {
        const queued = await this.store.requeue(task.id, ['failed']);
        if (queued) {
          n++;
          this.events.emit(queued);
        }
      }
    }
    this.runner.wake([kind]);
    return n;
  }

  /** Delete the caller's finished tasks of `kind` (all finished, or only succeeded ones). */
  async clear(principal: Principal, kind: TaskKind, which: 'done' | 'succeeded'): Promise<number> {
    const filter: TaskFilter =
      which === 'done' ? { kinds: [kind], done: true } : { kinds: [kind], states: ['succeeded'] };
    let n = 0;
    // Deleting while paging forward by seq is safe: the next page starts after the last seq seen.
    for await (const page of this.iterate(principal, filter, 'asc')) n += await this.remove(page);
    return n;
  }

  private async bulk(
    principal: Principal,
    ids: unknown,
    action: (id: string) => Promise<void>,
  ): Promise<BulkResult> {
    refuseGuest(principal);
    if (!Array.isArray(ids)) throw new FerryError('E_BAD_REQUEST', 'body must be a JSON array of task ids');
    if (ids.length > MAX_BULK_IDS)
      throw new FerryError('E_BAD_REQUEST', `at most ${MAX_BULK_IDS} task ids at once`);
    const result: BulkResult = {};
    for (const id of ids) {
      const key = typeof id === 'string' ? id : JSON.stringify(id);
      try {
        await action(typeof id === 'string' ? id : '');
      } catch (err) {
        if (!(err instanceof FerryError)) throw err;
        result[key] = err.message;
      }
    }
    return result;
  }

  /** Delete finished tasks from the store, letting their kinds free resources first. */
  private async remove(tasks: readonly Task[]): Promise<number> {
    for (const task of tasks) {
      try {
        await this.kinds.get(task.kind)?.discard?.(task, { dataDir: this.config.stagingDir, log: this.log });
      } catch (err) {
        this.log.warn({ err, task: task.id }, 'discarding task resources failed');
      }
    }
    const n = await this.store.delete(tasks.map((t) => t.id));
    this.events.emitRemoved(tasks);
    return n;
  }

  /**
   * Wait until the given tasks are finished, or `timeoutMs` passes. Returns their latest records
   * (a task deleted meanwhile is missing from the result).
   */
  async waitFinished(ids: readonly string[], timeoutMs: number): Promise<Task[]> {
    const pending = new Set(ids);
    let wake: () => void = () => undefined;
    const off = this.events.on((t) => {
      if (pending.has(t.id) && isDone(t.state)) {
        pending.delete(t.id);
        if (pending.size === 0) wake();
      }
    });
    try {
      for (const t of await this.store.getMany(ids)) if (isDone(t.state)) pending.delete(t.id);
      if (pending.size > 0) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, timeoutMs).unref();
        });
      }
      return await this.store.getMany(ids);
    } finally {
      off();
    }
  }

  /** Start the background upkeep: retention sweep and reclaiming tasks of dead workers. */
  startMaintenance(): void {
    const t = this.config.tasks;
    const every = Math.min(t.sweepIntervalMs, t.leaseMs);
    this.sweepTimer = setInterval(() => {
      this.maintain().catch((err) => this.log.error({ err }, 'task maintenance failed'));
    }, every);
    this.sweepTimer.unref();
  }

  stopMaintenance(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
  }

  /** One round of upkeep; returns how many finished tasks were swept. */
  async maintain(now = Date.now()): Promise<number> {
    const reclaimed = await this.store.reclaimExpired(now, {
      maxInterruptions: this.config.tasks.maxInterruptions,
    });
    if (reclaimed > 0) {
      this.log.info({ reclaimed }, 'reclaimed tasks of a dead worker');
      this.runner.wake();
    }
    const cutoff = now - this.config.tasks.retentionHours * 3_600_000;
    let swept = await this.remove(await this.store.deletedAndFinished(SWEEP_BATCH));
    for (;;) {
      const batch = await this.store.expired(cutoff, SWEEP_BATCH);
      if (batch.length === 0) break;
      swept += await this.remove(batch);
      if (batch.length < SWEEP_BATCH) break;
      // Requests go first: the sweep of a big backlog must not hold the event loop.
      await yieldToEventLoop();
    }
    return swept;
  }
}

function refuseGuest(principal: Principal): void {
  if (isGuest(principal)) throw new FerryError('E_GUEST', 'You are a guest');
}

function visible(principal: Principal, task: Task): boolean {
  return isAdmin(principal) || task.creatorId === principal.id;
}

/**
 * A filter narrowed to what `principal` may see: admins everything, others their own tasks. A
 * general user asking for another creator's tasks gets none (not their own: that would answer a
 * different question).
 */
function scoped(principal: Principal, filter: TaskFilter): TaskFilter {
  if (isAdmin(principal)) return filter;
  if (filter.creatorId !== undefined && filter.creatorId !== principal.id)
    return { ...filter, creatorId: -1 };
  return { ...filter, creatorId: principal.id };
}

function notFound(): FerryError {
  return new FerryError('E_TASK_NOT_FOUND', 'task not found');
}
