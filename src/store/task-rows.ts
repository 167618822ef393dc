import type { Selectable } from 'kysely';
import type { TaskKind } from '../config.ts';
import { FerryError } from '../errors.ts';
import { type ItemFailure, isDone, type Task, type TaskState } from '../tasks/model.ts';
import type { TasksTable } from './schema.ts';
import type { TaskColumns } from './task-sql.ts';

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
  'lease_token',
  'insert_xid',
] as const satisfies readonly Exclude<keyof TasksTable, 'failures'>[];

/**
 * A row read as an array of `LIST_COLUMNS` values (see `OpenedDatabase.selectArrays`), as the
 * object `toTask` takes. Spelled out, in `LIST_COLUMNS` order (a test holds the two together):
 * one object literal is the cheapest way to build it.
 */
export function listRowOf(v: readonly unknown[]): ListRow {
  return {
    seq: v[0] as number,
    id: v[1] as string,
    kind: v[2] as string,
    name: v[3] as string,
    creator_id: v[4] as number,
    creator: v[5] as string,
    creator_role: v[6] as number,
    state: v[7] as string,
    done: v[8] as number,
    status: v[9] as string,
    error: v[10] as string,
    error_code: v[11] as string,
    total_bytes: v[12] as number,
    done_bytes: v[13] as number,
    total_files: v[14] as number,
    done_files: v[15] as number,
    failed_files: v[16] as number,
    speed: v[17] as number,
    payload: v[18] as string,
    attempts: v[19] as number,
    interruptions: v[20] as number,
    max_retry: v[21] as number,
    run_at: v[22] as number,
    lease_owner: v[23] as string | null,
    lease_until: v[24] as number | null,
    cancel_requested: v[25] as number,
    delete_requested: v[26] as number,
    created_at: v[27] as number,
    start_time: v[28] as number | null,
    end_time: v[29] as number | null,
    updated_at: v[30] as number,
    lease_token: v[31] as number,
    insert_xid: v[32] as number,
  };
}

/**
 * The columns a move to `to` writes besides `state` and `done` (which only the guarded move of
 * `updateTasks` sets): the patch, and for a finished task its end time, speed 0.
 */
export function transitionColumns(to: TaskState, patch: TransitionPatch, now: number): TaskColumns {
  return {
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

/** The columns a progress write sets. */
export function progressColumns(p: ProgressPatch): TaskColumns {
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

/** A task as the store reads it: `Row` from `get`, `ListRow` from lists (no failures). */
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
    leaseToken: Number(row.lease_token),
    insertXid: Number(row.insert_xid),
    cancelRequested: row.cancel_requested === 1,
    deleteRequested: row.delete_requested === 1,
    createdAt: Number(row.created_at),
    startTime: row.start_time === null ? null : Number(row.start_time),
    endTime: row.end_time === null ? null : Number(row.end_time),
    updatedAt: Number(row.updated_at),
  };
}
