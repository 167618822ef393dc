import type { TaskKind } from '../config.ts';

/** The task states, spelled as AList's task API spells them. */
export const TASK_STATES = [
  'pending',
  'running',
  'succeeded',
  'canceling',
  'canceled',
  'errored',
  'failing',
  'failed',
  'waiting_retry',
  'before_retry',
] as const;
export type TaskState = (typeof TASK_STATES)[number];

/** Finished states: the AList `done` list. Everything else is `undone`. */
export const DONE_STATES: readonly TaskState[] = ['succeeded', 'canceled', 'failed'];
export const UNDONE_STATES: readonly TaskState[] = TASK_STATES.filter((s) => !DONE_STATES.includes(s));

export function isDone(state: TaskState): boolean {
  return DONE_STATES.includes(state);
}

/**
 * The one table of allowed moves. Every state change in the store is checked against it.
 * - pending → running when a worker claims it; → canceled when canceled before it ran.
 * - canceling → succeeded when the last byte landed before the worker saw the cancel.
 * - running → succeeded | canceling (cancel asked) | errored (a retryable error) | failing
 *   (unrecoverable, or retries used up; clean-up runs) | pending (its worker died: lease reclaimed).
 * - errored → waiting_retry (backoff stored in `run_at`) | failing.
 * - waiting_retry → running when claimed after its backoff | canceled.
 * - before_retry: a finished task that a user retried, queued again (claimed like pending).
 */
export const TRANSITIONS: Readonly<Record<TaskState, readonly TaskState[]>> = {
  pending: ['running', 'canceled'],
  running: ['succeeded', 'canceling', 'canceled', 'errored', 'failing', 'pending'],
  canceling: ['canceled', 'succeeded', 'errored'],
  errored: ['waiting_retry', 'failing', 'canceled'],
  waiting_retry: ['running', 'canceled'],
  before_retry: ['running', 'canceled'],
  failing: ['failed', 'canceled'],
  succeeded: [],
  canceled: ['before_retry'],
  failed: ['before_retry'],
};

export function canMove(from: TaskState, to: TaskState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** States a worker may claim. */
export const RUNNABLE_STATES: readonly TaskState[] = ['pending', 'waiting_retry', 'before_retry'];

/** One failed item of a directory task. */
export interface ItemFailure {
  path: string;
  error: string;
}

/** The task record: the store holds the truth; every dialect renders it in its own shape. */
export interface Task {
  id: string;
  /** Monotonic insertion number: the keyset for pagination. */
  seq: number;
  kind: TaskKind;
  name: string;
  creatorId: number;
  creator: string;
  creatorRole: number;
  state: TaskState;
  /** Free-text status line (AList's `status`), e.g. the current file. */
  status: string;
  error: string;
  /** ferry's code of the last error (`E_EXISTS`, …), '' when none. */
  errorCode: string;
  totalBytes: number;
  doneBytes: number;
  totalFiles: number;
  doneFiles: number;
  failedFiles: number;
  /** Bytes per second over the last few seconds while running. */
  speed: number;
  /** Kind-specific input, as the kind defined it. */
  payload: Record<string, unknown>;
  /** Per-item failures of directory tasks (capped). */
  failures: ItemFailure[];
  attempts: number;
  /** Times the process running the task died under it (its lease was reclaimed). */
  interruptions: number;
  maxRetry: number;
  /** Earliest time (ms) the task may be claimed. */
  runAt: number;
  leaseOwner: string | null;
  leaseUntil: number | null;
  cancelRequested: boolean;
  /** Set when the user deleted an unfinished task: removed once its worker lets go. */
  deleteRequested: boolean;
  createdAt: number;
  startTime: number | null;
  endTime: number | null;
  updatedAt: number;
}

/** Progress in percent, 0–100, from bytes when known, else from files. */
export function progressOf(
  task: Pick<Task, 'state' | 'totalBytes' | 'doneBytes' | 'totalFiles' | 'doneFiles'>,
): number {
  if (task.state === 'succeeded') return 100;
  if (task.totalBytes > 0) return Math.min(100, (task.doneBytes / task.totalBytes) * 100);
  if (task.totalFiles > 0) return Math.min(100, (task.doneFiles / task.totalFiles) * 100);
  return 0;
}

/** Seconds left at the current speed, or null when unknown. */
export function etaSeconds(task: Pick<Task, 'state' | 'totalBytes' | 'doneBytes' | 'speed'>): number | null {
  if (task.state !== 'running' || task.speed <= 0 || task.totalBytes <= 0) return null;
  return Math.max(0, Math.round((task.totalBytes - task.doneBytes) / task.speed));
}
