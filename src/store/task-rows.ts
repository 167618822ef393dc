import type { Selectable } from 'kysely';
import type { TaskKind } from '../config.ts';
import { FerryError } from '../errors.ts';
import { type ItemFailure, isDone, type Task, type TaskState } from '../tasks/model.ts';
import type { TasksTable } from './schema.ts';

/*
 * A task and its row in `tasks`: what a state change or a progress write sets, which columns a
 * list reads, and a row read back as a `Task`.
 */

/** Fields a state change may set along with the new state. */
export interface TransitionPatch {
  error?: string;
  errorCode?: string;
  status?: string;
  runAt?: number;
  attempts?: number;
  leaseOwner?: string | null;
  leaseUntil?: number | null;
  cancelRequested?: boolean;
  endTime?: number | null;
  speed?: number;
  /** Counters to write in the same statement. */
  progress?: ProgressPatch;
}

/** A task's progress counters as one write sets them (the failures only when they changed). */
export type ProgressPatch = Pick<
  Task,
  'totalBytes' | 'doneBytes' | 'totalFiles' | 'doneFiles' | 'failedFiles' | 'speed' | 'status'
> & { failures?: ItemFailure[] };

export type Row = Selectable<TasksTable>;
/** A row as `list` reads it: everything but the failures. */
export type ListRow = Omit<Row, 'failures'> & { failures?: string };

export const LIST_COLUMNS = [
  'seq',
  'id',
  'kind',
  'name',
  'creator_id',
  'creator',
  'creator_role',
  'state',
  'done',
  'status',
  'error',
  'error_code',
  'total_bytes',
  'done_bytes',
  'total_files',
  'done_files',
  'failed_files',
  'speed',
  'payload',
  'attempts',
  'interruptions',
  'max_retry',
  'run_at',
  'lease_owner',
  'lease_until',
  'cancel_requested',
  'delete_requested',
  'created_at',
  'start_time',
  'end_time',
  'updated_at',
] as const satisfies readonly Exclude<keyof TasksTable, 'failures'>[];

/** The columns a transition to `to` writes. */
export function transitionColumns(to: TaskState, patch: TransitionPatch, now: number) {
  return {
    state: to,
    done: isDone(to) ? 1 : 0,
    updated_at: now,
    ...(patch.error !== undefined && { error: patch.error }),
    ...(patch.errorCode !== undefined && { error_code: patch.errorCode }),
    ...(patch.status !== undefined && { status: patch.status }),
    ...(patch.runAt !== undefined && { run_at: patch.runAt }),
    ...(patch.attempts !== undefined && { attempts: patch.attempts }),
    ...(patch.leaseOwner !== undefined && { lease_owner: patch.leaseOwner }),
    ...(patch.leaseUntil !== undefined && { lease_until: patch.leaseUntil }),
    ...(patch.cancelRequested !== undefined && { cancel_requested: patch.cancelRequested ? 1 : 0 }),
    ...(patch.speed !== undefined && { speed: patch.speed }),
    ...(patch.progress && progressColumns(patch.progress)),
    ...(isDone(to)
      ? { end_time: patch.endTime ?? now, speed: 0 }
      : patch.endTime !== undefined && { end_time: patch.endTime }),
  };
}

export function progressColumns(p: ProgressPatch) {
  return {
    total_bytes: p.totalBytes,
    done_bytes: p.doneBytes,
    total_files: p.totalFiles,
    done_files: p.doneFiles,
    failed_files: p.failedFiles,
    speed: p.speed,
    status: p.status,
    ...(p.failures && { failures: JSON.stringify(p.failures) }),
  };
}

export function parseJson<T>(text: string, fallback: T): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

/**
 * A row read as an array of `LIST_COLUMNS` values, as the object `toTask` takes. Built as one
 * object literal from the (constant) column names: filling an object key by key in a loop cost a
 * fifth of a list page.
 */
export const listRowOf = new Function(
  'v',
  `return { ${LIST_COLUMNS.map((column, i) => `${column}: v[${i}]`).join(', ')} };`,
) as (values: readonly unknown[]) => ListRow;

export function toTask(row: ListRow): Task {
  if (!row) throw new FerryError('E_INTERNAL', 'missing task row');
  return {
    id: row.id,
    seq: Number(row.seq),
    kind: row.kind as TaskKind,
    name: row.name,
    creatorId: Number(row.creator_id),
    creator: row.creator,
    creatorRole: Number(row.creator_role),
    state: row.state as TaskState,
    status: row.status,
    error: row.error,
    errorCode: row.error_code,
    totalBytes: Number(row.total_bytes),
    doneBytes: Number(row.done_bytes),
    totalFiles: Number(row.total_files),
    doneFiles: Number(row.done_files),
    failedFiles: Number(row.failed_files),
    speed: Number(row.speed),
    payload: parseJson<Record<string, unknown>>(row.payload, {}),
    failures: row.failures === undefined ? [] : parseJson<ItemFailure[]>(row.failures, []),
    attempts: Number(row.attempts),
    interruptions: Number(row.interruptions),
    maxRetry: Number(row.max_retry),
    runAt: Number(row.run_at),
    leaseOwner: row.lease_owner,
    leaseUntil: row.lease_until === null ? null : Number(row.lease_until),
    cancelRequested: row.cancel_requested === 1,
    deleteRequested: row.delete_requested === 1,
    createdAt: Number(row.created_at),
    startTime: row.start_time === null ? null : Number(row.start_time),
    endTime: row.end_time === null ? null : Number(row.end_time),
    updatedAt: Number(row.updated_at),
  };
}
