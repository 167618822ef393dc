import type { TaskKind } from '../config.ts';
import type { Task, TaskState } from '../tasks/model.ts';
import type { ProgressPatch, TransitionPatch } from './task-rows.ts';
import type { Lease, PageRequest, StableKey, TaskFilter } from './task-sql.ts';

export type { ProgressPatch, TransitionPatch } from './task-rows.ts';
export type { Lease, PageRequest, StableKey, TaskFilter } from './task-sql.ts';

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

/** How a state change is guarded, besides the state table. */
export interface MoveOptions {
  /**
   * Move only from these states (each must be one the table lets move to the target): a narrower
   * expectation than the table's, e.g. a cancel that must not touch a running task.
   */
  from?: readonly TaskState[];
  /** Move only while this lease (owner and attempt token) holds the task. */
  lease?: Lease;
  /** Fields written with the state. */
  patch?: TransitionPatch;
  now?: number;
}

/** A task a lease renewal found still held by its owner, with the attempt token it has now. */
export interface HeldLease {
  id: string;
  token: number;
}

export interface ClaimOptions {
  /**
   * Take over no expired task interrupted this many times already (0: no limit): the sweep fails
   * it with `E_INTERRUPTED` instead.
   */
  maxInterruptions?: number;
}

/** A task whose cancel was requested while a worker holds it. */
export interface CancelRequest {
  id: string;
  /** The user deleted it: once stopped it is removed. */
  deleteRequested: boolean;
}

/**
 * The task store, in task terms. The record here is the truth: nothing else keeps tasks in
 * memory. Every state change is checked against the one state table (`TRANSITIONS` in
 * `tasks/model.ts`) in the statement itself (`WHERE state IN (…)`), so a forbidden move changes
 * nothing and two actors racing (a cancel and a finishing worker, two nodes claiming) cannot
 * both win. Writes of a worker name its lease (owner and attempt token, `Lease`): a worker that
 * lost its lease, or whose task was taken over, writes nothing.
 */
export interface TaskStore {
  /** Store new tasks, `pending` and due now. */
  insert(tasks: readonly NewTask[], now?: number): Promise<Task[]>;

  get(id: string): Promise<Task | null>;

  /** The tasks of `ids` that exist; with `failures: false` without their per-item failures (as `list`). */
  getMany(ids: readonly string[], options?: { failures?: boolean }): Promise<Task[]>;

  /**
   * One page of tasks matching `filter`, ordered by `seq`. Deleted-but-running tasks are hidden.
   * The per-item `failures` read as `[]` (up to 1,000 per task: a page of them would be megabytes
   * to parse); `get` has them.
   */
  list(filter: TaskFilter, page: PageRequest): Promise<Task[]>;

  /**
   * One page of tasks matching `filter` that stays stable while other nodes insert tasks: paged
   * with `after` (the last task's `{ xid: insertXid, seq }`), no task is ever returned twice or
   * skipped. Oldest first (by inserting transaction, then `seq`). A task whose inserting
   * transaction is younger than the oldest one still running waits for a later page; `more`
   * says whether anything is left or still coming, so the caller hands out a next cursor.
   */
  listStable(
    filter: TaskFilter,
    page: { after?: StableKey; limit: number },
  ): Promise<{ tasks: Task[]; more: boolean }>;

  /** How many tasks match `filter`, over all the pages `list` would return. */
  count(filter: TaskFilter): Promise<number>;

  /**
   * Claim up to `limit` tasks of `kind` for `owner`: on a store several nodes share, first running
   * tasks whose holder let its lease expire before `now` (a takeover: one interruption more), then
   * runnable tasks due by `now`, oldest `run_at` first. They become `running` with a lease until
   * `now + leaseMs` and a new attempt token (`Task.leaseToken`) that every later write of this
   * attempt names. A task is never claimed twice, by this node or another (`SKIP LOCKED` on
   * PostgreSQL). Returned in `seq` order.
   */
  claim(
    kind: TaskKind,
    owner: string,
    limit: number,
    leaseMs: number,
    now?: number,
    options?: ClaimOptions,
  ): Promise<Task[]>;

  /**
   * Extend the leases `owner` holds on `ids` to `until`. Returns those it still holds, with their
   * attempt tokens: a token other than the caller's means the task was taken over and claimed
   * again since, and the caller's attempt is over.
   */
  renewLeases(owner: string, ids: readonly string[], until: number): Promise<HeldLease[]>;

  /** Whether `lease` (owner and attempt token) still holds task `id`: checked before an irreversible step. */
  holds(id: string, lease: Lease): Promise<boolean>;

  /** The tasks `owner` holds whose cancel (or delete) was requested. */
  cancelRequested(owner: string): Promise<CancelRequest[]>;

  /**
   * Move task `id` to `to`, if the state table allows the move from its current state (and
   * `options` hold). Returns the task after the move, or null when nothing changed: the task is
   * missing, in a state that cannot move to `to` (someone moved it first), or not held by
   * `owner`. The caller decides whether that is an error.
   * @throws FerryError `E_INTERNAL` when `options.from` names a move the table forbids (a bug).
   */
  move(id: string, to: TaskState, options?: MoveOptions): Promise<Task | null>;

  /**
   * Queue a finished task again (manual retry): `before_retry`, counters and errors reset. Only
   * from the states the table lets move there (failed, canceled), narrowed to `from`. Null when
   * the task was not in one.
   */
  requeue(id: string, from?: readonly TaskState[], now?: number): Promise<Task | null>;

  /**
   * Write a running task's counters (throttled by the runner). Nothing is written unless `lease`
   * holds it; returns whether it did.
   */
  saveProgress(id: string, lease: Lease, progress: ProgressPatch, now?: number): Promise<boolean>;

  /**
   * Replace a task's payload (kinds keep resume state there). Nothing is written unless `lease`
   * holds it; returns whether it did.
   */
  updatePayload(id: string, lease: Lease, payload: Record<string, unknown>): Promise<boolean>;

  /** Flag unfinished tasks for cancellation (and deletion); returns the ids whose flag was set. */
  requestCancel(ids: readonly string[], options?: { alsoDelete?: boolean }): Promise<string[]>;

  /**
   * Settle tasks whose worker died: lease expired by `now`, or every held task with `all` (at
   * start-up, when the store is known to be this process's alone). A requested cancel ends
   * `canceled`; a failing task `failed`; an errored one waits for its retry; a task interrupted
   * `maxInterruptions` times now (0: no limit) ends `failed` with `E_INTERRUPTED`; the rest go
   * back to the queue as `pending`, one interruption more — except on a store several nodes share
   * (PostgreSQL), where, unless `all`, they stay running until a claim takes them over (one
   * interruption more there). Returns how many went back to the queue.
   */
  reclaimExpired(now?: number, options?: { all?: boolean; maxInterruptions?: number }): Promise<number>;

  /** Remove tasks for good; returns how many existed. */
  delete(ids: readonly string[]): Promise<number>;

  /** Finished tasks whose delete was asked for while they ran (their worker died before removing them). */
  deletedAndFinished(limit: number): Promise<Task[]>;

  /** Finished tasks that ended before `endedBefore`, oldest first: the retention sweep's input. */
  expired(endedBefore: number, limit: number): Promise<Task[]>;
}
