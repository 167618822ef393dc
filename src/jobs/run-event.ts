import type { Task } from '../tasks/model.ts';

/**
 * The `job` of a `job.run.finished` event, read from the run's task alone (its payload holds the
 * job's id, name, mode and folders as the run started, and the counts the run saved), so the
 * event can be written inside the transaction that records the task's final state. Null for a
 * task that is not a job's run.
 */
export function jobOfRun(task: Task): Record<string, unknown> | null {
  const p = task.payload;
  const job = p.job as { id?: unknown; name?: unknown } | undefined;
  if (typeof job !== 'object' || job === null || typeof job.id !== 'string') return null;
  const result = (typeof p.result === 'object' && p.result !== null ? p.result : {}) as Record<
    string,
    unknown
  >;
  const n = (v: unknown) => (typeof v === 'number' ? v : 0);
  return {
    id: job.id,
    name: typeof job.name === 'string' ? job.name : '',
    mode: p.mode,
    src_dir: p.srcDir,
    dst_dir: p.dstDir,
    copied_files: n(result.copied),
    deleted_files: n(result.deleted),
    skipped_files: n(result.skipped),
    failed_files: n(result.failed),
    bytes: n(result.bytes),
  };
}
