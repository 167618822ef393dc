import type { Logger } from 'pino';
import type { TaskKind } from '../../config.ts';
import type { MountRegistry } from '../../storage/mounts.ts';
import { stoppedByUser } from '../abort-reason.ts';
import type { TaskSpec } from '../definitions/index.ts';
import type { Task } from '../model.ts';
import type { Progress } from '../progress.ts';

/** What a task kind gets while it runs one task. */
export interface TaskContext {
  /** The task's id (temp names derive from it). */
  taskId: string;
  /**
   * Aborted when the task is canceled or deleted, its lease is lost, or the server shuts down; its
   * reason is a `TaskStopped` (an `E_CANCELED` error) whose `kind` says which: see `canceledByUser`.
   */
  signal: AbortSignal;
  progress: Progress;
  log: Logger;
  mounts: MountRegistry;
  /**
   * Absolute staging directory (`Config.stagingDir`; the data directory unless configured): spool
   * and work areas live below it. On a path every node sees, another node resumes the work.
   */
  dataDir: string;
  /**
   * The server's `syncFiles`: flush the files this task writes before it succeeds. A kind that
   * deletes the only other copy of what it wrote (a move, an upload) flushes whatever this says.
   */
  syncFiles: boolean;
  /** True when this task ran before (a retry, or its worker died): skip work already done. */
  resumed: boolean;
  /**
   * Persist kind-specific resume state into the task's payload. Throws the signal's reason (a
   * `TaskStopped` `lease-lost`) when this attempt no longer holds the task.
   */
  savePayload(payload: Record<string, unknown>): Promise<void>;
  /**
   * Check, in the store, that this attempt still holds the task; throws the signal's reason (and
   * aborts the signal) when it does not. Call it right before a step that cannot be undone —
   * placing a file under its final name, deleting a source — so that a node that stalled past its
   * lease while another took the task over does not do that step a second time.
   */
  fence(): Promise<void>;
  /**
   * Whether this attempt still holds the task in the store, canceled or not (unlike `fence`, it
   * neither throws nor aborts). Asked before a failed attempt removes a file named by the task
   * (a temp keyed by its id): once another node holds the task, that name is the new holder's.
   */
  holds(): Promise<boolean>;
  /**
   * Queue a follow-up task with this task's creator (decompress → decompress_upload). Idempotent
   * by `id`: a resumed task that queued it before gets the existing one back.
   */
  enqueue(spec: FollowUp): Promise<Task>;
}

/** A task a running task queues after itself. */
export type FollowUp = TaskSpec & {
  /** Fixed id, derived from the parent's, so queueing twice gives one task. */
  id: string;
};

/**
 * True when the signal was aborted because a user canceled (or deleted) the task, as opposed to
 * a shutdown or a lost lease, after which the task runs again and may resume. Read from the
 * typed reason the runner aborts with (`TaskStopped`), never from a message.
 */
export function canceledByUser(signal: AbortSignal): boolean {
  return stoppedByUser(signal);
}

/** Dependencies a kind needs outside a run (clean-up of discarded tasks). */
export interface KindDeps {
  dataDir: string;
  log: Logger;
}

/**
 * One kind of task. `run` throws to fail the attempt: a FerryError with an unrecoverable code
 * fails the task at once, anything else is retried with backoff. On abort it must stop moving
 * bytes promptly, leave no partial file under a final name, and throw.
 */
export interface TaskKindHandler {
  readonly kind: TaskKind;
  run(task: Task, ctx: TaskContext): Promise<void>;
  /** The task is being deleted from the store for good (delete, clear, retention): free its resources. */
  discard?(task: Task, deps: KindDeps): Promise<void>;
  /** The task succeeded: free resources only a retry would have needed. */
  succeeded?(task: Task, deps: KindDeps): Promise<void>;
}
