import { etaSeconds, progressOf, type Task } from '../../tasks/model.ts';

/** A task in AList's shape (the seed's fields first), plus ferry's extra counters. */
export interface AlistTask {
  id: string;
  name: string;
  creator: string;
  creator_role: number;
  state: string;
  status: string;
  progress: number;
  start_time: string | null;
  end_time: string | null;
  total_bytes: number;
  error: string;
  // ferry's additions
  type: string;
  processed_bytes: number;
  total_files: number;
  processed_files: number;
  failed_files: number;
  /** Bytes per second while running. */
  speed: number;
  /** Seconds left at the current speed, null when unknown. */
  eta: number | null;
  retries: number;
  created_at: string;
  failures?: { path: string; error: string }[];
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

export function alistTask(task: Task, options: { withFailures?: boolean } = {}): AlistTask {
  return {
    id: task.id,
    name: task.name,
    creator: task.creator,
    creator_role: task.creatorRole,
    state: task.state,
    status: task.status,
    progress: Math.round(progressOf(task) * 100) / 100,
    start_time: iso(task.startTime),
    end_time: iso(task.endTime),
    total_bytes: task.totalBytes,
    error: task.error,
    type: task.kind,
    processed_bytes: task.doneBytes,
    total_files: task.totalFiles,
    processed_files: task.doneFiles,
    failed_files: task.failedFiles,
    speed: Math.round(task.speed),
    eta: etaSeconds(task),
    retries: task.attempts,
    created_at: new Date(task.createdAt).toISOString(),
    ...(options.withFailures && { failures: task.failures }),
  };
}
