import type { TaskKind } from '../config.ts';
import { FerryError } from '../errors.ts';

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
 * The one table of allowed moves: `from: [every state it may move to]`. The store derives the
 * `WHERE state IN (…)` of every statement that changes a task's state from it (`sourcesOf`), so a
 * move the table does not list changes no row, whoever asks for it.
 *
 * - pending → running when a worker claims it; → canceled when canceled before it ran.
 * - running → succeeded | canceling (cancel asked) | canceled | errored (the attempt failed) |
 *   failing (unrecoverable, or retries used up; clean-up runs) | pending (the server shut down,
 *   or its worker died and the lease was reclaimed) | failed (its worker died under it
 *   `maxInterruptions` times: `E_INTERRUPTED`; no worker is left to clean up, so it skips failing)
 *   | running again, under another node's lease, when its holder's lease expired: the claim takes
 *   it over (see `claimRows`), so a dead node's task continues within a lease and a poll.
 * - canceling → canceled | succeeded (the last byte landed before the worker saw the cancel) |
 *   errored (the attempt failed first; the runner then ends it canceled). A canceling task whose
 *   worker died ends canceled: the flag is set before any task becomes canceling, so the cancel
 *   stands.
 * - errored → waiting_retry (backoff stored in `run_at`; also when its worker died before
 *   deciding) | failing | canceled.
 * - waiting_retry, before_retry → running when claimed | canceled. before_retry is a finished
 *   task that a user retried, queued again.
 * - failing → failed | canceled (a cancel was asked meanwhile).
 * - succeeded is final; canceled and failed only go back to the queue through a manual retry.
 */
export const TRANSITIONS: Readonly<Record<TaskState, readonly TaskState[]>> = {
  pending: ['running', 'canceled'],
  running: ['succeeded', 'canceling', 'canceled', 'errored', 'failing', 'failed', 'pending', 'running'],
  canceling: ['canceled', 'succeeded', 'errored'],
  errored: ['waiting_retry', 'failing', 'canceled'],
  waiting_retry: ['running', 'canceled'],
  before_retry: ['running', 'canceled'],
  failing: ['failed', 'canceled'],
  succeeded: [],
  canceled: ['before_retry'],
  failed: ['before_retry'],
};

/** Whether the table lets a task in `from` move to `to`. */
export function canMove(from: TaskState, to: TaskState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** For each state, the states the table lets move to it, in `TASK_STATES` order. */
const SOURCES = {} as Record<TaskState, readonly TaskState[]>;
for (const to of TASK_STATES) SOURCES[to] = TASK_STATES.filter((from) => canMove(from, to));

/**
 * The states a task may move to `to` from; with `among`, only those of `among` (the caller's
 * narrower expectation, e.g. "idle" states for a cancel that must not touch a running task).
 * @throws FerryError `E_INTERNAL` when `among` is empty or names a state the table forbids to
 * move to `to`: the caller asks for a move that can never happen, which is a bug, not a race.
 */
export function sourcesOf(to: TaskState, among?: readonly TaskState[]): readonly TaskState[] {
  const allowed = SOURCES[to];
  if (!among) return allowed;
  if (among.length === 0) throw new FerryError('E_INTERNAL', `a move to ${to} from no state`);
  const forbidden = among.filter((from) => !allowed.includes(from));
  if (forbidden.length > 0)
    throw new FerryError('E_INTERNAL', `forbidden move ${forbidden.join('|')} → ${to}`);
  return allowed.filter((from) => among.includes(from));
}

/**
 * States a worker may claim from the queue: those that may move to running, but running itself
 * (a takeover of an expired lease, claimed apart). The partial index `tasks_runnable` lists the same.
 */
export const RUNNABLE_STATES: readonly TaskState[] = sourcesOf('running').filter((s) => s !== 'running');

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
  /** Bumped by every claim: with `leaseOwner`, the fence every write of the holder names. */
  leaseToken: number;
  /** PostgreSQL: the inserting transaction's id (0 on SQLite); the key of KooDrive's stable pages. */
  insertXid: number;
  cancelRequested: boolean;
  /** Set when the user deleted an unfinished task: removed once its worker lets go. */
  deleteRequested: boolean;
  createdAt: number;
  startTime: number | null;
  endTime: number | null;
  updatedAt: number;
}

/** Who holds a running task, as a task's detail shows it (extra fields; the seed's keep their meaning). */
export interface HolderView {
  /** The node (lease owner) holding the task, null when none does. */
  node: string | null;
  /** How long ago its holder last renewed the lease, null when none holds it. */
  leaseRenewedAgoMs: number | null;
  /**
   * The holder missed its last two renewals (a lease is renewed every third of `leaseMs`): it is
   * dead or stalled, and another node takes the task over once the lease ends.
   */
  holderStalled: boolean;
}

/**
 * `task`'s holder, read from its lease: renewed at `leaseUntil - leaseMs` (every node renews to
 * now + its `leaseMs`; nodes are expected to share that setting).
 */
export function holderOf(
  task: Pick<Task, 'leaseOwner' | 'leaseUntil'>,
  leaseMs: number,
  now: number,
): HolderView {
  if (task.leaseOwner === null || task.leaseUntil === null)
    return { node: null, leaseRenewedAgoMs: null, holderStalled: false };
  const ago = Math.max(0, now - (task.leaseUntil - leaseMs));
  return { node: task.leaseOwner, leaseRenewedAgoMs: ago, holderStalled: ago > (2 * leaseMs) / 3 };
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
